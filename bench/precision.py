"""Images/s of a model's image tower per precision, against fp32 measured in the same run.

    python bench/precision.py [--model ViT-B-32-quickgelu:none] [--batch 32] [--seconds 10]

Random weights cost what pretrained ones cost, so this runs offline. Prints one
row per precision with images/s, the ratio to fp32, and the worst cosine of its
embeddings against fp32's on the same batch.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-32-quickgelu:none")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    import numpy as np
    import torch

    from clipsearch.encoders import load_encoder

    torch.manual_seed(0)
    precisions = ["fp32", "bf16"] + (["fp16"] if torch.cuda.is_available() else [])
    rows, reference = [], None
    for precision in precisions:
        encoder = load_encoder(args.model, device=args.device, precision=precision)
        batch = torch.randn(args.batch, 3, encoder.image_size, encoder.image_size)
        out = encoder.encode_images(batch)  # warm-up, and the embeddings to compare
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < args.seconds:
            encoder.encode_images(batch)
            done += args.batch
        rate = done / (time.perf_counter() - started)
        reference = out if reference is None else reference
        worst = float(np.min(np.sum(out * reference, axis=1)))
        rows.append((precision, rate, worst))
    base = rows[0][1]
    print(f"{args.model} on {encoder.device}, batch {args.batch}")
    print(f"{'precision':>9}  {'images/s':>9}  {'x fp32':>7}  {'min cosine vs fp32':>18}")
    for precision, rate, worst in rows:
        print(f"{precision:>9}  {rate:9.1f}  {rate / base:7.2f}  {worst:18.4f}")


if __name__ == "__main__":
    main()
