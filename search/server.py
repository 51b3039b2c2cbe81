"""A resident HTTP JSON API over one index: the model and the index are loaded once.

    GET  /search?q=TEXT&k=10&in=FOLDER   text query
    POST /search?k=10&in=FOLDER          image query: the request body is the image file
    GET  /info                           what `clipsearch info --json` prints

A rebuild is picked up on the next query (the committed generation is checked
per query). Only indexed files ever appear in answers: paths come from the
catalog, never from the request.
"""

# no "from __future__ import annotations": FastAPI reads the endpoints' annotations at run time

import threading
from pathlib import Path
from typing import Any

from clipsearch.errors import UserError
from search.engine import Searcher

MAX_UPLOAD_BYTES = 64 * 1024 * 1024


def create_app(index_dir: Path, device: str = "auto", precision: str = "auto") -> Any:
    from fastapi import FastAPI, HTTPException, Query, Request
    from fastapi.responses import JSONResponse

    searcher = Searcher(index_dir, device=device, precision=precision)
    searcher.encoder  # noqa: B018 - load the model now, not on the first request
    lock = threading.Lock()  # one SQLite connection and one model: queries take turns
    app = FastAPI(title="clipsearch", summary="Search your photos by what is in them.")

    @app.exception_handler(UserError)
    async def user_error(_: Request, exc: UserError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    def answer(vector: Any, k: int, within: str | None) -> list[dict[str, Any]]:
        return [hit.as_dict() for hit in searcher.search(vector, k=k, within=within)]

    @app.get("/search")
    def search_text(q: str = Query(..., min_length=1, description="What to look for, in words."),
                    k: int = Query(10, ge=1, le=10_000), within: str | None = Query(None, alias="in")) -> Any:
        with lock:
            return answer(searcher.embed_text(q), k, within)

    @app.post("/search")
    async def search_image(request: Request, k: int = Query(10, ge=1, le=10_000),
                           within: str | None = Query(None, alias="in")) -> Any:
        data = await request.body()
        if not data:
            raise HTTPException(400, "send the query image as the request body")
        if len(data) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, "the query image is over 64 MiB")
        with lock:
            return answer(searcher.embed_image_bytes(data), k, within)

    @app.get("/info")
    def info() -> Any:
        with lock:
            return searcher.store.info()

    return app


def serve(index_dir: Path, host: str = "127.0.0.1", port: int = 8000, device: str = "auto",
          precision: str = "auto") -> None:
    import uvicorn

    uvicorn.run(create_app(index_dir, device, precision), host=host, port=port, log_level="warning")
