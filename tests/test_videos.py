"""Videos through the real CLI: indexed as moments, found once at the right time, incremental, dated and placed from
their container, and bad videos cost only themselves (tests/test_video_server.py has the page's side)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.videogen import make_video, sample_picture

# blue circle from 0 s, red star from 3 s, green square from 7.5 s; a QuickTime date and place
SCENES = [(0.0, "blue-circle"), (3.0, "red-star"), (7.5, "green-square")]
WHEN = {"creation_time": "2021-06-01T12:00:00.000000Z", "location": "+48.8584+002.2945/"}


def scenes(names: list[tuple[float, str]] = SCENES) -> list[tuple[float, object]]:
    return [(start, sample_picture(name)) for start, name in names]


@pytest.fixture
def library(tmp_path: Path) -> Path:
    folder = tmp_path / "library"
    folder.mkdir()
    for name in ("black-cross.webp", "yellow-diamond.jpg"):
        shutil.copy(Path(__file__).resolve().parent.parent / "data" / "sample" / name, folder / name)
    make_video(folder / "holiday.mp4", scenes(), 12, gop=10, metadata=WHEN)
    return folder


def _search(cli: Cli, *args: object) -> list[dict]:
    result = cli("search", *map(str, args), "--json")
    assert result.exit_code == 0, result.stderr
    return result.json()  # type: ignore[return-value]


def test_a_video_is_indexed_as_moments_and_found_once_at_its_time(cli: Cli, library: Path) -> None:
    result = cli("index", library, "--model", "demo", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["added"] == 3 and report["failed"] == []
    hits = _search(cli, "a red star", "-k", "3")
    videos = [h for h in hits if h["path"].endswith("holiday.mp4")]
    assert len(videos) == 1  # once, however many of its moments matched
    video = videos[0]
    assert video["rank"] == 1
    assert 3.0 <= video["t"] < 4.5  # the red star's scene starts at 3 s; keyframes every second
    assert video["moments"] and all(3.0 <= m["t"] < 7.5 for m in video["moments"])
    assert video["video"]["codec"] == "h264" and video["video"]["duration"] == pytest.approx(12, abs=0.2)
    assert (video["width"], video["height"]) == (320, 240)
    green = next(h for h in _search(cli, "a green square", "-k", "3") if h["path"].endswith(".mp4"))
    assert 7.0 <= green["t"] < 9.0
    # the container's date and place: the filters find it
    assert video["taken"].startswith("2021-06-0") and video["taken_from"] == "QuickTime"
    dated = _search(cli, "a red star", "--after", "2021-05-01", "--before", "2021-07-01")
    assert [h["path"] for h in dated] == [str(library / "holiday.mp4")] and dated[0]["t"] == video["t"]
    near = _search(cli, "a red star", "--near", "48.85,2.29,5km")
    assert [h["path"] for h in near] == [str(library / "holiday.mp4")]
    assert [h["path"] for h in _search(cli, "a red star", "--type", "mp4")] == [str(library / "holiday.mp4")]
    # a photo search page stays one hit per file
    page = _search(cli, "a blue circle", "-k", "10")
    assert len({h["id"] for h in page}) == len(page) == 3
    check = cli("check", "--json")
    assert check.exit_code == 0 and check.json()["ok"], check.stdout
    listed = cli("search", "a red star", "-k", "1").stdout  # people see the moment too
    assert f"holiday.mp4  @ {video['t']:.1f} s" in listed


def test_a_renamed_video_keeps_its_moments_and_a_changed_one_is_done_again(cli: Cli, library: Path) -> None:
    assert cli("index", library, "--model", "demo").exit_code == 0
    before = next(h for h in _search(cli, "a red star") if h["path"].endswith(".mp4"))
    os.rename(library / "holiday.mp4", library / "trip.mp4")
    report = cli("index", library, "--json").json()
    assert (report["renamed"], report["added"], report["model_seconds"]) == (1, 0, 0)  # nothing decoded
    after = next(h for h in _search(cli, "a red star") if h["path"].endswith(".mp4"))
    assert after["path"].endswith("trip.mp4") and after["t"] == before["t"] and after["moments"] == before["moments"]
    # changed: the red star now shows from 6 s
    make_video(library / "trip.mp4", scenes([(0.0, "blue-circle"), (6.0, "red-star")]), 12, gop=10)
    report = cli("index", library, "--json").json()
    assert report["updated"] == 1 and report["model_seconds"] > 0
    changed = next(h for h in _search(cli, "a red star") if h["path"].endswith(".mp4"))
    assert 6.0 <= changed["t"] < 7.5
    assert cli("check", "--json").json()["ok"]


def test_a_video_with_sparse_keyframes_is_sampled_between_them(cli: Cli, tmp_path: Path) -> None:
    """One keyframe in 12 s (a screen recording, an encoder's defaults): frames between keyframes are decoded."""
    folder = tmp_path / "sparse"
    folder.mkdir()
    make_video(folder / "one-keyframe.mkv", scenes(), 12, gop=1000)
    assert cli("index", folder, "--model", "demo", "--json").json()["added"] == 1
    (video,) = _search(cli, "a green square")
    assert 7.5 <= video["t"] < 8.0  # a scene change found within the quarter second looked at


def test_duplicates_tags_and_classify_work_per_video(cli: Cli, library: Path) -> None:
    shutil.copy(library / "holiday.mp4", library / "holiday-copy.mov")
    assert cli("index", library, "--model", "demo").exit_code == 0
    groups = cli("duplicates", "--json").json()
    assert [sorted(Path(m["path"]).name for m in g["members"]) for g in groups] == [["holiday-copy.mov", "holiday.mp4"]]
    info = cli("info", "--json").json()
    assert info["images"] == 4 and info["tagged_images"] == 4  # a video's tags: from its moments' mean
    labels = cli("classify", library / "holiday.mp4", "--labels", "a red star, a purple cross", "--json").json()
    assert labels[0]["labels"][0]["label"] == "a red star"


@pytest.mark.parametrize("kind", ["truncated", "truncated-faststart", "unknown-codec", "empty", "huge", "not-a-video"])
def test_a_bad_video_costs_only_itself(cli: Cli, library: Path, kind: str) -> None:
    bad = library / f"bad-{kind}.mp4"
    if kind == "truncated":  # the index (moov atom) is written last: cut off, nothing can be found
        make_video(bad, scenes(), 12, gop=10)
        bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    elif kind == "truncated-faststart":  # the index first: what is there is readable up to the cut
        make_video(bad, scenes(), 12, gop=10, faststart=True)
        bad.write_bytes(bad.read_bytes()[: bad.stat().st_size * 2 // 3])
    elif kind == "unknown-codec":  # an AVI whose codec tag names nothing FFmpeg decodes
        bad = library / "bad-codec.avi"
        make_video(bad, scenes(), 4, codec="mpeg4")
        data = bad.read_bytes()
        assert data.count(b"FMP4") >= 1
        bad.write_bytes(data.replace(b"FMP4", b"QQQ9"))
    elif kind == "empty":
        bad.write_bytes(b"")
    elif kind == "huge":  # 6 GB that is mostly a hole: hashed by its ends, refused by its contents, never read whole
        with open(bad, "wb") as f:
            f.write(b"\0\0\0\x20ftypisom")
            f.truncate(6 << 30)
    else:
        bad.write_bytes(b"this is text, named as a video" * 100)
    result = cli("index", library, "--model", "demo", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["added"] >= 3  # the photos and the good video
    failed = {Path(f["path"]).name: f["error"] for f in report["failed"]}
    if kind == "truncated-faststart":
        assert failed == {}
        assert any(Path(n["path"]).name == bad.name and "only up to" in n["note"] for n in report.get("noted", []))
        assert report["added"] == 4
    else:
        assert list(failed) == [bad.name], failed
        reason = failed[bad.name]
        expected = {"truncated": "moov atom", "unknown-codec": "codec", "empty": "empty file", "huge": "cannot read"}
        assert expected.get(kind, "cannot read this video") in reason, reason
    assert str(library / "holiday.mp4") in [h["path"] for h in _search(cli, "a red star", "--type", "mp4")]
    again = cli("index", library, "--json").json()
    assert again["failed"] == [] and again["model_seconds"] == 0  # remembered, not tried again until it changes


def test_decoding_one_video_stops_at_its_time_limit_with_what_it_has(tmp_path: Path) -> None:
    """The bound that keeps a hostile or enormous video from holding a run (``Rule.seconds``; 60 s in a run)."""
    from clipsearch import video

    path = make_video(tmp_path / "long.mp4", scenes(), 12, gop=10)
    whole = video.sample(str(path), lambda im: im.size, 64)
    assert whole.note is None and len(whole.moments) >= 6
    cut = video.sample(str(path), lambda im: im.size, 64, video.Rule(seconds=0.0))
    assert len(cut.moments) == 1 and cut.note is not None and cut.note.startswith("decoding stopped after 0 s")
