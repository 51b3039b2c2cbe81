"""What `people merge`, `split` and `remove` say, for one and for several (issue 33); "not a face", which no later
run groups again; and `index --faces off`, which says what it dropped (issue 38). Through the real CLI, on the real
faces of tests/fixtures/faces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageOps

from tests.conftest import Cli
from tests.test_faces import BIDEN, FACES, OBAMA, _folder, _index, _people, _who

pytest.importorskip("dlib")


def _named_pair(cli: Cli, tmp_path: Path, *extra: str) -> tuple[Path, int, int, dict[int, dict[str, Any]]]:
    photos = _folder(tmp_path / "photos", "obama-1.jpg", "obama-2.jpg", "biden-1.jpg", "biden-2.jpg",
                     "obama-and-biden.jpg", *extra)
    _index(cli, photos, "--model", "demo", "--faces", "on")
    people = _people(cli)
    obama = next(p for p, row in people.items() if OBAMA - {"obama-and-biden.jpg"} <= row["files"])
    biden = _who(people, BIDEN)
    assert cli("people", "name", obama, "Barack Obama").exit_code == 0
    assert cli("people", "name", biden, "Joe Biden").exit_code == 0
    return photos, obama, biden, people


def test_decisions_read_right_for_one_and_for_several(cli: Cli, tmp_path: Path) -> None:
    _, obama, biden, people = _named_pair(cli, tmp_path)
    faces = people[biden]["face_ids"]
    one = cli("people", "split", biden, faces["biden-1.jpg"])
    assert one.stdout.strip().startswith(f"1 face of person {biden} is now person "), one.stdout
    parted = int(one.stdout.split()[-1])
    assert cli("people", "name", parted, "Cameraman").exit_code == 0
    merged = cli("people", "merge", biden, parted)  # was "4 merged into person 1; the names Cameraman went"
    assert merged.stdout.strip() == f"person {parted} merged into person {biden}; its name Cameraman was dropped"
    two = cli("people", "split", biden, faces["biden-1.jpg"], faces["biden-2.jpg"], "--json").json()
    assert cli("people", "name", two["new_person"], "Stand-in").exit_code == 0  # type: ignore[index]
    gone = cli("people", "remove", obama, people[obama]["face_ids"]["obama-1.jpg"])
    assert gone.stdout.strip() == f"1 face is not person {obama} any more"
    several = cli("people", "merge", obama, biden, two["new_person"])  # type: ignore[index]
    assert several.stdout.strip() == (f"people {biden} and {two['new_person']} merged into person {obama}; their "  # type: ignore[index]
                                      "names Joe Biden and Stand-in were dropped")
    left = _people(cli)[obama]["face_ids"]
    both = cli("people", "remove", obama, left["obama-2.jpg"], left["biden-2.jpg"])
    assert both.stdout.strip() == f"2 faces are not person {obama} any more"


def test_not_a_face_is_never_grouped_again(cli: Cli, tmp_path: Path) -> None:
    """A face the user removed was put into another named person by the next run; one removed as not a face is no
    one's from then on, whatever later runs find."""
    photos, obama, _, people = _named_pair(cli, tmp_path, "obama-3.jpg")
    faces = people[obama]["face_ids"]
    double = cli("people", "split", obama, faces["obama-3.jpg"], "--json").json()["new_person"]  # type: ignore[index]
    assert cli("people", "name", double, "Obama's double").exit_code == 0
    ungrouped = cli("people", "--json").json()["faces_ungrouped"]  # type: ignore[index]
    badge = faces["obama-2.jpg"]
    said = cli("people", "remove", "barack obama", badge, "--not-a-face", "--json")
    assert said.exit_code == 0 and said.json() == {"person": obama, "removed": [badge], "not_a_face": True}
    assert _index(cli)["faces"]["grouped"] == 0  # a plain remove: the face joined Obama's double here
    with Image.open(FACES / "obama-1.jpg") as im:  # a new photo of him (mirrored: another content): a run that groups
        ImageOps.mirror(im).save(photos / "obama-1-mirrored.jpg", quality=95)
    assert _index(cli)["faces"]["grouped"] == 1
    after = _people(cli)
    assert all(badge not in row["face_ids"].values() for row in after.values())
    assert after[double]["files"] == {"obama-3.jpg"}
    assert after[obama]["files"] == {"obama-1.jpg", "obama-1-mirrored.jpg", "obama-and-biden.jpg"}
    assert cli("people", "--json").json()["faces_ungrouped"] == ungrouped  # type: ignore[index]
    text = cli("people", "remove", obama, after[obama]["face_ids"]["obama-1.jpg"], "--not-a-face")
    assert text.stdout.strip().startswith(f"1 face of person {obama} is not a face: never grouped again")


def test_faces_off_says_what_it_dropped(cli: Cli, tmp_path: Path) -> None:
    _named_pair(cli, tmp_path)
    listed = cli("people", "--json").json()
    found = listed["faces_found"]  # type: ignore[index]
    report = _index(cli, "--faces", "off")
    assert report["faces_dropped"] == {"faces": found, "people": 2, "named": ["Barack Obama", "Joe Biden"]}
    assert report["notes"][0] == f"faces off: dropped {found} faces and 2 people (2 named: Barack Obama, Joe Biden)"
    assert "faces_dropped" not in _index(cli, "--faces", "off")  # nothing left to drop, nothing said
    _index(cli, "--faces", "on")
    text = cli("index", "--faces", "off")
    assert text.exit_code == 0 and f"clipsearch: note: faces off: dropped {found} faces and 2 people\n" in text.stderr


def test_not_a_face_follows_the_face_when_its_photo_changes_and_restore_undoes_it(cli: Cli, tmp_path: Path) -> None:
    """The second trial: the mark was on a face id, and a photo whose bytes change has its faces found again under
    new ids, so the "badge" was grouped again. And there was no undo."""
    photos, obama, _, people = _named_pair(cli, tmp_path)
    badge = people[obama]["face_ids"]["obama-2.jpg"]
    said = cli("people", "remove", obama, badge, "--not-a-face")
    assert f"'clipsearch people restore {badge}' undoes it" in said.stdout
    with open(photos / "obama-2.jpg", "ab") as grown:  # its bytes change (a tool appended to it), its picture not
        grown.write(b"\0" * 64)
    assert _index(cli)["faces"]["photos"] == 1  # looked at again: its face has a new id
    after = _people(cli)
    assert badge not in {f for row in after.values() for f in row["face_ids"].values()}  # the old id is gone
    assert all("obama-2.jpg" not in row["files"] for row in after.values()), after
    assert cli("people", "--json").json()["faces_ungrouped"] == 1  # type: ignore[index]  # the stranger, not the badge
    wrong = cli("people", "restore", "999")
    assert wrong.exit_code == 2 and "face 999 is not marked as not a face" in wrong.stderr
    undone = cli("people", "restore", badge, "--json")  # the id it was marked on, as the remove said
    assert undone.exit_code == 0 and undone.json() == {"restored": [badge]}, undone.stderr
    _index(cli)
    assert "obama-2.jpg" in _people(cli)[obama]["files"]  # a face again, grouped with him as before
    assert cli("people", "restore", badge).exit_code == 2  # nothing left to undo


def test_names_outlive_a_repair_that_lost_every_face_and_come_back_with_the_faces(cli: Cli, tmp_path: Path,
                                                                                 index_dir: Path) -> None:
    """The second trial cut the catalog to a third: the faces table was cut, faces and faced went together, and the
    names the user gave went with them without a word."""
    import sqlite3

    _named_pair(cli, tmp_path)
    before = {p["name"]: p["photos"] for p in cli("people", "--json").json()["people"]}  # type: ignore[index]
    catalog = index_dir / "catalog.sqlite"
    conn = sqlite3.connect(catalog)
    (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'faces'").fetchone()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(catalog.read_bytes())
    data[(root - 1) * 4096 : root * 4096] = bytes(4096)  # the faces table's page: every face lost, the names' page whole
    catalog.write_bytes(bytes(data))
    repaired = cli("check", "--repair", "--json")
    told = repaired.json()["lost"]  # type: ignore[index]
    assert repaired.exit_code == 1 and "the names Barack Obama, Joe Biden (their faces were lost" in told, told
    report = _index(cli)
    assert report["faces"]["photos"] == 6  # every photo looked at again
    assert {p["name"]: p["photos"] for p in cli("people", "--json").json()["people"]} == before  # type: ignore[index]
