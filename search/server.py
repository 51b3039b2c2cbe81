"""A resident HTTP server over one index: a search page and a JSON API, the model and the index loaded once.

    GET  /                                  the search page (plain HTML/CSS/JS shipped in search/web)
    GET  /search?q=TEXT&k=60&offset=0&in=FOLDER     text query
    GET  /search?like=ID&k=60&offset=0&in=FOLDER    "more like this": the stored embedding of file ID (left out)
    POST /search?k=60&offset=0&in=FOLDER    image query: the body is the image, or a multipart form holding it
    GET  /thumb/ID                          a ~256 px JPEG thumbnail, cached in the index directory (HEAD too)
    GET  /file/ID                           the image itself (converted to JPEG if browsers cannot show it; HEAD too)
    GET  /info                              what `clipsearch info --json` prints
    GET  /tags                              every tag with its count of photos (`clipsearch tags --json`)
    GET  /cameras                           every camera with its count of photos (the page's camera choice)
    GET  /classify?id=ID&labels=A,B&top=5&templates=photo   an indexed photo's labels (its stored vector)
    POST /classify?labels=A,B&top=5         an uploaded image's labels (body or multipart form, as POST /search)

/search takes the CLI's filters as parameters: ``in``, ``tag`` (repeatable: every tag), ``after``, ``before``,
``camera``, ``type`` (repeatable), ``min_pixels``, ``near``, ``relevant=1`` or ``min_score``, ``sort``
(relevance, date, -date; with no q, sort=date browses). Query arithmetic: ``q`` repeatable (each term added,
``N:`` weights, ``like:ID``), ``minus`` repeatable (terms taken away). Each hit carries its metadata (taken,
camera, width, height, ...) and ``tags``.
/classify without ``labels`` ranks the built-in vocabulary (image -> text).

The rules are the CLI's (``search.query``): one of q, like or an image; k from 1 to 10,000. Every error is
``{"error": "..."}``: 400 for a request that cannot be answered as asked, 401 without the token, 404 for an
id the index does not hold, 413 for an upload over 64 MiB, 422 for a file the index holds but cannot decode.

Files are addressed only by catalog id; a path never comes from the request, so
nothing outside the index can be served. A rebuild is picked up on the next
query (the committed generation is checked per query). With a token set, every
request needs it (``?token=``, a bearer header, or the cookie the page gets).
"""

# no "from __future__ import annotations": FastAPI reads the endpoints' annotations at run time

import errno
import hmac
import os
import re
import threading
from importlib import resources
from pathlib import Path
from typing import Any

from clipsearch.display import to_json
from clipsearch.errors import NoSuchPhoto, UserError
from search import expression
from search import query as queries
from search.classify import ZeroShot
from search.engine import Searcher
from search.filters import Filters, folder_in_index
from search.upload import uploaded_file

MAX_UPLOAD_BYTES = 64 * 1024 * 1024
TOKEN_COOKIE = "clipsearch_token"
_ID = re.compile(r"[0-9]{1,18}")
_ASSETS = {"app.js": "text/javascript; charset=utf-8", "duplicates.js": "text/javascript; charset=utf-8",
           "style.css": "text/css; charset=utf-8",
           "favicon.svg": "image/svg+xml"}
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _web_file(name: str) -> bytes:
    return resources.files("search").joinpath("web", name).read_bytes()


def create_app(index_dir: Path, device: str = "auto", precision: str = "auto", token: str | None = None) -> Any:
    from fastapi import FastAPI, HTTPException, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    searcher = Searcher(index_dir, device=device, precision=precision, resident=True)
    if not searcher.has_fast_text():
        searcher.encoder  # noqa: B018 - load the model now, not on the first request
    # else text queries run on the exported text tower, and the model (torch, ~1 GB) is loaded by the
    # first image query: a server used for words stays small.
    lock = threading.Lock()  # one SQLite connection and one model: queries take turns
    zero_shot = ZeroShot(searcher=searcher)

    class Json(JSONResponse):
        """JSON whose paths may hold names that are not valid UTF-8 (``clipsearch.display.to_json``)."""

        def render(self, content: Any) -> bytes:
            return to_json(content, allow_nan=False, separators=(",", ":")).encode("utf-8")

    app = FastAPI(title="clipsearch", summary="Search your photos by what is in them.", default_response_class=Json)

    @app.exception_handler(UserError)
    async def user_error(_: Request, exc: UserError) -> JSONResponse:
        return Json({"error": str(exc)}, status_code=404 if isinstance(exc, NoSuchPhoto) else 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return Json({"error": _said(request, exc)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "the request"
        return Json({"error": f"{where}: {first.get('msg', 'not valid')}"}, status_code=400)

    if token:
        @app.middleware("http")
        async def require_token(request: Request, call_next: Any) -> Any:
            given = (request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE)
                     or request.headers.get("authorization", "").removeprefix("Bearer ").strip())
            if not given or not hmac.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"error": "this server needs its token: open it as /?token=..."}, status_code=401)
            response = await call_next(request)
            if request.query_params.get("token"):  # the page's own requests (and <img> tags) then carry the cookie
                response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
            return response

    def answer(terms: list[queries.Term], k: int, offset: int, filters: Filters, sort: str,
               request: Request) -> list[dict[str, Any]]:
        p = request.query_params
        relevant = p.get("relevant", "").lower() in ("1", "true", "yes", "on")
        try:
            min_score = float(p["min_score"]) if "min_score" in p else None
        except ValueError:
            raise UserError(f"min_score must be a number, not {p['min_score'][:20]!r}") from None
        query = queries.Query(tuple(terms), filters, k, offset, sort, relevant, min_score)
        filters.criteria()  # a mistake in a filter is a 400 before any work
        with lock:
            hits = searcher.answer(query)
        return [{**hit.as_dict(), "name": os.path.basename(hit.path)} for hit in hits]

    def classifier(labels: str | None, templates: str) -> Any:
        """Call with ``lock`` held."""
        from clipsearch.zeroshot import templates as prompt
        from clipsearch.zeroshot import vocabulary

        chosen = vocabulary.from_list(labels) if labels is not None else vocabulary.builtin()
        return zero_shot.classifier(chosen, prompt.by_name(templates))

    async def body_image(request: Request) -> bytes:
        """The image a POST carries: the body itself, or the file in a multipart form."""
        if int(request.headers.get("content-length") or 0) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, "the query image is over 64 MiB")
        data = await request.body()
        if len(data) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, "the query image is over 64 MiB")
        if not data:
            raise UserError("send the image as the request body, or as a file in a multipart form")
        content_type = request.headers.get("content-type", "")
        return uploaded_file(content_type, data) if content_type.startswith("multipart/form-data") else data

    def file_id(raw: str) -> int:
        if not _ID.fullmatch(raw):
            raise HTTPException(404, "no such photo in the index")
        return int(raw)

    def lookup(raw: str) -> Any:
        with lock:
            row = searcher.store.indexed_file(file_id(raw))
        if row is None:
            raise HTTPException(404, "no such photo in the index")
        return row

    def read(row: Any) -> bytes:
        try:
            with open(row.path, "rb") as f:
                return f.read()
        except OSError:
            raise HTTPException(404, "the file is in the index but no longer on disk") from None

    @app.get("/", include_in_schema=False)
    def page() -> Response:
        return Response(_web_file("index.html"), media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)

    @app.get("/static/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        if name not in _ASSETS:
            raise HTTPException(404)  # said as any address the server does not have (``_said``)
        return Response(_web_file(name), media_type=_ASSETS[name], headers={"Cache-Control": "no-cache"})

    def filters(request: Request) -> Filters:
        """The filters of a request: the CLI's options as query parameters (``in``, ``tag`` and ``type`` repeatable)."""
        p = request.query_params
        return Filters(p.get("in"), tuple(p.getlist("tag")), p.get("after"), p.get("before"), p.get("camera"),
                       tuple(p.getlist("type")), p.get("min_pixels"), p.get("near"))

    @app.get("/search")
    def search_text(request: Request,
                    q: list[str] | None = Query(None, description="Terms to look for (repeatable; N:words weights, "  # noqa: B008
                                                "like:ID an indexed photo)."),
                    minus: list[str] | None = Query(None, description="Terms to look away from (repeatable)."),  # noqa: B008
                    like: str | None = Query(None, description="A photo id: photos that look like it."),
                    k: int = Query(10), offset: int = Query(0), sort: str = Query("relevance")) -> Any:
        if like is not None and (q or minus):
            raise UserError("give q (words) or like (a photo id), one of them (q=like:ID adds a photo to words)")
        terms = [queries.Term.like(like)] if like is not None else expression.from_parameters(q or [], minus or [])
        if not terms and sort == "relevance":
            raise UserError("give q (words) or like (a photo id), or sort=date to browse")
        return answer(terms, k, offset, filters(request), sort, request)

    @app.post("/search")
    async def search_image(request: Request, k: int = Query(10), offset: int = Query(0),
                           sort: str = Query("relevance")) -> Any:
        if "q" in request.query_params or "like" in request.query_params:
            raise UserError("POST searches by the image it carries; words (q) and photo ids (like) go with GET")
        return answer([queries.Term.image(await body_image(request))], k, offset, filters(request), sort, request)

    @app.get("/cameras")
    def cameras() -> Any:
        with lock:
            return [{"camera": name, "photos": count} for name, count in searcher.store.metadata.cameras()]

    found_groups: dict[tuple[int, str, str | None], list[dict[str, Any]]] = {}  # the last answer, per generation

    @app.get("/duplicates")
    def duplicate_groups(level: str = Query("copy"), within: str | None = Query(None, alias="in")) -> Any:
        """Groups of copies (``level=copy``), or of copies and similar shots (``level=similar``): what
        `clipsearch duplicates --json` prints, each member with its id for /thumb and /file."""
        from search import duplicates as dup
        from search.keeper import describe

        if level not in ("copy", "similar"):
            raise UserError(f"level must be copy or similar, not {level[:20]!r}")
        with lock:
            folder = folder_in_index(within, searcher.store.roots()) if within else None
            key = (searcher.store.generation, level, folder)
            if key not in found_groups:
                collection = dup.Collection.of(searcher.store, folder)
                found_groups.clear()
                found_groups[key] = describe(dup.find(collection, similar=level == "similar"), collection,
                                             searcher.store)
            return found_groups[key]

    @app.get("/tags")
    def tags() -> Any:
        with lock:
            return [{"tag": tag, "photos": count} for tag, count in searcher.store.tags.counts()]

    @app.get("/classify")
    def classify_indexed(raw_id: str = Query(..., alias="id"), labels: str | None = Query(None),
                         top: int = Query(5, ge=1, le=100_000), templates: str = Query("photo")) -> Any:
        with lock:
            return zero_shot.classify_ids([file_id(raw_id)], classifier(labels, templates), top)[0].as_dict()

    @app.post("/classify")
    async def classify_image(request: Request, labels: str | None = Query(None), top: int = Query(5, ge=1, le=100_000),
                             templates: str = Query("photo")) -> Any:
        term = queries.Term.image(await body_image(request))
        with lock:
            vector = searcher.embed(term)
            found = zero_shot.classify_vector(vector, term.label, classifier(labels, templates), top)
        return found.as_dict()

    @app.api_route("/thumb/{raw_id}", methods=["GET", "HEAD"])
    def thumb(raw_id: str) -> Response:
        from clipsearch import images

        row = lookup(raw_id)
        headers = {"Cache-Control": "private, max-age=300", "ETag": f'"{row.hash.hex()}"'}
        cached = searcher.store.thumbnails.get(row.hash)
        if cached is not None:
            return Response(cached, media_type="image/jpeg", headers=headers)
        data = read(row)
        try:
            jpeg = images.thumbnail(data)
        except images.ImageError as exc:
            raise HTTPException(422, f"cannot decode this file: {exc}") from None
        try:
            unchanged = os.stat(row.path).st_size == row.size == len(data)
        except OSError:
            unchanged = False
        if unchanged:  # cache under the indexed content only: a file edited since must not poison it
            searcher.store.thumbnails.put(row.hash, jpeg)
        return Response(jpeg, media_type="image/jpeg", headers=headers)

    @app.api_route("/file/{raw_id}", methods=["GET", "HEAD"])
    def file(raw_id: str) -> Response:
        from clipsearch import images

        row = lookup(raw_id)
        data = read(row)
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

    @app.get("/info")
    def info() -> Any:
        with lock:
            return searcher.store.info()

    return app


def _said(request: Any, exc: Any) -> str:
    """An HTTP error's message as every other error of this server says it: a sentence, not the status phrase
    (Starlette's own "Not Found" for an address it has no route for, or a page asset that does not exist)."""
    from http import HTTPStatus

    detail = str(exc.detail)
    if detail != HTTPStatus(exc.status_code).phrase:
        return detail
    if exc.status_code == 404:
        return f"nothing at {request.url.path} on this server (the page is /, the API /search, /thumb/ID, /file/ID, /info)"
    if exc.status_code == 405:
        return f"{request.method} is not how {request.url.path} is asked"
    return detail[:1].lower() + detail[1:]


def _quote(name: str) -> str:
    """A file name for ``filename*=UTF-8''...`` (RFC 5987): valid UTF-8 always, so a name that is not (an old
    camera card's) has its stray bytes as U+FFFD, as a browser shows them."""
    from urllib.parse import quote

    return quote(os.fsencode(name).decode("utf-8", "replace"), safe="")


def serve(index_dir: Path, host: str = "127.0.0.1", port: int = 8000, device: str = "auto",
          precision: str = "auto", token: str | None = None, on_ready: Any = None) -> None:
    """Open the index, bind the port, then call ``on_ready(port)`` with the port bound (``port`` 0: the one the system
    chose) for the CLI to say where it serves, and serve until stopped.
    An index that cannot be opened or a port that cannot be bound is a ``UserError``, and nothing is announced."""
    import socket

    import uvicorn

    app = create_app(index_dir, device, precision, token)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        taken = exc.errno == errno.EADDRINUSE
        raise UserError(f"cannot listen on {host}:{port}: " + ("the port is in use (another server?); pick another "
                        "with --port" if taken else str(exc.strerror or exc))) from None
    sock.listen(2048)
    if on_ready is not None:
        on_ready(sock.getsockname()[1])
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
