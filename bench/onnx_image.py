"""The image tower on torch and on ONNX Runtime, side by side in one run; int8's agreement; whole-process runs.

    python bench/onnx_image.py [--model ViT-B-32:none] [--batch 32] [--seconds 8] [--photos 120] [--skip-runs]

1. Rates: images/s of --model's image tower in torch fp32, torch bf16, ONNX Runtime fp32, int8 dynamic
   (what `--precision int8` runs) and int8 static QDQ calibrated on 64 pictures; each as a ratio to torch fp32
   and as a fraction of the cores' peak, measured here as a large matmul's rate in fp32 and bf16 (int8's peak
   taken as 4x fp32's: VNNI's dot product does four int8 products per fp32 lane).
2. Agreement on the demo model, over a held-out folder (shapes.held_out, seed 4242, 162 pictures): cosine per
   photo against torch fp32, top-10 neighbour overlap, precision@3 of the 54 class queries, zero-shot top-1.
3. Whole-process runs (`python cli.py index` in a fresh process, an index of --model already built): 10 new
   photos on the exported tower (no torch), the same with torch (CLIPSEARCH_IMAGE_EXPORT=0: fp32, and bf16 where
   the CPU has it natively) and in int8, a bare `import torch`; and the peak RSS of a run adding --photos 12 MP
   photos, on each.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "data" / "demo_model"))


def rate(run: Any, batch: Any, seconds: float) -> float:
    """Images/s of the median batch: on a loaded, shared machine the median is steadier than the mean."""
    import statistics

    run(batch)  # warm-up
    times, started = [], time.perf_counter()
    while time.perf_counter() - started < seconds or len(times) < 3:
        t = time.perf_counter()
        run(batch)
        times.append(time.perf_counter() - t)
    return len(batch) / statistics.median(times)


def matmul_peak(dtype: Any, seconds: float = 3.0) -> float:
    """GFLOP/s of the fastest 1024^3 matmul in ``dtype`` over ``seconds``: what these cores reach on the
    best-shaped work when nothing else has them."""
    import torch

    a, b = torch.randn(1024, 1024, dtype=dtype), torch.randn(1024, 1024, dtype=dtype)
    torch.mm(a, b)
    best, started = float("inf"), time.perf_counter()
    while time.perf_counter() - started < seconds:
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * 1024**3 / best / 1e9  # bf16 without AVX512-BF16/AMX is emulated: a few GFLOP/s


def static_int8(directory: Path, calibration: Any, out: Path) -> Path:
    """Static QDQ quantization of an exported tower, calibrated on ``calibration`` (float32 model inputs)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.rows = iter([{"pixels": calibration[i : i + 8]} for i in range(0, len(calibration), 8)])

        def get_next(self) -> dict[str, Any] | None:
            return next(self.rows, None)

    quantize_static(directory / "image.onnx", out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=["MatMul", "Gemm"])
    return out


def runtimes(spec: str, calibration_pictures: Any, threads: int | None = None) -> dict[str, Any]:
    """name -> (encode(float32 numpy batch) -> unit vectors), all of ``spec`` in one process."""
    import onnxruntime as ort
    import torch

    if threads:
        torch.set_num_threads(threads)
    from clipsearch.encoders import load_encoder, onnx_image
    from clipsearch.encoders.onnx_image_export import quantize

    fp32 = load_encoder(spec, "cpu", "fp32")
    bf16 = load_encoder(spec, "cpu", "bf16")
    directory = fp32.export_image_tower(quiet=True)
    assert directory is not None, "this model does not export"
    quantize(directory)
    ort_fp32 = onnx_image.OnnxImageEncoder(directory, "fp32", threads=threads)
    calibration = ort_fp32.staged_transform.finish(calibration_pictures(ort_fp32.staged_transform))  # type: ignore[union-attr]
    static = static_int8(directory, calibration, Path(tempfile.mkdtemp()) / "static.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    session = ort.InferenceSession(str(static), options, providers=["CPUExecutionProvider"])
    return {
        "torch fp32": lambda x: fp32.encode_images(torch.from_numpy(x)),
        "torch bf16": lambda x: bf16.encode_images(torch.from_numpy(x)),
        "ORT fp32": ort_fp32.encode_images,
        "ORT int8 dynamic": onnx_image.OnnxImageEncoder(directory, "int8", threads=threads).encode_images,
        "ORT int8 static QDQ": lambda x: onnx_image.unit_rows(session.run(None, {"pixels": x})[0]),
        "_encoder": fp32,
    }


def noise_pictures(n: int) -> Any:
    import numpy as np

    def make(split: Any) -> Any:
        from PIL import Image

        rng = np.random.default_rng(1)
        pictures = [Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)) for _ in range(n)]
        return np.stack([split.to_uint8(p) for p in pictures])

    return make


def held_out_pictures(seed: int, per_class: int, limit: int | None = None) -> Any:
    import numpy as np
    import shapes

    def make(split: Any) -> Any:
        out = [split.to_uint8(image) for _, _, _, image in shapes.held_out(seed, per_class)]
        return np.stack(out[:limit])

    return make


def section_rates(args: argparse.Namespace) -> None:
    import json

    import numpy as np
    import torch

    from clipsearch import assets

    arch = args.model.split(":")[0]
    gflops = json.loads(assets.path("tower_gflops.json").read_text())["gflops"].get(arch)
    if args.threads:
        torch.set_num_threads(args.threads)
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    peaks["int8"] = 4 * peaks["fp32"]
    towers = runtimes(args.model, noise_pictures(16), args.threads)  # calibration's size does not change speed
    towers.pop("_encoder")
    rng = np.random.default_rng(0)
    batch = (rng.standard_normal((args.batch, 3, 224, 224)) * 0.5).astype("float32")
    reference = towers["torch fp32"](batch)
    rows = []
    for name, run in towers.items():
        r = rate(run, batch, args.seconds)
        worst = float(np.min(np.sum(run(batch) * reference, axis=1)))
        rows.append((name, r, worst))
    base = rows[0][1]
    print(f"\n{args.model}, batch {args.batch}, {args.threads or os.cpu_count()} threads; matmul peak fp32 {peaks['fp32']:.1f}, "
          f"bf16 {peaks['bf16']:.1f} GFLOP/s; tower {gflops} GFLOP/image")
    print(f"{'runtime':>20}  {'images/s':>8}  {'x torch fp32':>12}  {'of peak':>7}  {'min cosine vs fp32':>18}")
    for name, r, worst in rows:
        kind = "int8" if "int8" in name else "bf16" if "bf16" in name else "fp32"
        of_peak = f"{r * gflops / peaks[kind]:7.2f}" if gflops else "      ?"
        print(f"{name:>20}  {r:8.1f}  {r / base:12.2f}  {of_peak}  {worst:18.4f}")


def section_agreement() -> None:
    import numpy as np
    import shapes

    towers = runtimes("demo", held_out_pictures(999, 2, 64))  # calibrated on other pictures than it is judged on
    encoder = towers.pop("_encoder")
    pixels = encoder.staged_transform.finish(__import__("torch").from_numpy(
        held_out_pictures(4242, 3)(encoder.staged_transform))).numpy()
    labels = [c for c in shapes.CLASSES for _ in range(3)]
    texts = encoder.encode_texts([f"a {c} {s}" for c, s in shapes.CLASSES])
    vectors = {name: run(pixels) for name, run in towers.items()}
    reference = vectors["torch fp32"]

    def neighbours(v: Any) -> Any:
        sims = v @ v.T
        np.fill_diagonal(sims, -2)
        return np.argsort(-sims, axis=1)[:, :10]

    near = neighbours(reference)
    print(f"\ndemo model, held-out seed 4242 ({len(labels)} pictures); int8 static calibrated on 64 of seed 999")
    print(f"{'runtime':>20}  {'min cos':>7}  {'mean cos':>8}  {'top-10 overlap':>14}  {'precision@3':>11}  {'zero-shot':>9}")
    for name, v in vectors.items():
        cos = np.sum(v * reference, axis=1)
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(neighbours(v), near)])
        top3 = np.argsort(-(texts @ v.T), axis=1)[:, :3]
        p3 = np.mean([[labels[j] == shapes.CLASSES[i] for j in row] for i, row in enumerate(top3)])
        zero = np.mean([shapes.CLASSES[k] == labels[i] for i, k in enumerate((v @ texts.T).argmax(axis=1))])
        print(f"{name:>20}  {cos.min():7.4f}  {cos.mean():8.4f}  {overlap:14.3f}  {p3:11.3f}  {zero:9.3f}")


def cli_run(index: Path, cache: Path, *args: str, torch_only: bool = False) -> tuple[float, int, str]:
    """`python cli.py index ARGS` in a fresh process: seconds, the peak RSS (MB) of it or its workers, stderr."""
    code = ("import resource, subprocess, sys, time\n"
            "t = time.perf_counter(); p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
            "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, p.returncode)\n"
            "sys.stderr.write(p.stderr)")
    env = {**os.environ, "CLIPSEARCH_INDEX": str(index), "CLIPSEARCH_CACHE": str(cache), "CLIPSEARCH_WORDS": "later",
           **({"CLIPSEARCH_IMAGE_EXPORT": "0"} if torch_only else {})}
    done = subprocess.run([sys.executable, "-c", code, sys.executable, str(ROOT / "cli.py"), "index", *args],
                          env=env, capture_output=True, text=True)
    seconds, rss, rc = done.stdout.split()
    assert rc == "0", done.stderr[-2000:]
    return float(seconds), int(rss), done.stderr


def new_photos(folder: Path, n: int, size: tuple[int, int], start: int) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    for i in range(start, start + n):
        colour = np.array([(i * 37) % 256, (i * 91) % 256, (i * 53) % 256], dtype=np.float32)
        picture = (ramp * 0.5 + colour * 0.5 + np.zeros((h, 1, 1), np.float32)).astype(np.uint8)
        Image.fromarray(picture).save(folder / f"p{i:05d}.jpg", quality=85)


def section_runs(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="onnx-image-bench-"))
    cache, photos = work / "cache", work / "photos"
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    bare = time.perf_counter() - t
    new_photos(photos / "first", 10, (640, 480), 0)
    first, _, err = cli_run(work / "index-base", cache, str(photos), "--model", args.model)
    print(f"\nwhole processes, {args.model}: bare `import torch` {bare:.1f} s; first run (10 photos, torch, exports "
          f"the image tower) {first:.1f} s")
    new_photos(photos / "warm", 2, (640, 480), 50_000)
    cli_run(work / "index-base", cache, "--precision", "int8")  # quantizes once (not timed)
    from clipsearch.encoders import cpu_has_bf16

    variants = [("exported tower (auto)", (), False), ("torch fp32", ("--precision", "fp32"), True),
                ("int8 (--precision int8)", ("--precision", "int8"), False)]
    if cpu_has_bf16():
        variants.insert(2, ("torch bf16", ("--precision", "bf16"), True))
    start = 10
    for name, extra, torch_only in variants:
        new_photos(photos / f"new{start}", 10, (640, 480), start)
        seconds, rss, err = cli_run(work / "index-base", cache, *extra, torch_only=torch_only)
        start += 10
        print(f"  10 new photos, {name:>24}: {seconds:5.1f} s, peak RSS {rss} MB")
    big = work / "big"
    new_photos(big, args.photos, (4000, 3000), 100_000)
    for name, extra, torch_only in variants:
        index = work / f"index-{name.split()[0]}-{extra[-1] if extra else 'auto'}"
        cli_run(index, cache, str(photos / "first"), "--model", args.model)
        seconds, rss, _ = cli_run(index, cache, str(photos / "first"), str(big), *extra, torch_only=torch_only)
        print(f"  {args.photos} new 12 MP photos, {name:>24}: {seconds:5.1f} s, peak RSS {rss} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-32:none")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--photos", type=int, default=120)
    parser.add_argument("--skip-runs", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="threads per runtime (0: as they choose)")
    parser.add_argument("--only", choices=("rates", "agreement", "runs"))
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"load average at start: {load:.1f} on {os.cpu_count()} cores (a shared machine: other work ran beside this)")
    if args.only in (None, "rates"):
        section_rates(args)
    if args.only in (None, "agreement"):
        section_agreement()
    if args.only in (None, "runs") and not args.skip_runs:
        section_runs(args)
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}; peak RSS of this process "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB")


if __name__ == "__main__":
    main()
