"""Model specs: the forms ``--model`` takes, the presets, and their canonical text as the index records it."""

from __future__ import annotations

import os
from dataclasses import dataclass

from clipsearch import assets
from clipsearch.errors import UserError

# The small CLIP trained here on rendered shapes (data/demo_model/train.py), shipped in the package: the only
# weights that exist offline on a fresh machine, so the README's first command and the meaning tests use it.
DEMO_WEIGHTS = assets.path("clipsearch-demo.safetensors")

PRESETS: dict[str, str] = {
    "fast": "ViT-B-32-quickgelu:metaclip_fullcc",  # MetaCLIP ViT-B/32, the default
    "best": "ViT-H-14-quickgelu:metaclip_fullcc",  # MetaCLIP ViT-H/14 (facebook/metaclip-h14-fullcc2.5b)
    "multilingual": "ViT-H-14-worldwide-quickgelu:metaclip2_worldwide",  # MetaCLIP 2, 300+ languages
    "demo": f"clipsearch-demo:{DEMO_WEIGHTS}",
}
# Presets whose weights live at a machine-specific path are recorded by name, not by that path.
_RECORDED_BY_NAME = {"demo"}
DEFAULT_MODEL = "fast"

@dataclass(frozen=True)
class ModelSpec:
    backend: str  # "open_clip" or "hf"
    arch: str  # open_clip architecture; for "hf" the hub id or the local directory
    weights: str  # pretrained tag, "none", or a local path; for "hf" the revision ("" = default)
    text: str  # the canonical spec string, as recorded in the index

    @property
    def weights_path(self) -> str | None:
        return self.weights if _looks_like_path(self.weights) else None


def _looks_like_path(weights: str) -> bool:
    return os.sep in weights or weights.startswith((".", "~")) or weights.endswith((".pt", ".pth", ".bin", ".safetensors"))


def parse_spec(spec: str) -> ModelSpec:
    """Validate the form of a spec (not whether the weights exist) and canonicalise it."""
    name = spec.strip()
    text = PRESETS.get(name, name)
    if text.startswith("hf:"):
        source, _, revision = text[3:].partition("@")
        if not source:
            raise UserError(f"model '{spec}' names no Hugging Face model: hf:ORG/NAME, hf:ORG/NAME@REVISION or hf:/dir")
        if source.startswith((".", "~", os.sep)) or os.path.isdir(source):  # a directory, not ORG/NAME
            source = os.path.abspath(os.path.expanduser(source))
            return ModelSpec("hf", source, "", f"hf:{source}")
        return ModelSpec("hf", source, revision, f"hf:{source}" + (f"@{revision}" if revision else ""))
    arch, sep, weights = text.partition(":")
    if not sep or not arch or not weights:
        raise UserError(
            f"model '{spec}' is not ARCH:TAG, ARCH:/path/to/checkpoint.pt or ARCH:none "
            f"(presets: {', '.join(sorted(PRESETS))})"
        )
    if _looks_like_path(weights):
        weights = os.path.abspath(os.path.expanduser(weights))
    return ModelSpec("open_clip", arch, weights, name if name in _RECORDED_BY_NAME else f"{arch}:{weights}")
