"""Render captioned pictures of one plain coloured shape: the world the demo model is trained on.

Everything is drawn with Pillow from a seeded ``numpy`` generator, so a seed
names a data set exactly. Variation (size, aspect, position, rotation,
background, colour jitter, blur, JPEG quality) is wide enough that a model
trained here must learn "red" and "star", not pixels.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (245, 220, 30),
    "green": (40, 170, 60),
    "blue": (35, 80, 215),
    "purple": (130, 45, 175),
    "pink": (245, 130, 190),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
}
SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")
SYNONYMS = {"cross": ("cross", "plus", "plus sign"), "diamond": ("diamond", "rhombus")}
CLASSES = [(c, s) for c in COLOURS for s in SHAPES]  # 54

TEMPLATES = (
    "a {c} {s}",
    "{c} {s}",
    "a photo of a {c} {s}",
    "a picture of a {c} {s}",
    "a {c} {s} on a {bg} background",
    "{c} {s} on {bg}",
    "an image of a {c} {s}",
    "a drawing of a {c} {s}",
    "the {s} is {c}",
    "a {s} in {c}",
    "a big {c} {s}",
    "a small {c} {s}",
)
BACKGROUND_WORDS = {"gray": "gray", "beige": "beige", "gradient": "gradient", "noise": "noisy"}


def caption(colour: str, shape: str, background: str, rng: np.random.Generator) -> str:
    words = SYNONYMS.get(shape, (shape,))
    s = words[int(rng.integers(len(words)))]
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    text = template.format(c=colour, s=s, bg=BACKGROUND_WORDS[background])
    return re.sub(r"\ba ([aeiou])", r"an \1", text)


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float, rng: np.random.Generator) -> list[tuple[float, float]]:
    if shape == "square":
        pts = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
        pts = [(x * 0.8, y * 0.8) for x, y in pts]
    elif shape == "triangle":
        pts = [(math.cos(a), math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    elif shape == "star":
        inner = rng.uniform(0.38, 0.5)
        pts = [((1 if i % 2 == 0 else inner) * math.cos(-math.pi / 2 + i * math.pi / 5),
                (1 if i % 2 == 0 else inner) * math.sin(-math.pi / 2 + i * math.pi / 5)) for i in range(10)]
    elif shape == "cross":
        t = rng.uniform(0.28, 0.4)
        pts = [(-t, -1), (t, -1), (t, -t), (1, -t), (1, t), (t, t), (t, 1), (-t, 1), (-t, t), (-1, t), (-1, -t), (-t, -t)]
    elif shape == "diamond":
        w = rng.uniform(0.5, 0.7)  # taller than wide
        pts = [(0, -1), (w, 0), (0, 1), (-w, 0)]
    else:
        raise ValueError(shape)
    ca, sa = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * ca - y * sa), cy + r * (x * sa + y * ca)) for x, y in pts]


# How far each shape may turn and still be itself (a square at 45 degrees is a diamond, a cross an X).
_MAX_TURN = {"circle": 0.0, "square": 15.0, "triangle": 180.0, "star": 180.0, "cross": 15.0, "diamond": 10.0}


def _background(kind: str, size: tuple[int, int], avoid: np.ndarray, rng: np.random.Generator) -> Image.Image:
    w, h = size

    def far_colour(base: np.ndarray) -> np.ndarray:
        return base if np.abs(base - avoid).sum() > 150 else 255 - base * 0.5

    if kind == "gray":
        g = float(rng.uniform(60, 200))
        col = far_colour(np.array([g, g, g]))
        arr = np.broadcast_to(col, (h, w, 3))
    elif kind == "beige":
        col = far_colour(np.array([225, 210, 180]) + rng.uniform(-20, 20, 3))
        arr = np.broadcast_to(col, (h, w, 3))
    elif kind == "gradient":
        a = far_colour(rng.uniform(40, 220, 3))
        b = far_colour(rng.uniform(40, 220, 3))
        t = np.linspace(0, 1, w if rng.random() < 0.5 else h)
        line = a[None, :] * (1 - t[:, None]) + b[None, :] * t[:, None]
        arr = np.broadcast_to(line[None, :, :], (h, w, 3)) if len(t) == w else np.broadcast_to(line[:, None, :], (h, w, 3))
    else:  # noise around a mid colour
        base = far_colour(rng.uniform(70, 190, 3))
        arr = base[None, None, :] + rng.normal(0, 25, (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype("uint8"))


def render(colour: str, shape: str, rng: np.random.Generator, jpeg: bool = True, blur: float | None = None,
           size_fraction: float | None = None) -> tuple[Image.Image, str]:
    """One picture of a ``colour`` ``shape`` and a caption a person might type for it.

    ``blur`` (Gaussian radius in pixels of a 64 px view) and ``size_fraction`` (shape radius over the
    shorter side) pin those variables instead of drawing them, to measure how recognition degrades.
    """
    short = int(rng.integers(64, 160))
    aspect = float(rng.uniform(0.6, 1.8))
    size = (int(short * aspect), short) if aspect >= 1 else (short, int(short / aspect))
    rgb = np.array(COLOURS[colour], dtype="float64") + rng.normal(0, 12, 3)  # colour jitter
    rgb = np.clip(rgb * rng.uniform(0.85, 1.1), 0, 255)
    background = ("gray", "beige", "gradient", "noise")[int(rng.integers(4))]
    im = _background(background, size, rgb, rng)
    # the centre crop the model sees is the central square: keep the shape inside it
    side = min(size)
    r = side * (size_fraction if size_fraction is not None else float(rng.uniform(0.18, 0.42)))
    margin = r * 1.05
    cx = size[0] / 2 + rng.uniform(-1, 1) * max(0.0, side / 2 - margin)
    cy = size[1] / 2 + rng.uniform(-1, 1) * max(0.0, side / 2 - margin)
    angle = math.radians(rng.uniform(-1, 1) * _MAX_TURN[shape])
    # draw at 4x and shrink for smooth edges
    scale = 2
    layer = Image.new("L", (size[0] * scale, size[1] * scale), 0)
    draw = ImageDraw.Draw(layer)
    if shape == "circle":
        draw.ellipse([(cx - r) * scale, (cy - r) * scale, (cx + r) * scale, (cy + r) * scale], fill=255)
    else:
        draw.polygon([(x * scale, y * scale) for x, y in _polygon(shape, cx, cy, r, angle, rng)], fill=255)
    mask = layer.resize(size, Image.Resampling.BOX)
    im.paste(Image.new("RGB", size, tuple(int(v) for v in rgb)), (0, 0), mask)
    if blur is not None:
        if blur > 0:
            im = im.filter(ImageFilter.GaussianBlur(blur * side / 64))
    elif rng.random() < 0.3:
        im = im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.6))))
    if jpeg and rng.random() < 0.7:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=int(rng.integers(35, 95)))
        im = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return im, caption(colour, shape, background, rng)


def batches(seed: int) -> Iterator[list[tuple[Image.Image, str, int]]]:
    """Endless batches holding each of the 54 classes exactly once (no false negatives in the CLIP loss)."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(CLASSES))
        yield [(*render(*CLASSES[i], rng), int(i)) for i in order]


def held_out(seed: int, per_class: int = 3) -> Iterator[tuple[str, str, int, Image.Image]]:
    """A test set from another seed: (colour, shape, index, image)."""
    rng = np.random.default_rng(seed)
    for colour, shape in CLASSES:
        for k in range(per_class):
            yield colour, shape, k, render(colour, shape, rng)[0]
