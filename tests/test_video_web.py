"""A video on the search page in a real headless Chromium: its tile is the best moment's frame, and the viewer plays
it from ``t`` (the browser fetches it with range requests). VP9 in WebM, which every Chromium build plays."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.serving import SAMPLE, Server
from tests.videogen import make_video, sample_picture


@pytest.fixture(scope="module")
def video_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from typer.testing import CliRunner

    from cli import app

    root = tmp_path_factory.mktemp("video-site")
    photos, index = root / "photos", root / "index"
    photos.mkdir()
    shutil.copy(SAMPLE / "blue-circle.jpg", photos / "blue-circle.jpg")
    scenes = [(0.0, sample_picture("blue-circle")), (4.0, sample_picture("red-star"))]
    make_video(photos / "clip.webm", scenes, 8, codec="libvpx-vp9", gop=10)
    result = CliRunner().invoke(app, ["index", str(photos), "--index", str(index), "--model", "demo", "--quiet"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    server = Server(index).start()
    try:
        yield server
    finally:
        server.stop()


def test_the_viewer_plays_a_video_from_its_best_moment(browser: Any, video_site: Server) -> None:
    hit = next(h for h in video_site.get("/search?q=a+red+star&k=5").json() if h["path"].endswith(".webm"))  # type: ignore[union-attr]
    assert 4.0 <= hit["t"] < 5.0
    context = browser.new_context(viewport={"width": 1280, "height": 860}, bypass_csp=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(30_000)
    page.goto(video_site.base + "/")
    page.fill("#q", "a red star")
    page.press("#q", "Enter")
    tile = page.locator(f'#grid .tile[data-id="{hit["id"]}"]')
    tile.wait_for()
    assert tile.locator("img").get_attribute("src") == f"/thumb/{hit['id']}?t={hit['t']:g}"
    page.wait_for_function(f"""(() => {{ const img = document.querySelector('#grid .tile[data-id="{hit["id"]}"] img');
        return img && img.complete && img.naturalWidth > 0; }})()""")
    tile.click()
    page.wait_for_function("!document.getElementById('big-video').hidden")
    assert page.locator("#big").is_hidden()
    # the player got the file by ranges and stands at the best moment (or past it, playing)
    page.wait_for_function(f"document.getElementById('big-video').currentTime >= {hit['t'] - 0.05}")
    assert page.evaluate("document.getElementById('big-video').error") is None
    moments = page.locator("#viewer-moments .moment").all_inner_texts()
    assert moments and f"{hit['t']:.1f} s" in moments
    page.keyboard.press("Escape")
    page.wait_for_function("document.getElementById('big-video').hidden")
    context.close()
    assert not errors, errors
