"""Damage that must never pass as healthy (issue 31, items 1-3), through the real CLI: a stored vector or an index
file changed on disk is found by ``check``, never scored by ``search``, dropped exactly by ``check --repair`` (which
says so with its exit code, and which the check previewed), and embedded again by the next ``index`` run.
bench/damage.py runs the whole matrix of files x kinds of damage (docs/design.md keeps its table)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from tests import imagegen
from tests.conftest import Cli

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample indexed once with the demo model; each test damages a copy."""
    from typer.testing import CliRunner

    from cli import app

    index = tmp_path_factory.mktemp("built") / "index"
    result = CliRunner().invoke(app, ["index", str(SAMPLE), "--index", str(index), "--model", "demo", "--json"])
    assert result.exit_code == 0, result.output
    return index


@pytest.fixture
def index(built: Path, index_dir: Path) -> Path:
    shutil.copytree(built, index_dir)
    return index_dir


def top(cli: Cli, words: str = "a red star", k: int = 5) -> list[tuple[str, float]]:
    result = cli("search", words, "--json", "-k", str(k))
    assert result.exit_code == 0, result.stderr
    return [(h["path"], h["score"]) for h in json.loads(result.stdout)]


def one_line_error(result: object) -> str:
    assert result.exit_code != 0  # type: ignore[attr-defined]
    err = result.stderr.strip()  # type: ignore[attr-defined]
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_rows_changed_in_a_segment_are_found_never_scored_dropped_exactly_and_embedded_again(
        cli: Cli, index: Path) -> None:
    before = top(cli)
    count = cli("info", "--json").json()["images"]  # type: ignore[index]
    segment = index / "segments" / "000001.seg"
    dim = 128
    with sqlite3.connect(index / "catalog.sqlite") as conn:
        rows = dict(conn.execute("SELECT row, hash FROM vectors").fetchall())
    data = bytearray(segment.read_bytes())
    start = 64 + 10 * dim * 4  # 4 KiB from row 10 on: rows 10-17 at 128 float32s a row
    data[start : start + 4096] = bytes(b ^ 0x5A for b in data[start : start + 4096])
    segment.write_bytes(bytes(data))
    damaged = {rows[r] for r in range(10, 18)}
    for faiss_file in index.glob("vectors-*.faiss"):  # searches must then read the segments themselves
        faiss_file.unlink()

    searched = cli("search", "a red star", "--json")
    assert "checksum" in one_line_error(searched) and "check --repair" in searched.stderr  # refused, not ranked

    found = cli("check", "--json")
    assert found.exit_code == 1
    preview = found.json()["lost_paths"]  # type: ignore[index]
    with sqlite3.connect(index / "catalog.sqlite") as conn:
        expected = sorted(p for p, h in conn.execute("SELECT path, hash FROM files") if h in damaged)
    assert sorted(preview) == expected  # exactly the files of the eight damaged rows

    repaired = cli("check", "--repair", "--json")
    assert repaired.exit_code == 1, "photos were dropped: the exit code says so"
    assert repaired.json()["lost_paths"] == preview  # type: ignore[index]
    assert cli("check", "--json").json()["ok"] is True  # type: ignore[index]
    assert all(-1 <= s <= 1 for _, s in top(cli))

    again = cli("index", "--json").json()
    assert again["added"] == len(expected) and again["unchanged"] == count - len(expected)  # type: ignore[index]
    assert cli("info", "--json").json()["images"] == count  # type: ignore[index]
    assert cli("check", "--json").json()["ok"] is True  # type: ignore[index]
    assert [p for p, _ in top(cli)] == [p for p, _ in before]


def test_a_faiss_file_with_a_number_changed_is_never_served_and_repair_rebuilds_it(cli: Cli, index: Path) -> None:
    before = top(cli)
    faiss_file = next(index.glob("vectors-*.faiss"))
    data = bytearray(faiss_file.read_bytes())
    at = len(data) - 8 * 54 - 4 * 128 * 20  # a float of a stored vector (Flat: codes, then the ids)
    data[at : at + 4] = np.float32(1000).tobytes()
    faiss_file.write_bytes(bytes(data))

    assert top(cli) == before  # fails its checksum on open: the index is built from the stored vectors instead
    found = cli("check", "--json")
    assert found.exit_code == 1 and any("damaged" in p for p in found.json()["problems"])  # type: ignore[index]
    assert "lost_paths" not in found.json()  # nothing to lose: the file is derived
    repaired = cli("check", "--repair", "--json")
    assert repaired.exit_code == 0 and repaired.json()["ok"] is True  # type: ignore[index]
    assert cli("check", "--json").json()["ok"] is True  # type: ignore[index]
    assert top(cli) == before


@pytest.mark.parametrize("damage", ["emptied", "deleted"])
def test_a_segment_emptied_or_deleted_is_mended_by_repair_and_the_next_run(cli: Cli, index: Path, damage: str) -> None:
    count = cli("info", "--json").json()["images"]  # type: ignore[index]
    segment = index / "segments" / "000001.seg"
    if damage == "emptied":
        segment.write_bytes(b"")
    else:
        segment.unlink()
    assert cli("check", "--json").exit_code == 1
    repaired = cli("check", "--repair", "--json")
    assert repaired.exit_code == 1 and repaired.json()["lost_photos"] == count  # type: ignore[index]
    assert cli("check", "--json").json()["ok"] is True  # type: ignore[index]
    again = cli("index", "--json")
    assert again.exit_code == 0, again.stderr
    assert again.json()["added"] == count  # type: ignore[index]
    assert cli("check", "--json").json()["ok"] is True  # type: ignore[index]
    assert len(top(cli, k=100)) == count


def test_an_index_run_on_a_damaged_segment_says_so_in_one_line_and_appends_to_a_new_one(
        cli: Cli, index: Path, tmp_path: Path) -> None:
    """Without a repair first, the next run writes its vectors to a new segment (never after a damaged one's rows),
    commits them, and stops at the index files it cannot build from damaged vectors, saying what mends it."""
    (index / "segments" / "000001.seg").write_bytes(b"")
    more = tmp_path / "more"
    more.mkdir()
    shutil.copy(SAMPLE / "red-star.png", more / "again.png")
    imagegen.photo(4242).save(more / "new.png")  # a content the index has not seen
    result = cli("index", more, "--json")
    assert "check --repair" in one_line_error(result)
    assert (index / "segments" / "000002.seg").is_file()
    repaired = cli("check", "--repair", "--json")
    assert repaired.exit_code == 1
    assert cli("index", "--json").exit_code == 0
    assert cli("check", "--json").json()["ok"] is True  # type: ignore[index]
    assert any(p.endswith("new.png") for p, _ in top(cli, k=100))


@pytest.mark.parametrize("where", ["first", "last"])  # the full path lies in the row and in the paths' index
def test_a_changed_byte_in_a_stored_path_is_found_by_check(cli: Cli, index: Path, where: str) -> None:
    """A byte changed in a stored path was saved by the salvage as a photo that is not there (the row's path wrong)
    or was not noticed (the index's entry wrong): each is repaired with nothing served wrong or re-embedded."""
    catalog = index / "catalog.sqlite"
    data = bytearray(catalog.read_bytes())
    full = str(SAMPLE / "red-star.png").encode()
    spots = [m.start() for m in re.finditer(re.escape(full), bytes(data))]
    assert len(spots) >= 2, spots
    data[(spots[0] if where == "first" else spots[-1]) + len(full) - len("red-star.png")] = ord("R")
    catalog.write_bytes(bytes(data))
    found = cli("check", "--json")
    assert found.exit_code == 1 and any("catalog database" in p for p in found.json()["problems"])  # type: ignore[index]
    repaired = cli("check", "--repair", "--json").json()
    left_out = [Path(p).name for p in repaired.get("lost_paths", [])]  # type: ignore[union-attr]
    assert left_out in ([], ["Red-star.png"]), repaired  # a row whose path is wrong is left out, and said
    assert ("1 file whose path was damaged" in repaired.get("lost", "")) == bool(left_out)  # type: ignore[union-attr]
    assert cli("check", "--json").json()["ok"] is True  # type: ignore[index]
    assert all(Path(p).is_file() for p, _ in top(cli, k=54))  # no photo that is not there is served
    again = cli("index", "--json").json()
    assert (again["added"], again["model_seconds"]) == (len(left_out), 0)  # type: ignore[index]  # nothing re-embedded
    assert top(cli)[0][0] == str(SAMPLE / "red-star.png")


def test_an_interrupted_runs_missing_faiss_file_is_a_note_not_a_problem(cli: Cli, index: Path) -> None:
    for faiss_file in index.glob("vectors-*.faiss*"):
        faiss_file.unlink()
    found = cli("check", "--json")
    assert found.exit_code == 0 and found.json()["problems"] == []  # type: ignore[index]
    assert any("no FAISS file" in n for n in found.json()["notes"])  # type: ignore[index]
    plain = cli("check")
    assert plain.exit_code == 0 and "note:" in plain.stdout and plain.stdout.strip().endswith("ok")


def test_a_faiss_file_whose_checksum_is_lost_is_rebuilt(cli: Cli, index: Path) -> None:
    before = top(cli)
    for sidecar in index.glob("vectors-*.faiss.crc"):
        sidecar.unlink()
    assert top(cli) == before
    assert cli("check", "--json").exit_code == 1
    assert cli("check", "--repair", "--json").exit_code == 0
    assert cli("check", "--json").json()["ok"] is True  # type: ignore[index]
    assert os.path.exists(next(index.glob("vectors-*.faiss")).with_suffix(".faiss.crc"))


@pytest.mark.parametrize("spoilt", ["page 1", "the model record's page"])
def test_a_catalog_whose_schema_or_model_record_is_unreadable_is_read_again_with_the_copy_beside_it(
        cli: Cli, index: Path, spoilt: str) -> None:
    """Page 1 (the file header and the start of the schema) or page 2 (``meta``: the model record) zeroed made
    the whole catalog unreadable: every photo lost though its rows were whole."""
    before = top(cli)
    catalog = index / "catalog.sqlite"
    data = bytearray(catalog.read_bytes())
    page = 4096
    at = 0 if spoilt == "page 1" else page
    data[at:at + page] = bytes(page)
    catalog.write_bytes(bytes(data))
    found = cli("check", "--json")
    assert found.exit_code == 1 and any("catalog database" in p for p in found.json()["problems"])  # type: ignore[index]
    repaired = cli("check", "--repair", "--json")
    if spoilt == "page 1":  # every row whole: nothing lost, and it says how the catalog was read
        assert repaired.exit_code == 0 and "kept 54 files and 54 stored vectors" in repaired.json()["notes"][0]  # type: ignore[index]
        assert "read with the copy beside it" in repaired.json()["notes"][0]  # type: ignore[index]
    else:  # the run's counters are lost with meta; the model record and the settings are not
        assert repaired.exit_code == 1 and "read from the schema copy" in repaired.json()["lost"]  # type: ignore[index]
    assert not [n for n in repaired.json().get("notes", []) if "no FAISS file" in n]  # type: ignore[union-attr]
    assert (index / "catalog.schema.json").is_file()
    assert cli("check", "--json").json()["ok"] is True  # type: ignore[index]
    assert top(cli) == before  # the same photos, the same scores: nothing re-embedded, nothing else served
    assert cli("index", "--json").json()["added"] == 0  # type: ignore[index]
