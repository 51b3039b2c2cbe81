"""Measure the demo model on held-out renderings, and how it degrades with blur and with small shapes.

    python data/demo_model/evaluate.py [--model demo] [--per-class 3] [--json]

Prints precision@3 for every "a {colour} {shape}" query, zero-shot accuracy
over the 54 classes, and both again at pinned blur radii and shape sizes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent))

import numpy as np  # noqa: E402
import shapes  # noqa: E402

EVAL_SEED = 7


def measure(encoder, per_class: int, seed: int, **pinned: float) -> dict[str, float]:  # noqa: ANN001
    import torch

    rng = np.random.default_rng(seed)
    labels, pixels = [], []
    for index, (colour, shape) in enumerate(shapes.CLASSES):
        for _ in range(per_class):
            image, _ = shapes.render(colour, shape, rng, **pinned)
            pixels.append(encoder.image_transform(image))
            labels.append(index)
    images = encoder.encode_images(torch.stack(pixels))
    texts = encoder.encode_texts([f"a {c} {s}" for c, s in shapes.CLASSES])
    labels_arr = np.array(labels)
    sims = texts @ images.T
    top = np.argsort(-sims, axis=1)[:, :per_class]
    precision = float((labels_arr[top] == np.arange(len(shapes.CLASSES))[:, None]).mean())
    accuracy = float(((images @ texts.T).argmax(axis=1) == labels_arr).mean())
    return {"precision_at_3": round(precision, 4), "zero_shot_accuracy": round(accuracy, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--per-class", type=int, default=3)
    parser.add_argument("--seed", type=int, default=EVAL_SEED)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from clipsearch.encoders import load_encoder

    encoder = load_encoder(args.model, device="cpu", precision="fp32")
    report: dict[str, object] = {"held_out": measure(encoder, args.per_class, args.seed)}
    report["blur"] = {str(b): measure(encoder, args.per_class, args.seed, blur=b) for b in (0.0, 1.0, 2.0, 3.0, 4.0)}
    report["size_fraction"] = {str(f): measure(encoder, args.per_class, args.seed, size_fraction=f)
                               for f in (0.05, 0.08, 0.12, 0.2, 0.3, 0.4)}
    if args.json:
        print(json.dumps(report))
        return
    print(f"held-out (seed {args.seed}, {args.per_class} per class): {report['held_out']}")
    print("blur radius (px at 64 px) -> precision@3 / zero-shot accuracy")
    for key, value in report["blur"].items():  # type: ignore[union-attr]
        print(f"  {key:>5}: {value['precision_at_3']:.3f} / {value['zero_shot_accuracy']:.3f}")
    print("shape radius / shorter side -> precision@3 / zero-shot accuracy")
    for key, value in report["size_fraction"].items():  # type: ignore[union-attr]
        print(f"  {key:>5}: {value['precision_at_3']:.3f} / {value['zero_shot_accuracy']:.3f}")


if __name__ == "__main__":
    main()
