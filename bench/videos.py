"""Videos: decode and embed rates against photos on the same model, and recall of moments with their time error.

    python bench/videos.py [--models demo,ViT-B-32:none] [--seconds 20] [--seconds-4k 4] [--recall-videos 6] [--no-4k]

Makes (with PyAV, cached under ~/.cache/clipsearch-bench/videos) a 1080p H.264 and a 4K HEVC video, 30 fps, a
keyframe every second as phones write them, eight scenes of the sample pictures with noise on every frame (so
that the encoder has real work and the decoder real bits; seven grain patterns in turn), then measures in one run:

  (a) FFmpeg decoding every frame (frames/s: what a decoder that samples by decoding all would cost), and
      ``clipsearch.video.sample`` (the sampling rule: keyframes only), as video seconds per second and moments;
  (b) moments/s embedded through ``indexer.pipeline.DecodeEmbed`` (decode workers, the model's batches) against
      photos/s for as many 1080p JPEGs on the same model, in the same run: the ratio is what a video's moment
      costs against a photo;
  (c) recall of moments: ``--recall-videos`` 30 s videos at 320x240, each with five scenes of distinct sample
      classes starting at random times (keyframes every second; every other video with one keyframe in 10 s, the
      full-decode path), indexed by the real CLI with the demo model; for each scene a text query ("a red star")
      and an image query (the scene's picture): recall@1 of its video among the hits (the video, once), how often
      ``t`` lies within the scene, and the time error |t - scene start| (median, 90th percentile).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.videogen import SAMPLE, make_video, sample_picture  # noqa: E402

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clipsearch-bench" / "videos"
CLASSES = sorted(p.stem for p in SAMPLE.iterdir())


def made(name: str, size: tuple[int, int], codec: str, seconds: float) -> Path | None:
    """The bench video ``name`` (made once): eight scenes, noise on every frame, a keyframe a second."""
    import av

    path = CACHE / f"{name}-{seconds:g}s.mp4"
    if path.is_file():
        return path
    try:
        av.codec.Codec(codec, "w")
    except Exception:  # noqa: BLE001
        print(f"  this PyAV build has no {codec} encoder: {name} skipped")
        return None
    CACHE.mkdir(parents=True, exist_ok=True)
    scenes = [(i * seconds / 8, sample_picture(CLASSES[i * 5])) for i in range(8)]
    tmp = path.with_suffix(".tmp.mp4")
    make_video(tmp, scenes, seconds, size=size, fps=30, codec=codec, gop=30, noise=True)
    tmp.rename(path)
    return path


def decode_rates(path: Path) -> dict[str, float]:
    import av

    from clipsearch import video

    started = time.perf_counter()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames = sum(1 for _ in container.decode(stream))
    every = time.perf_counter() - started
    started = time.perf_counter()
    clip = video.sample(str(path), lambda im: im.resize((224, 224)), 224)
    sampled = time.perf_counter() - started
    return {"frames": frames, "all_frames_per_s": round(frames / every, 1), "duration_s": clip.facts.duration,
            "moments": len(clip.moments), "sample_seconds": round(sampled, 2),
            "video_s_per_s_sampled": round(clip.facts.duration / sampled, 1),
            "video_s_per_s_all_frames": round(clip.facts.duration / every, 2)}


def embed_rates(spec: str, videos: list[Path], workdir: Path) -> dict[str, float]:
    """Moments/s through the pipeline on ``videos`` against photos/s on as many 1080p JPEGs, same model, same run."""
    from clipsearch.encoders import load_encoder
    from indexer.items import Embedded, Task
    from indexer.options import Options
    from indexer.pipeline import DecodeEmbed
    from tests import imagegen

    encoder = load_encoder(spec, device="cpu")

    def run(paths: list[Path]) -> tuple[float, int]:
        started = time.perf_counter()
        with DecodeEmbed(lambda: encoder, Options()) as stages:
            outcomes = list(stages.run(Task.for_path(str(p)) for p in paths))
        seconds = time.perf_counter() - started
        embedded = [o for o in outcomes if isinstance(o, Embedded)]
        assert len(embedded) == len(paths), [o for o in outcomes if not isinstance(o, Embedded)]
        return seconds, sum(max(1, len(o.moments)) for o in embedded)

    run(videos[:1])  # warm: the workers' server, the model's first batch
    video_seconds = moments = 0
    for _ in range(3):  # each run decodes them afresh (a pipeline with no index remembers nothing)
        seconds, found = run(videos)
        video_seconds, moments = video_seconds + seconds, moments + found
    photos = []
    for i in range(moments):
        path = workdir / f"photo-{i}.jpg"
        path.write_bytes(imagegen.jpeg_bytes(imagegen.photo(i, (1920, 1080))))
        photos.append(path)
    photo_seconds, count = run(photos)
    return {"moments": moments, "moments_per_s": round(moments / video_seconds, 1),
            "photos_per_s": round(count / photo_seconds, 1),
            "moment_cost_vs_photo": round((video_seconds / moments) / (photo_seconds / count), 2)}


def recall(count: int, workdir: Path, seed: int = 3) -> dict[str, object]:
    import numpy as np

    rng = np.random.default_rng(seed)
    folder, index = workdir / "recall", workdir / "recall-index"
    folder.mkdir()
    classes = list(rng.permutation(CLASSES))
    truth: list[tuple[str, str, float, float]] = []  # video, class, start, end
    for v in range(count):
        starts = sorted({0.0, *np.round(rng.uniform(2, 28, 4), 2).tolist()})
        names = [classes.pop() for _ in starts]
        path = folder / f"video-{v}.mp4"
        make_video(path, [(s, sample_picture(n)) for s, n in zip(starts, names)], 30, fps=10,
                   gop=10 if v % 2 == 0 else 100)
        for s, e, n in zip(starts, [*starts[1:], 30.0], names):
            truth.append((str(path), n, s, e))
    env = {**os.environ, "CLIPSEARCH_INDEX": str(index), "CLIPSEARCH_TEXT_EXPORT": "0"}
    started = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "cli.py"), "index", str(folder), "--model", "demo", "--quiet"],
                   env=env, check=True)
    index_seconds = time.perf_counter() - started
    out: dict[str, object] = {"videos": count, "scenes": len(truth), "index_seconds": round(index_seconds, 1)}
    for how in ("text", "image"):
        found = within = 0
        errors: list[float] = []
        for path, name, start, end in truth:
            query = [name.replace("-", " ")] if how == "text" else ["--image", str(next(SAMPLE.glob(f"{name}.*")))]
            hits = json.loads(subprocess.run([sys.executable, str(ROOT / "cli.py"), "search", *query, "-k", "5",
                                              "--json"], env=env, check=True, capture_output=True, text=True).stdout)
            assert len({h["id"] for h in hits}) == len(hits)  # each video once
            if hits and hits[0]["path"] == path:
                found += 1
                t = float(hits[0]["t"])
                within += start <= t < end
                errors.append(abs(t - start))
        errors.sort()
        out[how] = {"recall_at_1": round(found / len(truth), 3), "t_within_scene": round(within / len(truth), 3),
                    "t_error_median_s": round(statistics.median(errors), 2) if errors else None,
                    "t_error_p90_s": round(errors[int(0.9 * (len(errors) - 1))], 2) if errors else None}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="demo,ViT-B-32:none")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--recall-videos", type=int, default=6)
    parser.add_argument("--seconds-4k", type=float, default=4.0, help="the 4K video's length (x265 is slow to make it)")
    parser.add_argument("--no-4k", action="store_true")
    args = parser.parse_args()
    import av

    print(f"PyAV {av.__version__}, FFmpeg {'.'.join(map(str, av.library_versions['libavcodec']))} (libavcodec), "
          f"{os.cpu_count()} cores")
    videos = {"1080p H.264": made("1080p-h264", (1920, 1080), "libx264", args.seconds)}
    if not args.no_4k:
        videos["4K HEVC"] = made("2160p-hevc", (3840, 2160), "libx265", args.seconds_4k)
    results: dict[str, object] = {}
    for label, path in videos.items():
        if path is None:
            continue
        results[f"decode {label}"] = decode_rates(path)
        print(f"decode {label}: {results[f'decode {label}']}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.models.split(","):
            for label, path in videos.items():
                if path is None:
                    continue
                key = f"embed {label} {spec}"
                results[key] = embed_rates(spec, [path], Path(tmp))
                print(f"{key}: {results[key]}", flush=True)
        results["recall"] = recall(args.recall_videos, Path(tmp))
        print(f"recall: {results['recall']}", flush=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
