"""Query arithmetic, as rclip has it: terms joined by + and -, each words, an image file or an indexed photo.

    "dog" + "beach" - "people"          three texts
    "2:sunset" + ./ref.jpg              a weight (N:term), and an image file in the mix
    like:1234 - "snow"                  an indexed photo's stored vector (the photo itself is left out)

Given as separate arguments (so shell quoting stays natural), the terms become weighted ``Term``s: a term
after "-" gets a negative weight. ``search.query.combine`` sums their unit vectors and renormalises.
A term that names an existing image file is that image; ``text:WORDS`` forces words. Arguments not
separated by an operator are one term: `search dog on a beach` works unquoted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from clipsearch import images
from clipsearch.errors import UserError
from search.query import Term

_WEIGHT = re.compile(r"^(\d+(?:\.\d+)?|\.\d+):(.+)$", re.S)


def _term(token: str, sign: float, files: bool = True) -> Term:
    weight = 1.0
    match = _WEIGHT.match(token)
    if match is not None:
        weight, token = float(match.group(1)), match.group(2)
        if weight == 0:
            raise UserError(f"a term's weight must not be 0: {match.group(0)[:40]!r}")
    if token.startswith("like:"):
        return Term.like(token[5:], sign * weight)
    if token.startswith("text:"):
        return Term.text(token[5:], sign * weight)
    if files and os.path.isfile(token) and os.path.splitext(token)[1].lower() in images.supported_extensions():
        return Term.image_file(token, sign * weight)
    return Term.text(token, sign * weight)


def _words_joined(tokens: Sequence[str]) -> list[str]:
    """Arguments between operators are one term: `search dog on a beach` is the words "dog on a beach"."""
    out: list[str] = []
    joining = False
    for token in tokens:
        if token in ("+", "-"):
            out.append(token)
            joining = False
        elif joining:
            out[-1] = f"{out[-1]} {token}"
        else:
            out.append(token)
            joining = True
    return out


def parse(tokens: Sequence[str]) -> list[Term]:
    """``["dog", "+", "beach", "-", "people"]`` -> three terms, the last with weight -1."""
    terms: list[Term] = []
    sign: float | None = 1.0
    for token in _words_joined(tokens):
        if token in ("+", "-"):
            if sign is not None and terms:
                raise UserError(f"two operators in a row in the query (before {token!r}): TERM + TERM - TERM")
            sign = 1.0 if token == "+" else -1.0
            continue
        terms.append(_term(token, sign))
        sign = None
    if sign is not None and terms:
        raise UserError("the query ends with an operator: TERM + TERM - TERM")
    if terms and all(t.weight < 0 for t in terms):
        raise UserError("a query needs at least one term to look for, not only terms to avoid")
    return terms


def from_parameters(plus: Sequence[str], minus: Sequence[str]) -> list[Term]:
    """The same language over HTTP: each ``q`` is a term added, each ``minus`` a term taken away, with ``N:`` weights
    and ``like:ID``; never a file path (a request names nothing on the server's disk)."""
    terms = [_term(v, 1.0, files=False) for v in plus] + [_term(v, -1.0, files=False) for v in minus]
    if terms and all(t.weight < 0 for t in terms):
        raise UserError("a query needs at least one term to look for (q), not only terms to avoid (minus)")
    return terms
