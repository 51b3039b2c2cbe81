"""Videos in the words and faces stages, through the real CLI: the text shown in a video's frames is read at its
moments and found by `search --text` at the moment that showed it, `info` counts what waits per file content (not
per moment), and the faces stage leaves videos alone instead of counting them as photos it failed on."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import ROOT, Cli, search_json
from tests.serving import Server
from tests.test_words import plain, sign
from tests.videogen import make_video

SIZE = (640, 360)


def airport(folder: Path) -> Path:
    """36 s: a plain gradient, "GATE 42 BOARDING" on a board from 24 s to 30 s, then another gradient."""
    folder.mkdir(parents=True, exist_ok=True)
    board = sign(["GATE 42 BOARDING"], size=SIZE, height=44)
    return make_video(folder / "airport.mp4", [(0.0, plain(1, SIZE)), (24.0, board), (30.0, plain(2, SIZE))], 36,
                      size=SIZE, fps=5)


def _index(cli: Cli, *args: object) -> dict:
    result = cli("index", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return result.json()  # type: ignore[return-value]


@pytest.mark.usefixtures("words_on")
def test_the_text_in_a_video_is_read_at_its_moments_and_found_there(cli: Cli, tmp_path: Path, index_dir: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from clipsearch import ocr
    from indexer import words as stage

    folder = tmp_path / "clips"
    airport(folder)
    sign(["ACME HARDWARE"]).save(folder / "sign.jpg")
    real, read = ocr.Reader.read, []
    monkeypatch.setattr(ocr.Reader, "read", lambda self, image: read.append(image.size) or real(self, image))
    report = _index(cli, folder, "--model", "demo")
    assert report["failed"] == [] and report["words"]["failed"] == 0
    assert report["words"]["read"] == 2 and report["words"]["with_text"] == 2
    # bounded: at most MOMENTS_READ frames of the video read, and a held shot read once (three shots here)
    frames = [size for size in read if size == SIZE]
    assert 3 <= len(frames) <= 4 < stage.MOMENTS_READ

    hits = search_json(cli, "--text", "gate")
    assert [Path(h["path"]).name for h in hits] == ["airport.mp4"]
    assert 24.0 <= hits[0]["t"] < 30.0 and hits[0]["text"] == "GATE 42 BOARDING"
    assert search_json(cli, "--text", '"gate 42 boarding"')[0]["t"] == hits[0]["t"]  # a phrase, exactly
    assert search_json(cli, "--text", "acme")[0]["path"].endswith("sign.jpg")
    info = cli("info", "--json").json()
    assert info["words"] == {"mode": "on", "pictures_read": 2, "pictures_with_text": 2,  # type: ignore[index]
                             "pictures_waiting": 0}
    assert _index(cli).get("words") is None  # read once: not again until it changes

    server = Server(index_dir).start()  # HTTP: the same hit, and each line with the time and the box it was read at
    try:
        found = server.get("/search?text=gate").json()
        assert [(h["id"], h["t"]) for h in found] == [(hits[0]["id"], hits[0]["t"])]  # type: ignore[index]
        (line,) = server.get(f"/words/{hits[0]['id']}").json()["boxes"]  # type: ignore[index]
        assert line["text"] == "GATE 42 BOARDING" and line["t"] == hits[0]["t"] and len(line["box"]) == 4
    finally:
        server.stop()


@pytest.mark.usefixtures("words_on")
def test_a_video_an_earlier_words_stage_failed_on_as_a_picture_is_read_once_more(cli: Cli, tmp_path: Path,
                                                                                  index_dir: Path) -> None:
    airport(tmp_path / "clips")
    assert _index(cli, tmp_path / "clips", "--model", "demo", "--words", "later")["added"] == 1
    conn = sqlite3.connect(index_dir / "catalog.sqlite")  # what the stage before videos left: the video "failed"
    with conn:
        conn.execute("INSERT INTO seen_text SELECT hash, '', '[]', 'failed: cannot identify image file' FROM files")
    conn.close()
    report = _index(cli, "--words", "on")
    assert report["words"]["read"] == 1 and report["words"]["failed"] == 0 and report["words"]["with_text"] == 1
    assert [Path(h["path"]).name for h in search_json(cli, "--text", "boarding")] == ["airport.mp4"]
    conn = sqlite3.connect(index_dir / "catalog.sqlite")  # once: a video that fails now stays failed until it changes
    with conn:
        conn.execute("UPDATE seen_text SET how = 'failed: cannot decode this video'")
    conn.close()
    assert _index(cli).get("words") is None


def test_info_counts_the_contents_waiting_to_be_read_not_the_moments(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "clips"
    airport(folder)
    shutil.copy(ROOT / "data" / "sample" / "red-star.png", folder / "red-star.png")
    report = _index(cli, folder, "--model", "demo", "--words", "later")
    assert report["added"] == 2
    assert cli("info", "--json").json()["words"]["pictures_waiting"] == 2  # type: ignore[index]


def test_the_faces_stage_leaves_videos_alone(cli: Cli, tmp_path: Path) -> None:
    pytest.importorskip("dlib")
    folder = tmp_path / "clips"
    airport(folder)
    shutil.copy(ROOT / "tests" / "fixtures" / "faces" / "obama-1.jpg", folder / "obama-1.jpg")
    report = _index(cli, folder, "--model", "demo", "--faces", "on")
    assert report["added"] == 2 and report["failed"] == []
    assert report["faces"]["photos"] == 1 and report["faces"]["found"] == 1 and report["faces"]["failed"] == 0
    assert not any("faces could not be looked for" in note for note in report.get("notes", []))
    assert _index(cli).get("faces", {}).get("photos", 0) == 0  # and not tried again by later runs
