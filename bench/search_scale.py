"""Search at scale: synthetic CLIP-like embeddings through the store's real API, no images needed.

    python bench/search_scale.py --n 1000000 [--queries 200] [--model ViT-B-32-256:none] [--rclip 10000]

Inserts ``n`` clustered unit vectors with StoreWriter.put (as the indexer does)
under a real model record (random weights: its text tower costs what the
pretrained one does), lets the store choose and build its FAISS index, then
prints: insert and build time, the index type, recall@10 against exact search
(numpy, same run), p50/p99 query latency in-process (vector in, paths out) next
to a bare exact FAISS flat index over the same vectors (the baseline), text
queries in-process, HTTP round trips to `clipsearch serve` (text encoding
included), the RSS of the server and of cold CLI searches, and the cold CLI
time. With --rclip N it also puts the same N vectors and paths into our index
and into rclip's own database (its DB class, in its own venv; see
bench/rclip_env.py) and times cold searches of both tools, interleaved.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import processes  # noqa: E402
import rclip_env  # noqa: E402


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


QUERIES = ["dog on a beach", "a red car at night", "birthday cake with candles", "snowy mountain", "receipt",
           "two cats sleeping on a sofa", "fireworks over the city", "a plate of pasta", "my passport", "sunset"]


def build(directory: Path, data, record, names=None) -> tuple[float, float]:  # noqa: ANN001
    """Insert ``data`` through StoreWriter.put as the indexer does; returns (insert s, FAISS build s)."""
    from clipsearch.store import FileRecord, StoreWriter

    started = time.perf_counter()
    with StoreWriter.open(directory) as store:
        store.bind_model(record)
        store.begin_run([])
        for i, vector in enumerate(data):
            path = names[i] if names is not None else f"/bench/{i:08d}.jpg"
            store.put(FileRecord(path, 1, 1, i.to_bytes(16, "little"), 1, 1), vector)
            if i % 50_000 == 49_999:
                store.commit()
        store.commit()
        inserted = time.perf_counter() - started
        started = time.perf_counter()
        store.finish({})
        return inserted, time.perf_counter() - started


def timed_child(argv: list[str], env: dict[str, str], cwd: str | None = None) -> tuple[float, float, str]:
    return processes.timed(argv, env, cwd)


PEAK_RSS = """
import atexit, runpy, sys
def report():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            sys.stderr.write("PEAK_RSS_KB=" + line.split()[1] + "\\n")
atexit.register(report)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def cli_peak_rss_mb(argv: list[str], env: dict[str, str]) -> float:
    """Peak RSS of a CLI run, read by the process itself at exit (a parent's wait4 would also count the
    pages it shared with the child between fork and exec: this bench process's gigabytes)."""
    done = subprocess.run([sys.executable, "-c", PEAK_RSS, *argv[1:]], env=env, capture_output=True, text=True,
                          check=True)
    return int(done.stderr.rsplit("PEAK_RSS_KB=", 1)[1].split()[0]) / 1024


def proc_rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident set size of a running process, in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--model", default=rclip_env.SPEC, help="model whose text tower answers (random weights are fine)")
    parser.add_argument("--rclip", type=int, default=10_000, help="size of the cold-CLI comparison with rclip (0: skip)")
    parser.add_argument("--runs", type=int, default=5, help="cold CLI runs per tool (median)")
    parser.add_argument("--keep", type=Path, help="build the index here and keep it")
    args = parser.parse_args()

    import faiss
    import numpy as np

    from clipsearch.encoders import load_encoder
    from clipsearch.store import ModelRecord, StoreReader
    from search.engine import Searcher
    from tests.serving import Server

    encoder = load_encoder(args.model, "cpu")
    record = ModelRecord(encoder.spec, encoder.fingerprint, encoder.dim)
    started = time.perf_counter()
    exported = encoder.export_text_tower(quiet=True)
    export_s = time.perf_counter() - started
    del encoder
    dim = record.dim

    directory = args.keep or Path(tempfile.mkdtemp(prefix="clipsearch-bench-"))
    data = clustered(args.n, dim, seed=1)
    queries = clustered(args.queries, dim, seed=2)
    inserted, built = build(directory, data, record)
    with StoreReader.open(directory) as reader:
        index_type = reader.info()["index_type"]

    searcher = Searcher(directory, resident=True)
    latencies, hits = [], 0
    exact = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    for query, truth in zip(queries, exact):
        t = time.perf_counter()
        found = searcher.search(query, k=10)
        latencies.append(time.perf_counter() - t)
        hits += len({int(Path(h.path).stem) for h in found} & set(truth.tolist()))
    text_times = []
    for i in range(50):
        t = time.perf_counter()
        searcher.search(searcher.query_model.embed_text(QUERIES[i % len(QUERIES)] + f" {i}"), k=10)
        text_times.append(time.perf_counter() - t)
    searcher.close()
    flat = faiss.IndexFlatIP(dim)
    flat.add(data)
    flat_times = []
    for query in queries:
        t = time.perf_counter()
        flat.search(query.reshape(1, -1), 10)
        flat_times.append(time.perf_counter() - t)
    del flat, data
    p50, p99 = (float(np.percentile(latencies, q)) * 1000 for q in (50, 99))
    f50 = float(np.percentile(flat_times, 50)) * 1000
    t50 = float(np.percentile(text_times, 50)) * 1000
    bench_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    # the server: real HTTP round trips, text encoding included
    server = Server(directory).start(timeout=600)
    try:
        round_trips = []
        for i in range(100):
            t = time.perf_counter()
            response = server.get("/search?k=10&q=" + urllib.parse.quote(f"{QUERIES[i % len(QUERIES)]} {i}"))
            round_trips.append(time.perf_counter() - t)
            assert response.status == 200, response.body[:300]
        server_rss, server_peak = proc_rss_mb(server.proc.pid)  # type: ignore[union-attr]
    finally:
        server.stop()
    s50, s99 = (float(np.percentile(round_trips, q)) * 1000 for q in (50, 99))

    # a cold CLI search over the same index, whole process
    env = {**os.environ, "CLIPSEARCH_INDEX": str(directory)}
    cli = [sys.executable, str(ROOT / "cli.py"), "search", "dog on a beach", "-k", "10"]
    cold_s = median([timed_child(cli, env)[0] for _ in range(args.runs)])
    cold_rss = cli_peak_rss_mb(cli, env)

    print(f"n={args.n:,} dim={dim} index={index_type} model={record.spec} "
          f"(text tower export: {'cached' if export_s < 1 else f'{export_s:.0f} s'}{'' if exported else ', NOT AVAILABLE'})")
    print(f"insert through StoreWriter.put: {inserted:.1f} s ({args.n / inserted:,.0f}/s); FAISS build: {built:.1f} s")
    print(f"recall@10 vs exact: {hits / exact.size:.3f}")
    print(f"query (vector -> paths, in-process): p50 {p50:.2f} ms, p99 {p99:.2f} ms; "
          f"bare exact faiss flat p50 {f50:.2f} ms (x{p50 / f50:.2f})")
    print(f"query (text -> paths, in-process, text tower on onnxruntime): p50 {t50:.2f} ms")
    print(f"server GET /search?q=... (HTTP round trip, text encoding included): p50 {s50:.2f} ms, p99 {s99:.2f} ms")
    print(f"RSS: server {server_rss:,.0f} MB (peak {server_peak:,.0f}); cold CLI search peak {cold_rss:,.0f} MB; "
          f"this bench process {bench_rss:,.0f} MB")
    print(f"cold CLI search, whole process: {cold_s:.2f} s (median of {args.runs})")
    if args.keep is None:
        shutil.rmtree(directory)
    if args.rclip:
        compare_with_rclip(args.rclip, record, args.runs)


def compare_with_rclip(n: int, record, runs: int) -> None:  # noqa: ANN001
    """The same n vectors and paths in our index and in rclip's database; cold searches of each, whole process."""
    import numpy as np

    home = Path(tempfile.mkdtemp(prefix="clipsearch-vs-rclip-"))
    try:
        folder = home / "photos"
        folder.mkdir()
        names = [str(folder / f"{i:06d}.jpg") for i in range(n)]
        data = clustered(n, record.dim, seed=3)
        ours = home / "clipsearch-index"
        build(ours, data, record, names)
        rclip = rclip_env.venv()
        renv = {**rclip_env.env(), "RCLIP_DATADIR": str(home / "rclip-data")}
        shutil.copytree(rclip_env.datadir(), home / "rclip-data")
        vectors = home / "vectors.npy"
        np.save(vectors, data)
        fill = ("import sys, numpy as np\nfrom rclip.db import DB, NewImage\n"
                "db = DB(sys.argv[1]); data = np.load(sys.argv[2])\n"
                "for i, v in enumerate(data):\n"
                "    db.upsert_image(NewImage(filepath='%s/%06d.jpg' % (sys.argv[3], i), modified_at=1.0, size=1,"
                " vector=v.astype(np.float32).tobytes(), hash=None), commit=False)\n"
                "db.commit(); db.close()\n")
        subprocess.run([str(rclip_env.python()), "-c", fill, str(home / "rclip-data" / "db.sqlite3"), str(vectors), str(folder)],
                       check=True, env=renv)
        env = {**os.environ, "CLIPSEARCH_INDEX": str(ours)}
        cli = [sys.executable, str(ROOT / "cli.py"), "search", "dog on a beach", "-k", "10"]
        ours_runs, theirs_runs = [], []
        for _ in range(runs):  # interleaved, so both see the same machine state
            ours_runs.append(timed_child(cli, env, cwd=str(folder))[0])
            theirs_runs.append(timed_child([str(rclip), "--no-indexing", "-t", "10", "dog on a beach"], renv,
                                           cwd=str(folder))[0])
        a, b = median(ours_runs), median(theirs_runs)
        print(f"cold search on the same {n:,}-photo index, whole process, median of {runs}: "
              f"clipsearch {a:.2f} s, rclip {b:.2f} s (rclip / clipsearch = {b / a:.2f}x)")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
