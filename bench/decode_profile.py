"""Where the decode side of `clipsearch index` spends its time on a GPU box (a diagnostic, not a target check).

    python bench/decode_profile.py FOLDER [--model ViT-B-32-256:none]

Times the reader over FOLDER's JPEGs in several set-ups: CPU only; CPU + nvJPEG;
nvJPEG taking everything; torch's intra-op threads at 1; only read + hash +
header parsing (the floor of the worker side); and inside the GPU thread, the
share of nvJPEG, preprocessing and synchronisation.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from index_speed import decode_through  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--model", default="ViT-B-32-256:none")
    parser.add_argument("--limit", type=int, default=800)
    args = parser.parse_args()

    import torch

    from clipsearch import images
    from clipsearch.encoders import load_encoder
    from clipsearch.hashing import content_hash
    from indexer import device_decode
    from indexer.decoders import ThreadDecoder
    from indexer.engine import Contents
    from indexer.items import OnDevice, Task
    from indexer.route import Router

    encoder = load_encoder(args.model)
    files = sorted(p for p in args.folder.iterdir() if p.suffix == ".jpg")[: args.limit]
    tasks = [Task.for_path(str(p)) for p in files]
    threads = ThreadDecoder.for_encoder(encoder, images.DEFAULT_MAX_PIXELS, slots=os.cpu_count())
    workers = os.cpu_count() or 2
    spent: dict[str, float] = {}
    original = device_decode.DeviceDecoder._decode

    def timed_decode(self, items):  # noqa: ANN001, ANN202
        t0 = time.perf_counter()
        datas = [i.jpeg for i in items]
        decoded = device_decode.decode_jpegs(datas, self._device)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        pixels = self._prepare(items, decoded)
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        spent["nvjpeg"] = spent.get("nvjpeg", 0) + t1 - t0
        spent["preprocess"] = spent.get("preprocess", 0) + t2 - t1
        spent["images"] = spent.get("images", 0) + len(items)
        return pixels

    def run(name: str, gpu: device_decode.DeviceDecoder | None, fn=None, workers: int = workers,  # noqa: ANN001
            window: int = 256) -> None:
        reader = Router(lambda: encoder, Contents(), lambda: threads, lambda: gpu)
        started = time.perf_counter()
        decode_through(fn or reader.route_and_decode, gpu, tasks, workers, window)
        took = time.perf_counter() - started
        extra = f", nvJPEG took {gpu.decoded}" if gpu is not None else ""
        print(f"{name:<52} {len(tasks) / took:8.1f} images/s{extra}", flush=True)

    def header_only(chunk: list[Task]) -> list[object]:
        for task in chunk:
            with open(task.found.path, "rb") as f:
                data = f.read()
            content_hash(data)
            images.gpu_decodable_jpeg(data)
        return list(chunk)

    print(f"{len(tasks)} files, {workers} workers, torch threads {torch.get_num_threads()}")
    run("read + hash + header only", None, header_only)
    run("CPU only", None)
    run("CPU + nvJPEG (backlog 96)", device_decode.DeviceDecoder.for_encoder(encoder))
    torch.set_num_threads(1)
    print("torch threads 1 from here on")
    run("read + hash + header only", None, header_only)
    run("read + hash + header only, 1 worker", None, header_only, workers=1)
    run("CPU only", None)
    for backlog, n_workers in ((96, workers), (256, workers), (256, workers - 2), (512, workers), (10**6, workers),
                               (10**6, workers // 2)):
        gpu = device_decode.DeviceDecoder(encoder.device_transform, encoder.device, backlog=backlog)
        run(f"CPU + nvJPEG, backlog {backlog}, {n_workers} workers", gpu, workers=n_workers,
            window=max(256, min(backlog, 1024) + 2 * n_workers))
    device_decode.DeviceDecoder._decode = timed_decode
    run("nvJPEG everything, timed inside", device_decode.DeviceDecoder(encoder.device_transform, encoder.device,
                                                                      backlog=10**6), window=1024)
    print({k: round(v, 3) for k, v in spent.items()})
    device_decode.DeviceDecoder._decode = original
    spent.clear()
    device_decode.DeviceDecoder._decode = timed_decode
    gpu = device_decode.DeviceDecoder(encoder.device_transform, encoder.device, backlog=10**6)
    # nvJPEG alone in this thread, no workers competing: its own ceiling on these files
    datas = [p.read_bytes() for p in files]
    for s in range(0, len(datas), 32):
        timed_decode(gpu, [OnDevice(t, b"", 0, 0, d, 1) for d, t in zip(datas[s:s + 32], tasks[s:s + 32])])
    print("nvJPEG alone, one thread:", {k: round(v, 3) for k, v in spent.items()},
          f"{spent['images'] / (spent['nvjpeg'] + spent['preprocess']):.1f} images/s")


if __name__ == "__main__":
    main()
