"""Prompt templates a label is embedded through, averaged as CLIP's zero-shot classifier does.

``imagenet`` is OpenAI's 80 ImageNet templates, read from the copy open_clip ships
(``open_clip/zero_shot_metadata.py``) without importing open_clip: that module is plain Python,
while the package would import torch, which a classification of indexed photos on the exported
text tower never needs.
"""

from __future__ import annotations

import importlib.util
from functools import cache

from clipsearch.errors import UserError

# For personal photos: how people describe their own pictures, few enough that embedding a
# vocabulary of a thousand labels stays a few seconds on a CPU.
PHOTO = (
    "a photo of {}.",
    "a photo of the {}.",
    "a close-up photo of {}.",
    "a picture of {}.",
)
NONE = ("{}",)
NAMES = ("photo", "imagenet", "none")


@cache
def _imagenet() -> tuple[str, ...]:
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("--templates imagenet needs open_clip_torch installed (it ships the 80 templates)")
    path = f"{list(spec.submodule_search_locations)[0]}/zero_shot_metadata.py"
    module_spec = importlib.util.spec_from_file_location("_open_clip_zero_shot_metadata", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    # Each template is a function of the class name; called on "{}" it gives its format string.
    return tuple(template("{}") for template in module.OPENAI_IMAGENET_TEMPLATES)


def by_name(name: str) -> tuple[str, ...]:
    if name == "photo":
        return PHOTO
    if name == "imagenet":
        return _imagenet()
    if name == "none":
        return NONE
    raise UserError(f"unknown templates '{name}' (photo, imagenet or none)")


def fill(template: str, label: str) -> str:
    """``template`` with ``label`` in it (not str.format: a label may hold braces)."""
    return template.replace("{}", label)
