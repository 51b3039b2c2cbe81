"""The large index (lists on disk, HNSW quantizer, product codes re-ranked with the exact vectors), at small sizes:
the same candidates as its in-memory twin, recall against exact search, photos added, removed and re-embedded
without a rebuild, a rebuild beside the old base, a killed run's missing delta, and `check --repair`."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from clipsearch.store import FileRecord, ModelRecord, StoreReader, StoreWriter, check_index, large_index
from clipsearch.store.check import diagnose
from clipsearch.store.index_files import IndexFiles
from search.engine import Searcher

DIM = 64
TYPE = "IVF128_HNSW32,PQ16"


def clustered(n: int, seed: int, clusters: int = 100) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, DIM))
    x = centres[rng.integers(0, clusters, n)] + 0.35 * rng.normal(size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("float32")


def path(i: int) -> str:
    return f"/synthetic/{i:07d}.jpg"


def fill(index: Path, data: np.ndarray, start: int = 0, drop: range | None = None, salt: int = 0) -> None:
    """Store ``data`` as photos ``start``...; with ``drop``, those photos leave the index in the same run."""
    with StoreWriter.open(index) as store:
        if store.catalog.model is None:
            store.bind_model(ModelRecord("synthetic", "{}", DIM))
            store.set_index_type(TYPE)
        store.begin_run([])
        for i, vector in enumerate(data, start=start):
            store.put(FileRecord(path(i), 1, 1 + salt, (i + (salt << 40)).to_bytes(16, "little"), 1, 1), vector)
        if drop is not None:
            for row in store.catalog.file_rows():
                if int(Path(row.path).stem) not in drop:
                    store.mark_seen(row.id)
            store.sweep("/synthetic")
        store.finish({})


def top(index: Path, queries: np.ndarray, k: int = 10) -> list[list[int]]:
    searcher = Searcher(index)
    try:
        return [[int(Path(h.path).stem) for h in searcher.search(q, k=k)] for q in queries]
    finally:
        searcher.close()


def files(index: Path, pattern: str) -> list[str]:
    """The index files matching ``pattern``, each of which must carry its checksum (``file_sums``)."""
    found = sorted(p.name for p in index.glob(pattern) if not p.name.endswith(".crc"))
    assert all((index / (name + ".crc")).is_file() for name in found), found
    return found


@pytest.fixture(scope="module")
def collection() -> np.ndarray:
    return clustered(12_000, seed=1)


def test_the_on_disk_index_answers_as_its_in_memory_twin_and_recalls_what_exact_search_finds(
        tmp_path: Path, collection: np.ndarray) -> None:
    import faiss

    index = tmp_path / "idx"
    fill(index, collection)
    assert files(index, "ivf-*") == ["ivf-1.trained", "ivf-2-1.delta", "ivf-2-1.delta.skip.npy", "ivf-2.base",
                                     "ivf-2.ivfdata"]
    assert files(index, "vectors-*") == []
    with StoreReader.open(index) as store:
        assert store.info()["index_type"] == TYPE
        ondisk = store.vector_index()
        assert isinstance(ondisk, large_index.LargeIndex) and ondisk.ntotal == 12_000
        twin = faiss.read_index(str(index / "ivf-1.trained"))  # the same training, its lists in memory
        for ids, matrix in store.vectors.iter_vectors():
            twin.add_with_ids(matrix, ids)
    faiss.extract_index_ivf(twin).nprobe = ondisk.nprobe
    faiss.downcast_index(faiss.extract_index_ivf(twin).quantizer).hnsw.efSearch = faiss.downcast_index(
        faiss.extract_index_ivf(ondisk.base).quantizer).hnsw.efSearch  # the same lists probed
    queries = clustered(100, seed=2)
    disk_scores, disk_ids = ondisk.base.search(queries, 20)
    twin_scores, twin_ids = twin.search(queries, 20)
    np.testing.assert_allclose(disk_scores, twin_scores, rtol=1e-5)
    assert (disk_ids == twin_ids).mean() > 0.99  # ties aside, the very same candidates

    exact = np.argsort(-(queries @ collection.T), axis=1)[:, :10]
    found = top(index, queries)
    recall = np.mean([len(set(f) & set(t.tolist())) / 10 for f, t in zip(found, exact)])
    assert recall >= 0.9, recall  # product codes alone rank far worse: the re-ranking with the exact vectors


def test_added_removed_and_re_embedded_photos_need_no_rebuild_until_the_delta_outgrows_the_base(
        tmp_path: Path, collection: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    index = tmp_path / "idx"
    fill(index, collection[:10_000])

    def not_from_scratch(*_: object) -> None:
        raise AssertionError("the run's delta was computed from the catalog, not patched with the run's changes")

    monkeypatch.setattr(IndexFiles, "_delta_from_catalog", not_from_scratch)
    extra = clustered(300, seed=5)
    fill(index, extra, start=10_000, drop=range(0, 300))  # 300 new photos, 300 gone, in one run
    assert files(index, "ivf-*.base") == ["ivf-2.base"]  # the same base: the changes are in the delta
    gone_queries = collection[:5]
    hits = top(index, np.vstack([extra[:5], gone_queries]), k=3)
    assert [h[0] for h in hits[:5]] == list(range(10_000, 10_005))  # the new ones are found
    assert all(i >= 300 for h in hits[5:] for i in h)  # the removed ones never come back

    moved = clustered(1, seed=9)[0]  # photo 500 re-embedded (its file changed): found by its new vector only
    with StoreWriter.open(index) as store:
        store.begin_run([])
        store.put(FileRecord(path(500), 2, 2, b"changed-content-500", 1, 1), moved)
        store.finish({})
        assert check_index(store) == []
    assert top(index, moved[None], k=1) == [[500]]
    searcher = Searcher(index)
    old = searcher.search(collection[500], k=1)[0]  # its old vector, still in the base, is skipped
    searcher.close()
    assert not (old.path == path(500) and old.score > 0.99)

    with StoreReader.open(index) as store:
        assert store.vector_index().ntotal == store.catalog.count() == 10_000
    monkeypatch.undo()

    answered, failed, done = [], [], threading.Event()

    def search_meanwhile() -> None:  # a server's searches while the writer builds a new base beside the old one
        searcher = Searcher(index)
        while not done.is_set() or not answered:
            try:
                answered.append(searcher.search(extra[0], k=1)[0].path)
            except Exception as exc:  # noqa: BLE001 - any failure is what this test looks for
                failed.append(exc)
        searcher.close()

    searching = threading.Thread(target=search_meanwhile)
    searching.start()
    fill(index, clustered(1_200, seed=6), start=20_000)  # the delta passes a tenth of the base: a new base
    done.set()
    searching.join(60)
    assert not failed and set(answered) == {path(10_000)}
    assert files(index, "ivf-*.base") == ["ivf-3.base"] and files(index, "ivf-*.trained") == ["ivf-1.trained"]
    with StoreReader.open(index) as store:
        assert store.vector_index().delta.ntotal == 0 and store.catalog.count() == 11_200


def test_a_collection_grown_past_its_training_is_trained_again(tmp_path: Path, collection: np.ndarray,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from clipsearch.store import vector_index

    index = tmp_path / "idx"
    fill(index, collection[:4_000])
    monkeypatch.setattr(vector_index, "RETRAIN_GROWTH", 2)
    fill(index, collection[4_000:9_000], start=4_000)  # 9,000 > 2 x 4,000: trained again, a base from that
    assert files(index, "ivf-*.trained") == ["ivf-3.trained"] and files(index, "ivf-*.base") == ["ivf-4.base"]
    with StoreWriter.open(index) as store:
        assert check_index(store) == [] and store.catalog.meta("index_built_at") == "9000"


def test_a_killed_runs_missing_delta_is_computed_and_check_repair_rebuilds_a_lost_base(
        tmp_path: Path, collection: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(large_index, "SHARD_VECTORS", 2_500)  # four shards, added by two worker processes
    index = tmp_path / "idx"
    fill(index, collection[:10_000])
    fill(index, collection[10_000:10_400], start=10_000)
    queries = clustered(20, seed=3)
    before = top(index, queries)
    for delta in index.glob("ivf-*-*.delta*"):
        delta.unlink()  # as a run killed before it wrote its delta leaves it
    assert top(index, queries) == before  # computed from the catalog by the search itself
    with StoreWriter.open(index) as store:  # what searches serve correctly is not a problem, only a note
        assert check_index(store) == [] and any("interrupted" in n for n in diagnose(store).notes)
    (index / "ivf-2.ivfdata").unlink()  # and the base's lists lost
    with StoreWriter.open(index) as store:
        assert check_index(store, mend=True)
        assert check_index(store) == []
    assert files(index, "ivf-*.base") == ["ivf-3.base"] and files(index, "ivf-*.trained") == ["ivf-1.trained"]
    assert top(index, queries) == before  # rebuilt from the segments with the same training
