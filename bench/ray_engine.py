"""The Ray engine against the local engine on this machine, and the driver's store commit rate.

    python bench/ray_engine.py [--sizes 400,1200] [--model ViT-B-32:none] [--repeat 1] [--commits 20000]

(a) `clipsearch index FOLDER --engine local` and `--engine ray` (a local Ray the run starts), same folders
    (640x480 JPEGs made here), same model, each into a fresh index, as whole processes: photos per second
    of the run itself (the report's ``seconds``: walk, decode, embed, store) and of the process (model load,
    Ray's start) at each size, and the steady rate between the two sizes (what a run adds per photo once
    started: the fixed start cancels out); the Ray engine's rates as ratios of the local engine's, measured
    in the same run.
(b) The driver's commit rate: synthetic 512-d vectors handed to the write stage (``RunWriter``) as the Ray
    engine hands them, committed in chunks of 256 as a run does: the most vectors per second one driver
    can store, whatever the cluster's size.

The figures go to docs/benchmarks.md; docs/cluster.md projects from them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from processes import timed  # noqa: E402


def make_photos(folder: Path, n: int) -> None:
    from tests import imagegen

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        imagegen.photo(40_000 + i, (640, 480)).save(folder / f"{i:05d}.jpg", quality=90)


def index_once(folder: Path, engine: str, model: str, extra: list[str]) -> tuple[float, float, dict]:
    with tempfile.TemporaryDirectory() as index:
        argv = [sys.executable, str(HERE.parent / "cli.py"), "index", str(folder), "--index", index, "--model", model,
                "--engine", engine, "--vocabulary", "none", "--json", *extra]
        env = {**os.environ, "CLIPSEARCH_TEXT_EXPORT": "0"}
        wall, _, output = timed(argv, env=env)
    report = json.loads(next(line for line in output.splitlines() if line.startswith("{")))
    return wall, float(report["seconds"]), report


def commit_rate(n: int, dim: int = 512) -> float:
    """Vectors per second through RunWriter.take + its chunked commits, on a fresh index."""
    import numpy as np

    from clipsearch.store import ModelRecord, StoreWriter
    from indexer.engine import Contents
    from indexer.items import Embedded, Task
    from indexer.report import Progress, Report
    from indexer.walk import Found
    from indexer.write import RunWriter

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with tempfile.TemporaryDirectory() as index, StoreWriter.open(Path(index)) as store:
        store.bind_model(ModelRecord("bench", "bench", dim))
        store.begin_run([])
        writer = RunWriter(store, Contents(), Report(), Progress(), commit_every=256, commit_seconds=30.0)
        outcomes = [Embedded(Task(Found(f"/photos/{i:08d}.jpg", 100_000 + i, i)), i.to_bytes(16, "big"), 640, 480,
                             vectors[i]) for i in range(n)]
        started = time.perf_counter()
        for outcome in outcomes:
            writer.take(outcome)
        writer.commit()
        return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="400,1200", help="two folder sizes (photos)")
    parser.add_argument("--model", default="ViT-B-32:none")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--commits", type=int, default=20_000, help="vectors for (b); 0 skips it")
    parser.add_argument("--gpus-per-replica", default=None, help="passed to the Ray engine (a GPU machine)")
    parser.add_argument("--batch-size", default=None)
    args = parser.parse_args()

    small, large = (int(n) for n in args.sizes.split(","))
    extra = ["--batch-size", args.batch_size] if args.batch_size else []
    ray_extra = extra + (["--gpus-per-replica", args.gpus_per_replica] if args.gpus_per_replica else [])
    with tempfile.TemporaryDirectory() as tmp:
        folders = {n: Path(tmp) / f"photos{n}" for n in (small, large)}
        for n, folder in folders.items():
            make_photos(folder, n)
        print(f"(a) {small} and {large} photos of 640x480, {args.model}, {os.cpu_count()} CPUs; best of {args.repeat}")
        results: dict[str, dict[int, tuple[float, float]]] = {}
        for engine, more in (("local", extra), ("ray", ray_extra)):
            results[engine] = {}
            for n, folder in folders.items():
                runs = [index_once(folder, engine, args.model, more) for _ in range(args.repeat)]
                wall, seconds, report = min(runs, key=lambda r: r[1])
                assert report["added"] == n, report
                results[engine][n] = (seconds, wall)
                print(f"  {engine:5s} {n:5d}: run {seconds:6.1f} s = {n / seconds:6.1f} photos/s;"
                      f"  process {wall:6.1f} s = {n / wall:6.1f} photos/s")
            steady = (large - small) / (results[engine][large][0] - results[engine][small][0])
            start = results[engine][small][0] - small / steady
            print(f"  {engine:5s} steady {steady:6.1f} photos/s; fixed start of the run {start:5.1f} s")
            if engine == "ray":
                for note in report.get("notes", []):
                    print(f"         {note}")

        def steady(engine: str) -> float:
            return (large - small) / (results[engine][large][0] - results[engine][small][0])

        print(f"  ray / local: steady {steady('ray') / steady('local'):.2f}x; at {large} photos "
              f"{results['local'][large][0] / results['ray'][large][0]:.2f}x for the run, "
              f"{results['local'][large][1] / results['ray'][large][1]:.2f}x for the whole process")
    if args.commits:
        rate = commit_rate(args.commits)
        print(f"(b) the driver's commit rate: {rate:,.0f} vectors/s ({args.commits:,} vectors of 512 floats, "
              "commits of 256)")


if __name__ == "__main__":
    main()
