"""What the indexing process itself costs per photo: the ceiling a GPU box meets before its model does.

    python bench/pipeline_ceiling.py [--folder DIR] [--count 2000] [--workers N] [--repeat 3]
                                     [--chunks 1,8] [--model ViT-B-32-256:none]

On a GPU the model runs thousands of images per second and the decoders have all the
cores, so the limit can be the indexing process: its walk, catalog lookups, reader
threads, calls to the decode worker processes and batch assembly are Python, and they
all share one GIL. Whatever its cores, a run cannot go faster than 1000 / (that
process's CPU ms per photo) photos per second.

This runs the real `IndexRun` (walk, catalog, reader threads, decode worker
processes, batches, the store) with the model replaced by one that costs nothing: its
forward returns at once and its normalisation is left to the "device", as on a GPU. It
prints images/s, and the CPU time per photo of the indexing process (all its threads)
and of the decode worker processes, for runs that call a worker process once per
photo (`read_chunk` 1, as before) and once per --chunks photos (default: 1 and the
run's own chunk), interleaved, the median of --repeat runs each. The photos are generated dataset-sized JPEGs
(500x375, 375x500, 640x480, 500x333) unless --folder is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import rclip_env  # noqa: E402
from index_speed import make_photos  # noqa: E402

DATASET_SIZES = ((500, 375), (375, 500), (640, 480), (500, 333))


class FreeModel:
    """The real encoder (its preprocessing, batch size, fingerprint) with a forward that costs nothing, and its
    batch normalisation left to the device as on a GPU: what remains is the indexing pipeline's own work."""

    def __init__(self, real: Any) -> None:
        assert real.staged_transform is not None, "a model whose preprocessing stops at uint8 (open_clip)"
        self._real = real
        self.staged_transform = dataclasses.replace(real.staged_transform, finish=lambda pixels: pixels)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def start_images(self, batch: Any) -> Any:
        import torch

        from clipsearch.encoders.base import Pending

        rows = torch.zeros(len(batch), self._real.dim)
        rows[:, 0] = 1.0
        return Pending(lambda: rows, "cpu")


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


_SAMPLER = r"""
import os, select, sys
run, me, tick = int(sys.argv[1]), os.getpid(), os.sysconf("SC_CLK_TCK")

def sample():
    found, frontier = {}, [run]
    while frontier:
        pid = frontier.pop()
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    children = [int(c) for c in f.read().split()]
            except (OSError, ValueError):
                continue
            for child in children:
                if child == me:
                    continue
                try:
                    with open(f"/proc/{child}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                found[child] = (int(fields[11]) + int(fields[12])) / tick
                frontier.append(child)
    return found

base, seen = sample(), {}
print("ready", flush=True)
while not select.select([sys.stdin], [], [], 0.05)[0]:
    seen.update(sample())
seen.update(sample())
print(sum(cpu - base.get(pid, 0.0) for pid, cpu in seen.items()))
"""


class WorkersCPU:
    """CPU seconds of this process's descendants while it runs: the decode workers are children of a fork server,
    so ``RUSAGE_CHILDREN`` never sees them. A small process of its own reads /proc every 0.05 s (reading it here
    would add to the CPU time of the run that the bench measures); what a worker spends in its last 0.05 s
    before it ends is missed, and it is idle by then."""

    def __enter__(self) -> WorkersCPU:
        import subprocess

        self._sampler = subprocess.Popen([sys.executable, "-c", _SAMPLER, str(os.getpid())], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True)
        self._sampler.stdout.readline()  # "ready": its baseline is taken before the run starts
        return self

    def __exit__(self, *exc: object) -> None:
        out, _ = self._sampler.communicate("")
        self.seconds = float(out)  # what follows "ready"


def one_run(folder: Path, model: FreeModel, workers: int, read_chunk: int, work: Path) -> dict[str, float]:
    """images/s, and CPU ms per photo of this process and of the worker processes, for one whole run."""
    from clipsearch.store import ModelRecord, StoreWriter
    from indexer.options import Options
    from indexer.run import IndexRun

    index = work / f"index-{read_chunk}"
    shutil.rmtree(index, ignore_errors=True)
    with StoreWriter.open(index) as store:
        store.bind_model(ModelRecord(model.spec, model.fingerprint, model.dim))
        with WorkersCPU() as children:
            parent, started = cpu_seconds(resource.RUSAGE_SELF), time.perf_counter()
            report = IndexRun(store, [str(folder)], lambda: model, Options(workers=workers, read_chunk=read_chunk)).run()
            wall = time.perf_counter() - started
            parent = cpu_seconds(resource.RUSAGE_SELF) - parent
    assert report.added > 0 and not report.failed, report.failed[:3]
    return {"rate": report.added / wall, "parent": parent / report.added * 1e3,
            "children": children.seconds / report.added * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, help="JPEGs to index instead of generated dataset-sized ones")
    parser.add_argument("--count", type=int, default=2000, help="photos to generate (without --folder)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="decode worker processes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunks", help="photos per call to a worker process, comma-separated (default: 1 and "
                        "the run's own)")
    parser.add_argument("--model", default=rclip_env.SPEC, help="whose preprocessing (its forward is skipped)")
    args = parser.parse_args()

    import torch

    from clipsearch.encoders import load_encoder
    from indexer.options import READ_CHUNK

    folder = args.folder
    if folder is None:
        folder = rclip_env.DEFAULT_HOME / f"dataset-{args.count}"
        make_photos(folder, args.count, DATASET_SIZES)
    torch.set_num_threads(1)  # as a run with the model on a GPU sets it
    model = FreeModel(load_encoder(args.model, device="cpu"))
    photos = sum(1 for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    print(f"{photos} photos in {folder}; {args.workers} decode worker processes on {os.cpu_count()} cores; "
          f"the model costs nothing; median of {args.repeat} interleaved runs")
    chunks = tuple(int(k) for k in args.chunks.split(",")) if args.chunks else (1, READ_CHUNK)
    runs: dict[int, list[dict[str, float]]] = {k: [] for k in chunks}
    with tempfile.TemporaryDirectory() as tmp:
        one_run(folder, model, args.workers, READ_CHUNK, Path(tmp))  # untimed: the page cache, first imports
        for _ in range(args.repeat):
            for k in chunks:
                runs[k].append(one_run(folder, model, args.workers, k, Path(tmp)))
    print(f"{'photos per call':>15} {'images/s':>9} {'indexing process':>17} {'its ceiling':>12} {'workers':>13}")
    median = {k: {key: statistics.median(r[key] for r in runs[k]) for key in runs[k][0]} for k in chunks}
    for k in chunks:
        m = median[k]
        print(f"{k:>15} {m['rate']:>9.1f} {m['parent']:>11.2f} ms/ph {1000 / m['parent']:>10.0f}/s "
              f"{m['children']:>7.2f} ms/ph")
    for k in chunks:
        print(f"{k:>15} each run: " + ", ".join(f"{r['rate']:.1f}/s {r['parent']:.2f} ms" for r in runs[k]))
    before = median[chunks[0]]
    for k in chunks[1:]:
        print(f"{k} photos per call vs {chunks[0]}: {median[k]['rate'] / before['rate']:.2f}x images/s, "
              f"{before['parent'] / median[k]['parent']:.2f}x less CPU in the indexing process")


if __name__ == "__main__":
    main()
