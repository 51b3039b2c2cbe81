"""The index for collections past what memory holds (from ~2M photos at 512 dimensions, ``vector_index.choose``).

After FAISS's own guidelines for 10M-1B vectors: an inverted file of 2^14-2^18 lists whose coarse quantizer is
an HNSW graph over the centroids, with product codes (``IVF<lists>_HNSW32,PQ<m>``). Its inverted lists live
on disk and a search memory-maps them (faiss ``OnDiskInvertedLists``): a search process holds the quantizer
and the pages it touches, not the codes. Three kinds of file, all caches of the catalog and the segments:

    ivf-<t>.trained      the trained, empty index (centroids by two-level k-means, product codebooks)
    ivf-<b>.base         the base: every vector at build ``b``, lists in ivf-<b>.ivfdata, ids in ivf-<b>.ids.npy
    ivf-<b>-<g>.delta    what changed since the base at generation ``g``: the lists of new and re-embedded
                         photos (an in-memory IVF on the base's quantizer) and the base ids to skip

A run patches nothing on disk: it writes the delta for its generation, computed from the catalog (the ids
past the base's last id, and ``changed_after_build``), in seconds. Once the delta or the skipped ids pass
``REBUILD_SHARE`` of the base, a new base is built beside the old one from the same training (a retrain
when the collection has grown ``RETRAIN_GROWTH`` times since), and the catalog is pointed at it in one
commit: searches go on with the old files meanwhile. A base is built in shards by worker processes, each
adding a range of ids to a copy of the trained index, and the shards' lists are merged into one file
(faiss ``merge_ondisk``). Candidates are re-ranked with the exact float16 vectors from the segments, which
product codes alone cannot rank (bench/store_scale.py measured recall with and without; docs/benchmarks.md).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from clipsearch.store import file_sums, vector_index
from clipsearch.store.mapped_pages import MappedPages

if TYPE_CHECKING:
    import faiss
    import numpy as np

    from clipsearch.store.catalog import Catalog
    from clipsearch.store.layout import Layout

RERANK = 64  # candidates scored exactly for each hit wanted (at least RERANK_MIN): bench/store_scale.py
RERANK_MIN = 512
REBUILD_SHARE = 0.1  # a base is rebuilt once its delta or its skipped ids pass this share of it
SHARD_VECTORS = 2_000_000  # ids per shard of a build: a worker's lists in memory (~300 MB at PQ128)


class ShardRunner(Protocol):
    """Runs a build's shards elsewhere (Ray tasks: ``indexer.ray_engine``): ``fn(*args)`` for each ``args``, the
    results in order, and how many can run at once. The workers must see the index directory at its path."""

    @property
    def workers(self) -> int: ...

    def __call__(self, fn: Callable[..., int], args: list[tuple[Any, ...]]) -> list[int]: ...


def is_large(factory: str) -> bool:
    return "_HNSW" in factory.split(",")[0]


class LargeIndex:
    """What a search holds: the base (memory-mapped lists), the delta, the base ids to skip, and the exact vectors
    for re-ranking. Answers ``search`` as a FAISS index would (scores, ids), selectors included."""

    def __init__(self, base: faiss.Index, delta: faiss.Index, skipped: np.ndarray,
                 exact: Callable[[Sequence[int]], tuple[np.ndarray, np.ndarray]]) -> None:
        import faiss

        self.base, self.delta, self.skipped, self._exact = base, delta, skipped, exact
        self._skip = faiss.IDSelectorBatch(skipped) if len(skipped) else None
        self._not_skipped = faiss.IDSelectorNot(self._skip) if self._skip is not None else None
        self.nlist = faiss.extract_index_ivf(base).nlist
        self.nprobe = faiss.extract_index_ivf(base).nprobe
        self.ntotal = base.ntotal - len(skipped) + delta.ntotal
        self._pages = MappedPages(faiss.downcast_InvertedLists(faiss.extract_index_ivf(base).invlists).filename)

    def search(self, x: np.ndarray, k: int, params: Any = None) -> tuple[np.ndarray, np.ndarray]:
        import faiss
        import numpy as np

        chosen = getattr(params, "sel", None)
        nprobe = getattr(params, "nprobe", 0) or self.nprobe
        wanted = max(k * RERANK, RERANK_MIN)
        keep: list[Any] = []  # selectors must outlive the searches that use them
        base_sel = self._not_skipped
        if chosen is not None:
            base_sel = chosen if base_sel is None else faiss.IDSelectorAnd(chosen, base_sel)
            keep.append(base_sel)
        found = []
        for index, selector in ((self.base, base_sel), (self.delta, chosen)):
            if index.ntotal == 0:
                continue
            p = faiss.SearchParametersIVF(nprobe=nprobe)
            if selector is not None:
                p.sel = selector
            found.append(index.search(x, min(wanted, index.ntotal), params=p)[1])
        scores = np.full((len(x), k), -np.inf, dtype="float32")
        ids = np.full((len(x), k), -1, dtype="int64")
        for row in range(len(x)):
            candidates = np.unique(np.concatenate([part[row] for part in found]))
            held, matrix = self._exact(candidates[candidates >= 0].tolist())
            exact = matrix @ x[row]
            best = np.argsort(-exact, kind="stable")[:k]
            scores[row, : len(best)], ids[row, : len(best)] = exact[best], held[best]
        self._pages.trim()  # the probed lists stay mapped: a process's memory is bounded here, not by the lists
        return scores, ids


def train(factory: str, dim: int, sample: np.ndarray) -> faiss.Index:
    """An empty index of type ``factory`` trained on ``sample``: the centroids by two-level k-means (sqrt(lists)
    coarse clusters, each split), which costs ~sqrt(lists) times less than k-means over every list at once, then the
    product codebooks on the residuals."""
    import contextlib
    import io

    import faiss
    import numpy as np

    with contextlib.redirect_stdout(io.StringIO()):  # it prints that scipy is missing, into a --json's stdout
        from faiss.contrib.clustering import two_level_clustering

    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(index)
    coarse = max(1, int(np.sqrt(ivf.nlist)))
    centroids, _ = two_level_clustering(np.ascontiguousarray(sample, dtype="float32"), coarse, ivf.nlist,
                                        clustering_niter=10, seed=1234, gpu=gpus() > 0)
    ivf.quantizer.add(np.ascontiguousarray(centroids, dtype="float32"))
    ivf.quantizer.is_trained = True
    codes = faiss.downcast_index(ivf)
    if hasattr(codes, "do_polysemous_training"):
        codes.do_polysemous_training = False  # codes sorted for Hamming filtering, which a search here never uses:
    # it cost most of the training (bench/store_scale.py). The quantizer holds its lists: only the codebooks train
    index.train(sample)
    return index


def _add_shard(trained: str, directory: str, first: int, last: int, out: str) -> int:
    """A worker's part of a build: the ids ``first``..``last`` added to a copy of the trained index, written to
    ``out``; returns how many."""
    import faiss

    from clipsearch.store.catalog import Catalog, connect
    from clipsearch.store.layout import Layout
    from clipsearch.store.segments import Segments
    from clipsearch.store.stored_vectors import StoredVectors

    faiss.omp_set_num_threads(1)  # one core per worker: the workers are the parallelism
    index = faiss.read_index(trained)
    ivf = faiss.extract_index_ivf(index)
    faiss.downcast_index(ivf.quantizer).hnsw.efSearch = 64
    assign = _gpu_assigner(ivf) if gpus() > 0 else None
    layout = Layout(Path(directory))
    catalog = Catalog(connect(layout.catalog, readonly=True), layout.catalog)
    try:
        for ids, matrix in StoredVectors.of(catalog, Segments(layout.segments)).iter_vectors(between=(first, last),
                                                                                           moments=False):
            if assign is None:
                index.add_with_ids(matrix, ids)
            else:  # the nearest list found exactly on the GPU; the codes computed here
                lists = assign(matrix)
                ivf.add_core(len(ids), faiss.swig_ptr(matrix), faiss.swig_ptr(ids), faiss.swig_ptr(lists))
                index.ntotal = ivf.ntotal
    finally:
        catalog.close()
    faiss.write_index(index, out)
    return int(index.ntotal)


def gpus() -> int:
    """GPUs a GPU build of faiss sees (0 with the CPU build)."""
    import faiss

    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def _gpu_assigner(ivf: faiss.IndexIVF) -> Callable[[np.ndarray], np.ndarray]:
    """The nearest centroid of each row, by exact search of the centroids copied to the GPUs."""
    import faiss
    import numpy as np

    flat = faiss.IndexFlatIP(ivf.d)
    flat.add(ivf.quantizer.reconstruct_n(0, ivf.quantizer.ntotal))
    on_gpu = faiss.index_cpu_to_all_gpus(flat)

    def assign(matrix: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(on_gpu.search(matrix, 1)[1].ravel(), dtype="int64")

    return assign


def build_base(trained: Path, directory: Path, ids: np.ndarray, base: Path, lists: Path, workers: int,
               runner: ShardRunner | None = None) -> int:
    """Every vector of the committed catalog with an id in ``ids`` (sorted) added to the ``trained`` index, in shards
    by ``workers`` processes (or by ``runner``'s workers), merged into the on-disk lists ``lists``; the index is
    written to ``base``."""
    import faiss
    from faiss.contrib.ondisk import merge_ondisk

    workers = runner.workers if runner is not None else workers
    needed = -(-len(ids) // SHARD_VECTORS)
    shards = max(1, needed if workers <= 1 else workers * -(-needed // workers))  # each worker as many: none alone last
    bounds = [(int(part[0]), int(part[-1])) for part in _split(ids, shards)]
    outs = [str(base) + f".shard{n}" for n in range(len(bounds))]
    try:
        if runner is not None:
            added = sum(runner(_add_shard, [(str(trained), str(directory), lo, hi, out)
                                            for (lo, hi), out in zip(bounds, outs)]))
        elif len(bounds) == 1 or workers <= 1:
            added = sum(_add_shard(str(trained), str(directory), lo, hi, out) for (lo, hi), out in zip(bounds, outs))
        else:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                added = sum(pool.map(_add_shard, [str(trained)] * len(outs), [str(directory)] * len(outs),
                                     [b[0] for b in bounds], [b[1] for b in bounds], outs))
        index = faiss.read_index(str(trained))
        with _quiet_stdout():  # faiss prints "resizing <file>" there
            merge_ondisk(index, outs, str(lists))
        file_sums.write(lists)
        vector_index.write_atomically(index, base)
        return added
    finally:
        for out in outs:
            Path(out).unlink(missing_ok=True)


@contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Silence file descriptor 1 for the block: what C++ code prints there would land in a ``--json`` output."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _split(ids: np.ndarray, parts: int) -> list[np.ndarray]:
    import numpy as np

    return [p for p in np.array_split(ids, parts) if len(p)]


def skip_file(delta: Path) -> Path:
    return delta.with_name(delta.name + ".skip.npy")


def read_base(base: Path) -> faiss.Index:
    """The base with its lists memory-mapped read-only (the ``.ivfdata`` file beside it), set up for queries: the
    lists to probe (``vector_index.nprobe``) and an HNSW search wide enough to find them."""
    import faiss

    if not file_sums.verify_if_small(base):
        raise RuntimeError(f"{base.name} fails its checksum")
    index = faiss.read_index(str(base), faiss.IO_FLAG_READ_ONLY)  # (IO_FLAG_MMAP crashes this type's search)
    ivf = faiss.extract_index_ivf(index)
    ivf.parallel_mode = 1
    ivf.nprobe = vector_index.nprobe(ivf.nlist)
    faiss.downcast_index(ivf.quantizer).hnsw.efSearch = max(64, 2 * ivf.nprobe)
    # No prefetch threads: faiss starts 32 for every search to read the probed lists ahead, which cost a one-vector
    # query more than twice its time where the lists are in the page cache (bench/store_scale.py).
    faiss.downcast_InvertedLists(ivf.invlists).prefetch_nthread = 0
    return index


def make_delta(trained: Path, blocks: Any) -> faiss.Index:
    """An in-memory index on the trained quantizer and codebooks holding the vectors of ``blocks``."""
    import faiss

    delta = faiss.read_index(str(trained))
    for ids, matrix in blocks:
        delta.add_with_ids(matrix, ids)
    return delta


def write_delta(delta: faiss.Index, skipped: np.ndarray, target: Path) -> None:
    """The delta, its quantizer swapped for an empty one while it is written (the base's is put back on reading),
    and the skipped ids beside it."""
    import faiss
    import numpy as np

    ivf = faiss.extract_index_ivf(delta)
    quantizer, placeholder = ivf.quantizer, faiss.IndexFlatIP(ivf.d)  # kept referenced while C++ points at it
    ivf.quantizer = placeholder
    try:
        with open(skip_file(target), "wb") as f:
            np.save(f, np.asarray(skipped, dtype="int64"))
            os.fsync(f.fileno())
        file_sums.write(skip_file(target))
        vector_index.write_atomically(delta, target)
    finally:
        ivf.quantizer = quantizer


def read_delta(base: faiss.Index, target: Path) -> tuple[faiss.Index, np.ndarray] | None:
    """The delta at ``target`` on the base's quantizer, with its skipped ids; None if either file is missing."""
    import faiss
    import numpy as np

    if not (target.is_file() and skip_file(target).is_file()):
        return None
    if not (file_sums.verify_if_small(target) and file_sums.verify_if_small(skip_file(target))):
        return None  # damaged: computed from the catalog instead
    try:
        delta = faiss.read_index(str(target))
        skipped = np.load(skip_file(target))
    except (RuntimeError, ValueError, OSError):
        return None
    ivf = faiss.extract_index_ivf(delta)
    ivf.own_fields = False  # the placeholder read from the file is left to leak (a few bytes): the base owns this one
    ivf.quantizer = faiss.extract_index_ivf(base).quantizer
    ivf.parallel_mode = 1
    ivf.nprobe = faiss.extract_index_ivf(base).nprobe
    return delta, skipped


def check(layout: Layout, catalog: Catalog) -> list[str]:
    """What is wrong with the large index's files against the catalog (``clipsearch check``)."""
    base_no, trained_no = int(catalog.meta("index_base") or 0), int(catalog.meta("index_trained") or 0)
    problems = []
    if not layout.ivf_trained(trained_no).is_file():
        problems.append(f"the on-disk index's training ({layout.ivf_trained(trained_no).name}) is missing")
    try:
        base = read_base(layout.ivf_base(base_no))
    except RuntimeError as exc:
        return [*problems, f"the on-disk index's base is missing or unreadable: {str(exc).splitlines()[0]}"]
    if not layout.ivf_lists(base_no).is_file() or base.ntotal != int(catalog.meta("index_base_count") or -1):
        problems.append(f"the on-disk index's lists ({layout.ivf_lists(base_no).name}) are missing or not whole")
    delta = layout.ivf_delta(base_no, catalog.generation)
    for path in (layout.ivf_trained(trained_no), layout.ivf_base(base_no), layout.ivf_lists(base_no), delta,
                 skip_file(delta)):
        if path.is_file() and (damage := file_sums.verify(path)) is not None:
            problems.append(damage)
    found = read_delta(base, delta)
    if found is None:
        pass  # an interrupted run's: searches compute it from the catalog, the next run writes it (check's note)
    elif base.ntotal - len(found[1]) + found[0].ntotal != catalog.count():
        problems.append(f"the on-disk index holds {base.ntotal - len(found[1]) + found[0].ntotal} vectors, the "
                        f"catalog {catalog.count()} files")
    return problems
