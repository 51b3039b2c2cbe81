"""/thumb/ID, /face/ID and /file/ID: an indexed photo (or a face cut from one), addressed only by its catalog id (a
path never comes from the request), and only as it was indexed: ``clipsearch.indexed_file`` opens the path without
following a link and refuses what is not the indexed regular file (409), so a link or a pipe put at the path serves
nothing."""

# no "from __future__ import annotations": FastAPI reads the endpoints' annotations at run time

import os
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response, StreamingResponse

from clipsearch.errors import FileChanged, FileGone, UserError
from clipsearch.indexed_file import open_indexed, stream_indexed
from search.routes.state import file_id, not_found, server

router = APIRouter()

MAX_CONVERTED_BYTES = 1 << 30  # a file a browser cannot show is decoded whole to be converted: at most this
_NOSNIFF = {"X-Content-Type-Options": "nosniff"}


def _lookup(request: Request, raw: str) -> Any:
    state = server(request)
    with state.lock:
        row = state.index.searcher.store.catalog.indexed_file(file_id(raw))
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


def _seconds(raw: str | None) -> float | None:
    """``?t=`` of a thumbnail: a video's moment, in seconds."""
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1e7:
        raise UserError("t must be a time in seconds (0 or more)")  # 400, as every parameter that cannot be read
    return value


@router.get("/thumb/{raw_id}")
@router.head("/thumb/{raw_id}", include_in_schema=False)  # one operation in the API's schema
def thumb(request: Request, raw_id: str, t: str | None = None) -> Response:
    """A photo's thumbnail; a video's is the frame at ``t`` (a hit's best moment), else at its first moment."""
    from clipsearch import images, video

    row = _lookup(request, raw_id)
    at = _seconds(t)
    try:
        jpeg = server(request).index.thumbnail(row.id, at)
    except (FileGone, FileChanged) as exc:
        raise _refused(exc) from None
    except (images.ImageError, video.VideoError) as exc:
        raise HTTPException(422, f"cannot decode this file: {exc}") from None
    return Response(jpeg, media_type="image/jpeg",
                    headers={"Cache-Control": "private, max-age=300",
                             "ETag": f'"{row.hash.hex()}{"" if at is None else f"@{at:g}"}"', **_NOSNIFF})


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


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The (first, last) bytes a ``Range`` header asks of a file of ``size`` bytes (RFC 9110): None for the whole
    file (no header, a unit other than bytes, several ranges or one that cannot be parsed are answered whole, as the
    RFC allows); ``HTTPException`` 416 for a range the file cannot satisfy."""
    if not header or not header.strip().lower().startswith("bytes="):
        return None
    spec = header.strip()[6:].strip()
    if "," in spec or "-" not in spec:
        return None
    first_text, _, last_text = (part.strip() for part in spec.partition("-"))
    if not (first_text.isdigit() or first_text == "") or not (last_text.isdigit() or last_text == ""):
        return None
    if first_text == "":  # the last N bytes
        if last_text == "" or int(last_text) == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(0, size - int(last_text)), size - 1
    first = int(first_text)
    last = size - 1 if last_text == "" else min(int(last_text), size - 1)
    if last_text != "" and int(last_text) < first:
        return None  # invalid: ignored
    if first >= size:
        raise _unsatisfiable(size)
    return first, last


def _unsatisfiable(size: int) -> HTTPException:
    return HTTPException(416, "the range asked for lies outside the file",
                         headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"})


@router.get("/file/{raw_id}")
@router.head("/file/{raw_id}", include_in_schema=False)  # one operation in the API's schema
def file(request: Request, raw_id: str) -> Response:
    """A file in a format browsers show is streamed as it is, a part of it where a ``Range`` is asked (206: how a
    video player seeks to a moment); any other is decoded and sent as a JPEG."""
    from clipsearch import browser_images, images, video

    row = _lookup(request, raw_id)
    try:
        fd = open_indexed(row.path, row.size, row.mtime_ns)
    except (FileGone, FileChanged) as exc:
        raise _refused(exc) from None
    headers = {"Cache-Control": "private, max-age=300",
               "Content-Disposition": "inline; filename*=UTF-8''" + _quote(os.path.basename(row.path)), **_NOSNIFF}
    try:
        head = os.pread(fd, 64, 0)
        media_type = video.media_type(row.path) or browser_images.browser_media_type(head)
        if media_type is not None:
            wanted = byte_range(request.headers.get("range"), row.size)
            first, last = wanted if wanted is not None else (0, row.size - 1)
            headers["Accept-Ranges"] = "bytes"
            headers["Content-Length"] = str(last - first + 1)
            if wanted is not None:
                headers["Content-Range"] = f"bytes {first}-{last}/{row.size}"
            status = 200 if wanted is None else 206
            if request.method == "HEAD":
                os.close(fd)
                return Response(media_type=media_type, headers=headers, status_code=status)
            os.lseek(fd, first, os.SEEK_SET)
            return StreamingResponse(stream_indexed(fd, last - first + 1), media_type=media_type, headers=headers,
                                     status_code=status)
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
