"""The search page (plain HTML/CSS/JS shipped in search/web: no CDN, works offline) and its assets."""

# no "from __future__ import annotations": FastAPI reads the endpoints' annotations at run time

from importlib import resources

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

router = APIRouter(include_in_schema=False)

_ASSETS = {"app.js": "text/javascript; charset=utf-8", "duplicates.js": "text/javascript; charset=utf-8",
           "people.js": "text/javascript; charset=utf-8",
           "style.css": "text/css; charset=utf-8", "favicon.svg": "image/svg+xml"}
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _web_file(name: str) -> bytes:
    return resources.files("search").joinpath("web", name).read_bytes()


@router.get("/")
def page() -> Response:
    return Response(_web_file("index.html"), media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@router.get("/static/{name}")
def asset(name: str) -> Response:
    if name not in _ASSETS:
        raise HTTPException(404)  # said as any address the server does not have (``server._said``)
    return Response(_web_file(name), media_type=_ASSETS[name], headers={"Cache-Control": "no-cache"})
