"""`clipsearch serve`: real HTTP requests to a server started by the test, over the demo model."""

from __future__ import annotations

import json
import shutil
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Cli, Library
from tests.serving import SAMPLE, Server, image_size

quote = urllib.parse.quote


@pytest.fixture
def server(cli: Cli, tmp_path: Path, index_dir: Path) -> Iterator[tuple[Server, Path]]:
    photos = tmp_path / "photos"
    shutil.copytree(SAMPLE, photos)
    assert cli("index", photos, "--model", "demo").exit_code == 0
    server = Server(index_dir).start()
    try:
        yield server, photos
    finally:
        server.stop()


def test_endpoints(server: tuple[Server, Path], cli: Cli) -> None:
    srv, photos = server
    response = srv.get("/info")
    info = response.json()
    assert response.status == 200 and info["images"] == 54 and info["model"] == "demo"  # type: ignore[index]

    response = srv.get("/search?q=" + quote("a red star") + "&k=3")
    hits = response.json()
    assert response.status == 200
    assert [h["rank"] for h in hits] == [1, 2, 3]  # type: ignore[union-attr]
    assert hits[0]["path"] == str(photos / "red-star.png") and hits[0]["name"] == "red-star.png"  # type: ignore[index]

    response = srv.get("/search?k=2", method="POST", body=(photos / "blue-circle.jpg").read_bytes())
    hits = response.json()
    assert response.status == 200 and hits[0]["path"] == str(photos / "blue-circle.jpg")  # type: ignore[index]
    assert hits[0]["score"] >= 0.99  # type: ignore[index]

    response = srv.get("/search?q=star&k=50&in=" + quote(str(photos / "nowhere")))
    assert response.status == 200 and response.json() == []

    assert srv.get("/search?q=x&k=0").status == 400
    assert srv.get("/search?k=3").status == 400  # neither words nor a file id
    assert srv.get("/search?k=1", method="POST", body=b"").status == 400
    response = srv.get("/search?k=1", method="POST", body=b"not an image")
    assert response.status == 400 and "cannot use" in response.json()["error"]  # type: ignore[index]

    # a rebuild while the server runs is picked up on the next query
    shutil.copy(photos / "green-square.jpg", photos / "zz-new-green-square.jpg")
    (photos / "red-star.png").unlink()
    assert cli("index", photos).exit_code == 0
    hits = srv.get("/search?q=" + quote("a red star") + "&k=54").json()
    paths = [h["path"] for h in hits]  # type: ignore[union-attr]
    assert str(photos / "red-star.png") not in paths and str(photos / "zz-new-green-square.jpg") in paths


def test_paging_and_more_like_this(library: Library) -> None:
    srv = library.server
    everything = srv.get("/search?q=" + quote("a blue circle") + "&k=109").json()
    assert isinstance(everything, list) and len(everything) == 109
    pages = [srv.get(f"/search?q={quote('a blue circle')}&k=40&offset={offset}").json() for offset in (0, 40, 80)]
    assert [len(p) for p in pages] == [40, 40, 29]  # type: ignore[arg-type]
    assert [h["id"] for p in pages for h in p] == [h["id"] for h in everything]  # type: ignore[union-attr,index]
    assert [h["rank"] for p in pages for h in p] == list(range(1, 110))  # type: ignore[union-attr,index]

    star = next(h for h in srv.get("/search?q=" + quote("a red star") + "&k=5").json() if h["name"] == "red-star.png")  # type: ignore[union-attr,index]
    like = srv.get(f"/search?like={star['id']}&k=10").json()
    assert star["id"] not in [h["id"] for h in like]  # type: ignore[union-attr,index]
    # the identical copy in another folder is the nearest photo, with the same embedding
    assert like[0]["name"] == "red-star.png" and like[0]["score"] >= 0.999  # type: ignore[index]
    assert srv.get("/search?like=999999&k=3").status == 404  # an id the index does not hold
    assert srv.get("/search?like=abc&k=3").status == 400  # not an id at all
    # as docs/guide.md says: 404 for a person id the index does not hold (was 400), 400 for a t that is no time (was
    # 422); the body one line of JSON either way
    for path, status in (("/people/999", 404), (f"/thumb/{star['id']}?t=abc", 400), ("/people/Nobody", 400)):
        response = srv.get(path)
        assert (response.status, list(response.json())) == (status, ["error"]), (path, response.body[:200])  # type: ignore[arg-type]
        assert "\n" not in response.json()["error"]  # type: ignore[index]

    reds = srv.get("/search?q=" + quote("a star") + "&k=100&in=" + quote(str(library.root / "reds"))).json()
    assert len(reds) == 6 and all(h["path"].startswith(str(library.root / "reds") + "/") for h in reds)  # type: ignore[union-attr,index,arg-type]


@pytest.mark.parametrize("path", [
    "/file/../../../../etc/passwd", "/thumb/../../etc/passwd", "/file/%2Fetc%2Fpasswd", "/file/..%2F..%2Fetc%2Fpasswd",
    "/thumb//etc/passwd", "/file/999999", "/thumb/999999", "/file/-1", "/thumb/1.0", "/file/abc", "/file/",
    "/static/../server.py", "/static/..%2Fserver.py", "/static/server.py", "/static/index.html%00.js",
])
def test_only_indexed_files_are_served(library: Library, path: str) -> None:
    response = library.server.get(path)
    assert response.status == 404, (path, response.status, response.body[:200])
    assert b"root:" not in response.body and b"import" not in response.body


def test_thumbnails_upright_and_cached(library: Library) -> None:
    srv = library.server
    rotated = library.root / "big" / "rotated.jpg"
    hit = srv.get("/search?k=1", method="POST", body=rotated.read_bytes()).json()[0]  # type: ignore[index]
    assert hit["path"] == str(rotated)

    first = srv.get(f"/thumb/{hit['id']}")
    assert first.status == 200 and first.headers["content-type"] == "image/jpeg"
    width, height = image_size(first.body)
    assert (width, height) == (256, 341)  # shorter side 256, EXIF 6 applied: portrait
    assert list((library.index_dir / "thumbs").rglob("*.jpg"))

    full = srv.get(f"/file/{hit['id']}")
    assert full.status == 200 and full.body == rotated.read_bytes()  # sent as is: the browser applies EXIF

    assert srv.get(f"/thumb/{hit['id']}").body == first.body  # from the cache
    # with the photo gone from disk, neither its cached thumbnail nor the file is shown (the guide: both refuse)
    moved = library.root.parent / "rotated-away.jpg"
    rotated.rename(moved)
    try:
        assert srv.get(f"/thumb/{hit['id']}").status == 404
        assert srv.get(f"/file/{hit['id']}").status == 404
    finally:
        moved.rename(rotated)


def test_page_and_assets(library: Library) -> None:
    srv = library.server
    page = srv.get("/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    html = page.body.decode()
    for asset in ("/static/app.js", "/static/style.css", "/static/favicon.svg"):
        assert asset in html
        assert srv.get(asset).status == 200
    assert "http://" not in html and "https://" not in html  # nothing from a CDN: works offline


def test_token(cli: Cli, tmp_path: Path, index_dir: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("red-star.png", "blue-circle.jpg"):
        shutil.copy(SAMPLE / name, photos / name)
    assert cli("index", photos, "--model", "demo").exit_code == 0
    srv = Server(index_dir, ["--token", "s3cret"]).start()
    try:
        assert srv.get("/info").status == 401
        assert srv.get("/").status == 401
        assert srv.get("/info?token=wrong").status == 401
        assert srv.get("/info", headers={"Authorization": "Bearer wrong"}).status == 401
        assert srv.get("/info", headers={"Authorization": "Bearer s3cret"}).status == 200
        opened = srv.get("/?token=s3cret")
        assert opened.status == 200
        cookie = opened.headers["set-cookie"].split(";")[0]
        assert cookie == "clipsearch_token=s3cret" and "httponly" in opened.headers["set-cookie"].lower()
        hits = srv.get("/search?q=star&k=1", headers={"Cookie": cookie})
        assert hits.status == 200 and json.loads(hits.body)[0]["name"] in ("red-star.png", "blue-circle.jpg")
    finally:
        srv.stop()


def test_non_local_host_warns(index_dir: Path, cli: Cli) -> None:
    from typer.testing import CliRunner

    from cli import app

    # no index: the warning comes first, then the one-line error, and nothing listens
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--index", str(index_dir)])
    assert "warning: serving on 0.0.0.0" in result.stderr and "--token" in result.stderr
    assert result.exit_code == 2 and "no index" in result.stderr
