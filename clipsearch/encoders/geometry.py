"""A model's resize and crop as a plain, picklable plan that Pillow alone runs: what decode workers apply.

Decode worker processes start from a small server process that has imported Pillow
and numpy, not torch (``indexer.decode_pool``): the plan is all they need of the
model. ``plan_of`` translates the PIL steps of open_clip's eval transforms (torchvision
``Resize`` and ``CenterCrop``, open_clip's ``ResizeKeepRatio``, ``CenterCropOrPad`` and
mode conversions) into the same Pillow calls with the same sizes and rounding, so
``Plan(image)`` is pixel-identical to the ``Compose`` it came from (tests/test_geometry.py
checks it over many shapes); a step it does not know gives None. Importing this module
imports neither torch nor torchvision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from PIL import Image, ImageOps


class Step(Protocol):
    def __call__(self, image: Image.Image) -> Image.Image: ...


def _resized(image: Image.Image, height: int, width: int, resample: int) -> Image.Image:
    """torchvision's ``resize`` of a PIL image to (height, width): the image itself when it has that size."""
    if (image.height, image.width) == (height, width):
        return image
    return image.resize((width, height), resample)


@dataclass(frozen=True)
class Resize:
    """torchvision ``Resize``: the shorter side to ``size[0]`` (the longer capped by ``max_size``), or exactly
    ``size`` = (height, width)."""

    size: tuple[int, ...]
    resample: int
    max_size: int | None = None

    def __call__(self, image: Image.Image) -> Image.Image:
        h, w = image.height, image.width
        if len(self.size) == 2:
            return _resized(image, self.size[0], self.size[1], self.resample)
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = self.size[0], int(self.size[0] * long / short)
        if self.max_size is not None and new_long > self.max_size:
            new_short, new_long = int(self.max_size * new_short / new_long), self.max_size
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
        return _resized(image, new_h, new_w, self.resample)


@dataclass(frozen=True)
class KeepRatio:
    """open_clip's ``ResizeKeepRatio`` without its random (training) factors: a ratio between the one that fits
    the shorter side (``longest`` 0) and the one that fits the longer side (1) to ``size`` = (height, width)."""

    size: tuple[int, int]
    longest: float
    resample: int

    def __call__(self, image: Image.Image) -> Image.Image:
        h, w = image.height, image.width
        ratio_h, ratio_w = h / self.size[0], w / self.size[1]
        ratio = max(ratio_h, ratio_w) * self.longest + min(ratio_h, ratio_w) * (1.0 - self.longest)
        return _resized(image, round(h * 1.0 / ratio), round(w * 1.0 / ratio), self.resample)


@dataclass(frozen=True)
class CenterCrop:
    """torchvision ``CenterCrop`` (``fill`` 0) and open_clip's ``CenterCropOrPad``: padded evenly with ``fill``
    where the picture is smaller than ``size`` = (height, width), then the centre cut out."""

    size: tuple[int, int]
    fill: Any = 0

    def __call__(self, image: Image.Image) -> Image.Image:
        crop_h, crop_w = self.size
        h, w = image.height, image.width
        if crop_w > w or crop_h > h:
            ltrb = ((crop_w - w) // 2 if crop_w > w else 0, (crop_h - h) // 2 if crop_h > h else 0,
                    (crop_w - w + 1) // 2 if crop_w > w else 0, (crop_h - h + 1) // 2 if crop_h > h else 0)
            image = ImageOps.expand(image, border=ltrb, fill=_fill(self.fill, image))
            h, w = image.height, image.width
            if (crop_h, crop_w) == (h, w):
                return image
        top, left = int(round((h - crop_h) / 2.0)), int(round((w - crop_w) / 2.0))
        return image.crop((left, top, left + crop_w, top + crop_h))


def _fill(fill: Any, image: Image.Image) -> Any:
    """torchvision's fill for a PIL pad: one value per band, integers except in mode F."""
    bands = len(image.getbands())
    if fill is None:
        fill = 0
    if isinstance(fill, (int, float)) and bands > 1:
        fill = (fill,) * bands
    if isinstance(fill, (list, tuple)):
        fill = tuple(fill) * bands if len(fill) == 1 else tuple(fill)
        return fill if image.mode == "F" else tuple(int(x) for x in fill)
    return fill if image.mode == "F" else int(fill)


@dataclass(frozen=True)
class Convert:
    """open_clip's ``MaybeConvertMode`` and ``_convert_to_rgb``."""

    mode: str = "RGB"

    def __call__(self, image: Image.Image) -> Image.Image:
        return image if image.mode == self.mode else image.convert(self.mode)


@dataclass(frozen=True)
class Plan:
    """The geometry steps, then the picture as a uint8 (H, W, 3) array: what a decode worker hands over."""

    steps: tuple[Step, ...]

    def __call__(self, image: Image.Image) -> np.ndarray:
        for step in self.steps:
            image = step(image)
        return np.array(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)


def plan_of(steps: Sequence[Any]) -> Plan | None:
    """The plan of ``steps`` (the PIL steps of a torchvision ``Compose``), or None if one is not known here."""
    from torchvision import transforms
    from torchvision.transforms.functional import pil_modes_mapping

    out: list[Step] = []
    for step in steps:
        name = type(step).__name__
        if isinstance(step, transforms.Resize) and step.interpolation in pil_modes_mapping:
            size = (step.size,) if isinstance(step.size, int) else tuple(int(s) for s in step.size)
            if len(size) not in (1, 2) or (step.max_size is not None and len(size) != 1):
                return None
            out.append(Resize(size, pil_modes_mapping[step.interpolation], step.max_size))
        elif name == "ResizeKeepRatio" and getattr(step, "interpolation", None) in pil_modes_mapping \
                and not getattr(step, "random_scale_prob", 0) and not getattr(step, "random_aspect_prob", 0):
            out.append(KeepRatio((int(step.size[0]), int(step.size[1])), float(step.longest),
                                 pil_modes_mapping[step.interpolation]))
        elif isinstance(step, transforms.CenterCrop) or name == "CenterCropOrPad":
            size = tuple(int(s) for s in step.size)
            out.append(CenterCrop((size[0], size[-1]), getattr(step, "fill", 0)))
        elif name == "MaybeConvertMode":
            out.append(Convert(step.mode))
        elif getattr(step, "__name__", "") == "_convert_to_rgb":
            out.append(Convert("RGB"))
        else:
            return None
    return Plan(tuple(out))
