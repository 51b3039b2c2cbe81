"""Does the CPU decode side scale with cores in threads, or does the GIL cap it? Threads against processes.

    python bench/decode_scaling.py [--folder DIR] [--count 400] [--workers 1,2,4,8,16] [--model ViT-B-32-256:none]

Runs the reader's CPU path (read, hash, draft decode, uint8 hand-off; no model, no
GPU) over the same JPEGs (half 12 MP, half 2 MP unless --folder) on N threads, as
`clipsearch index` does, and on N forked processes (each with its own GIL, sending
the uint8 pictures back), for each N, alone and beside a thread of this process
that runs Python meanwhile (as the indexing thread does), at the GIL switch
interval `clipsearch index` sets. Prints images/s and the
threads / processes ratio: near 1, the GIL costs nothing at that N and decode
worker processes would not pay; well below 1 at high N, the GIL is the wall.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import rclip_env  # noqa: E402
from gil_contention import busy_python, cpu_reader, photo_tasks  # noqa: E402

READER: Any = None
TASKS: list[Any] = []


def decode_one(i: int) -> tuple[int, ...]:
    """The reader on task ``i``; in a process, the picture comes back as a numpy array (what a pool would send)."""
    (loaded,) = READER.route_and_decode([TASKS[i]])
    assert hasattr(loaded, "pixels"), loaded
    return tuple(loaded.pixels.numpy().shape)


def rate(workers: int, kind: str, busy: bool) -> float:
    import concurrent.futures as cf

    if kind == "processes":  # forked before the busy thread starts: the children share nothing but the files
        pool: cf.Executor = cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
        list(pool.map(decode_one, range(workers)))  # start every child before timing
    else:
        pool = cf.ThreadPoolExecutor(workers)
    try:
        with busy_python() if busy else nullcontext():
            started = time.perf_counter()
            done = sum(1 for _ in pool.map(decode_one, range(len(TASKS)), chunksize=1))
            return done / (time.perf_counter() - started)
    finally:
        pool.shutdown()


def main() -> None:
    global READER, TASKS
    parser = argparse.ArgumentParser()
    parser.add_argument("--folder", type=Path, help="JPEGs to read instead of generated ones")
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--workers", default="1,2,4,8,16", help="worker counts (capped at the cores)")
    parser.add_argument("--model", default=rclip_env.SPEC)
    args = parser.parse_args()

    import torch

    from clipsearch.encoders import load_encoder
    from indexer.concurrency import short_gil_turns

    torch.set_num_threads(1)  # as in a GPU run: the workers' small torch ops on one thread each
    cores = os.cpu_count() or 2
    counts = sorted({min(int(n), cores) for n in args.workers.split(",")})
    folder, _, TASKS = photo_tasks(args.folder, args.count)
    encoder = load_encoder(args.model, device="cpu")
    READER = cpu_reader(encoder)
    rate(min(cores, 4), "threads", False)  # warm the page cache and the lazy imports
    print(f"{len(TASKS)} photos from {folder}, {cores} cores; images/s of the decode side (no model)")
    print(f"{'workers':>7} {'busy thread':>11} {'threads':>9} {'processes':>10} {'threads/processes':>18}")
    for n in counts:
        for busy in (False, True):
            with short_gil_turns():  # the switch interval of a run
                threads, processes = rate(n, "threads", busy), rate(n, "processes", busy)
            print(f"{n:>7} {'yes' if busy else 'no':>11} {threads:>9.1f} {processes:>10.1f} "
                  f"{threads / processes:>18.2f}", flush=True)


if __name__ == "__main__":
    main()
