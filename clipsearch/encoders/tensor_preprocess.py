"""A model's PIL preprocessing, redone on a decoded uint8 tensor where it already lies (the GPU),
or split so that decode workers stop at uint8 and a whole batch is normalised at once.

Images decoded by nvJPEG stay on the GPU; copying them back to run the PIL
``Compose`` would undo the point. Each step of open_clip's ``Compose`` is mapped
to the same operation on a (3, H, W) tensor, in 0..255 floats until the
``ToTensor`` step as PIL would have it. A ``Compose`` holding any step this
module does not know gives None, and the caller keeps decoding on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torchvision import transforms
from torchvision.transforms import functional as F

from clipsearch.encoders import geometry

Step = Callable[[torch.Tensor], torch.Tensor]


def box_reduce(t: torch.Tensor, min_side: int) -> torch.Tensor:
    """Average whole blocks of pixels while the shorter side stays >= 2 x ``min_side``.

    The GPU twin of the CPU path's draft + box reduce (``images._reduce``): most of a
    12 MP photo's pixels go in one cheap pass, and the antialiased resize that follows
    works on a picture at most a few times its output.
    """
    factor = min(t.shape[-2:]) // (2 * min_side)
    if factor < 2:
        return t
    if t.dim() == 3:
        return torch.nn.functional.avg_pool2d(t.unsqueeze(0), factor, ceil_mode=True).squeeze(0)
    return torch.nn.functional.avg_pool2d(t, factor, ceil_mode=True)


def _resize(step: transforms.Resize) -> Step:
    def run(t: torch.Tensor) -> torch.Tensor:
        size = step.size if isinstance(step.size, int) else min(step.size)
        t = box_reduce(t, size)
        return F.resize(t, step.size, step.interpolation, step.max_size, antialias=True).clamp_(0, 255)

    return run


def _resize_keep_ratio(step: Any) -> Step:
    """open_clip's ResizeKeepRatio (resize_mode "longest"), which reads a PIL image's size."""
    target_h, target_w = step.size

    def run(t: torch.Tensor) -> torch.Tensor:
        h, w = t.shape[-2:]
        ratio_h, ratio_w = h / target_h, w / target_w
        ratio = max(ratio_h, ratio_w) * step.longest + min(ratio_h, ratio_w) * (1.0 - step.longest)
        size = [round(h / ratio), round(w / ratio)]
        t = box_reduce(t, min(size))
        return F.resize(t, size, step.interpolation, antialias=True).clamp_(0, 255)

    return run


def _normalize(step: transforms.Normalize) -> Step:
    mean = torch.tensor(step.mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(step.std, dtype=torch.float32).view(-1, 1, 1)
    on: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def run(t: torch.Tensor) -> torch.Tensor:
        if t.device not in on:
            on[t.device] = (mean.to(t.device), std.to(t.device))
        m, s = on[t.device]
        return (t - m) / s

    return run


def _scale(t: torch.Tensor) -> torch.Tensor:
    return t / 255.0


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


def from_compose(compose: Any) -> Step | None:
    """The tensor version of ``compose`` (a torchvision ``Compose`` of open_clip's eval steps), or None."""
    steps = getattr(compose, "transforms", None)
    if not steps:
        return None
    out: list[Step] = []
    scaled = False
    for step in steps:
        name = type(step).__name__
        if isinstance(step, transforms.Resize):
            out.append(_resize(step))
        elif name == "ResizeKeepRatio" and not getattr(step, "random_scale_prob", 0) \
                and not getattr(step, "random_aspect_prob", 0):
            out.append(_resize_keep_ratio(step))
        elif isinstance(step, transforms.CenterCrop) or name == "CenterCropOrPad":
            out.append(step)  # both accept tensors
        elif name in ("MaybeConvertMode",) or getattr(step, "__name__", "") == "_convert_to_rgb":
            out.append(_same)  # decoded as RGB already
        elif isinstance(step, transforms.ToTensor):  # open_clip's MaybeToTensor too
            out.append(_scale)
            scaled = True
        elif isinstance(step, transforms.Normalize) and scaled:
            out.append(_normalize(step))
        else:
            return None
    if not scaled:
        return None

    def preprocess(image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) or a stack of same-sized (N, 3, H, W) uint8 -> the model's float input."""
        t = image.float()
        for step in out:
            t = step(t)
        return t

    return preprocess


@dataclass
class Split:
    """``compose`` as two halves: ``plan`` (its PIL resize and crop, a picklable ``geometry.Plan`` that decode
    worker processes run without torch: PIL picture -> uint8 (H, W, 3) array) and ``finish`` (uint8 (N, H, W, 3) on
    any device -> the model's float (N, 3, H, W) input, one call per batch).

    ``finish(stack(to_uint8(im)))`` equals ``compose(im)``: the same PIL resize and crop, then the same
    division by 255 and normalisation. The workers then skip torchvision's per-image tensor steps and copy a
    quarter of the bytes to a GPU; the channel transpose is one call per batch too, because every call that
    releases the GIL costs a worker a wait to get it back while other threads run Python.
    """

    plan: geometry.Plan
    finish: Step

    def to_uint8(self, image: Any) -> torch.Tensor:
        return torch.from_numpy(self.plan(image))


def split_compose(compose: Any) -> Split | None:
    """The two halves of ``compose`` when it is PIL geometry (``geometry.plan_of`` knows each step), ToTensor and
    Normalize (open_clip's eval transforms), else None."""
    steps = list(getattr(compose, "transforms", None) or [])
    at = next((i for i, step in enumerate(steps) if isinstance(step, transforms.ToTensor)), None)
    if at is None:
        return None
    before, after = steps[:at], steps[at + 1 :]
    plan = geometry.plan_of(before)
    if plan is None or any(not isinstance(step, transforms.Normalize) for step in after):
        return None
    normalize = [_normalize(step) for step in after]

    def finish(pixels: torch.Tensor) -> torch.Tensor:
        t = _scale(pixels.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format))
        for step in normalize:
            t = step(t)
        return t

    return Split(plan, finish)
