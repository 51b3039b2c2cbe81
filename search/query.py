"""A question to the index, as data: what to look for (terms), where (filters), and which page of the answer.

The CLI and the server both build a ``Query`` and hand it to ``Searcher.answer``, which embeds the
terms with the model of the snapshot it searches, turns the filters into the ids allowed, and
returns ``Hit``s. Terms are weighted and summed into one unit vector, so a query may hold several.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clipsearch.errors import UserError
from search.filters import Filters

if TYPE_CHECKING:
    import numpy as np

TERM_KINDS = ("text", "image", "like")
SORTS = ("relevance", "date", "-date")
MAX_K = 10_000  # hits in one answer, for the CLI and the server alike
MAX_OFFSET = 100_000


def check_page(k: int, offset: int) -> None:
    """The page an answer may be: the same limits for the CLI, the server and a search by vector."""
    if not 1 <= k <= MAX_K:
        raise UserError(f"k (how many results) must be between 1 and {MAX_K:,}")
    if not 0 <= offset <= MAX_OFFSET:
        raise UserError(f"the offset must be between 0 and {MAX_OFFSET:,}")


@dataclass(frozen=True)
class Term:
    """Words, an image's bytes, or an indexed photo's id (its stored vector: "more like this")."""

    kind: str
    value: str | bytes | int
    weight: float = 1.0
    label: str = ""  # how messages name it: the image's path, "the uploaded image"

    def __post_init__(self) -> None:
        if self.kind not in TERM_KINDS:
            raise ValueError(f"unknown term kind {self.kind!r}")
        if self.kind == "text" and not str(self.value).strip():
            raise UserError("the query is empty")

    @classmethod
    def text(cls, words: str, weight: float = 1.0) -> Term:
        return cls("text", words, weight)

    @classmethod
    def image(cls, data: bytes, label: str = "the uploaded image", weight: float = 1.0) -> Term:
        if not data:
            raise UserError(f"cannot use {label} as a query image: empty file")
        return cls("image", data, weight, label)

    @classmethod
    def image_file(cls, path: str | os.PathLike[str], weight: float = 1.0) -> Term:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise UserError(f"cannot read query image {path}: {exc.strerror or exc}") from None
        return cls.image(data, str(path), weight)

    @classmethod
    def like(cls, file_id: int | str, weight: float = 1.0) -> Term:
        """An indexed photo's id ("more like this"); the photo itself is left out of the answer."""
        text = str(file_id).strip()
        if not text.isdigit() or len(text) > 18:
            raise UserError(f"like must be a photo id (a number), not {str(file_id)[:40]!r}")
        return cls("like", int(text), weight)


@dataclass(frozen=True)
class Query:
    terms: tuple[Term, ...]
    filters: Filters = field(default_factory=Filters)
    k: int = 10
    offset: int = 0  # skip this many best hits (the next page); ranks still count from the best hit overall
    # relevance (best first); date / -date (oldest / newest first): with terms, the page of best hits in date
    # order; without, every photo that passes the filters, browsed by date
    sort: str = "relevance"
    relevant: bool = False  # only the matches that stand out for this query (``search.relevance``)
    min_score: float | None = None  # only matches scoring at least this (a flat cutoff)
    text: str | None = None  # only photos whose words match (``search.words``); alone, ranked by how well they do

    def __post_init__(self) -> None:
        if self.sort not in SORTS:
            raise UserError(f"sort must be one of {', '.join(SORTS)}, not {self.sort[:20]!r}")
        if self.text is not None and not self.terms and (self.relevant or self.min_score is not None):
            raise UserError("--relevant and --min-score cut by a query's score: give words, an image or a photo id "
                            "beside --text")
        if not self.terms and self.sort == "relevance" and self.text is None:
            raise UserError("give something to look for (words, an image or a photo id), or --sort date to browse")
        check_page(self.k, self.offset)
        if self.min_score is not None and not math.isfinite(self.min_score):
            raise UserError(f"the minimum score must be a number, not {self.min_score}")
        if self.min_score is not None and self.min_score > 1:
            raise UserError(f"--min-score {self.min_score:g} keeps nothing: scores are cosines, at most 1 (a photo "
                            "found by itself scores 1)")

    @property
    def excluded(self) -> set[int]:
        """The photos a "more like this" started from: they would only find themselves."""
        return {int(t.value) for t in self.terms if t.kind == "like"}  # type: ignore[arg-type]


def combine(vectors: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """The terms' vectors as one unit vector: their weighted sum, normalised."""
    import numpy as np

    if len(vectors) == 1 and weights[0] > 0:
        return np.asarray(vectors[0], dtype="float32")
    total = np.sum([w * np.asarray(v, dtype="float32") for v, w in zip(vectors, weights)], axis=0)
    norm = float(np.linalg.norm(total))
    if norm < 1e-6:
        raise UserError("the query's terms cancel each other out: nothing is left to look for")
    return (total / norm).astype("float32")


@dataclass(frozen=True)
class Hit:
    rank: int
    path: str
    score: float | None  # cosine similarity of the unit-length query and image embeddings; None when browsing
    id: int  # the file's catalog id: how the server addresses thumbnails and files
    meta: dict[str, Any] = field(default_factory=dict)  # taken, camera, width, height, ... (store.catalog.metadata)

    def as_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "path": self.path, "score": self.score, "id": self.id, **self.meta}
