"""/thumb/ID and /file/ID: an indexed photo, addressed only by its catalog id (a path never comes from the
request, so nothing outside the index can be served)."""

# no "from __future__ import annotations": FastAPI reads the endpoints' annotations at run time

import os
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from clipsearch.errors import FileGone
from search.routes.state import file_id, not_found, server

router = APIRouter()


def _lookup(request: Request, raw: str) -> Any:
    state = server(request)
    with state.lock:
        row = state.index.searcher.store.indexed_file(file_id(raw))
    if row is None:
        raise not_found()
    return row


def _read(row: Any) -> bytes:
    try:
        with open(row.path, "rb") as f:
            return f.read()
    except OSError:
        raise not_found("the file is in the index but no longer on disk") from None


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(os.fsencode(name), safe="")


@router.api_route("/thumb/{raw_id}", methods=["GET", "HEAD"])
def thumb(request: Request, raw_id: str) -> Response:
    from clipsearch import images

    row = _lookup(request, raw_id)
    try:
        jpeg = server(request).index.thumbnail(row.id)
    except FileGone as exc:
        raise not_found(str(exc)) from None
    except images.ImageError as exc:
        raise HTTPException(422, f"cannot decode this file: {exc}") from None
    return Response(jpeg, media_type="image/jpeg",
                    headers={"Cache-Control": "private, max-age=300", "ETag": f'"{row.hash.hex()}"'})


@router.api_route("/file/{raw_id}", methods=["GET", "HEAD"])
def file(request: Request, raw_id: str) -> Response:
    from clipsearch import images

    row = _lookup(request, raw_id)
    data = _read(row)
    try:
        body, media_type = images.browser_view(data)
    except images.ImageError as exc:
        raise HTTPException(422, f"cannot decode this file: {exc}") from None
    name = os.path.basename(row.path)
    return Response(body, media_type=media_type, headers={
        "Cache-Control": "private, max-age=300",
        "Content-Disposition": "inline; filename*=UTF-8''" + _quote(name),
        "X-Content-Type-Options": "nosniff",
    })
