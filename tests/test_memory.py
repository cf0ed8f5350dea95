"""Semantic memory: cosine top-k ranking, embedding reuse, versions kept apart: on DuckDB and on
PostgreSQL + pgvector alike."""

import math

import pytest

from srl_forge.lore import LoreChunk, load_species_lore
from srl_forge.memory import SemanticMemory, SentenceEmbedder, open_lore_store
from tests.helpers import LORE_ROOT


class AxisEmbedder:
    """Deterministic 384-d vectors: one axis per known keyword (exact cosine values to check)."""

    KEYWORDS = ["silver", "moon", "pack", "corpse"]

    def __init__(self):
        self.calls = 0

    def __call__(self, texts):
        self.calls += len(texts)
        out = []
        for text in texts:
            v = [0.0] * 384
            for i, word in enumerate(self.KEYWORDS):
                v[i] = float(text.lower().count(word))
            v[383] = 0.5  # never a zero vector
            out.append(v)
        return out


def test_cosine_ranking_is_exact(database_location):
    store = open_lore_store(database_location)

    chunks = [
        LoreChunk(chunk_id=f"c{i}", doc_id="w/d", text=t)
        for i, t in enumerate(["silver silver", "moon", "silver moon", "pack"])
    ]
    embedder = AxisEmbedder()
    store.store("werewolf", "v1", chunks, embedder([c.text for c in chunks]))
    hits = store.search("werewolf", "v1", embedder(["silver"])[0], k=3)
    assert [h.chunk_id for h in hits] == ["c0", "c2", "c1"]
    q, d = [1, 0, 0, 0, 0.5], [2, 0, 0, 0, 0.5]
    expected = sum(a * b for a, b in zip(q, d)) / (math.hypot(*q) * math.hypot(*d))
    assert hits[0].score == pytest.approx(expected, rel=1e-5)


def test_index_reuses_embeddings_and_keeps_versions_apart(database_location):
    store = open_lore_store(database_location)
    embedder = AxisEmbedder()
    memory = SemanticMemory(store, embedder)
    lore = load_species_lore(LORE_ROOT, "werewolf")
    first = memory.index(lore)
    assert first["embedded"] == first["chunks"] and embedder.calls == first["chunks"]
    store.store("werewolf", "older-version", lore.chunks()[:1], embedder([lore.chunks()[0].text]))
    again = memory.index(lore)
    assert again["embedded"] == 0 and again["reused"] == first["chunks"]
    assert store.has_version("werewolf", lore.version) and store.has_version("werewolf", "older-version")


def test_search_finds_k_chunks_of_its_version_when_other_versions_are_nearer(database_location):
    """Many near chunks of another version must not crowd out the asked version's (on PostgreSQL the
    HNSW index scan is filtered: iterative scanning keeps going until k rows match)."""

    store = open_lore_store(database_location)
    embedder = AxisEmbedder()
    crowd = [LoreChunk(chunk_id=f"n{i:03d}", doc_id="w/d", text="silver " * (1 + i % 3)) for i in range(300)]
    store.store("werewolf", "crowd", crowd, embedder([c.text for c in crowd]))
    mine = [LoreChunk(chunk_id=f"m{i}", doc_id="w/d", text=t) for i, t in enumerate(["moon", "pack", "corpse moon"])]
    store.store("werewolf", "mine", mine, embedder([c.text for c in mine]))
    hits = store.search("werewolf", "mine", embedder(["silver"])[0], k=3)
    assert sorted(h.chunk_id for h in hits) == ["m0", "m1", "m2"]
    with pytest.raises(ValueError, match="384 dimensions"):
        store.search("werewolf", "mine", [1.0, 0.0], k=1)


def test_a_failed_store_keeps_the_version_that_was_there(database_location):
    store = open_lore_store(database_location)
    embedder = AxisEmbedder()
    kept = [LoreChunk(chunk_id="c0", doc_id="w/d", text="moon")]
    store.store("werewolf", "v1", kept, embedder(["moon"]))
    broken = [LoreChunk(chunk_id="c0", doc_id="w/d", text="moon"), LoreChunk(chunk_id="c1", doc_id="w/d", text="x")]
    with pytest.raises(ValueError):
        store.store("werewolf", "v1", broken, embedder(["moon"]) + [[0.0] * 3])
    assert [h.chunk_id for h in store.search("werewolf", "v1", embedder(["moon"])[0], k=5)] == ["c0"]


@pytest.fixture(scope="module")
def minilm():
    return SentenceEmbedder()


def test_real_minilm_recalls_the_relevant_lore(database_location, minilm):
    memory = SemanticMemory(open_lore_store(database_location), minilm)
    lore = load_species_lore(LORE_ROOT, "werewolf")
    memory.index(lore)
    hits = memory.recall("werewolf", lore.version, "what does a werewolf fear about silver blades", k=3)
    assert hits[0].doc_id == "werewolf/weaknesses"
    assert hits[0].score > hits[-1].score >= -1
    moon = memory.recall("werewolf", lore.version, "what happens when the full moon rises", k=1)
    assert moon[0].doc_id == "werewolf/behaviour"
