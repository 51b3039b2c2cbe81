"""Faces and people through the real CLI, on real faces nobody here made (tests/fixtures/faces): found by the faces
stage, grouped into people, named, merged and split by the user (and kept so by later runs), searched for with words
and filters, forgotten with their photos, switched off, found for an index made before (nothing re-embedded)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from clipsearch.store import StoreReader
from tests.conftest import ROOT, Cli, search_json
from tests.test_migrations import v1_index  # noqa: F401 - the format-1 fixture, as test_migrations uses it

pytest.importorskip("dlib")
FACES = Path(__file__).resolve().parent / "fixtures" / "faces"
OBAMA = {"obama-1.jpg", "obama-2.jpg", "obama-and-biden.jpg"}
BIDEN = {"biden-1.jpg", "biden-2.jpg", "obama-and-biden.jpg"}


def _folder(root: Path, *names: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(FACES / name, root / name)
    shutil.copy(ROOT / "data" / "sample" / "red-star.png", root / "red-star.png")  # no face
    return root


def _people(cli: Cli) -> dict[int, dict[str, Any]]:
    """Each person by id: the listing's row, plus the names of the files that show their faces ("files")."""
    listed = cli("people", "--json")
    assert listed.exit_code == 0, listed.stderr
    out = {}
    for person in listed.json()["people"]:  # type: ignore[index]
        shown = cli("people", "show", str(person["id"]), "--json").json()
        out[person["id"]] = {**person, "files": {Path(f["path"]).name for f in shown["faces"]},  # type: ignore[index]
                             "face_ids": {Path(f["path"]).name: f["face"] for f in shown["faces"]}}  # type: ignore[index]
    return out


def _who(people: dict[int, dict[str, Any]], files: set[str]) -> int:
    (found,) = [p for p, row in people.items() if row["files"] == files]
    return found


def _names(hits: list[dict[str, Any]]) -> set[str]:
    return {Path(h["path"]).name for h in hits}


def _index(cli: Cli, *args: object) -> dict[str, Any]:
    result = cli("index", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return result.json()  # type: ignore[return-value]


def test_faces_are_found_grouped_and_searched_by_one_person_and_by_two(cli: Cli, tmp_path: Path) -> None:
    photos = _folder(tmp_path / "photos", "obama-1.jpg", "obama-2.jpg", "biden-1.jpg", "biden-2.jpg",
                     "obama-and-biden.jpg")
    report = _index(cli, photos, "--model", "demo", "--faces", "on")
    # 7 faces in 6 photos; the stranger beside Obama and Biden is seen once: nobody yet
    assert report["faces"] == {"photos": 6, "found": 7, "failed": 0, "grouped": 6}
    people = _people(cli)
    assert sorted(sorted(row["files"]) for row in people.values()) == sorted([sorted(OBAMA), sorted(BIDEN)])
    obama, biden = _who(people, OBAMA), _who(people, BIDEN)
    assert people[obama]["photos"] == 3 and people[obama]["faces"] == 3 and people[obama]["name"] is None
    assert cli("people", "--json").json()["faces_ungrouped"] == 1  # type: ignore[index]
    assert cli("info", "--json").json()["faces"] == {  # type: ignore[index]
        "setting": "on", "faced_photos": 6, "faces": 7, "people": 2, "not_faces": 0}
    assert "faces:          7 faces in 6 photos looked at, 2 people  (clipsearch people lists them)" in cli("info").stdout

    assert cli("people", "name", obama, "Barack Obama").stdout.strip() == f"person {obama} is Barack Obama"
    assert cli("people", "name", biden, "Joe Biden", "--json").json() == {"person": biden, "name": "Joe Biden"}
    hits = search_json(cli, "--person", "barack obama")  # alone: every photo of him, by date
    assert _names(hits) == OBAMA and all(h["score"] is None for h in hits)
    both = search_json(cli, "--person", "Obama", "--person", str(biden))  # a word of the name, an id
    assert _names(both) == {"obama-and-biden.jpg"}
    assert sorted((p["name"], p["person"]) for p in both[0]["people"]) == [("Barack Obama", obama), ("Joe Biden", biden)]
    assert all(len(p["box"]) == 4 and p["box"][2] > 20 for p in both[0]["people"])  # where each face is
    worded = search_json(cli, "a photo of a man", "--person", "joe biden", "--type", "jpg", "-k", "10")
    assert _names(worded) == BIDEN and all(h["score"] is not None for h in worded)
    assert search_json(cli, "a photo of a man", "--person", "biden", "--type", "png") == []
    everyone = search_json(cli, "a photo of a man", "-k", "10")
    assert len(everyone) == 6 and next(h for h in everyone if h["path"].endswith("red-star.png"))["people"] == []

    unknown = cli("search", "a beach", "--person", "Michelle")
    assert unknown.exit_code == 2
    assert unknown.stderr.strip().splitlines() == ["clipsearch: error: no person is named 'Michelle' (named: Barack "
                                                   "Obama, Joe Biden): 'clipsearch people' lists them"]
    taken = cli("people", "name", biden, "barack obama")
    assert taken.exit_code == 2 and f"person {obama} is named barack obama already" in taken.stderr


def test_names_merges_and_splits_survive_later_runs(cli: Cli, tmp_path: Path) -> None:
    photos = _folder(tmp_path / "photos", "obama-1.jpg", "obama-2.jpg", "biden-1.jpg", "biden-2.jpg",
                     "obama-and-biden.jpg")
    _index(cli, photos, "--model", "demo", "--faces", "on")
    people = _people(cli)
    obama, biden = _who(people, OBAMA), _who(people, BIDEN)
    cli("people", "name", obama, "Barack Obama")
    cli("people", "name", biden, "Joe Biden")
    # a split: Obama's face in obama-2.jpg is someone else (the user says so)
    split = cli("people", "split", "barack obama", people[obama]["face_ids"]["obama-2.jpg"], "--json")
    assert split.exit_code == 0, split.stderr
    other = split.json()["new_person"]  # type: ignore[index]
    cli("people", "name", other, "Obama's double")
    # a split undone by a merge: Biden's face in biden-2.jpg out, then merged back
    parted = cli("people", "split", "joe biden", people[biden]["face_ids"]["biden-2.jpg"], "--json").json()
    assert cli("people", "merge", "joe biden", parted["new_person"]).exit_code == 0  # type: ignore[index]
    # "not this person": the face in the group photo is not Obama; the next run places it elsewhere, never with him
    removed = cli("people", "remove", "barack obama", people[obama]["face_ids"]["obama-and-biden.jpg"])
    assert removed.exit_code == 0, removed.stderr

    shutil.copy(FACES / "obama-3.jpg", photos / "obama-3.jpg")  # a new photo of him: joins him
    report = _index(cli)
    assert report["faces"]["photos"] == 1 and report["faces"]["found"] == 1
    after = _people(cli)
    by_name = {row["name"]: row["files"] for row in after.values()}
    assert by_name["Barack Obama"] == {"obama-1.jpg", "obama-3.jpg"}
    assert by_name["Joe Biden"] == BIDEN
    assert by_name["Obama's double"] == {"obama-2.jpg", "obama-and-biden.jpg"}  # the nearest face he may join
    assert set(after) == {obama, biden, other}  # ids kept: --person 7 still finds the same person
    again = _index(cli)
    assert again["faces"] == {"photos": 0, "found": 0, "failed": 0, "grouped": 0}
    assert _people(cli) == after
    assert _names(search_json(cli, "--person", "barack obama")) == {"obama-1.jpg", "obama-3.jpg"}


def test_forget_takes_the_faces_and_the_people_of_its_photos_with_it(cli: Cli, tmp_path: Path, index_dir: Path) -> None:
    _folder(tmp_path / "photos" / "obama", "obama-1.jpg", "obama-2.jpg")
    _folder(tmp_path / "photos" / "biden", "biden-1.jpg", "biden-2.jpg")
    _index(cli, tmp_path / "photos", "--model", "demo", "--faces", "on")
    people = _people(cli)
    biden = _who(people, {"biden-1.jpg", "biden-2.jpg"})
    cli("people", "name", biden, "Joe Biden")
    assert cli("forget", tmp_path / "photos" / "biden").exit_code == 0
    assert [row["files"] for row in _people(cli).values()] == [{"obama-1.jpg", "obama-2.jpg"}]
    with sqlite3.connect(index_dir / "catalog.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM faces").fetchone() == (2,)
        assert conn.execute("SELECT count(*) FROM people WHERE name IS NOT NULL").fetchone() == (0,)
    assert cli("search", "--person", "joe biden").exit_code == 2


def test_the_switch_defers_and_deletes_and_an_older_index_gets_its_faces_without_re_embedding(
        cli: Cli, tmp_path: Path, index_dir: Path) -> None:
    photos = _folder(tmp_path / "photos", "obama-1.jpg", "obama-2.jpg", "biden-1.jpg")
    plain = _index(cli, photos, "--model", "demo")
    assert "faces" not in plain  # off unless asked for
    assert "'clipsearch index --faces on' finds them" in cli("people").stdout
    with StoreReader.open(index_dir) as store:
        vectors = store.vectors.by_path()
    backfill = _index(cli, "--faces", "on")  # the photos indexed before: looked at, not embedded again
    assert backfill["added"] == 0 and backfill["model_seconds"] == 0 and backfill["faces"]["photos"] == 4
    with StoreReader.open(index_dir) as store:
        assert {p: v.tobytes() for p, v in store.vectors.by_path().items()} == {p: v.tobytes() for p, v in vectors.items()}
    assert [row["files"] for row in _people(cli).values()] == [{"obama-1.jpg", "obama-2.jpg"}]

    later = _index(cli, "--faces", "later")  # keep what was found, look for no more
    assert "faces" not in later
    shutil.copy(FACES / "obama-3.jpg", photos / "obama-3.jpg")
    assert "faces" not in _index(cli) and _names(search_json(cli, "--person", "1")) == {"obama-1.jpg", "obama-2.jpg"}
    resumed = _index(cli, "--faces", "on")
    assert resumed["faces"]["photos"] == 1
    assert _names(search_json(cli, "--person", "1")) == {"obama-1.jpg", "obama-2.jpg", "obama-3.jpg"}

    assert "faces" not in _index(cli, "--faces", "off")
    assert cli("people", "--json").json()["people"] == []  # type: ignore[index]
    with sqlite3.connect(index_dir / "catalog.sqlite") as conn:
        assert [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("faces", "faced", "people")] == [0, 0, 0]
    assert "faces" not in _index(cli)  # remembered
    wrong = cli("index", "--faces", "maybe")
    assert wrong.exit_code == 2 and wrong.stderr.strip() == "clipsearch: error: --faces must be on, later, off, not 'maybe'"


def test_a_photo_the_detector_fails_on_costs_only_its_faces(cli: Cli, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from clipsearch.faces import detect

    photos = _folder(tmp_path / "photos", "obama-1.jpg", "obama-2.jpg", "biden-1.jpg")
    real = detect.FaceModel.faces

    def choke(self: detect.FaceModel, picture: Any, scale: float = 1.0) -> Any:
        if picture.shape[1] == 246:  # biden-1.jpg, as read
            raise RuntimeError("dlib: unsupported image")
        return real(self, picture, scale)

    monkeypatch.setattr(detect.FaceModel, "faces", choke)
    report = _index(cli, photos, "--model", "demo", "--faces", "on")
    assert report["added"] == 4 and report["failed"] == []
    assert report["faces"] == {"photos": 4, "found": 2, "failed": 1, "grouped": 2}
    assert any("faces could not be looked for in 1 photos" in note for note in report["notes"])
    assert "biden-1.jpg" in _names(search_json(cli, "a photo", "-k", "10"))  # still indexed and found
    monkeypatch.setattr(detect.FaceModel, "faces", real)
    assert _index(cli)["faces"]["photos"] == 0  # not tried again until it changes


def test_faces_on_without_dlib_is_refused_in_one_line_before_anything_is_written(
        cli: Cli, tmp_path: Path, index_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clipsearch.faces import detect

    photos = _folder(tmp_path / "photos", "obama-1.jpg")
    installed = detect.missing
    monkeypatch.setattr(detect, "missing", lambda: "faces need dlib-bin: pip install 'clipsearch[faces]'")
    result = cli("index", photos, "--model", "demo", "--faces", "on")
    assert result.exit_code == 2 and result.stderr.strip() == (
        "clipsearch: error: --faces on: faces need dlib-bin: pip install 'clipsearch[faces]'")
    assert not index_dir.exists()
    monkeypatch.setattr(detect, "missing", installed)
    _index(cli, photos, "--model", "demo", "--faces", "on")
    monkeypatch.setattr(detect, "missing", lambda: "faces need dlib-bin: pip install 'clipsearch[faces]'")
    shutil.copy(FACES / "obama-2.jpg", photos / "obama-2.jpg")  # dlib gone since: the run goes on without faces
    report = _index(cli)
    assert report["added"] == 1 and report["notes"] == [
        "faces were not looked for: faces need dlib-bin: pip install 'clipsearch[faces]'"]


def test_a_format_1_index_gets_faces_with_nothing_re_embedded(cli: Cli, v1_index: tuple[Path, Path]) -> None:  # noqa: F811
    index, photos = v1_index
    with StoreReader.open(index) as store:
        before = store.vectors.by_path()
    shutil.copy(FACES / "obama-1.jpg", photos / "obama-1.jpg")
    shutil.copy(FACES / "obama-2.jpg", photos / "obama-2.jpg")
    report = cli("index", photos, "--index", index, "--faces", "on", "--json").json()
    assert report["unchanged"] == 55 and report["added"] == 2  # type: ignore[index]
    assert report["faces"] == {"photos": 56, "found": 2, "failed": 0, "grouped": 2}  # type: ignore[index]
    with StoreReader.open(index) as store:
        after = store.vectors.by_path()
    assert all(after[p].tobytes() == v.tobytes() for p, v in before.items())
    assert [len(row["files"]) for row in _people_at(cli, index)] == [2]


def _people_at(cli: Cli, index: Path) -> list[dict[str, Any]]:
    listed = cli("people", "--index", index, "--json").json()["people"]  # type: ignore[index]
    return [{**p, "files": {Path(f["path"]).name for f in cli("people", "show", str(p["id"]), "--index", index,
                                                                "--json").json()["faces"]}} for p in listed]  # type: ignore[index]


def test_the_server_searches_by_person_and_lists_people_and_follows_a_new_name(cli: Cli, tmp_path: Path,
                                                                                index_dir: Path) -> None:
    import urllib.parse

    from tests.serving import Server

    photos = _folder(tmp_path / "photos", "obama-1.jpg", "obama-2.jpg", "biden-1.jpg", "biden-2.jpg",
                     "obama-and-biden.jpg")
    _index(cli, photos, "--model", "demo", "--faces", "on")
    people = _people(cli)
    obama, biden = _who(people, OBAMA), _who(people, BIDEN)
    cli("people", "name", obama, "Barack Obama")
    server = Server(index_dir).start()
    try:
        listed = server.get("/people")
        assert listed.status == 200 and listed.json() == cli("people", "--json").json()
        assert server.get(f"/people/{obama}").json() == cli("people", "show", obama, "--json").json()
        alone = server.get("/search?person=" + urllib.parse.quote("barack obama"))
        assert alone.status == 200 and _names(alone.json()) == OBAMA  # type: ignore[arg-type]
        unknown = server.get("/search?q=a+photo&person=Joe")
        assert unknown.status == 400 and "no person is named 'Joe'" in unknown.json()["error"]  # type: ignore[index]
        cli("people", "name", biden, "Joe Biden")  # named while the server runs: its next search knows him
        both = server.get("/search?q=a+photo&person=Obama&person=Joe&k=10")
        hits = both.json()
        assert both.status == 200 and _names(hits) == {"obama-and-biden.jpg"}  # type: ignore[arg-type]
        assert {p["name"] for p in hits[0]["people"]} == {"Barack Obama", "Joe Biden"}  # type: ignore[index]
    finally:
        server.stop()


def test_a_catalog_repair_keeps_names_tags_words_and_videos_it_can_read(cli: Cli, tmp_path: Path,
                                                                          index_dir: Path) -> None:
    """A salvage kept six tables and dropped the rest: people's names, tags, words and every video were lost."""
    from tests.videogen import make_video, sample_picture

    photos = _folder(tmp_path / "photos", "obama-1.jpg", "obama-2.jpg")
    make_video(photos / "trip.mp4", [(0.0, sample_picture("blue-circle")), (3.0, sample_picture("red-star"))], 6,
               gop=10)
    _index(cli, photos, "--model", "demo", "--faces", "on")
    (obama,) = _people(cli)
    catalog, log = index_dir / "catalog.sqlite", index_dir / "catalog.sqlite-wal"
    held = sqlite3.connect(catalog)  # another connection open: the name's commit stays in the write-ahead log
    held.execute("SELECT count(*) FROM files").fetchone()
    assert cli("people", "name", obama, "Barack Obama").exit_code == 0
    before = {"people": cli("people", "--json").json(), "tags": cli("tags", "--json").json(),
              "trip": search_json(cli, "--text", "trip"), "info": cli("info", "--json").json()}
    data, logged = bytearray(catalog.read_bytes()), log.read_bytes()
    held.close()  # the last connection checkpoints the log into the file: put both back as they were before
    data[:4096] = bytes(4096)  # the header and the schema's first page: every row lies elsewhere, whole
    catalog.write_bytes(bytes(data))
    log.write_bytes(logged)
    assert logged and before["people"]["people"][0]["name"] == "Barack Obama"  # type: ignore[index]

    repaired = cli("check", "--repair", "--json")
    assert repaired.exit_code == 0, repaired.stdout
    assert cli("people", "--json").json() == before["people"]  # the name the user gave, the same person id
    assert cli("tags", "--json").json() == before["tags"]
    assert search_json(cli, "--text", "trip") == before["trip"] and before["trip"][0]["t"] is not None  # the video
    info = cli("info", "--json").json()
    assert (info["images"], info["words"]) == (before["info"]["images"], before["info"]["words"])  # type: ignore[index]
    again = _index(cli)
    assert (again["added"], again["model_seconds"], again.get("faces", {}).get("photos", 0)) == (0, 0, 0)
