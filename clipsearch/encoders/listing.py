"""Every model a user can name: presets, open_clip's pretrained pairs, known Hugging Face ids."""

from __future__ import annotations

import hashlib
import os
from typing import Any

from clipsearch import assets
from clipsearch.encoders import hub
from clipsearch.encoders.spec import PRESETS, parse_spec

# Hugging Face ids clipsearch is known to load (embedding size, input side, ViT-B/32-relative cost).
KNOWN_HF: dict[str, tuple[int, int, float, str]] = {
    "facebook/metaclip-h14-fullcc2.5b": (1024, 224, 37.0, "MetaCLIP ViT-H/14 (CLIPModel)"),
    "facebook/metaclip-l14-fullcc2.5b": (768, 224, 18.0, "MetaCLIP ViT-L/14 (CLIPModel)"),
    "facebook/metaclip-b32-400m": (512, 224, 1.0, "MetaCLIP ViT-B/32 (CLIPModel)"),
    "openai/clip-vit-base-patch32": (512, 224, 1.0, "OpenAI CLIP ViT-B/32 (CLIPModel)"),
    "openai/clip-vit-large-patch14": (768, 224, 18.0, "OpenAI CLIP ViT-L/14 (CLIPModel)"),
    "kakaobrain/align-base": (640, 289, 2.0, "ALIGN EfficientNet-B7 + BERT (AlignModel)"),
    "google/siglip-base-patch16-224": (768, 224, 4.0, "SigLIP ViT-B/16 (SiglipModel)"),
}

# Image-tower GFLOPs per image of every open_clip architecture, counted by bench/tower_flops.py.
_COUNTED = assets.path("tower_gflops.json")
# The open_clip rows as this package was built: a first `clipsearch models` on a fresh HOME need not import torch.
_SHIPPED = assets.path("models.json")


def _vit_gflops(cfg: dict[str, Any]) -> float | None:
    """Rough image-tower cost of a ViT config (2 x multiply-adds), None for other towers: the estimate for an
    architecture the shipped table does not know (a newer open_clip, a model config of the user's)."""
    vision = cfg.get("vision_cfg", {})
    if "timm_model_name" in vision or not isinstance(vision.get("layers"), int):
        return None
    size = vision.get("image_size", 224)
    side = max(size) if isinstance(size, (list, tuple)) else size
    patch = vision.get("patch_size", 16)
    width, layers = vision.get("width", 768), vision["layers"]
    tokens = (side // patch) ** 2 + 1
    mlp = vision.get("mlp_ratio", 4.0)
    per_layer = tokens * width * width * (4 + 2 * mlp) + 2 * tokens * tokens * width
    return 2 * layers * per_layer / 1e9


def _tower_gflops(arch: str, cfg: dict[str, Any], counted: dict[str, float]) -> float | None:
    """The image tower's GFLOPs per image: counted (bench/tower_flops.py, every architecture open_clip had when
    it ran), else the ViT formula."""
    return counted.get(arch) or _vit_gflops(cfg)


def _relative(gflops: float | None, reference: float | None) -> float | None:
    """Cost relative to ViT-B/32: one decimal, two significant digits below 1 (the demo model is 0.0023)."""
    if not gflops or not reference:
        return None
    ratio = gflops / reference
    return round(ratio, 1) if ratio >= 1 else float(f"{ratio:.2g}")


def _counted_gflops() -> dict[str, float]:
    import json

    try:
        return json.loads(_COUNTED.read_text())["gflops"]
    except (OSError, ValueError, KeyError):
        return {}


def _open_clip_row(arch: str, tag: str, counted: dict[str, float]) -> dict[str, Any]:
    """A row of what open_clip says about ``arch:tag``; ``weights`` is where its file would be (not whether it is)."""
    import open_clip

    from clipsearch.encoders.openclip import register_model_configs

    register_model_configs()
    cfg = open_clip.get_model_config(arch) or {}
    size = cfg.get("vision_cfg", {}).get("image_size", 224)
    gflops = _tower_gflops(arch, cfg, counted)
    spec = parse_spec(f"{arch}:{tag}")
    pretrained = {} if spec.weights_path else open_clip.get_pretrained_cfg(arch, tag)
    return {
        "spec": spec.text,
        "backend": "open_clip",
        "dim": cfg.get("embed_dim"),
        "resolution": max(size) if isinstance(size, (list, tuple)) else size,
        "cost": _relative(gflops, _tower_gflops("ViT-B-32", open_clip.get_model_config("ViT-B-32"), counted)),
        "weights": spec.weights_path or {k: pretrained[k] for k in ("hf_hub", "url") if pretrained.get(k)},
    }


def _rows_key() -> tuple[str, str, str]:
    """What the open_clip rows depend on: the versions of open_clip and clipsearch, and the counted costs."""
    from importlib import metadata

    from clipsearch import __version__

    try:
        open_clip_version = metadata.version("open_clip_torch")
    except metadata.PackageNotFoundError:
        open_clip_version = "unknown"
    try:  # and the counted costs, which a checkout may update
        costs = hashlib.sha256(_COUNTED.read_bytes()).hexdigest()[:12]
    except OSError:
        costs = "none"
    return open_clip_version, __version__, costs


def _open_clip_rows() -> list[dict[str, Any]]:
    """The presets' and open_clip's rows: from the cache once made, else from the table shipped in the package when
    it was made with the same versions, else made (which imports open_clip and torch: seconds, which a listing
    should not wait for every time; `time clipsearch models`)."""
    import json

    from clipsearch.location import default_cache_dir

    open_clip_version, __version__, costs = _rows_key()
    cache = default_cache_dir() / f"models-{open_clip_version}-{__version__}-{costs}.json"
    try:
        return json.loads(cache.read_text())
    except (OSError, ValueError):
        pass
    try:  # the table shipped in the package, made with the same versions (python -m clipsearch.encoders.listing)
        shipped = json.loads(_SHIPPED.read_text())
        if shipped["key"] == [open_clip_version, __version__, costs]:
            return shipped["rows"]
    except (OSError, ValueError, KeyError):
        pass
    rows = _make_open_clip_rows()
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
        tmp.write_text(json.dumps(rows))
        os.replace(tmp, cache)
    except OSError:
        pass  # no cache: the next listing makes the rows again
    return rows


def _make_open_clip_rows() -> list[dict[str, Any]]:
    import open_clip

    rows = []
    counted = _counted_gflops()
    for name, target in PRESETS.items():
        arch, _, weights = target.partition(":")
        rows.append({**_open_clip_row(arch, weights, counted), "spec": name})  # preset_of: filled by list_models
    rows.extend(_open_clip_row(arch, tag, counted) for arch, tag in open_clip.list_pretrained())
    return rows


def list_models() -> list[dict[str, Any]]:
    """One row per model: spec, backend, dim, input resolution, cost relative to ViT-B/32, weights on this machine,
    and where `--precision int8` ran here, its agreement with fp32 on the first photos it embedded."""
    from clipsearch.encoders.onnx_image import int8_agreements

    int8 = int8_agreements()
    rows: list[dict[str, Any]] = []
    for row in _open_clip_rows():
        weights = row.pop("weights")
        if row["spec"] in PRESETS:  # a preset's local weights (demo) lie where this checkout is now
            row["preset_of"] = PRESETS[row["spec"]]
            weights = parse_spec(row["preset_of"]).weights_path or weights
        here = os.path.isfile(weights) if isinstance(weights, str) else hub.cached_pretrained_file(weights) is not None
        rows.append({**row, "cached": here, **({"int8": int8[row["spec"]]} if row["spec"] in int8 else {})})
    for repo, (dim, resolution, cost, what) in KNOWN_HF.items():
        rows.append({"spec": f"hf:{repo}", "backend": "hf", "dim": dim, "resolution": resolution, "cost": cost,
                     "cached": hub.hf_cached(repo, "config.json") is not None, "note": what})
    return rows


def shippable_rows() -> list[dict[str, Any]]:
    """The rows as the package ships them: no path of the machine that made them (a preset's local weights, the
    demo's, are found where the package is, at listing time)."""
    rows = _make_open_clip_rows()
    for row in rows:
        if row["spec"] in PRESETS and isinstance(row["weights"], str):
            row["weights"] = ""
    return rows


def write_shipped_table() -> None:
    """Write clipsearch/assets/models.json for the open_clip installed here (run after bench/tower_flops.py, and
    whenever open_clip or the presets change): ``python -m clipsearch.encoders.listing``."""
    import json

    rows = shippable_rows()
    _SHIPPED.write_text(json.dumps({"key": list(_rows_key()), "rows": rows}, separators=(",", ":")) + "\n")
    print(f"{len(rows)} rows -> {_SHIPPED}")


if __name__ == "__main__":
    write_shipped_table()
