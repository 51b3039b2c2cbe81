"""Writing a model's image tower to the cache as ONNX (torch side, once per model), and its int8 copy (no torch).

``export`` runs where the model is loaded anyway (the first run of a model, ``indexer.job``);
it is verified against the model's own fp32 image path before it is kept, and written
into a temporary folder renamed into place, so that a killed export or two processes
exporting at once never leave a half-written tower. ``quantize`` makes the int8 copy
that ``--precision int8`` runs; it needs onnxruntime only. bench/onnx_image.py measures both.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipsearch.encoders import onnx_image
from clipsearch.encoders.onnx_image import FILES, MIN_COSINE, OnnxImageEncoder, cache_dir, exported

if TYPE_CHECKING:
    from clipsearch.encoders.base import Encoder

_LARGE = 1_500_000_000  # bytes of weights past which an ONNX file keeps them beside it (protobuf's 2 GB limit)


def _normalisation(compose: Any) -> tuple[list[float], list[float]] | None:
    """The mean and std of the one ``Normalize`` step of an open_clip eval transform, else None."""
    steps = [step for step in getattr(compose, "transforms", []) if type(step).__name__ == "Normalize"]
    if len(steps) != 1:
        return None
    return [float(m) for m in steps[0].mean], [float(s) for s in steps[0].std]


def _input_size(visual: Any, fallback: int) -> tuple[int, int]:
    size = getattr(visual, "image_size", fallback)
    return (int(size[0]), int(size[1])) if isinstance(size, (tuple, list)) else (int(size), int(size))


def export(encoder: Encoder, model: Any, compose: Any, quiet: bool = False) -> Path | None:
    """Write the ONNX image tower of a loaded open_clip model to the cache (once); None where it cannot be
    (no staged preprocessing, a tower the exporter refuses, or one that does not reproduce the model)."""
    import copy

    import torch

    target = cache_dir(encoder.fingerprint)
    if exported(encoder.fingerprint) is not None:
        return target
    staged, normalisation = encoder.staged_transform, _normalisation(compose)
    visual = getattr(model, "visual", None)
    if staged is None or normalisation is None or visual is None:
        return None
    if not quiet:
        print(f"clipsearch: exporting the image tower of {encoder.spec} (once; later small runs start without torch)",
              file=sys.stderr)
    tower = copy.deepcopy(visual).float().cpu().eval()
    height, width = _input_size(tower, encoder.image_size)
    probe = torch.randn(3, 3, height, width, generator=torch.Generator().manual_seed(0))
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
    try:
        large = sum(p.numel() * 4 for p in tower.parameters()) > _LARGE
        # With gradients on: without them torch's MultiheadAttention takes its fused fast path
        # (aten::_native_multi_head_attention), which the ONNX exporter does not know.
        with torch.inference_mode(False), torch.enable_grad():
            _quietly(lambda: torch.onnx.export(
                tower, (probe[:2],), str(work / FILES["fp32"]), input_names=["pixels"], output_names=["features"],
                dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}}, opset_version=17, dynamo=False,
                external_data=large))
        with torch.no_grad():
            reference = torch.nn.functional.normalize(tower(probe).float(), dim=-1).numpy()
        config = {"format": onnx_image.FORMAT, "fingerprint": encoder.fingerprint, "spec": encoder.spec, "dim": encoder.dim,
                  "image_size": encoder.image_size, "logit_scale": encoder.logit_scale,
                  "plan": onnx_image.plan_to_json(staged.plan), "mean": normalisation[0], "std": normalisation[1],
                  "external_data": large, "weights_stamp": onnx_image.weights_stamp(encoder.spec)}
        (work / "config.json").write_text(json.dumps(config))
        mine = OnnxImageEncoder(work).encode_images(probe.numpy())
        if float((mine * reference).sum(axis=1).min()) < MIN_COSINE:
            return None
        try:
            os.replace(work, target)
        except OSError:  # another process exported it meanwhile
            return target if exported(encoder.fingerprint) is not None else None
        return target
    except (RuntimeError, ValueError, TypeError, OSError, ImportError, AssertionError):
        return None  # no exported tower for this model: runs keep loading it with torch
    finally:
        shutil.rmtree(work, ignore_errors=True)


def quantize(directory: Path) -> Path:
    """The int8 copy of an exported tower (made once, beside it): dynamic quantization of its matrix products, int8
    weights per output channel, activations quantized per batch. bench/onnx_image.py compares it with static QDQ."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = directory / FILES["int8"]
    if out.is_file():
        return out
    config = json.loads((directory / "config.json").read_text())
    work = Path(tempfile.mkdtemp(prefix=".int8-", dir=directory))
    try:
        _quietly(lambda: quantize_dynamic(
            directory / FILES["fp32"], work / FILES["int8"], weight_type=QuantType.QInt8, per_channel=True,
            op_types_to_quantize=["MatMul", "Gemm"], use_external_data_format=bool(config.get("external_data")),
            extra_options={"MatMulConstBOnly": True}))
        for path in work.iterdir():
            os.replace(path, directory / path.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def _quietly(fn: Any) -> Any:
    """The exporter and the quantizer print warnings, progress and (on failure) whole graphs: keep them off the
    user's terminal."""
    import contextlib
    import io

    from clipsearch.encoders.onnx_text import _quietly as quietly

    with contextlib.redirect_stderr(io.StringIO()):
        return quietly(fn)
