"""Count the image-tower FLOPs of every open_clip architecture, for the cost column of `clipsearch models`.

Each tower is built on the meta device (no memory, no weights) and one image of its input size is run through it
under torch's FlopCounterMode, which counts the matmuls and convolutions of any architecture: ResNets, ConvNeXts,
EVA, SigLIP, MobileCLIP, ViTamin. Too slow for a listing to do (~150 s for all of them on 2 cores), so it is done
here, once per open_clip release, and the table shipped in clipsearch/assets/tower_gflops.json.

    python bench/tower_flops.py          # rewrites the table from the installed open_clip
"""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path

TABLE = Path(__file__).resolve().parents[1] / "clipsearch" / "assets" / "tower_gflops.json"


def tower_gflops(arch: str) -> float:
    import open_clip
    import torch
    from open_clip.model import _build_vision_tower
    from torch.utils.flop_counter import FlopCounterMode

    cfg = open_clip.get_model_config(arch)
    size = cfg.get("vision_cfg", {}).get("image_size", 224)
    side = max(size) if isinstance(size, (list, tuple)) else size
    with torch.device("meta"):
        tower = _build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"], cfg.get("quick_gelu", False))
    with FlopCounterMode(display=False) as counter:
        tower(torch.empty(1, 3, side, side, device="meta"))
    return counter.get_total_flops() / 1e9


def main() -> None:
    import open_clip

    from clipsearch.encoders.openclip import register_model_configs

    register_model_configs()
    archs = sorted({arch for arch, _ in open_clip.list_pretrained()} | {"clipsearch-demo"})
    table: dict[str, float] = {}
    for arch in archs:
        try:
            table[arch] = round(tower_gflops(arch), 3)
        except Exception as e:  # noqa: BLE001 - a tower that cannot be built here keeps "?" in the listing
            print(f"{arch}: not counted ({type(e).__name__}: {e})", file=sys.stderr)
        else:
            print(f"{arch:40} {table[arch]:10.2f} GFLOPs")
    TABLE.write_text(json.dumps({"open_clip": metadata.version("open_clip_torch"), "gflops": table}, indent=1) + "\n")
    print(f"{len(table)} of {len(archs)} towers counted -> {TABLE}")


if __name__ == "__main__":
    main()
