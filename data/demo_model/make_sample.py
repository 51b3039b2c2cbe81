"""Write data/sample/: one rendered picture per colour x shape, named by what it shows, in mixed formats.

    python data/demo_model/make_sample.py

The file names let a reader check a search by eye (``clipsearch search "a red star"``
should list red-star.jpg first). The seed differs from training and evaluation.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import shapes  # noqa: E402

SAMPLE_SEED = 31337
FORMATS = ("jpg", "jpg", "jpg", "png", "webp", "jpg")


def main(out: Path = HERE.parent / "sample") -> None:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SAMPLE_SEED)
    for i, (colour, shape) in enumerate(shapes.CLASSES):
        image, _ = shapes.render(colour, shape, rng)
        ext = FORMATS[i % len(FORMATS)]
        path = out / f"{colour}-{shape}.{ext}"
        image.save(path, **({"quality": 88} if ext in ("jpg", "webp") else {}))
    print(f"wrote {len(shapes.CLASSES)} images to {out}")


if __name__ == "__main__":
    main()
