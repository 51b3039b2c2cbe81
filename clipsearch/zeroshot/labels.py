"""A label set embedded by a model's text tower, and photos ranked against it.

A label's vector is CLIP's zero-shot classifier weight (open_clip's ``build_zero_shot_classifier``):
each template filled with the label, embedded, normalised, averaged, normalised again. Photos are
ranked by cosine; a label's probability is the softmax over the set of the cosines times the model's
own logit scale (what the model was trained to turn into probabilities over captions).
Embedded sets are cached per model fingerprint, labels and templates: a vocabulary of a thousand
labels is embedded once per model, then read in milliseconds.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from clipsearch.location import default_cache_dir
from clipsearch.zeroshot import templates as prompt
from clipsearch.zeroshot import vocabulary

if TYPE_CHECKING:
    import numpy as np

_TEXTS_PER_CALL = 1024


class TextTower(Protocol):
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class LabelScore:
    label: str
    score: float  # cosine between the photo and the label's vector
    probability: float  # softmax over the label set at the model's logit scale

    def as_dict(self) -> dict[str, object]:
        return {"label": self.label, "score": round(self.score, 6), "probability": round(self.probability, 6)}


def _cache_file(fingerprint: str, labels: list[str], templates: tuple[str, ...]) -> os.PathLike[str]:
    model = hashlib.sha256(fingerprint.encode()).hexdigest()[:24]
    return default_cache_dir() / "labels" / model / f"{vocabulary.key(labels, templates)}.npy"


def embed_labels(labels: list[str], templates: tuple[str, ...], tower: TextTower, fingerprint: str,
                 on_progress: Callable[[int], None] | None = None) -> np.ndarray:
    """(len(labels), dim) unit vectors, from the cache when this model embedded this set before."""
    import numpy as np

    cached = _cache_file(fingerprint, labels, templates)
    try:
        matrix = np.load(cached, allow_pickle=False)
        if matrix.shape[0] == len(labels):
            return matrix
    except (OSError, ValueError):
        pass
    texts = [prompt.fill(t, label) for label in labels for t in templates]
    parts = []
    for start in range(0, len(texts), _TEXTS_PER_CALL):
        parts.append(np.asarray(tower.encode_texts(texts[start : start + _TEXTS_PER_CALL]), dtype="float32"))
        if on_progress is not None:
            on_progress(min(start + _TEXTS_PER_CALL, len(texts)) // len(templates))
    rows = np.concatenate(parts).reshape(len(labels), len(templates), -1).mean(axis=1)
    matrix = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype("float32")
    try:
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        tmp = f"{cached}.{os.getpid()}.tmp.npy"
        np.save(tmp, matrix)
        os.replace(tmp, cached)
    except OSError:
        pass  # no cache: embedded again next time
    return matrix


class Classifier:
    """Labels with their vectors and the model's logit scale."""

    def __init__(self, labels: list[str], matrix: np.ndarray, logit_scale: float) -> None:
        self.labels = labels
        self.matrix = matrix
        self.logit_scale = float(logit_scale)

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """(photos, labels) cosines."""
        import numpy as np

        return np.asarray(vectors, dtype="float32").reshape(-1, self.matrix.shape[1]) @ self.matrix.T

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        """Softmax over the labels of ``logit_scale * scores``, row by row (in float64: no overflow at any scale)."""
        import numpy as np

        logits = self.logit_scale * scores.astype("float64")
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)

    def rank(self, vectors: np.ndarray, top: int | None = None) -> list[list[LabelScore]]:
        """Each photo's labels, most probable first (``top`` of them, or all)."""
        import numpy as np

        scores = self.scores(vectors)
        probs = self.probabilities(scores)
        keep = len(self.labels) if top is None else max(1, min(top, len(self.labels)))
        ranked = []
        for row_scores, row_probs in zip(scores, probs):
            order = np.argsort(-row_scores, kind="stable")[:keep]
            ranked.append([LabelScore(self.labels[j], float(row_scores[j]), float(row_probs[j])) for j in order])
        return ranked
