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
from pathlib import Path
from typing import Any

from clipsearch.display import to_json
from clipsearch.errors import NoSuchPhoto, UserError

TOKEN_COOKIE = "clipsearch_token"


def create_app(index_dir: Path, device: str = "auto", precision: str = "auto", token: str | None = None) -> Any:
    """The app: the routers of ``search.routes`` over one resident ``clipsearch.app.Index`` on ``app.state.server``,
    the error handlers that give every error the one shape ``{"error": "..."}``, and the token check."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from clipsearch.app import Index
    from search.routes import files, listings, pages, queries
    from search.routes.state import ServerState

    index = Index(index_dir, device=device, precision=precision, resident=True)
    if not index.searcher.has_fast_text():
        index.searcher.encoder  # noqa: B018 - load the model now, not on the first request
    # else text queries run on the exported text tower, and the model (torch) is loaded by the first image
    # query: a server used for words stays small.

    class Json(JSONResponse):
        """JSON whose paths may hold names that are not valid UTF-8 (``clipsearch.display.to_json``)."""

        def render(self, content: Any) -> bytes:
            return to_json(content, allow_nan=False, separators=(",", ":")).encode("utf-8")

    app = FastAPI(title="clipsearch", summary="Search your photos by what is in them.", default_response_class=Json)
    app.state.server = ServerState(index)
    for module in (pages, queries, listings, files):
        app.include_router(module.router)

    @app.exception_handler(UserError)
    async def user_error(_: Request, exc: UserError) -> JSONResponse:
        return Json({"error": str(exc)}, status_code=404 if isinstance(exc, NoSuchPhoto) else 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return Json({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

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

    return app


def serve(index_dir: Path, host: str = "127.0.0.1", port: int = 8000, device: str = "auto",
          precision: str = "auto", token: str | None = None, on_ready: Any = None) -> None:
    """Open the index, bind the port, then call ``on_ready()`` (the CLI says where it serves) and serve until stopped.
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
        on_ready()
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
