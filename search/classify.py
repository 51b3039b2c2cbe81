"""Zero-shot classification of photos: files, folders or indexed ids, ranked against labels.

Where the index holds a file as it is now (same size and mtime), its stored vector is used: no
decoding, no image tower. Other files are decoded and embedded exactly as ``index`` does it
(``indexer.pipeline.DecodeEmbed``). Labels are embedded through prompt templates by the model's
text tower (the exported one when there is one, see ``search.engine.Searcher.text_tower``) and
cached per model (``clipsearch.zeroshot.labels``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clipsearch import images
from clipsearch.errors import UserError
from clipsearch.zeroshot.labels import Classifier, LabelScore, TextTower, embed_labels

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from clipsearch.encoders import Encoder
    from search.engine import Searcher


@dataclass
class Classified:
    path: str
    labels: list[LabelScore] = field(default_factory=list)
    id: int | None = None  # the indexed photo's id, when its stored vector answered
    error: str | None = None  # why it could not be classified

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "labels": [s.as_dict() for s in self.labels]}
        if self.id is not None:
            out["id"] = self.id
        if self.error is not None:
            out["error"] = self.error
        return out


def image_files(paths: Sequence[str]) -> Iterator[str]:
    """The image and video files that ``paths`` name: files as given, folders walked as ``index`` walks them."""
    from clipsearch import video
    from indexer.walk import walk

    extensions = images.supported_extensions() | video.EXTENSIONS
    for given in paths:
        path = os.path.abspath(os.path.expanduser(given))
        if os.path.isdir(path):
            yield from (found.path for found in walk(path, extensions))
        elif os.path.exists(path):
            yield path
        else:
            raise UserError(f"no such file or folder: {given}")


class ZeroShot:
    """Vectors for photos and a classifier for labels, from one model: an index's (``searcher``) or one loaded
    for the occasion (``encoder``, where there is no index)."""

    def __init__(self, searcher: Searcher | None = None, encoder: Encoder | None = None) -> None:
        assert (searcher is None) != (encoder is None)
        self.searcher = searcher
        self._encoder = encoder

    @property
    def encoder(self) -> Encoder:
        return self.searcher.query_model.encoder if self.searcher is not None else self._encoder  # type: ignore[return-value]

    @property
    def fingerprint(self) -> str:
        return self.searcher.query_model.model.fingerprint if self.searcher is not None else self.encoder.fingerprint

    def classifier(self, labels: list[str], templates: tuple[str, ...]) -> Classifier:
        return Classifier(labels, self.label_matrix(labels, templates), self.logit_scale())

    def label_matrix(self, labels: list[str], templates: tuple[str, ...]) -> np.ndarray:
        """The labels' vectors through the templates: the text tower's work alone (no store), cached per model."""
        tower: TextTower = self.searcher.query_model.text_tower() if self.searcher is not None else self.encoder
        return embed_labels(labels, templates, tower, self.fingerprint)

    def logit_scale(self) -> float:
        if self.searcher is not None:
            recorded = self.searcher.store.catalog.meta("logit_scale")
            if recorded is not None:
                return float(recorded)
        return self.encoder.logit_scale

    def classify(self, paths: Sequence[str], classifier: Classifier, top: int | None) -> list[Classified]:
        """Each file's labels, in the order of ``paths``; a file that cannot be read says why."""
        import numpy as np

        results = [Classified(path) for path in paths]
        vectors: dict[int, np.ndarray] = {}
        to_embed: list[int] = []
        for at, path in enumerate(paths):
            stored = self._stored(path)
            if stored is None:
                to_embed.append(at)
            else:
                results[at].id, vectors[at] = stored
        vectors.update(self._embedded(paths, to_embed, results))
        ready = sorted(vectors)
        if ready:
            for at, ranked in zip(ready, classifier.rank(np.stack([vectors[at] for at in ready]), top)):
                results[at].labels = ranked
        return results

    def classify_ids(self, ids: Sequence[int], classifier: Classifier, top: int | None) -> list[Classified]:
        """Indexed photos by id (their stored vectors)."""
        import numpy as np

        from clipsearch.errors import NoSuchPhoto

        assert self.searcher is not None
        store = self.searcher.store
        rows = []
        for file_id in ids:
            row, vector = store.catalog.indexed_file(file_id), store.vectors.of_id(file_id)
            if row is None or vector is None:
                raise NoSuchPhoto(f"no indexed photo has id {file_id}")
            rows.append((row, vector))
        ranked = classifier.rank(np.stack([v for _, v in rows]), top)
        return [Classified(row.path, labels, row.id) for (row, _), labels in zip(rows, ranked)]

    def classify_vector(self, vector: np.ndarray, label: str, classifier: Classifier, top: int | None) -> Classified:
        return Classified(label, classifier.rank(vector, top)[0])

    def _stored(self, path: str) -> tuple[int, np.ndarray] | None:
        """The stored vector of ``path`` if the index holds the file as it is now (with the model asked for)."""
        if self.searcher is None:
            return None
        store = self.searcher.store
        row = store.catalog.file_row(path)
        if row is None:
            return None
        try:
            st = os.stat(path)
        except OSError:
            return None
        vector = store.vectors.of_path(path) if (st.st_size, st.st_mtime_ns) == (row.size, row.mtime_ns) else None
        return None if vector is None else (row.id, vector)

    def _embedded(self, paths: Sequence[str], wanted: list[int], results: list[Classified]) -> dict[int, np.ndarray]:
        """Decode and embed the files at ``wanted`` as ``index`` would; failures are noted in ``results``."""
        from indexer.items import Embedded, Failed, Reused, Task
        from indexer.pipeline import DecodeEmbed

        if not wanted:
            return {}
        places: dict[str, list[int]] = {}  # a path given twice is embedded once
        for at in wanted:
            places.setdefault(os.path.abspath(paths[at]), []).append(at)
        by_digest: dict[bytes, np.ndarray] = {}
        digests: dict[str, bytes] = {}
        tasks = []
        for path, where in places.items():
            try:
                tasks.append(Task.for_path(path))
            except OSError as exc:
                for at in where:
                    results[at].error = exc.strerror or str(exc)
        encoder = self.encoder
        with DecodeEmbed(lambda: encoder) as stages:
            for outcome in stages.run(tasks):
                if isinstance(outcome, Failed):
                    for at in places[outcome.task.path]:
                        results[at].error = outcome.error
                elif isinstance(outcome, (Embedded, Reused)):  # Reused: a copy of a file earlier in this list
                    digests[outcome.task.path] = outcome.digest
                    if isinstance(outcome, Embedded):
                        by_digest[outcome.digest] = outcome.vector
        return {at: by_digest[digest] for path, digest in digests.items() for at in places[path]}


def run_classify(files: Sequence[str], labels: list[str], templates: tuple[str, ...], top: int | None,
                 index_dir: Path, model: str | None, device: str, precision: str) -> list[Classified]:
    """``classify`` as the CLI runs it: with the index's model (and its stored vectors) where there is an index and
    no other --model is asked for, else with --model (default: the default model) loaded for the occasion."""
    from clipsearch.encoders import DEFAULT_MODEL, load_encoder, parse_spec
    from clipsearch.store import index_exists
    from search.engine import Searcher

    asked = parse_spec(model) if model is not None else None
    if index_exists(index_dir):
        try:
            searcher = Searcher(index_dir, device=device, precision=precision)
        except UserError:
            if asked is None:
                raise
        else:
            with searcher:
                if asked is None or asked.text == searcher.query_model.model.spec:
                    zero_shot = ZeroShot(searcher=searcher)
                    return zero_shot.classify(files, zero_shot.classifier(labels, templates), top)
    zero_shot = ZeroShot(encoder=load_encoder(asked or parse_spec(DEFAULT_MODEL), device, precision))
    return zero_shot.classify(files, zero_shot.classifier(labels, templates), top)
