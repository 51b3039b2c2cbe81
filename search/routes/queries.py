"""/search (words, ``like``, an uploaded image) and /classify (an indexed photo's or an uploaded image's labels).

The rules are the application layer's (``clipsearch.app.questions``): one of q, like or an image; k from 1 to
10,000; every filter checked before any work. Each hit carries its metadata, tags and ``name``.
"""

# no "from __future__ import annotations": FastAPI reads the endpoints' annotations at run time

import os
from typing import Any

from fastapi import APIRouter, Query, Request

from clipsearch.app import questions
from clipsearch.errors import UserError
from search import expression
from search.query import Term
from search.routes.state import body_image, file_id, filters, server

router = APIRouter()


def _answer(request: Request, terms: list[Term], k: int, offset: int, sort: str) -> list[dict[str, Any]]:
    p = request.query_params
    relevant = p.get("relevant", "").lower() in ("1", "true", "yes", "on")
    try:
        min_score = float(p["min_score"]) if "min_score" in p else None
    except ValueError:
        raise UserError(f"min_score must be a number, not {p['min_score'][:20]!r}") from None
    question = questions.make_query(terms, filters(request), k, offset, sort, relevant, min_score)
    state = server(request)
    with state.lock:
        hits = state.index.answer(question)
    return [{**hit.as_dict(), "name": os.path.basename(hit.path)} for hit in hits]


@router.get("/search")
def search_text(request: Request,
                q: list[str] | None = Query(None, description="Terms to look for (repeatable; N:words weights, "  # noqa: B008
                                            "like:ID an indexed photo)."),
                minus: list[str] | None = Query(None, description="Terms to look away from (repeatable)."),  # noqa: B008
                like: str | None = Query(None, description="A photo id: photos that look like it."),
                k: int = Query(10), offset: int = Query(0), sort: str = Query("relevance")) -> Any:
    words = expression.from_parameters(q or [], minus or []) or None  # q=like:ID adds a photo to words
    terms = questions.terms_of(words, like=like, words=questions.HTTP_WORDS, sort=sort)
    return _answer(request, terms, k, offset, sort)


@router.post("/search")
async def search_image(request: Request, k: int = Query(10), offset: int = Query(0),
                       sort: str = Query("relevance")) -> Any:
    if "q" in request.query_params or "like" in request.query_params:
        raise UserError("POST searches by the image it carries; words (q) and photo ids (like) go with GET")
    return _answer(request, [Term.image(await body_image(request))], k, offset, sort)


def _classifier(request: Request, labels: str | None, templates: str) -> Any:
    """Call with the lock held."""
    from clipsearch.zeroshot import templates as prompt
    from clipsearch.zeroshot import vocabulary

    chosen = vocabulary.from_list(labels) if labels is not None else vocabulary.builtin()
    return server(request).zero_shot.classifier(chosen, prompt.by_name(templates))


@router.get("/classify")
def classify_indexed(request: Request, raw_id: str = Query(..., alias="id"), labels: str | None = Query(None),
                     top: int = Query(5, ge=1, le=100_000), templates: str = Query("photo")) -> Any:
    state = server(request)
    with state.lock:
        return state.zero_shot.classify_ids([file_id(raw_id)], _classifier(request, labels, templates),
                                            top)[0].as_dict()


@router.post("/classify")
async def classify_image(request: Request, labels: str | None = Query(None), top: int = Query(5, ge=1, le=100_000),
                         templates: str = Query("photo")) -> Any:
    term = Term.image(await body_image(request))
    state = server(request)
    with state.lock:
        vector = state.index.embed(term)
        found = state.zero_shot.classify_vector(vector, term.label, _classifier(request, labels, templates), top)
    return found.as_dict()
