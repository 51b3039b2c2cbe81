"""Searching the words of photos (``clipsearch.store.words``): ``search --text`` alone, and beside the meaning.

    words     what the user typed: words, each found anywhere (inside longer words too, any case, any accents),
              and "quoted phrases", found exactly as written (after the same folding)
    fuse      a plain search's two rankings as one: reciprocal rank fusion (Cormack et al. 2009), each photo
              scored 1/(K + rank) in each list it is in, so a photo whose words match and that looks right comes
              first, and one found by either alone comes next; equal scores go to the word match

The FTS5 table is a trigram index, which matches fragments of three characters or more; a shorter word (a "5",
"on") is checked as a fragment of the row's text instead (a scan, only when there is no longer word to narrow by).
bench/words.py measures recall@1 through both.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from clipsearch.errors import UserError
from clipsearch.store.words import fold
from search.query import Hit

if TYPE_CHECKING:
    import numpy as np

    from clipsearch.store import StoreReader
    from search.query import Query

K = 60  # the constant of reciprocal rank fusion, as its paper and most hybrid search engines set it
MAX_WORDS = 32  # words and phrases in one query
_TOKEN = re.compile(r'"([^"]*)"|(\S+)')
_EDGE = "\"'`.,;:!?()[]{}<>«»“”„‘’"


@dataclass(frozen=True)
class Words:
    """A words query, folded: ``match`` the FTS5 expression (None: every word is too short for it), ``like`` the
    fragments checked one by one."""

    match: str | None
    like: tuple[str, ...]
    parts: tuple[str, ...] = ()  # every word and phrase, folded

    @classmethod
    def parse(cls, text: str, strict: bool = True) -> Words | None:
        """None when there is nothing to look for (only punctuation); ``strict``: say so as a user error."""
        parts: list[str] = []
        for phrase, word in _TOKEN.findall(text):
            folded = fold(phrase if phrase else word.strip(_EDGE))
            if folded:
                parts.append(folded)
        if not parts:
            if strict:
                raise UserError("--text needs words to look for")
            return None
        if len(parts) > MAX_WORDS:
            raise UserError(f"--text takes at most {MAX_WORDS} words and phrases, not {len(parts)}")
        long = [p for p in parts if len(p) >= 3]
        short = tuple(p for p in parts if len(p) < 3)
        match = " AND ".join('"' + p.replace('"', '""') + '"' for p in long) if long else None
        return cls(match, short, tuple(parts))


def placed(store: StoreReader, hits: list[Hit], text: str | None) -> list[Hit]:
    """``search --text`` hits with a video among them: the video at the moment that showed the words (the one whose
    lines, each kept at the first moment it was read: ``indexer.words``, hold the most of them; the earliest of
    equals), where its words matched in its frames (else, in its name or carried words, as it was)."""
    words = Words.parse(text, strict=False) if text else None
    videos = [h.id for h in hits if "t" in h.meta]
    if words is None or not videos:
        return hits
    seen = store.catalog.words.seen_of_ids(videos)
    out = []
    for hit in hits:
        held: dict[float, int] = {}
        for line in seen.get(hit.id, {}).get("boxes", []):
            if "t" in line:
                folded = fold(line["text"])
                held[line["t"]] = held.get(line["t"], 0) + sum(part in folded for part in words.parts)
        best = min(held, key=lambda t: (-held[t], t)) if held else None
        found = best is not None and held[best] > 0
        out.append(Hit(hit.rank, hit.path, hit.score, hit.id, {**hit.meta, "t": best}) if found else hit)
    return out


def fuse(meaning: Sequence[int], words: Sequence[int]) -> list[int]:
    """The ids of both rankings (best first) in their fused order (see the module's docstring)."""
    scores: dict[int, float] = {}
    word_rank: dict[int, int] = {}
    for rank, file_id in enumerate(words, start=1):
        scores[file_id] = scores.get(file_id, 0.0) + 1.0 / (K + rank)
        word_rank[file_id] = rank
    for rank, file_id in enumerate(meaning, start=1):
        scores[file_id] = scores.get(file_id, 0.0) + 1.0 / (K + rank)
    return sorted(scores, key=lambda i: (-scores[i], word_rank.get(i, len(words) + 1), i))


MAX_MATCHES = 100_000  # word matches ranked for one answer: past any page a person or the server asks for


def narrowed(store: StoreReader, text: str, passing: list[tuple[int, str | None]] | None,
             dates: bool) -> list[tuple[int, str | None]]:
    """(id, date taken) of the files whose words match ``text``, best first, among ``passing`` (None: every file);
    the dates from ``passing``, else read when ``dates``."""
    words = Words.parse(text)
    assert words is not None
    ids = store.catalog.words.matching(words.match, words.like, MAX_MATCHES)
    if passing is not None:
        kept = dict(passing)
        return [(i, kept[i]) for i in ids if i in kept]
    taken = {i: m["taken"] for i, m in store.catalog.metadata.of_ids(ids).items()} if dates else {}
    return [(i, taken.get(i)) for i in ids]


def hybrid(store: StoreReader, query: Query, vector: np.ndarray, allowed: Sequence[int] | None,
           nearest: Callable[[int, int, Sequence[int] | None, set[int]], list[Hit]]) -> list[Hit]:
    """A plain search's page: the meaning's ranking (``nearest(k, offset, allowed, excluded)``) fused with the
    words' where the query's words match any photo's (``fuse``), else the meaning's alone. Each hit keeps its
    cosine score (from its stored vector for a photo found by its words alone): ``score`` means what it did. A query
    that holds an image or a photo (``like``) is arithmetic on vectors: its ranking is the meaning's alone."""
    plain = all(t.kind == "text" for t in query.terms)
    typed = " ".join(str(t.value) for t in query.terms if t.kind == "text" and t.weight > 0) if plain else ""
    words = Words.parse(typed, strict=False) if typed and query.text is None else None
    needed = query.k + query.offset
    catalog = store.catalog
    found = catalog.words.matching(words.match, words.like, needed + len(query.excluded)) if words else []
    if found and words and catalog.words.matching(words.match, words.like, (common := catalog.count() // 2) + 1, True) > common:
        found = []  # words that half the photos hold ("photo" in a folder of photos) tell nothing apart
    if allowed is not None and found:
        passing = set(allowed)
        found = [i for i in found if i in passing]
    found = [i for i in found if i not in query.excluded][:needed]
    if not found:
        return nearest(query.k, query.offset, allowed, query.excluded)
    by_meaning = nearest(needed, 0, allowed, query.excluded)
    scores = {h.id: h.score for h in by_meaning}
    missing = [i for i in found if i not in scores]
    for ids, matrix in store.vectors.iter_vectors(missing) if missing else ():
        scores.update(zip(ids.tolist(), (matrix @ vector).tolist()))
    order = [i for i in fuse([h.id for h in by_meaning], found) if i in scores][query.offset : needed]
    paths = store.catalog.paths(order)
    return [Hit(rank, paths[i], scores[i], i) for rank, i in enumerate(order, start=query.offset + 1) if i in paths]
