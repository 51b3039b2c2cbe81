"""The model an open index was built with, loaded on first use, and what it makes of a query's terms: a text's vector
(from the exported text tower when there is one, so a cold CLI search never imports torch), an image's (decoded
exactly as the indexer decodes photos). The searcher (``search.engine``) keeps it in step with the snapshot it reads.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipsearch.errors import UserError
from search.query import Term

if TYPE_CHECKING:
    import numpy as np

    from clipsearch.encoders import Encoder
    from clipsearch.encoders.onnx_text import OnnxTextEncoder
    from clipsearch.store import ModelRecord

HOLD_IN_PREPARE = "CLIPSEARCH_HOLD_IN_PREPARE"  # tests: PATH; ``prepare`` touches PATH.reached, waits for PATH


class QueryModel:
    """One index's model for queries; thread-safe where a server needs it (``encoder``, ``prepare``)."""

    def __init__(self, model: ModelRecord, device: str = "auto", precision: str = "auto", resident: bool = False) -> None:
        self.model = model  # the record of the model this index's vectors are of (``follow`` moves it)
        self._device = device
        self._precision = precision
        self._encoder: Encoder | None = None
        self._fast_text: OnnxTextEncoder | bool | None = None  # None: not looked for yet; False: none
        self._resident = resident  # a long-lived process (the server): optimise for many queries
        self._loading = threading.Lock()  # the model's load, and the pictures ``prepare`` made
        self._pictures: dict[tuple[str, bytes], Any] = {}  # (model fingerprint, image digest) -> batch of one

    def follow(self, model: ModelRecord) -> None:
        """The index's vectors are of ``model`` now (a --reindex swapped them): a model loaded before is dropped."""
        if model != self.model:
            self.model, self._encoder, self._fast_text = model, None, None

    @property
    def encoder(self) -> Encoder:
        """The model, loaded once; thread-safe, so that a server can load it outside its lock (``prepare``)."""
        encoder = self._encoder
        if encoder is None:
            with self._loading:
                model = self.model
                encoder = self._encoder if self._encoder is not None else self._load(model)
                if self.model is model:  # not switched (--reindex) while it loaded: it is the current one
                    self._encoder = encoder
        return encoder

    def _load(self, model: ModelRecord) -> Encoder:
        from clipsearch.encoders import load_encoder

        encoder = load_encoder(model.spec, self._device, self._precision)
        if model.fingerprint and encoder.fingerprint != model.fingerprint:
            raise UserError(f"the model {model.spec} no longer matches the one this index was built with "
                            "(its weights or preprocessing changed): re-index with --reindex")
        return encoder

    def prepare(self, terms: Sequence[Term]) -> None:
        """What a query needs that takes long and touches no store: the model loaded, uploaded images decoded.
        A server calls it outside its lock, so a model's first load or a huge upload holds up no other request
        (tests/test_server_trust.py holds a request here); ``embed`` then finds both ready."""
        images = [t for t in terms if t.kind == "image"]
        if not images and (all(t.kind != "text" for t in terms) or self.has_fast_text()):
            return
        encoder = self.encoder
        for term in images:
            picture = self._picture(encoder, term.value, term.label)  # type: ignore[arg-type]
            with self._loading:
                self._pictures[(encoder.fingerprint, _digest(term.value))] = picture  # type: ignore[arg-type]
                while len(self._pictures) > 8:  # a request that failed after its prepare left its picture
                    self._pictures.pop(next(iter(self._pictures)))
        if images and (hold := os.environ.get(HOLD_IN_PREPARE)):
            Path(hold + ".reached").touch()
            while not os.path.exists(hold):
                time.sleep(0.01)

    def embed_text(self, text: str) -> np.ndarray:
        """A text query's vector: from the exported text tower on onnxruntime when there is one and
        the model is not loaded already (a cold CLI search then never imports torch), else from the model."""
        if not text.strip():
            raise UserError("the query is empty")
        on_cpu = self._encoder is None or self._encoder.device == "cpu"  # a model on a GPU beats the CPU export
        if on_cpu and self.has_fast_text():
            return self._fast_text.encode_texts([text])[0]  # type: ignore[union-attr]
        return self.encoder.encode_texts([text])[0]

    def text_tower(self) -> OnnxTextEncoder | Encoder:
        """What embeds many texts (labels) for this index: as ``embed_text`` chooses, for a batch."""
        on_cpu = self._encoder is None or self._encoder.device == "cpu"
        if on_cpu and self.has_fast_text():
            return self._fast_text  # type: ignore[return-value]
        return self.encoder

    def has_fast_text(self) -> bool:
        """Whether text queries run on the exported text tower (no model load needed for them)."""
        if self._fast_text is None and self._device in ("auto", "cpu") and self._precision == "auto":
            from clipsearch.encoders import onnx_text

            self._fast_text = onnx_text.load(self.model.fingerprint, self._resident) or False
        return bool(self._fast_text)

    def prepare_fast_text(self, quiet: bool = False) -> None:
        """Export the text tower if this search had to load the model (once per model; see onnx_text)."""
        from clipsearch.encoders import onnx_text

        if self._encoder is not None and not self._fast_text and onnx_text.export_enabled():
            self._encoder.export_text_tower(quiet=quiet)

    def embed_image(self, path: str) -> np.ndarray:
        """Embed a query image file exactly as the indexer embeds photos."""
        term = Term.image_file(path)
        return self.embed_image_bytes(term.value, term.label)  # type: ignore[arg-type]

    def embed_image_bytes(self, data: bytes, label: str = "the uploaded image") -> np.ndarray:
        encoder = self.encoder
        picture = self._pictures.pop((encoder.fingerprint, _digest(data)), None)  # made by ``prepare``
        return encoder.encode_images(picture if picture is not None else self._picture(encoder, data, label))[0]

    @staticmethod
    def _picture(encoder: Encoder, data: bytes, label: str) -> Any:
        """A query image as the model takes it: a batch of one, decoded exactly as the indexer decodes photos."""
        import torch

        from clipsearch import images

        try:
            decoded = images.decode(data, encoder.image_size)
        except images.ImageError as exc:
            raise UserError(f"cannot use {label} as a query image: {exc}") from None
        return torch.stack([encoder.image_transform(decoded.image)])


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()
