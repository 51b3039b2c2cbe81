"""Do the decode worker processes wait for their next photo? One reader thread per process against two.

    python bench/read_ahead.py [--folder DIR] [--count 200] [--workers 1,2] [--model ViT-B-32-256:none] [--repeat 3]

`clipsearch index` hands each photo to a worker process from a reader thread that
first reads, hashes and routes it, then waits for the picture. With one thread per
process, a process that finishes a photo idles until its thread has taken the
picture, read and hashed the next file and sent it over; with two threads per
process (`indexer.route.reader_threads`) the next photo is already queued. This
runs the run's own Router and DecodePool over the same JPEGs (half 12 MP, half
2 MP unless --folder; no model) with N processes fed by N and by 2N threads,
alone and beside a thread of this process that runs Python meanwhile (the indexing
thread), interleaved --repeat times, and prints the median images/s and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import rclip_env  # noqa: E402
from gil_contention import busy_python, cpu_reader, photo_tasks  # noqa: E402
from index_speed import decode_through  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folder", type=Path, help="JPEGs to read instead of generated ones")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--workers", default="1,2", help="worker process counts (capped at the cores)")
    parser.add_argument("--model", default=rclip_env.SPEC)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from clipsearch.encoders import load_encoder
    from indexer import decode_pool
    from indexer.concurrency import short_gil_turns
    from indexer.decoders import decode_pool_for
    from indexer.options import Options

    if not decode_pool.available():
        raise SystemExit("worker processes need fork (Linux)")
    cores = os.cpu_count() or 2
    counts = sorted({min(int(n), cores) for n in args.workers.split(",")})
    folder, _, tasks = photo_tasks(args.folder, args.count)
    encoder = load_encoder(args.model, device="cpu")
    print(f"{len(tasks)} photos from {folder}, {cores} cores; images/s of the decode side in worker processes "
          f"(no model), median of {args.repeat}")
    print(f"{'processes':>9} {'busy thread':>11} {'1 thread each':>14} {'2 threads each':>15} {'ratio':>6}")
    for n in counts:
        pool = decode_pool_for(Options(worker_kind="processes"), encoder, n)
        assert pool is not None
        reader = cpu_reader(encoder, pool)
        try:
            decode_through(reader.route_and_decode, None, tasks[: 4 * n], n, 256)  # start the children, warm the page cache
            for busy in (False, True):
                rates: dict[int, list[float]] = {n: [], 2 * n: []}
                with short_gil_turns(), busy_python() if busy else nullcontext():
                    for _ in range(args.repeat):
                        for threads in rates:  # interleaved: a slow spell of the machine hits both
                            started = time.perf_counter()
                            assert decode_through(reader.route_and_decode, None, tasks, threads, 256) == len(tasks)
                            rates[threads].append(len(tasks) / (time.perf_counter() - started))
                one, two = statistics.median(rates[n]), statistics.median(rates[2 * n])
                print(f"{n:>9} {'yes' if busy else 'no':>11} {one:>14.1f} {two:>15.1f} {two / one:>6.2f}", flush=True)
        finally:
            pool.close()


if __name__ == "__main__":
    main()
