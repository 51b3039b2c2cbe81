"""FAISS index type chosen by size and memory, recall against exact search, switching as the collection grows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clipsearch.store import FileRecord, ModelRecord, StoreReader, StoreWriter, check_index
from clipsearch.store import vector_index as vectors
from search.engine import Searcher

DIM = 64


def clustered(n: int, seed: int, clusters: int = 100) -> np.ndarray:
    """CLIP-like embeddings: unit vectors bunched around topic centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, DIM))
    x = centres[rng.integers(0, clusters, n)] + 0.35 * rng.normal(size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("float32")


def fill(index_dir: Path, data: np.ndarray, start: int = 0, index_type: str | None = None) -> None:
    with StoreWriter.open(index_dir) as store:
        if store.catalog.model is None:
            store.bind_model(ModelRecord("synthetic", "{}", DIM))
        if index_type:
            store.set_index_type(index_type)
        store.begin_run([])
        for i, vector in enumerate(data, start=start):
            store.put(FileRecord(f"/synthetic/{i:07d}.jpg", 1, 1, i.to_bytes(16, "little"), 1, 1), vector)
        store.finish({})


def recall_at_10(index_dir: Path, data: np.ndarray, queries: np.ndarray) -> float:
    exact = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    searcher = Searcher(index_dir)
    hits = 0
    for query, truth in zip(queries, exact):
        found = {int(Path(h.path).stem) for h in searcher.search(query, k=10)}
        hits += len(found & set(truth.tolist()))
    searcher.close()
    return hits / exact.size


def test_choice_follows_size_and_memory() -> None:
    assert vectors.choose(1_000, 512) == "Flat"
    assert vectors.choose(200_000, 512) == "Flat"
    assert vectors.choose(500_000, 512) == "IVF2048,Flat"  # 1.0 GB of float32 still fits 1 GiB
    assert vectors.choose(1_000_000, 512) == "IVF4096,SQ8"  # 2 GB would not; 8-bit codes do
    assert vectors.choose(5_000_000, 512) == "IVF16384_HNSW32,PQ128"  # neither: the large index, 128-byte codes on disk
    assert vectors.choose(100_000_000, 512) == "IVF32768_HNSW32,PQ128"  # 4 sqrt(n) lists, 2^14 to 2^18
    assert vectors.choose(1_000_000_000, 1024) == "IVF131072_HNSW32,PQ256"  # dim/4 bytes a code
    assert vectors.choose(1_000_000, 512, budget=8 << 30) == "IVF4096,Flat"
    assert vectors.choose(8_000, 64, budget=1 << 10) == "IVF128_HNSW32,PQ16"
    assert vectors.choose(50_000, 768, budget=10 << 20).startswith("IVF")  # a small budget forces codes early


@pytest.mark.parametrize("index_type", ["IVF128,Flat", "IVF128,SQ8"])
def test_ivf_recall_against_exact(tmp_path: Path, index_type: str) -> None:
    data = clustered(20_000, seed=1)
    fill(tmp_path / "idx", data, index_type=index_type)
    info = StoreReader.open(tmp_path / "idx").info()
    assert info["index_type"] == index_type and info["index_type_setting"] == index_type
    queries = clustered(200, seed=2)
    assert recall_at_10(tmp_path / "idx", data, queries) >= 0.95


def test_index_type_switches_and_retrains_as_the_collection_grows(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vectors, "FLAT_INDEX_MAX", 5_000)
    idx = tmp_path / "idx"
    data = clustered(40_000, seed=3)
    fill(idx, data[:3_000])
    assert StoreReader.open(idx).info()["index_type"] == "Flat"
    fill(idx, data[3_000:8_000], start=3_000)  # past the exact limit: an IVF index, trained now
    info = StoreReader.open(idx).info()
    assert info["index_type"] == "IVF128,Flat"  # 4 sqrt(n) lists, at most n/39
    fill(idx, data[8_000:9_000], start=8_000)  # small growth: patched, not retrained
    with StoreReader.open(idx) as store:
        assert store.catalog.meta("index_built_at") == "8000"
    fill(idx, data[9_000:], start=9_000)  # past 4x the training size: retrained with more lists
    with StoreReader.open(idx) as store:
        assert store.catalog.meta("index_built_at") == "40000"
        assert store.info()["index_type"] == "IVF1024,Flat"
    assert recall_at_10(idx, data, clustered(100, seed=4)) >= 0.95
    with StoreWriter.open(idx) as store:
        assert check_index(store) == []
