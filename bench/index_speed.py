"""Indexing speed: clipsearch against the model's own limit, a naive loop and rclip, on one folder.

    python bench/index_speed.py [--sizes 100,300] [--model ViT-B-32-256:none] [--folder DIR] [--no-rclip]
                                [--no-naive] [--decode-cpu-too] [--reindex-files 10000] [--model-cores N]
                                [--repeat 1]

Generates photo-like JPEGs (half 12 MP 4000x3000, half 2 MP 1600x1200, every file
distinct content; cached under ~/.cache/clipsearch-bench) unless --folder is
given, then measures in one run:

  (a) the model alone on ready tensors (images/s), and the decode + preprocess
      alone (our reader over the folder, all cores, and on a GPU box nvJPEG beside
      them, as `clipsearch index` decodes; no model). On a CPU both share the cores,
      so the limit is 1 / (1/model + 1/decode); on a GPU box they run on different
      hardware and the limit is the slower of the two;
  (b) `clipsearch index FOLDER` as a whole process (start-up included); with
      --decode-cpu-too also `--decode cpu` (what GPU decoding adds);
  (c) a naive loop as a whole process: PIL full decode + open_clip preprocess +
      encode_image, batch 32, as open_clip loads the model (on the GPU where there is one);
  (d) rclip on the same folder with the same architecture (ViT-B-32-256, the
      same random weights exported to ONNX into its data dir; bench/rclip_env.py).

(b)-(d) run over the first N files for each N in --sizes; steady-state speed
is the difference of two sizes (start-up cancels out; with --repeat N, of the
median of N interleaved runs at each size). Also printed: the peak
RSS of `clipsearch index` at each size, and a no-op re-index of
--reindex-files small files (demo model) as a whole process.

--model-cores N is a GPU box in miniature on a CPU: the model gets N cores
(OMP_NUM_THREADS=N, in (a) and in `clipsearch index`) and the decoders the other
cores (--workers), so that, as beside a GPU, decoding has hardware of its own.
Where the decoders alone outrun the model, `clipsearch index` should keep the
model busy: (b) against (a) is the GPU-box target's ratio (end to end / model
alone). It implies --no-naive --no-rclip --reindex-files 0.
"""

from __future__ import annotations

import argparse
import io
import json
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
device = "cuda" if torch.cuda.is_available() else "cpu"
model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None, device=device)
model.eval()
files = sorted(p for p in Path(folder).iterdir() if p.suffix == ".jpg")
vectors = []
with torch.no_grad():
    for start in range(0, len(files), 32):
        batch = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in files[start:start + 32]])
        vectors.append(model.encode_image(batch.to(device)).cpu())
print(sum(len(v) for v in vectors))
"""


def _photo(args: tuple[int, int, int, int]) -> None:
    """Write one distinct photo-like JPEG: a textured, noisy base per size with its own overlay of shapes."""
    import numpy as np
    from PIL import Image, ImageDraw

    i, w, h, seed = args
    rng = np.random.default_rng(seed)
    base_rng = np.random.default_rng(w)  # the same base for every photo of a size, as before
    small = base_rng.integers(0, 256, (h // 50, w // 50, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC), dtype=np.int16)
    base = base + (rng.standard_normal((h, w, 3), dtype=np.float32) * 10).astype(np.int16)  # sensor-like noise
    im = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w - 200)), int(rng.integers(0, h - 200))
        x1, y1 = x0 + int(rng.integers(100, w // 2)), y0 + int(rng.integers(100, h // 2))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=int(rng.integers(80, 95)))
    FOLDER_OF_PHOTOS.joinpath(f"photo-{i:05d}.jpg").write_bytes(buf.getvalue())


FOLDER_OF_PHOTOS = Path()


PHOTO_SIZES = ((4000, 3000), (1600, 1200))  # half 12 MP camera photos, half 2 MP


def make_photos(folder: Path, count: int, sizes: tuple[tuple[int, int], ...] = PHOTO_SIZES) -> None:
    """``count`` distinct photo-like JPEGs (``sizes`` in turn), made in parallel processes."""
    import concurrent.futures as cf

    global FOLDER_OF_PHOTOS
    folder.mkdir(parents=True, exist_ok=True)
    have = len(list(folder.glob("*.jpg")))
    if have >= count:
        return
    print(f"generating {count - have} photo-like JPEGs in {folder} ...", file=sys.stderr)
    FOLDER_OF_PHOTOS = folder
    jobs = [(i, *sizes[i % len(sizes)], 7_000_000 + i) for i in range(have, count)]
    with cf.ProcessPoolExecutor() as pool:  # forked: the workers see FOLDER_OF_PHOTOS
        list(pool.map(_photo, jobs, chunksize=4))
    os.sync()  # measured right after writing, the disk's write-back halved the decode rates on a GPU box


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


def model_alone(spec: str, seconds: float = 10.0, cores: int | None = None) -> tuple[float, int, int]:
    """(images/s, batch size, input size) of encode_images on ready tensors, with what `clipsearch index` picks
    (on ``cores`` torch threads where given)."""
    import torch

    from clipsearch.encoders import load_encoder

    if cores is not None:
        torch.set_num_threads(cores)

    encoder = load_encoder(spec)
    batch_size = encoder.batch_size
    # On a GPU the batch waits there already, as nvJPEG leaves it; on a CPU it is where the workers leave it.
    batch = torch.randn(batch_size, 3, encoder.image_size, encoder.image_size, device=encoder.device)
    encoder.encode_images(batch)  # warm-up
    # One batch queued ahead, as `clipsearch index` keeps it (Pending): a GPU never waits for this loop.
    done, started = 0, time.perf_counter()
    ahead = encoder.start_images(batch)
    while time.perf_counter() - started < seconds:
        queued = encoder.start_images(batch)
        ahead.result()
        ahead = queued
        done += batch_size
    ahead.result()
    return (done + batch_size) / (time.perf_counter() - started), batch_size, encoder.image_size


def decode_alone(spec: str, folder: Path, workers: int) -> tuple[float, int]:
    """(images/s, how many nvJPEG decoded) of our decode side over the folder, no model: the reader (read, hash,
    draft decode, preprocess) on all cores, in worker processes where a run uses them, and on a GPU box nvJPEG +
    GPU preprocessing beside it, as in a run."""
    from clipsearch.encoders import load_encoder
    from indexer.decoders import cpu_decoder_for
    from indexer.device_decode import DeviceDecoder
    from indexer.engine import Contents
    from indexer.items import Task
    from indexer.options import Options
    from indexer.route import Router, reader_threads

    encoder = load_encoder(spec)
    gpu = DeviceDecoder.for_encoder(encoder)
    cpu = cpu_decoder_for(Options(workers=workers), encoder, [])  # as a run decides
    reader = Router(lambda: encoder, Contents(), lambda: cpu, lambda: gpu)
    files = sorted(p for p in folder.iterdir() if p.suffix == ".jpg")
    tasks = [Task.for_path(str(p)) for p in files]
    try:
        started = time.perf_counter()
        assert decode_through(reader.route_and_decode, gpu, tasks, reader_threads(workers), 256) == len(files)
        took = time.perf_counter() - started
    finally:
        cpu.close()
    return len(files) / took, gpu.decoded if gpu is not None else 0


def decode_through(route_and_decode, gpu, tasks: list, workers: int, window: int) -> int:  # noqa: ANN001
    """Run ``tasks`` through ``route_and_decode`` (a Router's) on ``workers`` threads, ``READ_CHUNK`` files per call as
    `clipsearch index` does, with ``gpu`` (a DeviceDecoder, or None) decoding the JPEGs the reader hands it; how
    many came out."""
    from indexer.concurrency import bounded_map, chunked
    from indexer.items import Failed
    from indexer.options import READ_CHUNK

    done = 0
    calls = bounded_map(route_and_decode, chunked(tasks, READ_CHUNK), workers, max(workers, window // READ_CHUNK))
    for loaded in (item for chunk in calls for item in chunk):  # less those the reader handed to ``gpu``
        assert not isinstance(loaded, Failed), loaded
        done += 1
        if gpu is not None:
            done += len(gpu.ready())
    if gpu is not None:
        done += len(list(gpu.finish()))
    return done


def reindex_noop(files: int, work: Path) -> tuple[float, float]:
    """A no-op re-index of ``files`` small distinct JPEGs (demo model), whole process: (seconds, in-run seconds)."""

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
    parser.add_argument("--no-naive", action="store_true")
    parser.add_argument("--decode-cpu-too", action="store_true", help="also time `clipsearch index --decode cpu`")
    parser.add_argument("--reindex-files", type=int, default=10_000, help="0 skips the no-op re-index")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each tool at each size, interleaved; "
                        "the median counts (the two-size difference is sensitive to one slow start-up)")
    parser.add_argument("--model-cores", type=int, help="a GPU box in miniature: the model on this many cores, "
                        "the decoders on the rest")
    args = parser.parse_args()
    cores = os.cpu_count() or 2
    if args.model_cores is not None:
        if not 1 <= args.model_cores < cores:
            raise SystemExit(f"--model-cores must leave the decoders at least one of the {cores} cores")
        args.no_naive = args.no_rclip = True
        args.reindex_files = 0
    workers = cores - (args.model_cores or 0)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    arch = args.model.split(":")[0]

    import torch

    gpu_box = torch.cuda.is_available()
    source = args.folder or rclip_env.DEFAULT_HOME / "photos-12mp-2mp"
    if args.folder is None:
        make_photos(source, max(sizes))
    env = {**os.environ, "CLIPSEARCH_TEXT_EXPORT": "0"}  # indexing only: no one-time text tower export
    if args.model_cores is not None:
        env["OMP_NUM_THREADS"] = str(args.model_cores)
    rclip = None if args.no_rclip else (rclip_env.venv(), rclip_env.datadir())

    model_rate, batch_size, input_size = model_alone(args.model, cores=args.model_cores)
    work = Path(tempfile.mkdtemp(prefix="clipsearch-index-speed-"))
    try:
        folders = {n: subset(source, n, work / f"photos-{n}") for n in sizes}
        decode_rate, on_gpu = decode_alone(args.model, folders[sizes[-1]], workers)
        # On a CPU the model and the decoders share the cores; on a GPU box (or its miniature) they run side by side.
        apart = gpu_box or args.model_cores is not None
        limit = min(model_rate, decode_rate) if apart else 1 / (1 / model_rate + 1 / decode_rate)

        tools = ["clipsearch"] + (["clipsearch --decode cpu"] if args.decode_cpu_too else []) \
            + ([] if args.no_naive else ["naive"]) + ([] if rclip is None else ["rclip"])
        results: dict[str, dict[int, tuple[float, float]]] = {tool: {} for tool in tools}
        model_seconds: dict[str, dict[int, float]] = {tool: {} for tool in tools if tool.startswith("clipsearch")}
        # One untimed run first, so that compiling .pyc files and warming the disk cache land on no timed run.
        run([sys.executable, str(ROOT / "cli.py"), "index", str(subset(source, 8, work / "warm-up")), "--model",
             args.model, "--index", str(work / "index-warm-up"), "--quiet"], env)
        runs: dict[tuple[str, int], list[tuple[float, float, float]]] = {}  # (tool, n) -> (wall, RSS, model s)
        for round_ in range(args.repeat):  # interleaved rounds: a slow spell of the machine hits every tool
            for n in sizes:
                folder = folders[n]
                for tool in tools:
                    busy = 0.0
                    if tool.startswith("clipsearch"):
                        index = work / f"index-{n}-{len(tool)}-{round_}"
                        cli = [sys.executable, str(ROOT / "cli.py"), "index", str(folder), "--model", args.model,
                               "--index", str(index), "--workers", str(workers), "--json"]
                        wall, rss, output = processes.timed(cli + (["--decode", "cpu"] if "cpu" in tool else []), env)
                        busy = json.loads(next(line for line in output.splitlines() if line.startswith("{")))[
                            "model_seconds"]
                        shutil.rmtree(index)
                    elif tool == "naive":
                        wall, rss = run([sys.executable, "-c", NAIVE, str(folder), arch], env)
                    elif rclip is not None:
                        exe, data = rclip
                        rdata = work / f"rclip-data-{n}-{round_}"
                        shutil.copytree(data, rdata, ignore=shutil.ignore_patterns("db.sqlite3*"))
                        renv = {**rclip_env.env(), "RCLIP_DATADIR": str(rdata)}
                        wall, rss = run([str(exe), "-t", "1", "a photo"], renv, cwd=folder)
                        shutil.rmtree(rdata)
                    runs.setdefault((tool, n), []).append((wall, rss, busy))
        for (tool, n), measured in runs.items():  # the median run by wall time
            wall, rss, busy = sorted(measured)[len(measured) // 2]
            results[tool][n] = wall, rss
            if tool in model_seconds:
                model_seconds[tool][n] = busy

        lo, hi = sizes[0], sizes[-1]

        def steady(tool: str) -> float:
            return (hi - lo) / (results[tool][hi][0] - results[tool][lo][0])

        def busy(tool: str) -> str:
            """The share of the steady-state time the model computed (its `model_seconds`), which noisy clocks
            leave alone: the model and the run slow down together."""
            share = (model_seconds[tool][hi] - model_seconds[tool][lo]) / (results[tool][hi][0] - results[tool][lo][0])
            return f"; the model busy {share:.0%} of that time"

        where = torch.cuda.get_device_name() if gpu_box else "no GPU"
        if args.model_cores is not None:
            where += f"; a GPU box in miniature: the model on {args.model_cores} of them, the decoders on the rest"
        print(f"model {args.model}, input {input_size}px, batch {batch_size}, {cores} cores, {where}; "
              f"folder: {source} (sizes {', '.join(map(str, sizes))})")
        print(f"(a) model alone on ready tensors:         {model_rate:7.1f} images/s"
              + (f" ({args.model_cores} cores)" if args.model_cores else ""))
        from indexer import decode_pool

        kind = "worker processes" if decode_pool.available() else "CPU threads"
        how = f"{workers} {kind}" + (f" + nvJPEG, which took {on_gpu} of {hi}" if gpu_box else "")
        print(f"    decode + preprocess alone:            {decode_rate:7.1f} images/s ({how}; no model)")
        rule = "the slower of the two (separate hardware)" if apart else "1 / (1/model + 1/decode)"
        print(f"    limit:                                {limit:7.1f} images/s = {rule}")
        ours = steady("clipsearch")
        print(f"(b) clipsearch index, steady state:       {ours:7.1f} images/s = {ours / limit:.2f} x limit, "
              f"{ours / model_rate:.2f} x model alone" + busy("clipsearch"))
        tags = {"clipsearch --decode cpu": "   ", "naive": "(c)", "rclip": "(d)"}
        for tool in tools[1:]:
            rate = steady(tool)
            print(f"{tags[tool]} {tool + ', steady state:':<38}{rate:7.1f} images/s; clipsearch is {ours / rate:.2f} x"
                  + (busy(tool) if tool in model_seconds else ""))
        print("whole processes (start-up included), seconds:")
        for n in sizes:
            line = ", ".join(f"{tool} {results[tool][n][0]:.1f}" for tool in tools)
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
