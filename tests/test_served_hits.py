"""A search never serves a hit it cannot stand behind (issue 31, the second trial): one changed byte in a stored
path inside catalog.sqlite was served as a photo that does not exist, exit 0, before anyone ran ``check``. Each
search checks the hits it is about to return (``search.engine.Searcher._stand_behind``), through the real CLI and a
real ``clipsearch serve`` process."""

from __future__ import annotations

import json
import shutil
import urllib.parse
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.damaging import change_a_byte_in_a_stored_path, index_the_sample
from tests.serving import Server


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the sample indexed once with the demo model; each test copies the folder and the index."""
    return index_the_sample(tmp_path_factory.mktemp("built"))


@pytest.fixture
def photos(built: Path, tmp_path: Path, index_dir: Path) -> Path:
    """The built index copied to ``index_dir``; its photos folder is shared (a test that moves a file puts it back)."""
    shutil.copytree(built / "index", index_dir)
    return built / "photos"


def _hits(cli: Cli, *args: str) -> tuple[int, list[str], str]:
    result = cli("search", "a red star", "-k", "54", "--json", *args)
    return result.exit_code, [h["path"] for h in json.loads(result.stdout or "[]")], result.stderr


@pytest.mark.parametrize("where", ["row", "index"])
def test_a_changed_byte_in_a_stored_path_is_never_served_before_a_check(cli: Cli, photos: Path, index_dir: Path,
                                                                         where: str) -> None:
    change_a_byte_in_a_stored_path(index_dir / "catalog.sqlite", photos / "red-star.png", where)
    code, served, err = _hits(cli)
    assert code != 0 and served == [], served
    assert "damaged" in err and "clipsearch check --repair" in err and len(err.strip().splitlines()) == 1, err
    paths_only = cli("search", "a red star", "-k", "54", "--paths")
    assert paths_only.exit_code != 0 and paths_only.stdout == ""
    server = Server(index_dir).start()
    try:
        answer = server.get("/search?q=" + urllib.parse.quote("a red star") + "&k=54")
    finally:
        server.stop()
    assert answer.status == 503 and "check --repair" in answer.json()["error"]  # type: ignore[index]
    assert cli("check", "--repair", "--json").exit_code in (0, 1)  # the cure the message names
    code, served, err = _hits(cli)
    assert code == 0 and all(Path(p).is_file() for p in served) and len(served) >= 53, err


def test_a_photo_gone_since_the_last_run_is_left_out_and_said(cli: Cli, photos: Path, index_dir: Path,
                                                              tmp_path: Path) -> None:
    gone = photos / "red-star.png"
    kept = tmp_path / "red-star.png"
    shutil.move(gone, kept)
    try:
        code, served, err = _hits(cli)
        assert code == 0 and str(gone) not in served and len(served) == 53
        assert "1 hit left out" in err and "clipsearch index" in err and str(gone) in err, err
        server = Server(index_dir).start()
        try:
            answer = server.get("/search?q=" + urllib.parse.quote("a red star") + "&k=54")
        finally:
            server.stop()
        assert answer.status == 200 and str(gone) not in [h["path"] for h in answer.json()]  # type: ignore[union-attr]
        assert "1 hit left out" in answer.headers["x-clipsearch-warning"]
    finally:
        shutil.move(kept, gone)
    code, served, err = _hits(cli)
    assert code == 0 and str(gone) in served and "left out" not in err
