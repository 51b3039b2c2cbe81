"""Indexing speed: clipsearch against the model's own limit, a naive loop and rclip, on one folder.

    python bench/index_speed.py [--sizes 100,300] [--model ViT-B-32-256:none] [--folder DIR] [--no-rclip]
                                [--reindex-files 10000]

Generates photo-like JPEGs (half 12 MP 4000x3000, half 2 MP 1600x1200, every file
distinct content; cached under ~/.cache/clipsearch-bench) unless --folder is
given, then measures in one run:

  (a) the model alone on ready tensors (images/s), and the fast decode +
      preprocess alone (our reader over the folder, all cores, no model); the
      limit on a machine where both share the cores is 1 / (model + decode) per image;
  (b) `clipsearch index FOLDER` as a whole process (start-up included);
  (c) a naive loop as a whole process: PIL full decode + open_clip preprocess +
      encode_image, batch 32, as open_clip loads the model;
  (d) rclip on the same folder with the same architecture (ViT-B-32-256, the
      same random weights exported to ONNX into its data dir; bench/rclip_env.py).

(b)-(d) run over the first N files for each N in --sizes; steady-state speed
is the difference of two sizes (start-up cancels out). Also printed: the peak
RSS of `clipsearch index` at each size, and a no-op re-index of
--reindex-files small files (demo model) as a whole process.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import processes  # noqa: E402
import rclip_env  # noqa: E402

NAIVE = """
import sys, torch, open_clip
from pathlib import Path
from PIL import Image
folder, arch = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None)
model.eval()
files = sorted(p for p in Path(folder).iterdir() if p.suffix == ".jpg")
vectors = []
with torch.no_grad():
    for start in range(0, len(files), 32):
        batch = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in files[start:start + 32]])
        vectors.append(model.encode_image(batch))
print(sum(len(v) for v in vectors))
"""


def make_photos(folder: Path, count: int) -> None:
    """``count`` distinct photo-like JPEGs: a textured, noisy base per size, each file with its own overlay."""
    import numpy as np
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    have = len(list(folder.glob("*.jpg")))
    if have >= count:
        return
    print(f"generating {count - have} photo-like JPEGs in {folder} ...", file=sys.stderr)
    rng = np.random.default_rng(7)
    bases = {}
    for size in ((4000, 3000), (1600, 1200)):
        w, h = size
        small = rng.integers(0, 256, (h // 50, w // 50, 3), dtype=np.uint8)
        base = np.asarray(Image.fromarray(small).resize(size, Image.Resampling.BICUBIC), dtype=np.int16)
        base = base + rng.normal(0, 10, (h, w, 3)).astype(np.int16)  # sensor-like noise: real decode cost
        bases[size] = np.clip(base, 0, 255).astype(np.uint8)
    for i in range(have, count):
        size = (4000, 3000) if i % 2 == 0 else (1600, 1200)
        im = Image.fromarray(bases[size])
        draw = ImageDraw.Draw(im)
        for _ in range(6):
            x0, y0 = int(rng.integers(0, size[0] - 200)), int(rng.integers(0, size[1] - 200))
            x1, y1 = x0 + int(rng.integers(100, size[0] // 2)), y0 + int(rng.integers(100, size[1] // 2))
            fill = tuple(int(v) for v in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=int(rng.integers(80, 95)))
        (folder / f"photo-{i:05d}.jpg").write_bytes(buf.getvalue())


def subset(source: Path, count: int, target: Path) -> Path:
    """The first ``count`` files of ``source`` as symlink-free hard links (or copies) in their own folder."""
    target.mkdir(parents=True)
    files = sorted(p for p in source.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))[:count]
    if len(files) < count:
        raise SystemExit(f"{source} has only {len(files)} JPEGs, fewer than {count}")
    for f in files:
        try:
            os.link(f, target / f.name)
        except OSError:
            shutil.copy(f, target / f.name)
    return target


def run(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[float, float]:
    """Run a whole process; (wall seconds, its peak RSS in MB)."""
    wall, rss, _ = processes.timed(argv, env, cwd)
    return wall, rss


def model_alone(spec: str, seconds: float = 20.0) -> tuple[float, int, int]:
    """(images/s, batch size, input size) of encode_images on ready tensors, with what `clipsearch index` picks."""
    import torch

    from clipsearch.encoders import load_encoder

    encoder = load_encoder(spec)
    batch_size = 128 if encoder.device.startswith("cuda") else 32
    batch = torch.randn(batch_size, 3, encoder.image_size, encoder.image_size)
    encoder.encode_images(batch)  # warm-up
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        encoder.encode_images(batch)
        done += batch_size
    return done / (time.perf_counter() - started), batch_size, encoder.image_size


def decode_alone(spec: str, folder: Path) -> float:
    """images/s of our reader (read, hash, draft decode, preprocess) over the folder on all cores, no model."""
    from clipsearch.encoders import load_encoder
    from indexer.reader import Reader, Task, bounded_map
    from indexer.walk import Found

    encoder = load_encoder(spec)
    reader = Reader(lambda: encoder, lambda digest: False)
    files = sorted(p for p in folder.iterdir() if p.suffix == ".jpg")
    tasks = [Task(Found(str(p), p.stat().st_size, p.stat().st_mtime_ns), None) for p in files]
    started = time.perf_counter()
    for loaded in bounded_map(reader, tasks, os.cpu_count() or 2, 64):
        assert loaded.error is None, loaded.error
    return len(files) / (time.perf_counter() - started)


def reindex_noop(files: int, work: Path) -> tuple[float, float]:
    """A no-op re-index of ``files`` small distinct JPEGs (demo model), whole process: (seconds, in-run seconds)."""
    import json

    import numpy as np
    from PIL import Image

    folder = rclip_env.DEFAULT_HOME / f"small-{files}"
    if len(list(folder.glob("*.jpg"))) < files:
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(11)
        for i in range(files):
            Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(folder / f"s{i:06d}.jpg", quality=80)
    index = work / "noop-index"
    cli = [sys.executable, str(ROOT / "cli.py"), "index", str(folder), "--model", "demo", "--index", str(index), "--quiet"]
    run(cli)
    walls = []
    for _ in range(3):
        walls.append(run(cli)[0])
    report = subprocess.run([*cli[:-1], "--json"], capture_output=True, text=True, check=True)
    return statistics.median(walls), json.loads(report.stdout)["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,300", help="two (or more) folder sizes, comma-separated")
    parser.add_argument("--model", default=rclip_env.SPEC)
    parser.add_argument("--folder", type=Path, help="index these JPEGs instead of generated ones")
    parser.add_argument("--no-rclip", action="store_true")
    parser.add_argument("--reindex-files", type=int, default=10_000, help="0 skips the no-op re-index")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    arch = args.model.split(":")[0]

    source = args.folder or rclip_env.DEFAULT_HOME / "photos-12mp-2mp"
    if args.folder is None:
        make_photos(source, max(sizes))
    env = {**os.environ, "CLIPSEARCH_TEXT_EXPORT": "0"}  # indexing only: no one-time text tower export
    rclip = None if args.no_rclip else (rclip_env.venv(), rclip_env.datadir())

    model_rate, batch_size, input_size = model_alone(args.model)
    work = Path(tempfile.mkdtemp(prefix="clipsearch-index-speed-"))
    try:
        folders = {n: subset(source, n, work / f"photos-{n}") for n in sizes}
        decode_rate = decode_alone(args.model, folders[sizes[-1]])
        limit = 1 / (1 / model_rate + 1 / decode_rate)

        results: dict[str, dict[int, tuple[float, float]]] = {"clipsearch": {}, "naive": {}, "rclip": {}}
        for n in sizes:
            folder = folders[n]
            results["clipsearch"][n] = run([sys.executable, str(ROOT / "cli.py"), "index", str(folder), "--model",
                                            args.model, "--index", str(work / f"index-{n}"), "--quiet"], env)
            results["naive"][n] = run([sys.executable, "-c", NAIVE, str(folder), arch], env)
            if rclip is not None:
                exe, data = rclip
                rdata = work / f"rclip-data-{n}"
                shutil.copytree(data, rdata, ignore=shutil.ignore_patterns("db.sqlite3*"))
                renv = {**rclip_env.env(), "RCLIP_DATADIR": str(rdata)}
                results["rclip"][n] = run([str(exe), "-t", "1", "a photo"], renv, cwd=folder)

        lo, hi = sizes[0], sizes[-1]

        def steady(tool: str) -> float:
            return (hi - lo) / (results[tool][hi][0] - results[tool][lo][0])

        print(f"model {args.model}, input {input_size}px, batch {batch_size}, {os.cpu_count()} cores; "
              f"folder: {source} (sizes {', '.join(map(str, sizes))})")
        print(f"(a) model alone on ready tensors:         {model_rate:7.1f} images/s")
        print(f"    fast decode + preprocess alone:       {decode_rate:7.1f} images/s (all cores, no model)")
        print(f"    limit when both share the cores:      {limit:7.1f} images/s = 1 / (1/model + 1/decode)")
        ours = steady("clipsearch")
        print(f"(b) clipsearch index, steady state:       {ours:7.1f} images/s = {ours / limit:.2f} x limit, "
              f"{ours / model_rate:.2f} x model alone")
        rows = [("clipsearch", "(b)"), ("naive", "(c)")] + ([("rclip", "(d)")] if rclip else [])
        for tool, tag in rows[1:]:
            rate = steady(tool)
            print(f"{tag} {tool + ', steady state:':<38}{rate:7.1f} images/s; clipsearch is {ours / rate:.2f} x")
        print("whole processes (start-up included), seconds:")
        for n in sizes:
            line = ", ".join(f"{tool} {results[tool][n][0]:.1f}" for tool, _ in rows)
            print(f"    {n:>5} photos: {line}")
        print("peak RSS of `clipsearch index`: " + ", ".join(f"{n} photos {results['clipsearch'][n][1]:.0f} MB"
                                                             for n in sizes))
        if args.reindex_files:
            wall, inside = reindex_noop(args.reindex_files, work)
            print(f"no-op re-index of {args.reindex_files:,} unchanged files: {wall:.2f} s whole process "
                  f"({inside:.2f} s in the run itself)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
