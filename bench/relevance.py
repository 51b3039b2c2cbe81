"""The relevance cutoff against flat cutoffs, on held-out renderings the demo model never saw.

    python bench/relevance.py [--per-class 4]

For each of the 54 "a {colour} {shape}" queries the right answers are the renderings of that class. The
adaptive rule (``search.relevance``) is tuned on one seed's renderings (a grid of SHARE x MIN_SPREADS) and
measured on another's, next to the best single ``--min-score`` found on the tuning seed and the best one in
hindsight on the measuring seed (the most a flat cutoff could do). Precision and recall are averaged over the
queries (a query that returns nothing has precision 1 if it has nothing to find, else 0).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "data" / "demo_model"))

import shapes  # noqa: E402

TUNE_SEED, MEASURE_SEED = 1111, 2222


def embed(encoder, seed: int, per_class: int, **pinned: float) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    import torch

    rng = np.random.default_rng(seed)
    pixels, labels = [], []
    for index, (colour, shape) in enumerate(shapes.CLASSES):
        for _ in range(per_class):
            pixels.append(encoder.image_transform(shapes.render(colour, shape, rng, **pinned)[0]))
            labels.append(index)
    return encoder.encode_images(torch.stack(pixels)), np.array(labels)


def score(keep: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Mean precision and recall over queries (rows)."""
    hits = (keep & truth).sum(1)
    precision = np.where(keep.sum(1) > 0, hits / np.maximum(keep.sum(1), 1), 1.0)
    recall = hits / truth.sum(1)
    return float(precision.mean()), float(recall.mean())


def adaptive(scores: np.ndarray, share: float, spreads: float) -> np.ndarray:
    from search import relevance

    keep = np.zeros_like(scores, dtype=bool)
    for q, row in enumerate(scores):
        cut = relevance.cutoff(float(row.max()), row, share, spreads)  # the collection is its own background here
        if cut.score is not None:
            keep[q] = row >= cut.score
    return keep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=4)
    args = parser.parse_args()
    from clipsearch.encoders import load_encoder
    from search import relevance

    encoder = load_encoder("demo", device="cpu", precision="fp32")
    texts = encoder.encode_texts([f"a {c} {s}" for c, s in shapes.CLASSES])
    sets = {}
    for name, seed, pinned in (("tune", TUNE_SEED, {}), ("measure", MEASURE_SEED, {}),
                               ("blurred", MEASURE_SEED, {"blur": 2.5}), ("small", MEASURE_SEED, {"size_fraction": 0.12})):
        vectors, labels = embed(encoder, seed, args.per_class, **pinned)
        sets[name] = (texts @ vectors.T, labels[None, :] == np.arange(len(shapes.CLASSES))[:, None])

    grid = [(share, spreads) for share in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8) for spreads in (1.0, 2.0, 3.0, 4.0)]
    tuned = {g: score(adaptive(sets["tune"][0], *g), sets["tune"][1]) for g in grid}
    best = max(grid, key=lambda g: sum(tuned[g]))
    flat = np.round(np.arange(-0.2, 1.0, 0.01), 2)
    flat_tuned = {t: score(sets["tune"][0] >= t, sets["tune"][1]) for t in flat}
    flat_best = max(flat, key=lambda t: sum(flat_tuned[t]))
    print(f"{len(shapes.CLASSES)} queries, {args.per_class} renderings per class")
    print(f"tuning seed {TUNE_SEED}: best SHARE={best[0]}, MIN_SPREADS={best[1]}: precision, recall "
          f"{tuned[best][0]:.3f}, {tuned[best][1]:.3f}; best flat --min-score {flat_best}: "
          f"{flat_tuned[flat_best][0]:.3f}, {flat_tuned[flat_best][1]:.3f}")
    rule = (relevance.SHARE, relevance.MIN_SPREADS)
    for name, what in (("measure", f"seed {MEASURE_SEED}"), ("blurred", f"seed {MEASURE_SEED}, blur 2.5 px"),
                       ("small", f"seed {MEASURE_SEED}, shapes at 0.12 of the picture")):
        scores, truth = sets[name]
        flat_here = {t: score(scores >= t, truth) for t in flat}
        hindsight = max(flat, key=lambda t: sum(flat_here[t]))
        p, r = score(adaptive(scores, *rule), truth)
        print(f"{what}: --relevant (SHARE={rule[0]}, MIN_SPREADS={rule[1]}) {p:.3f}, {r:.3f}; "
              f"--min-score {flat_best} (tuned) {flat_here[flat_best][0]:.3f}, {flat_here[flat_best][1]:.3f}; "
              f"--min-score {hindsight} (best in hindsight) {flat_here[hindsight][0]:.3f}, {flat_here[hindsight][1]:.3f}")


if __name__ == "__main__":
    main()
