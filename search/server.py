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
    GET  /people, /people/PERSON            the people found in photos; a person's faces (`clipsearch people --json`)
    GET  /face/FACE                         a face cut from the photo that shows it (~160 px JPEG)
    GET  /classify?id=ID&labels=A,B&top=5&templates=photo   an indexed photo's labels (its stored vector)
    POST /classify?labels=A,B&top=5         an uploaded image's labels (body or multipart form, as POST /search)

/search takes the CLI's filters as parameters: ``in``, ``tag`` (repeatable: every tag), ``after``, ``before``,
``camera``, ``type`` (repeatable), ``min_pixels``, ``near``, ``person`` (repeatable: all of them), ``relevant=1``
or ``min_score``, ``sort`` (relevance, date, -date; with no q, sort=date browses, and so does ``person`` alone).
Query arithmetic: ``q`` repeatable (each term added, ``N:`` weights, ``like:ID``), ``minus`` repeatable (terms
taken away). Each hit carries its metadata (taken, camera, width, height, ...), ``tags`` and ``people`` (who is
in it, with each face's box).
/classify without ``labels`` ranks the built-in vocabulary (image -> text).

The rules are the CLI's and the Python API's (``clipsearch.app``): one of q, like or an image; k from 1 to 10,000. Every error is
``{"error": "..."}``: 400 for a request that cannot be answered as asked, 401 without the token, 404 for an
id the index does not hold, 413 for an upload over 64 MiB, 422 for a file the index holds but cannot decode.

Files are addressed only by catalog id; a path never comes from the request, so
nothing outside the index can be served. A rebuild is picked up on the next
query (the committed generation is checked per query). With a token set, every
request needs it (``?token=``, a bearer header, or the cookie the page gets).

The routes live in ``search.routes`` (one router per kind of answer); this module makes the app and serves it.
"""

import errno
import hmac
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clipsearch.display import to_json
from clipsearch.errors import DamagedIndex, NotInIndex, UserError

TOKEN_COOKIE = "clipsearch_token"
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
# A client has this long to send a request's headers (a slow trickle holds a connection, not the server).
HEADER_SECONDS = float(os.environ.get("CLIPSEARCH_HEADER_TIMEOUT", "10"))


def host_names(host: str, allowed: Sequence[str] = ()) -> set[str]:
    """The names a Host header may carry: localhost, the address bound, and the names the user allows. Any IP
    address is accepted as well (a rebinding attack needs a name); other names are refused, so a web page that
    rebinds its own name to 127.0.0.1 cannot read this server."""
    return {name.lower().strip("[]") for name in (*LOCAL_NAMES, host, *allowed)}


def _host_of(header: str) -> str:
    """The name in a Host header, without its port: ``[::1]:8000`` -> ``::1``, ``Photos.local:80`` -> ``photos.local``."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def host_allowed(header: str | None, names: set[str]) -> bool:
    if not header:
        return False
    name = _host_of(header)
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return name in names


def create_app(index_dir: Path, device: str = "auto", precision: str = "auto", token: str | None = None,
               host: str = "127.0.0.1", allowed_hosts: Sequence[str] = ()) -> Any:
    """The app: the routers of ``search.routes`` over one resident ``clipsearch.app.Index`` on ``app.state.server``,
    the error handlers that give every error the one shape ``{"error": "..."}``, the Host check and the token."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from clipsearch.app import Index
    from search.routes import files, listings, pages, queries
    from search.routes.state import ServerState, in_http_words

    index = Index(index_dir, device=device, precision=precision, resident=True)
    if not index.searcher.query_model.has_fast_text():
        index.searcher.query_model.encoder  # noqa: B018 - load the model now, not on the first request
    # else text queries run on the exported text tower, and the model (torch) is loaded by the first image
    # query: a server used for words stays small.

    class Json(JSONResponse):
        """JSON whose paths may hold names that are not valid UTF-8 (``clipsearch.display.to_json``)."""

        def render(self, content: Any) -> bytes:
            return to_json(content, allow_nan=False, separators=(",", ":")).encode("utf-8")

    # No /docs or /redoc: FastAPI's pages load their scripts from a CDN, and this server works offline. The
    # API's description is /openapi.json; docs/guide.md has the routes.
    app = FastAPI(title="clipsearch", summary="Search your photos by what is in them.", default_response_class=Json,
                  docs_url=None, redoc_url=None)
    app.state.server = ServerState(index)
    for module in (pages, queries, listings, files):
        app.include_router(module.router)

    @app.exception_handler(UserError)
    async def user_error(_: Request, exc: UserError) -> JSONResponse:
        status = 404 if isinstance(exc, NotInIndex) else 503 if isinstance(exc, DamagedIndex) else 400
        return Json({"error": in_http_words(str(exc))}, status_code=status)

    @app.exception_handler(Exception)
    async def server_error(_: Request, exc: Exception) -> JSONResponse:  # a defect: still one line, still JSON
        return Json({"error": f"internal error: {type(exc).__name__}: {str(exc)[:200]}"}, status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return Json({"error": _said(request, exc)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "the request"
        return Json({"error": f"{where}: {first.get('msg', 'not valid')}"}, status_code=400)

    app.add_middleware(HeadAsGet)
    names = host_names(host, allowed_hosts)

    @app.middleware("http")
    async def known_host(request: Request, call_next: Any) -> Any:
        if not host_allowed(request.headers.get("host"), names):
            return JSONResponse({"error": "this server answers to localhost, its address and the names given with "
                                          "--allow-host, not to this Host header"}, status_code=403)
        return await call_next(request)

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

    return app


class HeadAsGet:
    """HEAD of every GET route, answered as GET is, without the body: FastAPI's routes take only the methods they
    declare (Starlette's add HEAD to GET), and an HTTP client or a proxy's health check may ask HEAD of any address.
    A route that declares HEAD itself (/file, /thumb: they skip reading the file) is left to it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD" or self._declared(scope):
            await self.app(scope, receive, send)
            return

        async def without_body(message: Any) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)

    @staticmethod
    def _declared(scope: Any) -> bool:
        from starlette.routing import Match

        return any(route.matches(scope)[0] == Match.FULL for route in scope["app"].router.routes)


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


def serve(index_dir: Path, host: str = "127.0.0.1", port: int = 8000, device: str = "auto",
          precision: str = "auto", token: str | None = None, on_ready: Any = None,
          allowed_hosts: Sequence[str] = ()) -> None:
    """Open the index, bind the port, then call ``on_ready(port)`` with the port bound (``port`` 0: the one the system
    chose) for the CLI to say where it serves, and serve until stopped. An index that cannot be opened or a port
    that cannot be bound is a ``UserError``, and nothing is announced."""
    import socket

    import uvicorn

    app = create_app(index_dir, device, precision, token, host, allowed_hosts)
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
    uvicorn.Server(uvicorn.Config(app, log_level="warning", http=_header_deadline_protocol())).run(sockets=[sock])


def _header_deadline_protocol() -> type:
    """uvicorn's HTTP/1.1 protocol, with a deadline for each request's headers (uvicorn has none): a client that
    trickles them is disconnected after ``HEADER_SECONDS`` instead of holding its connection for ever."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadline(H11Protocol):
        _deadline: Any = None

        def _arm(self) -> None:
            if self._deadline is None:
                self._deadline = self.loop.call_later(HEADER_SECONDS, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self.cycle is None or self.cycle.response_complete:  # between requests: the next one's headers
                self._arm()
            before = self.cycle
            super().data_received(data)
            if self.cycle is not before:  # its headers are in
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderDeadline
