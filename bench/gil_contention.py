"""How much a thread that runs Python slows a decode worker: the GIL side of indexing on a many-core box.

    python bench/gil_contention.py [--folder DIR] [--count 40] [--model ViT-B-32-256:none]

On a GPU box the indexing thread runs Python nearly all the time (catalog writes, the
model's kernel launches) beside one decode thread per core. Each time a worker comes
back from C code that released the GIL (a read, libjpeg, a resize, a torch op), it waits
for the GIL, and while the holder runs Python that wait lasts up to the switch interval
(CPython's default: 5 ms). Two cores cannot show sixteen workers, but one worker beside
one busy Python thread shows that wait per photo, which caps a many-core box at about
cores / (decode time + wait) photos per second.

Measures ms/photo over the same JPEGs (half 12 MP, half 2 MP unless --folder), alone and
beside a thread that runs Python without pause, for:
  naive       PIL full decode + open_clip's preprocess (what a simple loop does), 5 ms interval
  reader@5ms  clipsearch's worker (read, hash, draft decode, uint8 hand-off) at the default interval
  reader@run  the same at the interval `clipsearch index` sets for its run (indexer.concurrency.short_gil_turns)
and prints each one's slowdown and its contended time as a ratio of the naive one's.
"""

from __future__ import annotations

import argparse
import io
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import rclip_env  # noqa: E402
from index_speed import make_photos  # noqa: E402


def photo_tasks(given: Path | None, count: int) -> tuple[Path, list[Path], list[Any]]:
    """The folder's first ``count`` JPEGs (generated 12 MP / 2 MP ones unless ``given``) and the reader's tasks."""
    from indexer.items import Task

    folder = given or rclip_env.DEFAULT_HOME / "photos-12mp-2mp"
    if given is None:
        make_photos(folder, count)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))[:count]
    return folder, files, [Task.for_path(str(p)) for p in files]


def cpu_reader(encoder: Any, pool: Any = None) -> Any:
    """The run's Router with nothing stored yet, decoding in the calling threads, or in ``pool`` (a DecodePool)."""
    from clipsearch import images
    from indexer.decoders import ProcessDecoder, ThreadDecoder
    from indexer.engine import Contents
    from indexer.route import Router

    cpu = ProcessDecoder(pool) if pool is not None else ThreadDecoder.for_encoder(encoder, images.DEFAULT_MAX_PIXELS)
    return Router(lambda: encoder, Contents(), lambda: cpu)


def per_photo(fn: Callable[[int], object], count: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        fn(i)
    return (time.perf_counter() - started) / count * 1000


@contextmanager
def busy_python() -> Iterator[None]:
    """A thread that runs a pure-Python loop meanwhile (it never releases the GIL on its own)."""
    stop = threading.Event()

    def spin() -> None:
        n = 0
        while not stop.is_set():
            n += 1

    busy = threading.Thread(target=spin, daemon=True)
    busy.start()
    try:
        yield
    finally:
        stop.set()
        busy.join()


def beside_busy_python(fn: Callable[[int], object], count: int) -> float:
    """ms/photo while another thread runs Python."""
    with busy_python():
        return per_photo(fn, count)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folder", type=Path, help="JPEGs to read instead of generated ones")
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--model", default=rclip_env.SPEC)
    args = parser.parse_args()

    import open_clip
    import torch
    from PIL import Image

    from clipsearch.encoders import load_encoder
    from indexer.concurrency import short_gil_turns
    from indexer.items import Decoded

    torch.set_num_threads(1)  # one worker's view: torch's own threads would blur what the GIL costs
    folder, files, tasks = photo_tasks(args.folder, args.count)
    encoder = load_encoder(args.model, device="cpu")
    reader = cpu_reader(encoder)
    _, _, preprocess = open_clip.create_model_and_transforms(args.model.split(":")[0], pretrained=None)

    def naive(i: int) -> object:
        return preprocess(Image.open(io.BytesIO(files[i].read_bytes())).convert("RGB"))

    def ours(i: int) -> object:
        (loaded,) = reader.route_and_decode([tasks[i]])
        assert isinstance(loaded, Decoded), loaded
        return loaded

    n = len(files)
    for fn in (naive, ours):  # warm the page cache and the lazy imports
        per_photo(fn, min(n, 4))
    rows = []
    for name, fn, interval in (("naive", naive, None), ("reader@5ms", ours, None), ("reader@run", ours, "run")):
        if interval == "run":
            with short_gil_turns():
                label = f"{sys.getswitchinterval() * 1000:g} ms"
                alone, contended = per_photo(fn, n), beside_busy_python(fn, n)
        else:
            label = f"{sys.getswitchinterval() * 1000:g} ms"
            alone, contended = per_photo(fn, n), beside_busy_python(fn, n)
        rows.append((name, label, alone, contended))
        print(f"{name:<11} interval {label:>6}: alone {alone:7.1f} ms/photo, beside busy Python {contended:7.1f} "
              f"ms/photo ({contended / alone:4.2f}x)", flush=True)
    base = rows[0][3]
    print(f"\n{n} photos from {folder}")
    for name, _, alone, contended in rows:
        print(f"{name:<11} contended time {contended / base:4.2f}x the naive loop's; GIL wait {contended - alone:6.1f} "
              f"ms/photo")


if __name__ == "__main__":
    main()
