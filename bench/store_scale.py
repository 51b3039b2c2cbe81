"""The store and index for large collections: synthetic 512-d vectors streamed through the store's real write path.

    python bench/store_scale.py --n 10000000 [--queries 1000] [--index-type auto] [--keep DIR]

Puts ``n`` clustered unit vectors (1,000 topics) with StoreWriter.put, committing every 50,000 as a run does,
then ``finish`` chooses and builds the index (the large index past ~2M at 512-d: training, shards built by
worker processes, on-disk lists). Exact top-10 of ``queries`` held-out vectors is computed while the vectors
stream by (numpy, float32 originals), the baseline every recall is measured against. Prints: insert rate,
training and build time, disk per file kind, recall@10 with and without re-ranking, p50/p99 latency of a
vector query in a fresh process (cold: its first query; warm: the rest), that process's resident memory,
and `clipsearch serve`'s after 100 text queries over HTTP.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import rclip_env  # noqa: E402
from search_scale import QUERIES  # noqa: E402

CHUNK = 100_000
TOPICS = 1_000


def chunks(n: int, dim: int, seed: int):  # noqa: ANN201
    """The collection, ``CHUNK`` vectors at a time, the same for a seed (clustered around ``TOPICS`` centres)."""
    import numpy as np

    centres = np.random.default_rng(seed).normal(size=(TOPICS, dim)).astype("float32")
    for number, start in enumerate(range(0, n, CHUNK)):
        rng = np.random.default_rng([seed, number])
        size = min(CHUNK, n - start)
        x = centres[rng.integers(0, TOPICS, size)] + 0.35 * rng.normal(size=(size, dim)).astype("float32")
        yield start, (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("float32")


def held_out(count: int, dim: int, seed: int):  # noqa: ANN201
    import numpy as np

    centres = np.random.default_rng(seed).normal(size=(TOPICS, dim)).astype("float32")
    rng = np.random.default_rng([seed, 10**9])
    x = centres[rng.integers(0, TOPICS, count)] + 0.35 * rng.normal(size=(count, dim)).astype("float32")
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("float32")


CHILD = """
import json, sys, time
import numpy as np
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
from search.engine import Searcher
queries = np.load({queries!r})
searcher = Searcher(__import__("pathlib").Path({index!r}))
found, times = [], []
for q in queries:
    started = time.perf_counter()
    hits = searcher.search(q, k=10)
    times.append(time.perf_counter() - started)
    found.append([int(__import__("pathlib").Path(h.path).stem) for h in hits])
    if len(found) == 1:
        first_answer = time.perf_counter() - t0  # imports, opening the index, the first query
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
mb = {{k: int(status[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM", "RssAnon", "RssFile")}}
from clipsearch.store import large_index
by_candidates = {{}}
for wanted in (160, 1280, 2560):  # the default (64 a hit, at least 512) was timed above
    large_index.RERANK, large_index.RERANK_MIN = wanted // 10, wanted
    by_candidates[wanted] = [[int(__import__("pathlib").Path(h.path).stem) for h in searcher.search(q, k=10)]
                             for q in queries]
with searcher.store.snapshot() as store:
    index = searcher._current_index()
base = getattr(index, "base", index)
bare = base.search(queries, 10)[1].tolist()  # product codes alone, no re-ranking
paths = searcher.store.catalog.paths({{int(i) for row in bare for i in row if i >= 0}})
bare = [[int(__import__("pathlib").Path(paths[i]).stem) for i in row if i in paths] for row in bare]
print(json.dumps({{"found": found, "bare": bare, "by_candidates": by_candidates, "times": times,
                  "first_answer": first_answer, "mb": mb, "type": type(index).__name__}}))
"""


def recall(found: list[list[int]], truth) -> float:  # noqa: ANN001
    return sum(len(set(f) & set(t.tolist())) for f, t in zip(found, truth)) / truth.size


def measure_searches(directory: Path) -> dict[str, object]:
    """Recall (against the exact answers saved beside the index), latency and memory of a fresh search process, and
    `serve`'s memory after 100 text queries."""
    import numpy as np

    from tests.serving import Server

    query_file, truth_file = directory / "bench-queries.npy", directory / "bench-truth.npy"
    child = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), queries=str(query_file),
                                                               index=str(directory))],
                           capture_output=True, text=True, check=True)
    result = json.loads(child.stdout.strip().splitlines()[-1])
    times = sorted(result["times"][1:])
    server = Server(directory).start()
    try:
        for n in range(100):
            server.get("/search?" + urllib.parse.urlencode({"q": QUERIES[n % len(QUERIES)], "k": 10}))
        status = dict(line.split(":", 1) for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines()  # type: ignore[union-attr]
                      if ":" in line)
        serve = {k: round(int(status[k].split()[0]) / 1024) for k in ("VmRSS", "VmHWM", "RssAnon", "RssFile")}
    finally:
        server.stop()
    out: dict[str, object] = {"searched_as": result["type"]}
    if truth_file.is_file():
        truth = np.load(truth_file)
        out["recall_at_10"] = round(recall(result["found"], truth), 4)
        out["recall_at_10_without_reranking"] = round(recall(result["bare"], truth), 4)
        out["recall_at_10_by_candidates"] = {k: round(recall(v, truth), 4) for k, v in result["by_candidates"].items()}
    out.update({
        "cold_first_query_ms": round(result["times"][0] * 1000, 1),
        "cold_process_to_first_answer_s": round(result["first_answer"], 2),
        "warm_p50_ms": round(times[len(times) // 2] * 1000, 2),
        "warm_p99_ms": round(times[int(len(times) * 0.99)] * 1000, 2),
        "search_process_mb": {k: round(v) for k, v in result["mb"].items()},
        "serve_mb_after_100_queries": serve,
    })
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--index-type", default="auto")
    parser.add_argument("--model", default=rclip_env.SPEC, help="model whose text tower answers `serve` (random weights)")
    parser.add_argument("--keep", type=Path, help="build the index here and keep it")
    parser.add_argument("--reuse", type=Path, help="measure the searches of an index kept by --keep, building nothing")
    args = parser.parse_args()
    if args.reuse:
        print(json.dumps(measure_searches(args.reuse), indent=1))
        return

    import numpy as np

    from clipsearch.encoders import load_encoder
    from clipsearch.store import FileRecord, ModelRecord, StoreWriter, large_index

    encoder = load_encoder(args.model, "cpu")
    record, dim = ModelRecord(encoder.spec, encoder.fingerprint, encoder.dim), encoder.dim
    encoder.export_text_tower(quiet=True)
    del encoder
    directory = args.keep or Path(tempfile.mkdtemp(prefix="clipsearch-store-"))
    queries = held_out(args.queries, dim, seed=1)
    best_scores = np.full((len(queries), 10), -np.inf, dtype="float32")
    best_ids = np.zeros((len(queries), 10), dtype="int64")

    timed: dict[str, float] = {"train": 0.0, "build": 0.0}
    for name in ("train", "build_base"):
        real = getattr(large_index, name)

        def wrapper(*a, _real=real, _name=name, **k):  # noqa: ANN002, ANN003, ANN202
            started = time.perf_counter()
            try:
                return _real(*a, **k)
            finally:
                timed["train" if _name == "train" else "build"] += time.perf_counter() - started
        setattr(large_index, name, wrapper)

    started, truth_s = time.perf_counter(), 0.0
    with StoreWriter.open(directory) as store:
        store.bind_model(record)
        store.set_index_type(args.index_type)
        store.begin_run([])
        for start, block in chunks(args.n, dim, seed=1):
            for i, vector in enumerate(block, start=start):
                store.put(FileRecord(f"/bench/{i:09d}.jpg", 1, 1, i.to_bytes(16, "little"), 1, 1), vector)
                if i % 50_000 == 49_999:
                    store.commit()
            t = time.perf_counter()
            scores = queries @ block.T  # the exact answer, as the vectors go by
            top = np.argpartition(-scores, 10, axis=1)[:, :10]
            merged_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, 1)], axis=1)
            merged_ids = np.concatenate([best_ids, top + start], axis=1)
            keep = np.argsort(-merged_scores, axis=1)[:, :10]
            best_scores, best_ids = np.take_along_axis(merged_scores, keep, 1), np.take_along_axis(merged_ids, keep, 1)
            truth_s += time.perf_counter() - t
            print(f"  {start + len(block):,} put, {time.perf_counter() - started - truth_s:.0f} s", file=sys.stderr)
        store.commit()
        inserted = time.perf_counter() - started - truth_s
        t = time.perf_counter()
        store.finish({})
        finished = time.perf_counter() - t
        index_type = store.catalog.meta("index_built_as")

    sizes: dict[str, int] = {}
    for path in directory.rglob("*"):
        if path.is_file():
            kind = ("segments" if path.parent.name == "segments" else "catalog" if path.name.startswith("catalog")
                    else path.suffix.lstrip(".") or path.name)
            sizes[kind] = sizes.get(kind, 0) + path.stat().st_size
    np.save(directory / "bench-truth.npy", best_ids)
    np.save(directory / "bench-queries.npy", queries)
    searches = measure_searches(directory)
    print(json.dumps({
        "vectors": args.n, "index_type": index_type,
        "insert_s": round(inserted, 1), "insert_per_s": round(args.n / inserted),
        "finish_s": round(finished, 1), "train_s": round(timed["train"], 1), "build_s": round(timed["build"], 1),
        "disk_gb": {k: round(v / 1e9, 3) for k, v in sorted(sizes.items())},
        **searches, "exact_truth_s": round(truth_s, 1),
    }, indent=1))
    if args.keep is None:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
