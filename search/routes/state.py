"""What a running server holds, on ``app.state.server``: one index (one SQLite connection and one model, taken in
turns under ``lock``), and the helpers every router shares: ids, uploads and filters read from a request."""

# no "from __future__ import annotations": FastAPI reads the endpoints' annotations at run time

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from clipsearch.app import Index
from clipsearch.errors import UserError
from search.classify import ZeroShot
from search.filters import Filters

MAX_UPLOAD_BYTES = 64 * 1024 * 1024
_ID = re.compile(r"[0-9]{1,18}")


@dataclass
class ServerState:
    index: Index
    lock: threading.Lock = field(default_factory=threading.Lock)
    zero_shot: ZeroShot = field(init=False)

    def __post_init__(self) -> None:
        self.zero_shot = ZeroShot(searcher=self.index.searcher)


def server(request: Any) -> ServerState:
    return request.app.state.server


def not_found(what: str = "no such photo in the index") -> Exception:
    from fastapi import HTTPException

    return HTTPException(404, what)


def file_id(raw: str) -> int:
    """A photo id from a path segment: digits only, else no such photo."""
    if not _ID.fullmatch(raw):
        raise not_found()
    return int(raw)


def filters(request: Any) -> Filters:
    """The filters of a request: the CLI's options as query parameters (``in``, ``tag`` and ``type`` repeatable)."""
    p = request.query_params
    return Filters(p.get("in"), tuple(p.getlist("tag")), p.get("after"), p.get("before"), p.get("camera"),
                   tuple(p.getlist("type")), p.get("min_pixels"), p.get("near"))


async def body_image(request: Any) -> bytes:
    """The image a POST carries: the body itself, or the file in a multipart form."""
    from fastapi import HTTPException

    from search.upload import uploaded_file

    if int(request.headers.get("content-length") or 0) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, "the query image is over 64 MiB")
    data = await request.body()
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, "the query image is over 64 MiB")
    if not data:
        raise UserError("send the image as the request body, or as a file in a multipart form")
    content_type = request.headers.get("content-type", "")
    return uploaded_file(content_type, data) if content_type.startswith("multipart/form-data") else data
