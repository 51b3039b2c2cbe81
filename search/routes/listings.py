"""What the index holds, as lists: /info, /tags, /cameras, /people and /duplicates (what the CLI's --json prints),
and /words/ID: the words of one photo, the text read in it with each line's box (what the page draws over it)."""

# no "from __future__ import annotations": FastAPI reads the endpoints' annotations at run time

from typing import Any

from fastapi import APIRouter, Query, Request

from clipsearch.errors import UserError
from search.routes.state import photo_id, server, unescaped

router = APIRouter()


@router.get("/info")
def info(request: Request) -> Any:
    state = server(request)
    with state.lock:
        return state.index.info().as_dict()


@router.get("/tags")
def tags(request: Request) -> Any:
    state = server(request)
    with state.lock:
        return [row.as_dict() for row in state.index.tags()]


@router.get("/cameras")
def cameras(request: Request) -> Any:
    state = server(request)
    with state.lock:
        return [{"camera": name, "photos": count} for name, count in state.index.searcher.store.catalog.metadata.cameras()]


@router.get("/people")
def people(request: Request) -> Any:
    """What `clipsearch people --json` prints: each person with their largest face (its photo's id and box)."""
    state = server(request)
    with state.lock:
        return state.index.people().as_dict()


@router.get("/people/{person}")
def person_faces(request: Request, person: str) -> Any:
    """What `clipsearch people show PERSON --json` prints: a person's faces, each with a photo's id and box."""
    state = server(request)
    with state.lock:
        found, faces = state.index.person_faces(unescaped(person) or "")
    return {"person": found, "faces": faces}


@router.get("/duplicates")
def duplicate_groups(request: Request, level: str = Query("copy"), within: str | None = Query(None, alias="in")) -> Any:
    """Groups of copies (``level=copy``), or of copies and similar shots (``level=similar``): what
    `clipsearch duplicates --json` prints, each member with its id for /thumb and /file."""
    if level not in ("copy", "similar"):
        raise UserError(f"level must be copy or similar, not {level[:20]!r}")
    # on a connection of its own, without the lock: the first answer takes seconds of every photo's signature
    found = server(request).index.duplicates(similar=level == "similar", within=unescaped(within), separate=True)
    return [group.as_dict() for group in found.groups]


@router.get("/words/{raw_id}")
def words(request: Request, raw_id: str) -> Any:
    state = server(request)
    with state.lock:
        return state.index.words(photo_id(raw_id, "id"))
