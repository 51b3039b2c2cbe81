"""One place that turns a model spec into a loaded ``Encoder`` (after open_clip's ``factory.py``).

Spec forms::

    ARCH:TAG             open_clip architecture and pretrained tag (ViT-B-32-quickgelu:metaclip_fullcc)
    ARCH:/path/to/ckpt   open_clip architecture with a local state dict
    ARCH:none            random weights (seed 0): for tests and benchmarks only
    fast, demo           a preset name (see PRESETS)

Nothing here imports torch until ``load_encoder`` is called.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from clipsearch.encoders.base import Encoder
from clipsearch.errors import UserError

# The small CLIP trained here on rendered shapes (data/demo_model/train.py): the only weights that exist
# offline on a fresh machine, so the README's first command and the meaning tests use it.
DEMO_WEIGHTS = Path(__file__).resolve().parents[2] / "data" / "demo_model" / "clipsearch-demo.safetensors"

PRESETS: dict[str, str] = {
    "fast": "ViT-B-32-quickgelu:metaclip_fullcc",
    "demo": f"clipsearch-demo:{DEMO_WEIGHTS}",
}
# Presets whose weights live at a machine-specific path are recorded by name, not by that path.
_RECORDED_BY_NAME = {"demo"}
DEFAULT_MODEL = "fast"

__all__ = ["DEFAULT_MODEL", "PRESETS", "Encoder", "ModelSpec", "load_encoder", "parse_spec"]


@dataclass(frozen=True)
class ModelSpec:
    backend: str  # "open_clip" (Hugging Face comes later behind the same interface)
    arch: str
    weights: str  # pretrained tag, "none", or a local path
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
        raise UserError(f"model '{spec}': Hugging Face models are not supported yet; use an open_clip ARCH:TAG spec")
    arch, sep, weights = text.partition(":")
    if not sep or not arch or not weights:
        raise UserError(
            f"model '{spec}' is not ARCH:TAG, ARCH:/path/to/checkpoint.pt or ARCH:none "
            f"(presets: {', '.join(sorted(PRESETS))})"
        )
    if _looks_like_path(weights):
        weights = os.path.abspath(os.path.expanduser(weights))
    return ModelSpec("open_clip", arch, weights, name if name in _RECORDED_BY_NAME else f"{arch}:{weights}")


def load_encoder(spec: str | ModelSpec, device: str = "auto", precision: str = "auto") -> Encoder:
    """Load the model named by ``spec`` on ``device`` ("auto": CUDA when present) in ``precision``."""
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    from clipsearch.encoders.openclip import OpenClipEncoder

    return OpenClipEncoder.load(parsed, device=device, precision=precision)
