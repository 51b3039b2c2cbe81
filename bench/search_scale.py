"""Search at scale: synthetic CLIP-like embeddings through the store's real API, no images needed.

    python bench/search_scale.py --n 1000000 [--dim 512] [--queries 200]

Inserts ``n`` clustered unit vectors with StoreWriter.put (as the indexer does),
lets the store choose and build its FAISS index, then prints: insert and build
time, the index type, recall@10 against exact search (numpy, same run),
p50/p99 query latency in-process (vector in, paths out, through Searcher), the
same for an exact flat index over the same vectors as the baseline, and the
process RSS. Not measured here yet: the server round trip and the cold CLI next
to rclip (issue 5).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def clustered(n: int, dim: int, seed: int, clusters: int = 1000):  # noqa: ANN201
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype("float32")
    out = np.empty((n, dim), dtype="float32")
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        x = centres[rng.integers(0, clusters, stop - start)] + 0.35 * rng.normal(size=(stop - start, dim))
        out[start:stop] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--keep", type=Path, help="build the index here and keep it")
    args = parser.parse_args()

    import faiss
    import numpy as np

    from clipsearch.store import ModelRecord, StoreReader, StoreWriter
    from search.engine import Searcher

    directory = args.keep or Path(tempfile.mkdtemp(prefix="clipsearch-bench-"))
    data = clustered(args.n, args.dim, seed=1)
    queries = clustered(args.queries, args.dim, seed=2)

    started = time.perf_counter()
    with StoreWriter.open(directory) as store:
        store.bind_model(ModelRecord("synthetic", "{}", args.dim))
        store.begin_run([])
        for i, vector in enumerate(data):
            store.put(f"/bench/{i:08d}.jpg", 1, 1, i.to_bytes(16, "little"), 1, 1, vector)
            if i % 50_000 == 49_999:
                store.commit()
        store.commit()
        inserted = time.perf_counter() - started
        started = time.perf_counter()
        store.finish({})
        built = time.perf_counter() - started
    with StoreReader.open(directory) as reader:
        index_type = reader.info()["index_type"]

    searcher = Searcher(directory)
    latencies, hits = [], 0
    exact = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    for query, truth in zip(queries, exact):
        t = time.perf_counter()
        found = searcher.search(query, k=10)
        latencies.append(time.perf_counter() - t)
        hits += len({int(Path(h.path).stem) for h in found} & set(truth.tolist()))
    flat = faiss.IndexFlatIP(args.dim)
    flat.add(data)
    flat_times = []
    for query in queries:
        t = time.perf_counter()
        flat.search(query.reshape(1, -1), 10)
        flat_times.append(time.perf_counter() - t)
    p50, p99 = (float(np.percentile(latencies, q)) * 1000 for q in (50, 99))
    f50 = float(np.percentile(flat_times, 50)) * 1000
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"n={args.n:,} dim={args.dim} index={index_type}")
    print(f"insert through StoreWriter.put: {inserted:.1f} s ({args.n / inserted:,.0f}/s); FAISS build: {built:.1f} s")
    print(f"recall@10 vs exact: {hits / exact.size:.3f}")
    print(f"query (vector -> paths, in-process): p50 {p50:.2f} ms, p99 {p99:.2f} ms; "
          f"bare exact faiss flat p50 {f50:.2f} ms (x{p50 / f50:.2f})")
    print(f"peak RSS of this process (data, exact baseline and all): {rss:,.0f} MB")
    searcher.close()
    if args.keep is None:
        shutil.rmtree(directory)


if __name__ == "__main__":
    main()
