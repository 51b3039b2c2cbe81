"""A generated ground truth for ``clipsearch duplicates``: distinct photo-like scenes, copies of some of them and
similar shots of others, as files, with which file is what (tests/test_duplicates.py, bench/duplicates.py).

A scene is larger than the picture taken of it, so that a similar shot (the camera moved) shows a strip the
original did not, as a real burst does; a copy is always made from the original's file or pixels.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

from tests import imagegen

VIEW = (400, 300)
COPY_KINDS = ("resize", "jpeg", "png", "webp", "crop", "border", "orientation", "brightness")
SIMILAR_KINDS = ("shift", "rotation", "added")


def scene(seed: int, size: tuple[int, int] = (560, 420)) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    im = imagegen.gradient(rng, size)
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(8, 16))):
        x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        x1, y1 = x0 + int(rng.integers(15, w // 3)), y0 + int(rng.integers(15, h // 3))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        kind = rng.random()
        if kind < 0.4:
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        elif kind < 0.8:
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        else:
            draw.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=fill)
    noisy = np.asarray(im, dtype=np.float64) + rng.normal(0, 5, (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype("uint8"))


def view(sc: Image.Image, dx: float = 0.0, dy: float = 0.0, angle: float = 0.0) -> Image.Image:
    """The picture a camera pointed at the scene's centre (moved by dx, dy pixels, turned by ``angle``) takes."""
    w, h = VIEW
    cx, cy = sc.width / 2 + dx, sc.height / 2 + dy
    if angle:
        sc = sc.rotate(angle, resample=Image.Resampling.BICUBIC, center=(cx, cy))
    left, top = int(cx - w / 2), int(cy - h / 2)
    return sc.crop((left, top, left + w, top + h))


def _encoded(im: Image.Image, fmt: str, **save: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **save)
    return buf.getvalue()


def copy_of(original: Image.Image, kind: str, rng: np.random.Generator) -> tuple[str, bytes]:
    """(extension, file bytes) of one kind of copy."""
    w, h = original.size
    if kind == "resize":
        f = rng.uniform(0.25, 0.75)
        return ".jpg", _encoded(original.resize((max(8, int(w * f)), max(8, int(h * f))), Image.Resampling.LANCZOS),
                                "JPEG", quality=90)
    if kind == "jpeg":
        return ".jpg", _encoded(original, "JPEG", quality=int(rng.integers(30, 96)))
    if kind == "png":
        return ".png", _encoded(original, "PNG")
    if kind == "webp":
        return ".webp", _encoded(original, "WEBP", quality=int(rng.integers(50, 96)))
    if kind == "crop":
        share = rng.uniform(0.02, 0.05)
        cw, ch = int(share * w), int(share * h)
        left, top = int(rng.uniform(0, 1) * cw), int(rng.uniform(0, 1) * ch)
        return ".jpg", _encoded(original.crop((left, top, w - (cw - left), h - (ch - top))), "JPEG", quality=90)
    if kind == "border":
        width = max(1, int(rng.uniform(0.02, 0.05) * w / 2))
        framed = Image.new("RGB", (w + 2 * width, h + 2 * width), tuple(int(v) for v in rng.integers(0, 256, 3)))
        framed.paste(original, (width, width))
        return ".jpg", _encoded(framed, "JPEG", quality=90)
    if kind == "orientation":  # the pixels stored turned, with the EXIF tag that turns them upright again
        exif = Image.Exif()
        exif[0x0112] = 6
        return ".jpg", _encoded(original.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=90, exif=exif.tobytes())
    if kind == "brightness":
        return ".jpg", _encoded(ImageEnhance.Brightness(original).enhance(float(rng.choice([0.9, 1.1]))), "JPEG",
                                quality=90)
    raise ValueError(kind)


def similar_to(sc: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    w, h = VIEW
    if kind == "shift":
        share = rng.uniform(0.05, 0.10)
        return view(sc, dx=float(rng.choice([-1, 1])) * share * w, dy=rng.uniform(-0.5, 0.5) * share * h)
    if kind == "rotation":
        return view(sc, angle=float(rng.choice([-1, 1]) * rng.uniform(1, 2)))
    if kind == "added":
        shot = view(sc)
        draw = ImageDraw.Draw(shot)
        size = int(rng.integers(40, 80))
        x0, y0 = int(rng.integers(0, w - size)), int(rng.integers(0, h - size))
        draw.ellipse((x0, y0, x0 + size, y0 + size), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        return shot
    raise ValueError(kind)


@dataclass
class GroundTruth:
    root: Path
    copies: list[set[str]] = field(default_factory=list)  # file names of an original and its copies
    similar: list[set[str]] = field(default_factory=list)  # an original and its similar shots
    kind: dict[str, str] = field(default_factory=dict)  # file name -> "original", "copy:crop", "similar:shift", ...

    def copy_pairs(self) -> set[frozenset[str]]:
        return {frozenset((a, b)) for group in self.copies for a in group for b in group if a < b}

    def similar_pairs(self) -> set[frozenset[str]]:
        return {frozenset((a, b)) for group in self.similar for a in group for b in group if a < b}


def make(root: Path, scenes: int, seed: int = 0, copies_per: int = 2, similar_per: int = 2) -> GroundTruth:
    """``scenes`` originals: a third with copies (``copies_per`` kinds each, cycling through all kinds), a third
    with similar shots, the rest alone."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth = GroundTruth(root)
    turn = 0
    for i in range(scenes):
        sc = scene(seed * 100_000 + i)
        original = view(sc)
        name = f"s{i:04d}.jpg"
        (root / name).write_bytes(_encoded(original, "JPEG", quality=92))
        truth.kind[name] = "original"
        if i % 3 == 0:
            group = {name}
            for j in range(copies_per):
                kind = COPY_KINDS[turn % len(COPY_KINDS)]
                turn += 1
                ext, data = copy_of(original, kind, rng)
                copy_name = f"s{i:04d}_copy{j}_{kind}{ext}"
                (root / copy_name).write_bytes(data)
                truth.kind[copy_name] = f"copy:{kind}"
                group.add(copy_name)
            truth.copies.append(group)
        elif i % 3 == 1:
            group = {name}
            for j in range(similar_per):
                kind = SIMILAR_KINDS[(i // 3 + j) % len(SIMILAR_KINDS)]
                shot_name = f"s{i:04d}_shot{j}_{kind}.jpg"
                (root / shot_name).write_bytes(_encoded(similar_to(sc, kind, rng), "JPEG", quality=92))
                truth.kind[shot_name] = f"similar:{kind}"
                group.add(shot_name)
            truth.similar.append(group)
    return truth
