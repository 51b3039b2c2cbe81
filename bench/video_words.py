"""The text in videos (issues 34 and 35): what reading a video's moments costs, against reading the same frames as
photos, in the same run.

    nice -n 10 .venv/bin/python bench/video_words.py [--seconds 60] [--size 1280x720]

Two videos made here (tests/videogen.py), H.264 at ``--size``: "signs", a new sign every 6 s (each shot held, as a
phone films one), and "plain", soft gradients with no text, turned another way every 6 s. For each:
  baseline   every chosen moment's frame (``indexer.words.spread``) saved as a JPEG and read as the words stage
             reads a photo (decode at a bounded size, ``clipsearch.ocr.Reader.read``)
  stage      the stage's way: ``clipsearch.video.frames_at`` at those times, then ``indexer.words.read_moments``
             (a frame like the last one read is not read again)
Printed: moments chosen, frames read, seconds per moment (decode, read) and the ratio of the stage to the baseline,
and the share of the signs' phrases found.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def turned(picture: Any, n: int) -> Any:
    """The gradient turned a quarter of the ways, so that each shot differs from the one before (a new scene)."""
    from PIL import Image

    ways = [None, Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.ROTATE_180]
    return picture if ways[n % 4] is None else picture.transpose(ways[n % 4])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--size", default="1280x720")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))

    from clipsearch import images, video
    from clipsearch.ocr import READ_SIDE
    from indexer import words as stage
    from tests.test_words import plain, sign
    from tests.videogen import make_video

    reader = stage.reader()
    shots = int(args.seconds // 6)
    phrases = [f"PLATFORM {n + 1} EXIT {chr(65 + n % 26)}" for n in range(shots)]
    with tempfile.TemporaryDirectory() as tmp:
        made = {"signs": make_video(Path(tmp) / "signs.mp4", [(6.0 * n, sign([p], size=size, height=size[1] // 8))
                                                               for n, p in enumerate(phrases)], args.seconds, size, fps=5),
                "plain": make_video(Path(tmp) / "plain.mp4", [(6.0 * n, turned(plain(n % 5, size), n))
                                                              for n in range(shots)], args.seconds, size, fps=5)}
        for name, path in made.items():
            clip = video.sample(str(path), lambda image: None)  # the indexer's moments for it
            times = stage.spread([t for t, _ in clip.moments])
            started = time.perf_counter()
            frames = list(video.frames_at(path, times, stage.VIDEO_SIDE))
            decode = time.perf_counter() - started
            jpegs = []
            for n, (_, image) in enumerate(frames):
                jpeg = Path(tmp) / f"{name}-{n}.jpg"
                image.save(jpeg, quality=90)
                jpegs.append(jpeg.read_bytes())
            started = time.perf_counter()
            for data in jpegs:
                reader.read(images.decode(data, READ_SIDE // 2).image)
            baseline = time.perf_counter() - started
            calls: list[int] = []
            real = reader.read
            reader.read = lambda image, calls=calls, real=real: calls.append(1) or real(image)  # type: ignore
            try:
                started = time.perf_counter()
                seen = stage.read_moments(frames)
                read = time.perf_counter() - started
            finally:
                del reader.read
            found = sum(p in seen.text for p in phrases) if name == "signs" else 0
            print(f"{name}: {len(clip.moments)} moments, {len(times)} chosen, {len(calls)} read; per chosen moment: "
                  f"decode {decode / len(times):.3f} s, read {read / len(times):.3f} s, baseline (as photos) "
                  f"{baseline / len(times):.3f} s; stage / baseline {(decode + read) / baseline:.2f}"
                  + (f"; phrases found {found}/{len(phrases)}" if name == "signs" else ""))


if __name__ == "__main__":
    main()
