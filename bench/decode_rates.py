"""Where GPU JPEG decoding pays: JPEG decode rates on the CPU (draft) and on the GPU (nvJPEG), by photo size.

    python bench/decode_rates.py [--count 128] [--threads N]

Generates baseline JPEGs of 12 MP (4000x3000), 2 MP (1600x1200) and 0.5 MP
(800x600), plus progressive and greyscale ones, in parallel processes, then
prints images/s for:

  cpu draft      our CPU path (Pillow draft decode + box reduce + the model's
                 preprocess), on 1 thread and on all threads;
  gpu decode     torchvision.io.decode_jpeg(list, device="cuda"), batched;
  gpu + resize   the same plus the model's resize, crop and normalisation on the GPU.

The rule in clipsearch/images.py that sends a JPEG to the GPU or keeps it on the
CPU comes from these numbers. Needs CUDA for the GPU rows (prints only the CPU ones otherwise).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import io
import os
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZES = {"12MP": (4000, 3000), "2MP": (1600, 1200), "0.5MP": (800, 600)}


def _photo(args: tuple[tuple[int, int], int, bool, bool]) -> bytes:
    """One photo-like JPEG (smooth colour field + noise + shapes), distinct per seed."""
    import numpy as np
    from PIL import Image, ImageDraw

    (w, h), seed, progressive, grey = args
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 50), max(2, w // 50), 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC), dtype=np.int16)
    base = np.clip(base + rng.normal(0, 10, (h, w, 3)).astype(np.int16), 0, 255).astype(np.uint8)
    im = Image.fromarray(base)
    draw = ImageDraw.Draw(im)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w - w // 8)), int(rng.integers(0, h - h // 8))
        draw.ellipse((x0, y0, x0 + w // 6, y0 + h // 6), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    if grey:
        im = im.convert("L")
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90, progressive=progressive)
    return buf.getvalue()


def make(count: int) -> dict[str, list[bytes]]:
    jobs: dict[str, list[tuple[tuple[int, int], int, bool, bool]]] = {}
    for i, (name, size) in enumerate(SIZES.items()):
        jobs[name] = [(size, 1000 * i + s, False, False) for s in range(count)]
    jobs["12MP progressive"] = [(SIZES["12MP"], 9000 + s, True, False) for s in range(max(8, count // 4))]
    jobs["2MP greyscale"] = [(SIZES["2MP"], 9500 + s, False, True) for s in range(max(8, count // 4))]
    with cf.ProcessPoolExecutor() as pool:
        return {name: list(pool.map(_photo, args, chunksize=4)) for name, args in jobs.items()}


def rate(fn, items: list, min_seconds: float = 2.0) -> float:  # noqa: ANN001
    fn(items[: max(1, len(items) // 8)])  # warm-up
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < min_seconds:
        fn(items)
        done += len(items)
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--size", type=int, default=224, help="model input side")
    args = parser.parse_args()

    import torch
    import torchvision
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    from clipsearch import images

    warnings.filterwarnings("ignore", module="torchvision")
    side = args.size
    mean = torch.tensor([0.4815, 0.4578, 0.4082]).view(3, 1, 1)
    std = torch.tensor([0.2686, 0.2613, 0.2758]).view(3, 1, 1)

    def cpu_one(data: bytes) -> torch.Tensor:
        im = images.decode(data, side).image
        im = F.center_crop(F.resize(im, side, InterpolationMode.BICUBIC), side)
        return F.normalize(F.to_tensor(im), mean, std)

    pool = cf.ThreadPoolExecutor(args.threads)
    cuda = torch.cuda.is_available()
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, {os.cpu_count()} cores, "
          f"{torch.cuda.get_device_name() if cuda else 'no GPU'}")
    started = time.perf_counter()
    photos = make(args.count)
    print(f"generated {sum(map(len, photos.values()))} JPEGs in {time.perf_counter() - started:.1f} s; "
          f"mean bytes: " + ", ".join(f"{k} {sum(map(len, v)) / len(v) / 1e6:.2f} MB" for k, v in photos.items()))

    def gpu_decode(batch: list[bytes]) -> list[torch.Tensor]:
        tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in batch]
        return torchvision.io.decode_jpeg(tensors, mode=torchvision.io.ImageReadMode.RGB, device="cuda")

    gmean, gstd = (mean.cuda(), std.cuda()) if cuda else (mean, std)

    def gpu_full(batch: list[bytes]) -> torch.Tensor:
        out = []
        for t in gpu_decode(batch):
            t = F.resize(t.float(), side, InterpolationMode.BICUBIC, antialias=True).clamp_(0, 255)
            out.append(F.center_crop(t, side))
        return ((torch.stack(out) / 255 - gmean) / gstd).half()

    rows = []
    for name, data in photos.items():
        row = {"set": name}
        row["cpu 1 thread"] = rate(lambda items: [cpu_one(d) for d in items], data[:16])
        row[f"cpu {args.threads} threads"] = rate(lambda items: list(pool.map(cpu_one, items)), data)
        if cuda:
            for bs in (32, 128):
                def run(items: list[bytes], bs: int = bs) -> None:
                    for s in range(0, len(items), bs):
                        gpu_decode(items[s:s + bs])
                    torch.cuda.synchronize()
                row[f"gpu decode b{bs}"] = rate(run, data)

            def run_full(items: list[bytes]) -> None:
                for s in range(0, len(items), 32):
                    gpu_full(items[s:s + 32])
                torch.cuda.synchronize()
            row["gpu+resize b32"] = rate(run_full, data)
            # agreement of the two paths on this set (first 8 photos): cosine of the preprocessed pixels
            a = torch.stack([cpu_one(d) for d in data[:8]]).flatten(1)
            b = gpu_full(data[:8]).float().cpu().flatten(1)
            row["pixels cos"] = float(torch.nn.functional.cosine_similarity(a, b).min())
            row["max |diff|"] = float((a - b).abs().max())
        rows.append(row)
        print(row, flush=True)

    keys = list(rows[0].keys())
    print()
    print(" | ".join(f"{k:>16}" for k in keys))
    for row in rows:
        print(" | ".join(f"{row.get(k, ''):>16.3f}" if isinstance(row.get(k), float) else f"{row.get(k, ''):>16}"
                         for k in keys))


if __name__ == "__main__":
    main()
