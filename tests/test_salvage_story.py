"""The repair's report is one account (issue 31, the second trial): it said "re-embeds" and "re-embedding nothing"
in one report, and ``lost_paths`` named the damaged bytes of a path (``Red-star.png``), not the file on disk.
Through the real CLI, on a catalog with one byte changed in a stored path."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.damaging import change_a_byte_in_a_stored_path, index_the_sample


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return index_the_sample(tmp_path_factory.mktemp("built"))


@pytest.fixture
def photo(built: Path, index_dir: Path) -> Path:
    """The index copied to ``index_dir`` with one byte changed in the row's copy of red-star.png's path."""
    shutil.copytree(built / "index", index_dir)
    photo = built / "photos" / "red-star.png"
    change_a_byte_in_a_stored_path(index_dir / "catalog.sqlite", photo, "row")
    return photo


def test_a_damaged_path_whose_file_vouches_for_it_is_mended_losing_nothing(cli: Cli, photo: Path) -> None:
    preview = cli("check", "--json")
    assert preview.exit_code == 1 and "nothing lost" in preview.json()["problems"][1]  # type: ignore[index]
    repaired = cli("check", "--repair", "--json")
    told = repaired.json()
    assert repaired.exit_code == 0 and "lost_paths" not in told and "lost" not in told, told  # type: ignore[operator]
    story = told["notes"][0]  # type: ignore[index]
    assert "read again from the catalog's index of paths" in story and "re-embeds nothing" in story, story
    assert cli("check", "--json").json()["ok"] is True  # type: ignore[index]
    again = cli("index", "--json").json()
    assert (again["added"], again["model_seconds"]) == (0, 0)  # type: ignore[index]


def test_a_damaged_path_that_cannot_be_mended_names_the_file_on_disk_and_one_next_step(cli: Cli, photo: Path) -> None:
    stat = photo.stat()
    os.utime(photo, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # changed since the run: it no longer vouches
    try:
        preview = cli("check")
        repaired = cli("check", "--repair", "--json")
        plain = cli("check", "--repair")  # nothing left to do: ok
    finally:
        os.utime(photo, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    told = repaired.json()
    assert repaired.exit_code == 1 and told["lost_paths"] == [str(photo)] and told["reembeds"] == 0, told  # type: ignore[index]
    said = told["lost"] + preview.stdout  # type: ignore[index,operator]
    assert "re-embeds nothing" in told["lost"] and "re-embedding nothing" in preview.stdout, said  # type: ignore[index]
    assert "embeds it again" not in said and "embeds 1 photo again" not in said and "Red-star" not in said, said
    assert plain.exit_code == 0
    again = cli("index", "--json").json()
    assert (again["added"], again["model_seconds"]) == (1, 0)  # type: ignore[index]
