"""Videos with known content at known times, made with PyAV (tests and bench/videos.py): each scene is a picture
shown from a given second, so a search for it has a right answer and a right time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"


def sample_picture(name: str) -> Image.Image:
    """One of the bundled sample pictures (red-star, blue-circle, ...), which the demo model knows."""
    found = next(p for p in SAMPLE.iterdir() if p.stem == name)
    with Image.open(found) as im:
        return im.convert("RGB")


def make_video(path: Path, scenes: Sequence[tuple[float, Image.Image]], duration: float, size: tuple[int, int] = (320, 240),
               fps: int = 10, codec: str = "libx264", gop: int | None = None,
               metadata: dict[str, str] | None = None, noise: bool = False, faststart: bool = False) -> Path:
    """A video of ``duration`` seconds showing each scene's picture from its start second on (scenes in time
    order). ``gop``: frames between keyframes (None: the encoder's default, with keyframes at cuts)."""
    import av
    import numpy as np

    rng = np.random.default_rng(0)
    grain = [rng.integers(-6, 7, (size[1], size[0], 3)).astype("int16") for _ in range(7)] if noise else []
    options = {"movflags": "faststart"} if faststart else {}  # the index (moov) before the frames
    with av.open(str(path), "w", options=options) as out:
        if metadata:
            out.metadata.update(metadata)
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        if gop is not None:
            stream.codec_context.gop_size = gop
        if codec in ("libx264", "libx265"):
            stream.codec_context.options = {"preset": "ultrafast"} | ({"x265-params": "log-level=error"}
                                                                       if codec == "libx265" else {})
        pictures = [(start, np.asarray(picture.convert("RGB").resize(size))) for start, picture in scenes]
        for i in range(int(round(duration * fps))):
            t = i / fps
            current = pictures[0][1]
            for start, array in pictures:
                if t >= start:
                    current = array
            if noise:
                current = np.clip(current.astype("int16") + grain[i % len(grain)], 0, 255).astype("uint8")
            frame = av.VideoFrame.from_ndarray(current, format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
