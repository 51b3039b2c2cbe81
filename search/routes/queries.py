"""/search (words, ``like``, an uploaded image) and /classify (an indexed photo's or an uploaded image's labels).

The rules are the application layer's (``clipsearch.app.questions``): one of q, like or an image; k from 1 to
10,000; every filter checked before any work. Each hit carries its metadata, tags, ``text`` (read in the picture)
and ``name``; ``text=`` searches the words of photos (``search.words``). The async
routes (the uploads) only read the body on the event loop; everything else runs in the thread pool.
"""

# no "from __future__ import annotations": FastAPI reads the endpoints' annotations at run time

import math
import os
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from clipsearch.app import questions
from clipsearch.display import shown, to_json
from clipsearch.errors import UserError
from clipsearch.zeroshot.vocabulary import MAX_LABELS
from search import expression
from search.query import Term
from search.routes.state import body_image, filters, number, photo_id, server

router = APIRouter()


def _answer(request: Request, terms: list[Term]) -> Any:
    p = request.query_params
    relevant = p.get("relevant", "").lower() in ("1", "true", "yes", "on")
    min_score = None
    if "min_score" in p:
        try:
            min_score = float(p["min_score"])
        except ValueError:
            min_score = math.nan
        if not math.isfinite(min_score):
            raise UserError(f"min_score must be a number, not {p['min_score'][:20]!r}")
    sort = p.get("sort", "relevance")
    if not terms and sort == "relevance":
        sort = "date"  # person=NAME alone (search_text let it through)
    question = questions.make_query(terms, filters(request), number(request, "k", 10), number(request, "offset", 0),
                                    sort, relevant, min_score, p.get("text"))
    state = server(request)
    state.prepare(question.terms)
    with state.lock:
        hits = state.index.answer(question)
    found = [{**hit.as_dict(), "name": os.path.basename(hit.path)} for hit in hits]
    if (left_out := hits.gone_note()) is None:
        return found
    # hits whose file is gone were left out (search.engine._stand_behind): the list stays a list, the header says so
    warning = shown(left_out).encode("ascii", "backslashreplace").decode()  # a header is Latin-1: the name escaped
    return Response(to_json(found, allow_nan=False, separators=(",", ":")).encode("utf-8"),
                    media_type="application/json", headers={"X-Clipsearch-Warning": warning})


@router.get("/search")
def search_text(request: Request,
                q: list[str] | None = Query(None, description="Terms to look for (repeatable; N:words weights, "  # noqa: B008
                                            "like:ID an indexed photo)."),
                minus: list[str] | None = Query(None, description="Terms to look away from (repeatable)."),  # noqa: B008
                like: str | None = Query(None, description="A photo id: photos that look like it."),
                k: str | None = Query(None, description="How many results (1 to 10,000; default 10)."),
                offset: str | None = Query(None, description="Skip this many best results."),
                sort: str = Query("relevance", description="relevance, date or -date."),
                text: str | None = Query(None, description="Only photos whose words match (the text read in them, "
                                         "keywords, names; \"quoted phrases\" exactly).")) -> Any:
    words = expression.from_parameters(q or [], minus or []) or None  # q=like:ID adds a photo to words
    liked = photo_id(like, "like") if like is not None else None
    if words is None and liked is None and text is None and sort == "relevance" and "person" in request.query_params:
        sort = "date"  # person=NAME alone: every photo of them, as the CLI's --person alone
    terms = questions.terms_of(words, like=liked, words=questions.HTTP_WORDS, sort=sort, text=text)
    return _answer(request, terms)


@router.post("/search")
async def search_image(request: Request, k: str | None = Query(None), offset: str | None = Query(None),
                       sort: str = Query("relevance")) -> Any:
    if "q" in request.query_params or "like" in request.query_params:
        raise UserError("POST searches by the image it carries; words (q) and photo ids (like) go with GET")
    term = Term.image(await body_image(request))
    return await run_in_threadpool(_answer, request, [term])


def _classified(request: Request, labels: str | None, templates: str, top: int, raw_id: str | None = None,
                image: Term | None = None) -> dict[str, Any]:
    """The labels' vectors are made outside the lock (a long label list costs seconds of the text tower, which the
    store does not need); the photo's vector and the ranking take their turn under it."""
    from clipsearch.zeroshot import templates as prompt
    from clipsearch.zeroshot import vocabulary
    from clipsearch.zeroshot.labels import Classifier

    chosen = vocabulary.from_list(labels) if labels is not None else vocabulary.builtin()
    state = server(request)
    matrix = state.zero_shot.label_matrix(chosen, prompt.by_name(templates))
    if image is not None:
        state.prepare([image])
    with state.lock:
        classifier = Classifier(chosen, matrix, state.zero_shot.logit_scale())
        if image is None:
            return state.zero_shot.classify_ids([photo_id(raw_id or "")], classifier, top)[0].as_dict()
        vector = state.index.embed(image)
        return state.zero_shot.classify_vector(vector, image.label, classifier, top).as_dict()


def _top(request: Request) -> int:
    top = number(request, "top", 5)
    if not 1 <= top <= MAX_LABELS:
        raise UserError(f"top (how many labels) must be between 1 and {MAX_LABELS:,}")
    return top


@router.get("/classify")
def classify_indexed(request: Request, raw_id: str = Query(..., alias="id"), labels: str | None = Query(None),
                     top: str | None = Query(None, description="How many labels (default 5)."),
                     templates: str = Query("photo")) -> Any:
    return _classified(request, labels, templates, _top(request), raw_id=raw_id)


@router.post("/classify")
async def classify_image(request: Request, labels: str | None = Query(None),
                         top: str | None = Query(None, description="How many labels (default 5)."),
                         templates: str = Query("photo")) -> Any:
    chosen_top = _top(request)
    image = Term.image(await body_image(request))
    return await run_in_threadpool(_classified, request, labels, templates, chosen_top, image=image)
