"""What a running server holds, on ``app.state.server``, and the helpers every router shares.

One index: one SQLite connection and one model, taken in turns under ``lock`` for as long as a request reads the
store (short). What takes long runs without it: label sets are embedded outside it, the duplicates are found on
a connection of their own, and no request parses, decodes or embeds on the event loop (the async routes hand
their work to the thread pool), so one heavy request does not hold the others up (bench/serve_load.py).
"""

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
MAX_FORM_PARTS = 64  # a query's form holds one file and a few fields; past this a body is refused before parsing
_ID = re.compile(r"[0-9]{1,18}")
_ESCAPED = re.compile(r"\\u(dc[89a-f][0-9a-f])", re.I)  # how --json and the API write a byte that is not UTF-8
# The CLI's option names in the shared rules' messages, as an HTTP client names them.
_PARAMETERS = {"--after": "after", "--before": "before", "--camera": "camera", "--type": "type", "--near": "near",
               "--min-pixels": "min_pixels", "--min-score": "min_score", "--in": "in", "--tag": "tag",
               "--sort date": "sort=date", "--sort": "sort", "--offset": "offset", "--like ID": "like",
               "--image PATH": "an image (POST)", "-k": "k", "--person": "person"}
_FLAG = re.compile("|".join(re.escape(f) for f in sorted(_PARAMETERS, key=len, reverse=True)) + r"(?![\w-])")


@dataclass
class ServerState:
    index: Index
    lock: threading.Lock = field(default_factory=threading.Lock)
    zero_shot: ZeroShot = field(init=False)

    def __post_init__(self) -> None:
        self.zero_shot = ZeroShot(searcher=self.index.searcher)

    def prepare(self, terms: Any) -> None:
        """What a query needs that takes long (a model's load, an upload's decode), done without the lock once the
        model is in step with the index (``Searcher.prepare``); the caller then takes the lock to answer."""
        with self.lock:
            self.index.searcher.follow_model()
        self.index.searcher.query_model.prepare(terms)


def server(request: Any) -> ServerState:
    return request.app.state.server


def in_http_words(message: str) -> str:
    """A rule's message, with the CLI's option names put as the HTTP parameters that carry the same values."""
    return _FLAG.sub(lambda m: _PARAMETERS[m.group(0)], message)


def not_found(what: str = "no such photo in the index") -> Exception:
    from fastapi import HTTPException

    return HTTPException(404, what)


def file_id(raw: str) -> int:
    """A photo id from a path segment (/thumb/ID): digits only, else there is no such photo."""
    if not _ID.fullmatch(raw):
        raise not_found()
    return int(raw)


def photo_id(raw: str, name: str = "id") -> int:
    """A photo id from a query parameter: not a number is the request's mistake (400), as for ``like``."""
    text = raw.strip()
    if not _ID.fullmatch(text):
        raise UserError(f"{name} must be a photo id (a number), not {raw[:40]!r}")
    return int(text)


def number(request: Any, name: str, default: int) -> int:
    """An integer query parameter, read here so that its message is ours (the range is the rule's to check)."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return int(raw.strip())
    except ValueError:
        raise UserError(f"{name} must be a whole number, not {raw[:20]!r}") from None


def unescaped(text: str | None) -> str | None:
    """A folder as --json wrote it: ``\\udcff`` stands for a byte that is not UTF-8 (what a URL cannot carry)."""
    return None if text is None else _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), text)


def filters(request: Any) -> Filters:
    """The filters of a request: the CLI's options as query parameters (``in``, ``tag``, ``type`` and ``person``
    repeatable)."""
    p = request.query_params
    return Filters(unescaped(p.get("in")), tuple(p.getlist("tag")), p.get("after"), p.get("before"), p.get("camera"),
                   tuple(p.getlist("type")), p.get("min_pixels"), p.get("near"), tuple(p.getlist("person")))


async def body_image(request: Any) -> bytes:
    """The image a POST carries: the body itself, or the file in a multipart form. The body is counted as it
    arrives (a chunked upload has no Content-Length to refuse it by) and refused past 64 MiB; a form of more
    than a few parts is refused before it is parsed; parsing runs off the event loop."""
    from fastapi import HTTPException
    from starlette.concurrency import run_in_threadpool

    from search.upload import uploaded_file

    too_big = HTTPException(413, "the query image is over 64 MiB")
    try:
        if int(request.headers.get("content-length") or 0) > MAX_UPLOAD_BYTES:
            raise too_big
    except ValueError:
        raise UserError("the Content-Length header is not a number") from None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_UPLOAD_BYTES:
            raise too_big
        chunks.append(chunk)
    data = b"".join(chunks)
    if not data:
        raise UserError("send the image as the request body, or as a file in a multipart form")
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        return data
    boundary = re.search(r'boundary="?([^";]+)"?', content_type)
    if boundary is None:
        raise UserError("the multipart form names no boundary")
    if data.count(b"--" + boundary.group(1).encode("latin-1")) > MAX_FORM_PARTS + 1:
        raise UserError(f"the multipart form has more than {MAX_FORM_PARTS} parts: send one file")
    return await run_in_threadpool(uploaded_file, content_type, data)
