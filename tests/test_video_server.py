"""Videos through the real server: hits carry ``t``, the thumbnail is the best moment's frame, and /file/ID answers
range requests (206, Content-Range, 416), which is how the page's player seeks to a moment."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.serving import SAMPLE, Server
from tests.videogen import make_video, sample_picture


@pytest.fixture(scope="module")
def video_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    from typer.testing import CliRunner

    from cli import app

    root = tmp_path_factory.mktemp("served")
    photos, index = root / "photos", root / "index"
    photos.mkdir()
    shutil.copy(SAMPLE / "blue-circle.jpg", photos / "blue-circle.jpg")
    scenes = [(0.0, sample_picture("blue-circle")), (3.0, sample_picture("red-star")), (7.5, sample_picture("green-square"))]
    make_video(photos / "clip.mp4", scenes, 12, gop=10)
    result = CliRunner().invoke(app, ["index", str(photos), "--index", str(index), "--model", "demo"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    server = Server(index).start()
    try:
        yield server, photos
    finally:
        server.stop()


def _video_hit(server: Server, words: str) -> dict:
    hits = server.get(f"/search?q={words.replace(' ', '+')}&k=5").json()
    videos = [h for h in hits if h["path"].endswith(".mp4")]  # type: ignore[union-attr]
    assert len(videos) == 1
    return videos[0]


def test_hits_carry_t_and_the_thumbnail_is_the_best_moment(video_server: tuple[Server, Path]) -> None:
    server, _ = video_server
    red, green = _video_hit(server, "a red star"), _video_hit(server, "a green square")
    assert 3.0 <= red["t"] < 4.5 and 7.0 <= green["t"] < 9.0 and red["moments"]
    thumbs = {}
    for hit in (red, green):
        response = server.get(f"/thumb/{hit['id']}?t={hit['t']}")
        assert response.status == 200 and response.headers["content-type"] == "image/jpeg"
        with Image.open(io.BytesIO(response.body)) as im:
            thumbs[hit["t"]] = im.convert("RGB").resize((1, 1)).getpixel((0, 0))
    red_pixel, green_pixel = thumbs[red["t"]], thumbs[green["t"]]
    assert red_pixel != green_pixel  # two moments, two frames
    assert server.get(f"/thumb/{red['id']}").status == 200  # no t: the first moment
    assert server.get(f"/thumb/{red['id']}?t=-3").status == 400  # as docs/guide.md says (was 422)
    assert server.get(f"/thumb/{red['id']}?t=soon").status == 400


def test_file_answers_range_requests(video_server: tuple[Server, Path]) -> None:
    server, photos = video_server
    data = (photos / "clip.mp4").read_bytes()
    size = len(data)
    file_id = _video_hit(server, "a red star")["id"]
    whole = server.get(f"/file/{file_id}")
    assert whole.status == 200 and whole.body == data and whole.headers["content-type"] == "video/mp4"
    assert whole.headers["accept-ranges"] == "bytes"
    cases = {"bytes=0-99": (0, 99), "bytes=100-": (100, size - 1), "bytes=-50": (size - 50, size - 1),
             f"bytes=10-{size + 1000}": (10, size - 1)}
    for header, (first, last) in cases.items():
        part = server.get(f"/file/{file_id}", headers={"Range": header})
        assert part.status == 206, header
        assert part.headers["content-range"] == f"bytes {first}-{last}/{size}", header
        assert part.body == data[first : last + 1] and int(part.headers["content-length"]) == last - first + 1
    head = server.get(f"/file/{file_id}", method="HEAD", headers={"Range": "bytes=0-9"})
    assert head.status == 206 and head.headers["content-length"] == "10" and head.body == b""
    for bad in (f"bytes={size}-", f"bytes={size + 5}-{size + 10}", "bytes=-0"):
        refused = server.get(f"/file/{file_id}", headers={"Range": bad})
        assert refused.status == 416 and refused.headers["content-range"] == f"bytes */{size}", bad
    for ignored in ("items=0-5", "bytes=5-1", "bytes=0-1,4-5", "bytes=abc"):  # answered whole, as the RFC allows
        answered = server.get(f"/file/{file_id}", headers={"Range": ignored})
        assert answered.status == 200 and answered.body == data, ignored
    photo_id = next(h["id"] for h in server.get("/search?q=circle&k=5").json() if h["path"].endswith(".jpg"))  # type: ignore[union-attr]
    photo = server.get(f"/file/{photo_id}", headers={"Range": "bytes=0-1"})
    assert photo.status == 206 and photo.body == b"\xff\xd8"  # photos too


def test_the_page_has_a_player_that_starts_at_t(video_server: tuple[Server, Path]) -> None:
    server, _ = video_server
    assert 'id="big-video"' in server.get("/").body.decode()
    script = server.get("/static/app.js").body.decode()
    assert "/file/${hit.id}#t=${hit.t}" in script and "thumb/${hit.id}?t=${hit.t}" in script
