"""The resize-and-crop plan that decode worker processes run with Pillow alone: the same pixels as the model's
own torchvision/open_clip steps, and nothing of torch imported to run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipsearch.encoders import geometry

ROOT = Path(__file__).resolve().parent.parent
SHAPES = [(640, 480), (480, 640), (224, 224), (225, 224), (100, 50), (50, 300), (1000, 3), (513, 257), (31, 400)]


def _assert_same(steps: list[object], plan: geometry.Plan, image: Image.Image) -> None:
    """The plan's pixels are the steps' pixels; where the steps fail (a 1000x3 strip resized to no rows), so does it."""
    expected = image
    try:
        for step in steps:
            expected = step(expected)  # type: ignore[operator]
    except ValueError:
        with pytest.raises(ValueError):
            plan(image)
        return
    got = plan(image)
    assert got.dtype == np.uint8 and got.flags.writeable
    np.testing.assert_array_equal(got, np.asarray(expected.convert("RGB")), err_msg=f"{steps} {image.size}")


def _pil_steps(compose: object) -> list[object]:
    steps = list(compose.transforms)  # type: ignore[attr-defined]
    return steps[: next(i for i, s in enumerate(steps) if type(s).__name__ in ("ToTensor", "MaybeToTensor"))]


@pytest.mark.parametrize("resize_mode", ["shortest", "longest", "squash"])
@pytest.mark.parametrize("size", [64, 224, (224, 320)])
def test_the_plan_gives_the_pixels_of_open_clips_own_steps(resize_mode: str, size: object) -> None:
    import open_clip

    compose = open_clip.image_transform(size, is_train=False, resize_mode=resize_mode)
    steps = _pil_steps(compose)
    plan = geometry.plan_of(steps)
    assert plan is not None, steps
    rng = np.random.default_rng(7)
    for width, height in SHAPES:
        _assert_same(steps, plan, Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)))


def test_torchvision_resize_and_crop_variants_match() -> None:
    from torchvision import transforms

    rng = np.random.default_rng(3)
    variants = [
        [transforms.Resize(100, interpolation=transforms.InterpolationMode.BILINEAR, max_size=150)],
        [transforms.Resize([90], interpolation=transforms.InterpolationMode.LANCZOS), transforms.CenterCrop((80, 60))],
        [transforms.Resize((70, 120)), transforms.CenterCrop(200)],  # a crop larger than the picture pads it
        [transforms.CenterCrop([33])],
    ]
    for steps in variants:
        plan = geometry.plan_of(steps)
        assert plan is not None, steps
        for width, height in SHAPES:
            _assert_same(steps, plan, Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)))


def test_a_step_it_does_not_know_gives_no_plan() -> None:
    from torchvision import transforms

    assert geometry.plan_of([transforms.Resize(64), transforms.RandomHorizontalFlip()]) is None
    from open_clip.transform import ResizeKeepRatio

    assert geometry.plan_of([ResizeKeepRatio(64, random_scale_prob=0.5)]) is None  # training-time randomness


def test_decode_workers_import_no_torch() -> None:
    """What a worker process imports (the server's preload, then the plan it unpickles) leaves torch out: a
    worker starts in a fraction of a second and holds tens of MB, not the seconds and hundreds of MB of torch."""
    code = ("import sys, pickle; import indexer.decode_pool as p; [__import__(m) for m in p.PRELOAD]; "
            "from clipsearch.encoders.geometry import Plan, Resize; pickle.loads(pickle.dumps(Plan((Resize((64,), 3),)))); "
            "print(sorted(m for m in ('torch', 'torchvision', 'open_clip') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
