"""The FAISS side of the store: which index a collection gets, and building, patching, writing and reading it.

Exact search while it is cheap; past that an inverted-file index whose codes fit the memory budget
(after autofaiss's rules): full vectors, then 8-bit scalar quantisation, then product quantisation.
The catalog is the source of truth; a FAISS file is a cache of it at one generation
(bench/search_scale.py measured these choices: docs/benchmarks.md).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipsearch.errors import UserError

if TYPE_CHECKING:
    import faiss
    import numpy as np

FLAT_INDEX_MAX = 200_000  # vectors up to which the index is Flat: exact search is fast enough (bench/search_scale.py)
DEFAULT_BUDGET = 1 << 30  # bytes of vector codes to keep in memory
RETRAIN_GROWTH = 4  # an IVF index trained at n vectors is retrained once the collection passes 4n

Blocks = Iterable[tuple["np.ndarray", "np.ndarray"]]  # (int64 ids, float32 matrix) blocks of stored vectors


def choose(n: int, dim: int, budget: int = DEFAULT_BUDGET) -> str:
    """A faiss index_factory string for ``n`` unit vectors of ``dim`` dimensions (inner product).

    Held in memory while 8-bit codes fit the budget; past that the large index (``large_index``): lists on disk,
    an HNSW coarse quantizer over 2^14-2^18 lists, product codes of dim/4 bytes (4 dimensions a byte: dim/8 bytes
    put a third of the true top-10 past 640 candidates, bench/store_scale.py) re-ranked with the exact vectors."""
    if n <= FLAT_INDEX_MAX and n * dim * 4 <= budget:
        return "Flat"
    nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
    m = max(d for d in range(1, dim // 4 + 1) if dim % d == 0)  # sub-quantisers of 8 bits, dim/4 of them
    if n * dim > budget:
        nlist = min(max(LARGE_LISTS[0], nlist), LARGE_LISTS[1], 2 ** int(math.log2(max(2.0, n / 39))))
        return f"IVF{nlist}_HNSW32,PQ{m}"
    nlist = min(nlist, 2 ** int(math.log2(max(2.0, n / 39))), 65536)  # faiss wants >= 39 training points a list
    codes = "Flat" if n * dim * 4 <= budget else "SQ8"
    return f"IVF{nlist},{codes}"


LARGE_LISTS = (1 << 14, 1 << 18)  # FAISS's guideline for 10M-1B vectors
_IVF = re.compile(r"IVF([0-9]{1,6})(_HNSW[0-9]{1,3})?,(FLAT|SQ8|SQ4|SQFP16|PQ([0-9]{1,4}))", re.IGNORECASE)
_CODES = {"FLAT": "Flat", "SQ8": "SQ8", "SQ4": "SQ4", "SQFP16": "SQfp16"}


def canonical(text: str, dim: int | None = None) -> str:
    """The ``--index-type`` a user typed as this module builds it, or one line saying why not: "auto", "Flat" (any
    case) or "IVF<lists>,<codes>" with Flat, SQ8, SQ4, SQfp16 or PQ<m> codes. Other FAISS types (HNSW, plain PQ) are
    refused: the store patches its index with ``remove_ids`` after each run, which they cannot do. With ``dim``,
    PQ<m> must divide it."""
    t = text.strip()
    if t.lower() in ("auto", "flat"):
        return t.lower() if t.lower() == "auto" else "Flat"
    m = _IVF.fullmatch(t)
    if m is None or int(m.group(1)) < 1 or (m.group(2) and m.group(4) is None):
        raise UserError(f"--index-type '{text}' is not one clipsearch builds: auto, Flat, IVF<lists>,<codes> with "
                        "codes Flat, SQ8, SQ4, SQfp16 or PQ<m> (e.g. IVF4096,SQ8), or the on-disk "
                        "IVF<lists>_HNSW32,PQ<m> (e.g. IVF65536_HNSW32,PQ64)")
    codes = _CODES.get(m.group(3).upper(), f"PQ{m.group(4)}")
    if m.group(4) is not None and dim and (int(m.group(4)) < 1 or dim % int(m.group(4))):
        raise UserError(f"--index-type '{text}': PQ{m.group(4)} needs the embedding size ({dim}) to be a multiple of "
                        f"{m.group(4)}")
    quantizer = f"_HNSW{int(m.group(2)[5:])}" if m.group(2) else ""
    return f"IVF{int(m.group(1))}{quantizer},{codes}"


def min_training(factory: str) -> int:
    """Vectors needed to train ``factory``: one per list, and 256 for the codebook of 8-bit product codes."""
    if not factory.startswith("IVF"):
        return 0
    lists = lists_of(factory)
    return max(lists, 256) if ",PQ" in factory else lists


def lists_of(factory: str) -> int:
    """The number of inverted lists of an IVF factory string."""
    return int(factory[3:].split(",")[0].split("_")[0])


def fitted(factory: str, n: int) -> str:
    """``factory`` for a collection of ``n``: a type with too few vectors to train it is Flat (exact) until then."""
    return "Flat" if n < min_training(factory) else factory


def same_family(a: str, b: str) -> bool:
    """Both IVF with the same codes: a retrain would only change the number of lists."""
    return (a.startswith("IVF") and b.startswith("IVF") and a.split(",")[1:] == b.split(",")[1:]
            and ("_HNSW" in a) == ("_HNSW" in b))


def nprobe(nlist: int) -> int:
    """Lists to visit per query: enough for recall@10 >= 0.95 on CLIP-like (clustered) embeddings.

    Grows with the square root of the lists: past that, recall barely rises (at a million vectors the 8-bit codes
    set its ceiling) while the time grows with the probes (bench/search_scale.py; docs/benchmarks.md).
    """
    return max(16, round(2 * math.sqrt(nlist)))


def training_size(factory: str, n: int) -> int:
    """Vectors to train ``factory`` on: 64 a list, 50 for the large index, where two-level k-means over 2^14 lists
    and more is the longest part of a build (FAISS wants 30-256)."""
    if not factory.startswith("IVF"):
        return 0
    return min(n, (50 if "_HNSW" in factory else 64) * lists_of(factory))


def new_index(factory: str, dim: int, sample: np.ndarray | None = None) -> faiss.Index:
    """An empty index of type ``factory`` keyed by caller ids; IVF types are trained on ``sample``."""
    import faiss

    if factory == "Flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    if sample is None or len(sample) == 0:
        raise ValueError(f"{factory} needs training vectors")
    index.train(sample)
    ivf = faiss.extract_index_ivf(index)
    ivf.nprobe = nprobe(ivf.nlist)
    return index


def build(factory: str, dim: int, sample: np.ndarray | None, blocks: Blocks) -> faiss.Index:
    """A fresh index of type ``factory`` holding every vector of ``blocks``."""
    index = new_index(factory, dim, sample)
    for ids, matrix in blocks:
        index.add_with_ids(matrix, ids)
    return index


def patch(index: faiss.Index, removed: Iterable[int], added: Blocks) -> faiss.Index:
    """``index`` without the ``removed`` ids and with the ``added`` vectors: a run's changes, not a rebuild."""
    import numpy as np

    gone = np.fromiter(sorted(removed), dtype="int64")
    if len(gone):
        index.remove_ids(gone)
    for ids, matrix in added:
        index.add_with_ids(matrix, ids)
    return index


def ids_of(index: faiss.Index) -> set[int] | None:
    """The ids an ID-mapped FAISS index holds, or None for a type that does not expose them."""
    import faiss

    id_map = getattr(index, "id_map", None)
    return None if id_map is None else {int(i) for i in faiss.vector_to_array(id_map)}


def read(path: Path) -> faiss.Index | None:
    """The index in ``path``, or None if it is missing, unreadable or fails its checksum (a writer patches it: damage
    would be carried into every later generation)."""
    import faiss

    from clipsearch.store import file_sums

    if not path.is_file() or file_sums.verify(path) is not None:
        return None
    try:
        return faiss.read_index(str(path))
    except RuntimeError:
        return None


def read_for_queries(path: Path, verify: bool = True) -> faiss.Index | None:
    """The index in ``path``, memory-mapped where its type allows, set up for queries; None if missing or damaged
    (failing its checksum, where it is small enough to check on open: ``file_sums.VERIFY_ON_OPEN``)."""
    import faiss

    from clipsearch.store import file_sums

    if not path.is_file() or (verify and not file_sums.verify_if_small(path)):
        return None
    for flags in (faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY, 0):
        try:
            return prepare_for_queries(faiss.read_index(str(path), flags))
        except RuntimeError:
            continue  # this index type cannot be memory-mapped, or the file is damaged
    return None


def prepare_for_queries(index: faiss.Index) -> faiss.Index:
    """Settings a search needs that the index file does not keep.

    An IVF index splits a batch of queries over the cores but runs one query on one core; a person
    searching sends one query, so we split its probed lists over the cores instead (bench/search_scale.py).
    """
    import faiss

    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        return index  # not an IVF index
    ivf.parallel_mode = 1
    ivf.nprobe = nprobe(ivf.nlist)  # the current rule, also for files written under an older one
    return index


def lists_in(index: Any) -> int:
    """The inverted lists of an IVF index (the large index included); 0 for an index without them."""
    import faiss

    if not isinstance(index, faiss.Index):
        return int(index.nlist)
    try:
        return int(faiss.extract_index_ivf(index).nlist)
    except RuntimeError:
        return 0


def on_gpus(index: faiss.Index) -> faiss.Index | None:
    """A copy of ``index`` spread over every visible GPU; None without a GPU build of faiss, a GPU, or a GPU version
    of this index type."""
    import faiss

    if not isinstance(index, faiss.Index) or not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() <= 0:
        return None  # the large index stays on the CPU: its lists are memory-mapped files
    try:
        return faiss.index_cpu_to_all_gpus(index)
    except RuntimeError:
        return None


def write_atomically(index: faiss.Index, target: Path) -> None:
    """Write ``index`` so that ``target`` is either the old file or the whole new one, never half of it."""
    import faiss

    from clipsearch.store import file_sums

    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    try:
        faiss.write_index(index, str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        file_sums.write(target, tmp)  # the checksum first: a file at its name always has one
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
