"""/thumb/ID, /face/ID and /file/ID: an indexed photo (or a face cut from one), addressed only by its catalog id (a
path never comes from the request), and only as it was indexed: ``clipsearch.indexed_file`` opens the path without
following a link and refuses what is not the indexed regular file (409), so a link or a pipe put at the path serves
nothing."""

# no "from __future__ import annotations": FastAPI reads the endpoints' annotations at run time

import os
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response, StreamingResponse

from clipsearch.errors import FileChanged, FileGone
from clipsearch.indexed_file import open_indexed, stream_indexed
from search.routes.state import file_id, not_found, server

router = APIRouter()

MAX_CONVERTED_BYTES = 1 << 30  # a file a browser cannot show is decoded whole to be converted: at most this
_NOSNIFF = {"X-Content-Type-Options": "nosniff"}


def _lookup(request: Request, raw: str) -> Any:
    state = server(request)
    with state.lock:
        row = state.index.searcher.store.indexed_file(file_id(raw))
    if row is None:
        raise not_found()
    return row


def _refused(exc: Exception) -> HTTPException:
    return HTTPException(404 if isinstance(exc, FileGone) else 409, str(exc))


def _quote(name: str) -> str:
    """A file name for ``filename*=UTF-8''...`` (RFC 5987): valid UTF-8 always, so a name that is not (an old
    camera card's) has its stray bytes as U+FFFD, as a browser shows them."""
    from urllib.parse import quote

    return quote(os.fsencode(name).decode("utf-8", "replace"), safe="")


@router.api_route("/thumb/{raw_id}", methods=["GET", "HEAD"])
def thumb(request: Request, raw_id: str) -> Response:
    from clipsearch import images

    row = _lookup(request, raw_id)
    try:
        jpeg = server(request).index.thumbnail(row.id)
    except (FileGone, FileChanged) as exc:
        raise _refused(exc) from None
    except images.ImageError as exc:
        raise HTTPException(422, f"cannot decode this file: {exc}") from None
    return Response(jpeg, media_type="image/jpeg",
                    headers={"Cache-Control": "private, max-age=300", "ETag": f'"{row.hash.hex()}"', **_NOSNIFF})


@router.get("/face/{raw_id}")
def face(request: Request, raw_id: str) -> Response:
    """A face (GET /people gives each person's), cut from the indexed file that shows it."""
    from clipsearch import images

    state = server(request)
    try:
        with state.lock:
            jpeg = state.index.face(file_id(raw_id))
    except (FileGone, FileChanged) as exc:
        raise _refused(exc) from None
    except images.ImageError as exc:
        raise HTTPException(422, f"cannot decode this file: {exc}") from None
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300", **_NOSNIFF})


@router.api_route("/file/{raw_id}", methods=["GET", "HEAD"])
def file(request: Request, raw_id: str) -> Response:
    """A file in a format browsers show is streamed as it is; any other is decoded and sent as a JPEG."""
    from clipsearch import browser_images, images

    row = _lookup(request, raw_id)
    try:
        fd = open_indexed(row.path, row.size, row.mtime_ns)
    except (FileGone, FileChanged) as exc:
        raise _refused(exc) from None
    headers = {"Cache-Control": "private, max-age=300",
               "Content-Disposition": "inline; filename*=UTF-8''" + _quote(os.path.basename(row.path)), **_NOSNIFF}
    try:
        head = os.pread(fd, 64, 0)
        media_type = browser_images.browser_media_type(head)
        if media_type is not None:
            headers["Content-Length"] = str(row.size)
            if request.method == "HEAD":
                os.close(fd)
                return Response(media_type=media_type, headers=headers)
            return StreamingResponse(stream_indexed(fd, row.size), media_type=media_type, headers=headers)
        if row.size > MAX_CONVERTED_BYTES:
            raise HTTPException(413, "the file is too large to convert for a browser")
        data = b"".join(stream_indexed(fd, row.size))
    except BaseException:
        try:
            os.close(fd)
        except OSError:
            pass  # closed by stream_indexed already
        raise
    try:
        body, media_type = browser_images.browser_view(data)
    except images.ImageError as exc:
        raise HTTPException(422, f"cannot decode this file: {exc}") from None
    return Response(body, media_type=media_type, headers=headers)
