"""The rule that turns a photo's label scores into its tags.

A flat cosine cutoff does not carry from one model to another: cosines between photos and texts
sit near 0.2-0.35 for OpenAI's CLIP, elsewhere for MetaCLIP, SigLIP or the demo model, and shift
with the vocabulary. The rule is therefore stated in the one unit every CLIP-family model is
trained to be calibrated in: the probability of a label among the vocabulary, the softmax of the
cosines times the model's own logit scale (``labels.Classifier``). A label becomes a tag when

    probability >= max(MIN_PROBABILITY, 2 / labels), keeping at most MAX_TAGS per photo, most probable first.

(Twice a uniform share, for small vocabularies: among 15 labels a model that knows nothing still gives
one label 0.103 now and then.)

What it does: a photo whose vocabulary has one clearly right label gets it; two or three labels
that share the mass (a beach and the sea) all pass; a photo the vocabulary does not describe spreads
its mass thin and gets no tag (as does every photo under a model that knows nothing: random weights
give at most 0.03 over 54 labels). What it costs: labels that are near-synonyms split their mass, so
a vocabulary should name each concept once (the built-in one does). Measured precision and recall
(demo model, held-out renderings): tests/test_tags.py and bench/zeroshot.py; figures in docs/benchmarks.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from clipsearch.zeroshot.labels import Classifier

MIN_PROBABILITY = 0.1
MAX_TAGS = 5
RULE_VERSION = 2  # part of the tags' key: a change of rule re-tags every photo (from stored vectors)


def assign(classifier: Classifier, vectors: np.ndarray) -> list[list[tuple[int, float]]]:
    """Each photo's tags as (label index, probability), most probable first."""
    import numpy as np

    probabilities = classifier.probabilities(classifier.scores(vectors))
    threshold = max(MIN_PROBABILITY, 2 / len(classifier.labels))
    rows, cols = np.nonzero(probabilities >= threshold)  # few per photo: the rest is never looked at one by one
    values = probabilities[rows, cols]
    order = np.lexsort((cols, -values, rows))
    tags: list[list[tuple[int, float]]] = [[] for _ in range(len(probabilities))]
    for row, col, value in zip(rows[order].tolist(), cols[order].tolist(), values[order].tolist()):
        if len(tags[row]) < MAX_TAGS:
            tags[row].append((col, value))
    return tags
