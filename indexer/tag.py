"""The tag stage: after the write stage, every stored content without current tags gets them.

Tags come from the stored vectors times the vocabulary's label matrix (``clipsearch.zeroshot``),
so tagging never decodes a photo: new and changed photos are tagged by the run that embedded them,
and an index that has none (made before tags existed, or whose vocabulary or model changed) is
tagged whole by its next run. Each block is committed: a killed run keeps what it tagged, and the
next run tags the rest. The label matrix comes from the cache, else from the model's text tower:
the loaded model, else the exported one (onnxruntime), else the model is loaded for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from clipsearch.errors import UserError
from clipsearch.zeroshot import tagging, templates, vocabulary

if TYPE_CHECKING:
    import numpy as np

    from clipsearch.encoders import Encoder
    from clipsearch.store import StoreWriter
    from clipsearch.zeroshot.labels import Classifier, TextTower
    from indexer.report import Report

TEMPLATES = templates.PHOTO
BLOCK = 8192  # contents tagged per commit


def tags_key(fingerprint: str, labels: list[str]) -> str:
    """What tags depend on: the model, the labels and templates, the rule."""
    parts = (fingerprint, vocabulary.key(labels, TEMPLATES), str(tagging.RULE_VERSION))
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:24]


class TagStage:
    """``loaded`` gives the run's model if it loaded one (else None); ``load`` loads it."""

    def __init__(self, store: StoreWriter, loaded: Callable[[], Encoder | None], load: Callable[[], Encoder],
                 report: Report) -> None:
        self.store = store
        self.loaded = loaded
        self.load = load
        self.report = report

    def run(self) -> None:
        model = self.store.catalog.model
        if model is None or self.store.catalog.pending_model is not None:  # tags come from the vectors searches use
            return
        recorded = self.store.catalog.meta("vocabulary") or "builtin"
        try:
            labels = vocabulary.labels_for(recorded)
        except UserError as exc:  # the vocabulary file went away: keep the tags there are
            self.report.notes.append(f"photos were not tagged: {exc}")
            return
        if labels is None:  # --vocabulary none
            self.store.retag_unless("none")
            return
        self.store.retag_unless(tags_key(model.fingerprint, labels))
        names = [vocabulary.tag_name(label) for label in labels]
        classifier: Classifier | None = None
        for digests, vectors in self.store.untagged(BLOCK):
            if classifier is None:
                classifier = self._classifier(labels, model.fingerprint)
            self._store(classifier, names, digests, vectors)

    def _store(self, classifier: Classifier, names: list[str], digests: list[bytes], vectors: np.ndarray) -> None:
        found = tagging.assign(classifier, vectors)
        self.store.put_tags([(digest, [(names[j], p) for j, p in picked]) for digest, picked in zip(digests, found)])
        self.store.commit()
        self.report.tagged += len(digests)

    def _classifier(self, labels: list[str], fingerprint: str) -> Classifier:
        from clipsearch.zeroshot.labels import Classifier, embed_labels

        matrix = embed_labels(labels, TEMPLATES, _TextTower(self.loaded, self.load, fingerprint), fingerprint)
        return Classifier(labels, matrix, self._logit_scale())

    def _logit_scale(self) -> float:
        recorded = self.store.catalog.meta("logit_scale")
        if recorded is not None:
            return float(recorded)
        encoder = self.loaded() or self.load()  # an index from before tags: its model says, once
        self.store.remember("logit_scale", repr(encoder.logit_scale))
        return encoder.logit_scale


class _TextTower:
    """The cheapest text tower at hand, found only if the label matrix is not cached."""

    def __init__(self, loaded: Callable[[], Encoder | None], load: Callable[[], Encoder], fingerprint: str) -> None:
        self.loaded, self.load, self.fingerprint = loaded, load, fingerprint
        self._tower: TextTower | None = None

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        if self._tower is None:
            from clipsearch.encoders import onnx_text

            self._tower = self.loaded() or onnx_text.load(self.fingerprint) or self.load()
        return self._tower.encode_texts(texts)
