"""One place that turns a model spec into a loaded ``Encoder`` (after open_clip's ``factory.py``).

Spec forms::

    ARCH:TAG             open_clip architecture and pretrained tag (ViT-B-32-quickgelu:metaclip_fullcc)
    ARCH:/path/to/ckpt   open_clip architecture with a local state dict
    ARCH:none            random weights (seed 0): for tests and benchmarks only
    hf:ORG/NAME[@REV]    a Hugging Face transformers model (CLIP, MetaCLIP, ALIGN, SigLIP), hub id or cache
    hf:/path/to/dir      the same, saved with save_pretrained
    fast, best, ...      a preset name (see PRESETS)

Nothing here imports torch until ``load_encoder`` is called.
"""

from __future__ import annotations

from clipsearch.encoders.base import Encoder
from clipsearch.encoders.spec import DEFAULT_MODEL, DEMO_WEIGHTS, PRESETS, ModelSpec, parse_spec

__all__ = ["DEFAULT_MODEL", "DEMO_WEIGHTS", "PRESETS", "Encoder", "ModelSpec", "load_encoder", "parse_spec"]


def load_encoder(spec: str | ModelSpec, device: str = "auto", precision: str = "auto") -> Encoder:
    """Load the model named by ``spec`` on ``device`` ("auto": CUDA when present) in ``precision``."""
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    if parsed.backend == "hf":
        from clipsearch.encoders.hf import HFEncoder

        return HFEncoder.load(parsed, device=device, precision=precision)
    from clipsearch.encoders.openclip import OpenClipEncoder

    return OpenClipEncoder.load(parsed, device=device, precision=precision)
