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

from clipsearch.encoders.base import Encoder, cpu_has_bf16
from clipsearch.encoders.spec import DEFAULT_MODEL, DEMO_WEIGHTS, PRESETS, ModelSpec, parse_spec
from clipsearch.errors import UserError

__all__ = ["DEFAULT_MODEL", "DEMO_WEIGHTS", "PRESETS", "Encoder", "ModelSpec", "check_runtime", "cpu_has_bf16",
           "load_encoder", "parse_spec"]


# Images a run embeds on the exported fp32 tower before it loads the model with torch for the rest: about where
# torch's start-up is repaid (bench/onnx_image.py); a longer run then embeds as it did before the export.
SMALL_RUN = 256


def load_encoder(spec: str | ModelSpec, device: str = "auto", precision: str = "auto",
                 fingerprint: str | None = None) -> Encoder:
    """Load the model named by ``spec`` on ``device`` ("auto": CUDA when present) in ``precision``.

    The one place that picks the runtime. ``--precision int8`` runs the quantized exported image tower on
    onnxruntime (exported first, with torch, where it is not yet). Given ``fingerprint`` (an index run with the
    model its index records) and a CPU, an exported tower embeds the first ``SMALL_RUN`` images of the run without
    importing torch, and the model in ``precision`` the rest (``onnx_image.Handoff``).
    """
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    if precision == "int8":
        return _int8(parsed, device, fingerprint)
    from clipsearch.encoders import onnx_image

    if fingerprint is not None and precision in ("auto", "fp32") and _cpu_only(device) and onnx_image.export_enabled():
        first = onnx_image.load(fingerprint, "fp32", lambda: _torch(parsed, "cpu", precision))
        if first is not None:
            return onnx_image.Handoff(first, lambda: _torch(parsed, "cpu", precision), SMALL_RUN)
    return _torch(parsed, device, precision)


def _torch(parsed: ModelSpec, device: str, precision: str) -> Encoder:
    if parsed.backend == "hf":
        from clipsearch.encoders.hf import HFEncoder

        return HFEncoder.load(parsed, device=device, precision=precision)
    from clipsearch.encoders.openclip import OpenClipEncoder

    return OpenClipEncoder.load(parsed, device=device, precision=precision)


def _int8(parsed: ModelSpec, device: str, fingerprint: str | None) -> Encoder:
    """The int8 image tower on onnxruntime's CPU provider: exported and quantized once, calibrated by nothing."""
    from clipsearch.encoders import onnx_image
    from clipsearch.encoders.onnx_image_export import quantize

    check_runtime(device, "int8")
    if fingerprint is not None and (ready := onnx_image.load(fingerprint, "int8", lambda: _torch(parsed, "cpu", "auto"))):
        return ready
    directory = onnx_image.exported(fingerprint) if fingerprint is not None else None
    loaded: Encoder | None = None
    if directory is None:
        loaded = _torch(parsed, "cpu", "fp32")
        directory = loaded.export_image_tower()
        if directory is None:
            raise UserError(f"--precision int8 is not available for {parsed.text} (its image tower does not export "
                            "to ONNX); use auto, fp32 or bf16")
    quantize(directory)
    return onnx_image.OnnxImageEncoder(directory, "int8", (lambda: loaded) if loaded is not None
                                       else lambda: _torch(parsed, "cpu", "auto"))


def check_runtime(device: str, precision: str) -> None:
    """Refuse, before anything is written, a precision that cannot run on the device asked for."""
    if precision == "int8" and device not in ("auto", "cpu"):
        raise UserError("--precision int8 runs on the CPU (ONNX Runtime): use --device cpu, or fp16 on a GPU")


def _cpu_only(device: str) -> bool:
    """Whether ``device`` means the CPU, without importing torch: "auto" where this machine shows no NVIDIA GPU."""
    if device == "cpu":
        return True
    if device != "auto":
        return False
    import os

    return os.environ.get("CUDA_VISIBLE_DEVICES") == "" or not os.path.exists("/dev/nvidiactl")

