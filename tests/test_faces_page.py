"""The page's People view and the viewer's people, in Chromium, over an index whose faces were found (real faces:
tests/fixtures/faces)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli
from tests.serving import Server
from tests.test_faces import BIDEN, OBAMA, _folder, _index, _people, _who

pytest.importorskip("dlib")


@pytest.fixture
def faces_page(browser: Any, cli: Cli, tmp_path: Path, index_dir: Path) -> Iterator[tuple[Any, dict[str, int]]]:
    photos = _folder(tmp_path / "photos", "obama-1.jpg", "obama-2.jpg", "biden-1.jpg", "biden-2.jpg",
                     "obama-and-biden.jpg")
    _index(cli, photos, "--model", "demo", "--faces", "on")
    people = _people(cli)
    who = {"obama": _who(people, OBAMA), "biden": _who(people, BIDEN)}
    cli("people", "name", who["obama"], "Barack Obama")
    server = Server(index_dir).start()
    context = browser.new_context(viewport={"width": 1280, "height": 860}, bypass_csp=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.set_default_timeout(30_000)
    page.goto(server.base + "/")
    try:
        yield page, who
    finally:
        context.close()
        server.stop()
        shutil.rmtree(photos, ignore_errors=True)
    assert not errors, errors


def test_the_people_view_lists_faces_and_a_click_lists_their_photos(faces_page: tuple[Any, dict[str, int]]) -> None:
    page, who = faces_page
    page.click("#show-people")
    page.wait_for_function("document.querySelectorAll('#people-list .person').length === 2")
    names = page.locator("#people-list .person strong").all_inner_texts()
    assert sorted(names) == sorted(["Barack Obama", f"person {who['biden']}"])
    page.wait_for_function("Array.from(document.querySelectorAll('#people-list img'))"
                           ".every((img) => img.complete && img.naturalWidth > 0)")  # each face, cut from its photo
    assert "view=people" in page.url
    page.locator("#people-list .person", has_text="Barack Obama").click()
    page.wait_for_function("document.querySelectorAll('#grid .tile').length === 3 && !document.getElementById('grid').hidden")
    assert sorted(page.locator("#grid .tile .name").all_inner_texts()) == sorted(OBAMA)
    assert "with Barack Obama" in page.inner_text("#status") and f"person={who['obama']}" in page.url

    page.locator("#grid .tile", has_text="obama-and-biden.jpg").click()  # the viewer says who is in it
    page.wait_for_selector("#viewer:not([hidden])")
    assert sorted(page.locator("#viewer-people .tag").all_inner_texts()) == sorted(["Barack Obama", f"person {who['biden']}"])
    page.locator("#viewer-people .tag", has_text=f"person {who['biden']}").click()  # and a click lists theirs
    page.wait_for_function("document.getElementById('viewer').hidden && document.querySelectorAll('#grid .tile').length === 3"
                           " && document.getElementById('status').textContent.includes('person')")
    assert sorted(page.locator("#grid .tile .name").all_inner_texts()) == sorted(BIDEN)
    page.reload()  # the address keeps the person
    page.wait_for_function("document.querySelectorAll('#grid .tile').length === 3")
    assert sorted(page.locator("#grid .tile .name").all_inner_texts()) == sorted(BIDEN)
