"""rclip, set up offline for side-by-side benchmarks (shared by bench/index_speed.py and bench/search_scale.py).

rclip pins its own dependencies, so it gets its own venv (``pip install rclip``). It loads
``visual.onnx`` and ``textual.onnx`` from ``$RCLIP_DATADIR/ViT-B-32-256-datacomp_s34b_b86k/`` and the
tokenizer vocabulary from ``$RCLIP_DATADIR/tokenizer/`` before it tries any download, so we export
the same architecture (open_clip ViT-B-32-256, random weights from the seed `ARCH:none` uses) there:
both tools then run identical networks, and speed does not depend on the weights.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ARCH = "ViT-B-32-256"
SPEC = f"{ARCH}:none"  # what clipsearch indexes with: the same random weights (seed 0)
MODEL_SUBDIR = "ViT-B-32-256-datacomp_s34b_b86k"
DEFAULT_HOME = Path(os.environ.get("CLIPSEARCH_BENCH_HOME", Path.home() / ".cache" / "clipsearch-bench"))


def venv(home: Path = DEFAULT_HOME) -> Path:
    """The rclip executable, installing rclip into its own venv the first time."""
    env_dir = home / "rclip-venv"
    exe = env_dir / "bin" / "rclip"
    if not exe.exists():
        print(f"setting up rclip in {env_dir} (once) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
        subprocess.run([str(env_dir / "bin" / "pip"), "install", "-q", "rclip"], check=True)
    return exe


def python(home: Path = DEFAULT_HOME) -> Path:
    return venv(home).parent / "python"


def datadir(home: Path = DEFAULT_HOME) -> Path:
    """$RCLIP_DATADIR with our ONNX export of ViT-B-32-256 (random weights) in rclip's layout."""
    root = home / "rclip-data"
    model_dir = root / MODEL_SUBDIR
    if (model_dir / "visual.onnx").is_file() and (model_dir / "textual.onnx").is_file():
        return root
    import open_clip
    import torch
    from open_clip.tokenizer import default_bpe

    print(f"exporting {ARCH} (random weights) to ONNX for rclip in {model_dir} (once) ...", file=sys.stderr)
    model_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)  # as clipsearch's ARCH:none
    model = open_clip.create_model(ARCH, pretrained=None).eval().requires_grad_(False)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size

    class Visual(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return model.encode_image(x)

    class Textual(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return model.encode_text(x)

    batch = torch.export.Dim("batch", min=1, max=1024)
    # The dynamo exporter: the TorchScript one cannot export the fused attention of nn.MultiheadAttention.
    torch.onnx.export(Visual().eval(), (torch.zeros(2, 3, size, size),), str(model_dir / "visual.onnx"), dynamo=True,
                      input_names=["input"], output_names=["output"], dynamic_shapes={"x": {0: batch}})
    torch.onnx.export(Textual().eval(), (torch.zeros(2, 77, dtype=torch.int64),), str(model_dir / "textual.onnx"),
                      dynamo=True, input_names=["input"], output_names=["output"], dynamic_shapes={"x": {0: batch}})
    (root / "tokenizer").mkdir(exist_ok=True)
    shutil.copy(default_bpe(), root / "tokenizer" / "bpe_simple_vocab_16e6.txt.gz")
    return root


def env(home: Path = DEFAULT_HOME) -> dict[str, str]:
    """The environment rclip runs in: our data dir, offline (a download attempt fails at once)."""
    return {**os.environ, "RCLIP_DATADIR": str(datadir(home)), "HF_HUB_OFFLINE": "1"}
