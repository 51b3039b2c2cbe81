"""A search as a person asks it, turned into a ``search.query.Query``: the rules the CLI, the server and the
Python API share (one of words, an image or a photo id; the filters; the page), and the notes an empty answer
deserves (an unknown tag, a folder with nothing indexed under it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from clipsearch.errors import UserError

if TYPE_CHECKING:
    from search.engine import Searcher
    from search.filters import Filters
    from search.query import Query, Term


@dataclass(frozen=True)
class Wording:
    """How a front end names the three kinds of question and the browse, in the one-line error that says to give
    exactly one: the rule is this module's, the words are the CLI's, the API's or the HTTP parameters'."""

    query: str
    image: str
    like: str
    browse: str


CLI_WORDS = Wording("a query", "--image PATH", "--like ID", "--sort date")
HTTP_WORDS = Wording("q (words)", "an image (POST)", "like (a photo id)", "sort=date")


def terms_of(query: str | Sequence[str | Term] | Term | None, image: str | os.PathLike[str] | bytes | None = None,
             like: int | str | None = None, words: Wording = CLI_WORDS, sort: str = "relevance",
             text: str | None = None) -> list[Term]:
    """The terms of one question: exactly one of ``query``, ``image`` (a path or the image's bytes) and ``like``.

    ``query`` is words; or the CLI's arithmetic as separate tokens (``["dog", "+", "beach", "-", "people"]``,
    ``"2:sunset"``, an image file's path, ``"like:12"``); or terms already made (``Term.text``, ``Term.image``,
    ``Term.like``). None of them is needed with ``text`` (``search --text``)."""
    from search import expression
    from search.query import Term

    if isinstance(query, Term):
        given: list[Term] = [query]
    elif isinstance(query, str):
        given = expression.parse([query]) if query.strip() else []
    elif query is not None:
        tokens = list(query)
        if all(isinstance(t, Term) for t in tokens):
            given = list(tokens)  # type: ignore[arg-type]
        elif all(isinstance(t, str) for t in tokens):
            given = expression.parse(tokens)  # type: ignore[arg-type]
        else:
            raise UserError("a query is words, a list of words and operators, or a list of terms: not a mix")
    else:
        given = []
    if sum(bool(x) for x in (given, image is not None, like is not None)) > 1:
        raise UserError(f"give {words.query}, {words.image} or {words.like} (one of them)")
    if image is not None:
        return [Term.image(image) if isinstance(image, bytes) else Term.image_file(image)]
    if like is not None:
        return [Term.like(like)]
    if not given and sort == "relevance" and text is None:
        raise UserError(f"give {words.query}, {words.image} or {words.like} to look for, or {words.browse} to browse")
    return given


def make_query(terms: Sequence[Term], filters: Filters, k: int = 10, offset: int = 0, sort: str = "relevance",
               relevant: bool = False, min_score: float | None = None, text: str | None = None) -> Query:
    """The question, checked whole (terms, page, sort, words; the filters were when made) before any index is
    opened. ``text``: only photos whose words match (``search.words``)."""
    from search.query import Query
    from search.words import Words

    if text is not None:
        Words.parse(text)  # nothing to look for is a mistake
    return Query(tuple(terms), filters, k, offset, sort, relevant, min_score, text)


def empty_answer_notes(searcher: Searcher, query: Query) -> list[str]:
    """Why a question found nothing, where the index can tell: a tag no photo has, a folder with nothing under it."""
    from search.filters import Filters

    filters = query.filters
    if filters.tags:
        known = {name.lower() for name, _ in searcher.store.catalog.tags.counts()}
        unknown = [t for t in filters.tags if t.lower() not in known]
        if unknown:
            return [f"no photo has the tag {unknown[0]} ('clipsearch tags' lists them)"]
    if filters.within is not None and Filters(filters.within).allowed_ids(searcher.store) == []:
        return [f"nothing is indexed under {filters.within} (indexed folders: {', '.join(searcher.store.catalog.roots())})"]
    return []
