"""What a week of real use finds (issue 37), through the real CLI and a real server: answers that say why nothing
can match, --in through a link, exclusions as a .gitignore writes them, JPEGs cut short, and the words.
The page's share (the Duplicates view, the address keeping every control) is in tests/test_web.py."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import urllib.parse
from pathlib import Path

import pytest

from indexer.walk import Rules
from tests import imagegen
from tests.conftest import Cli, cli_env, lines, run_cli, search_json, start_cli, wait_for_line
from tests.serving import Server


def one_line(result: object, needle: str) -> None:
    stderr = result.stderr  # type: ignore[attr-defined]
    code = getattr(result, "exit_code", getattr(result, "returncode", None))
    assert code == 2 and "Traceback" not in stderr, (code, stderr)
    assert stderr.count("\n") == 1 and stderr.startswith("clipsearch: error: ") and needle in stderr, stderr


def make_photos(root: Path, names: list[str]) -> Path:
    for seed, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        imagegen.photo(40 + seed).save(root / name)
    return root


def indexed_names(cli: Cli, root: Path) -> set[str]:
    return {str(Path(h["path"]).relative_to(root)) for h in search_json(cli, "--sort", "date", "-k", "1000")}


# ---- 3. answers that say nothing --------------------------------------------------------------------------------

def test_a_search_that_nothing_can_match_says_why(cli: Cli, tmp_path: Path, model_spec: str) -> None:
    """An unknown type, a score no cosine reaches and an empty date range printed a plain "no results", exit 0."""
    photos = make_photos(tmp_path / "p", ["a.png", "b.jpg"])
    assert cli("index", photos, "--model", model_spec).exit_code == 0
    one_line(cli("search", "a star", "--type", "xyz"), "--type xyz: clipsearch indexes no such files (types: avif, bmp")
    one_line(cli("search", "a star", "--min-score", "2"), "--min-score 2 keeps nothing: scores are cosines, at most 1")
    one_line(cli("search", "a star", "--after", "2024-01-01", "--before", "2023-01-01"),
             "--after 2024-01-01 is not before --before 2023-01-01: no photo can be taken in that range")
    one_line(cli("search", "--sort", "date", "--after", "2023-05-01T12:00", "--before", "2023-05-01T12:00"),
             "is not before --before")
    assert len(search_json(cli, "a star", "--type", "JPEG", "--min-score", "-1")) == 1  # what can match still does
    assert len(search_json(cli, "a star", "--after", "2000-01-01", "--before", "2000-01-01")) == 0  # that one day


# ---- 4. --in through a link ---------------------------------------------------------------------------------------

def test_in_a_link_to_an_indexed_folder_means_that_folder(cli: Cli, tmp_path: Path, model_spec: str) -> None:
    """Roots are kept as given and paths as reached from them: `--in LINK` found nothing."""
    photos = make_photos(tmp_path / "photos", ["a.png", "sub/b.png", "sub/c.png", "other/d.png"])
    (photos / "sub" / "b-copy.png").write_bytes((photos / "sub" / "b.png").read_bytes())
    assert cli("index", photos, "--model", model_spec).exit_code == 0
    (tmp_path / "link").symlink_to(photos)
    (tmp_path / "sublink").symlink_to(photos / "sub")
    (tmp_path / "above").symlink_to(tmp_path)

    def under(folder: Path) -> set[str]:
        return {str(Path(h["path"]).relative_to(photos)) for h in search_json(
            cli, "a shape", "--in", str(folder), "-k", "100")}

    assert under(tmp_path / "link") == under(photos) == {"a.png", "sub/b.png", "sub/b-copy.png", "sub/c.png",
                                                         "other/d.png"}
    assert under(tmp_path / "sublink") == under(photos / "sub") == {"sub/b.png", "sub/b-copy.png", "sub/c.png"}
    assert under(tmp_path / "link" / "other") == {"other/d.png"}
    assert under(tmp_path / "above") == under(photos)  # a link to a folder above the indexed one
    nothing = cli("search", "a shape", "--in", str(tmp_path / "elsewhere"))
    assert "nothing is indexed under" in nothing.stderr
    groups = cli("duplicates", "--in", str(tmp_path / "sublink"), "--json").json()
    assert [sorted(Path(m["path"]).name for m in g["members"]) for g in groups] == [["b-copy.png", "b.png"]]  # type: ignore[union-attr,index]


# ---- 5. exclusions as a .gitignore writes them ----------------------------------------------------------------------

DIGITS = {"cache/1.png", "x/cache/2.png", "x/y/cache/3.png", "Trash/4.png", "a/Trash/5.png", "2019/private/6.png",
          "z/2019/private/9.png", "8.png"}


@pytest.mark.parametrize(("pattern", "left_out"), [
    ("cache", {"cache/1.png", "x/cache/2.png", "x/y/cache/3.png", "cachefile/cache"}),  # a name: at any depth
    ("Trash", {"Trash/4.png", "a/Trash/5.png"}),
    ("/cache", {"cache/1.png"}),  # a leading / anchors
    ("cache/", {"cache/1.png", "x/cache/2.png", "x/y/cache/3.png"}),  # folders only
    ("*/cache", {"x/cache/2.png", "cachefile/cache"}),  # a / in it anchors; * stops at a /
    ("**/cache", {"cache/1.png", "x/cache/2.png", "x/y/cache/3.png", "cachefile/cache"}),
    ("x/**/3.png", {"x/y/cache/3.png"}),
    ("2019/private", {"2019/private/6.png"}),
    ("*.tmp.png", {"a/b/7.tmp.png"}),
    ("[0-9].png", DIGITS),  # a set, in a name: at any depth
    ("/[!0-7].png", {"8.png", "*.png"}),  # anchored: the top only
    ("?.png", DIGITS | {"*.png"}),
    ("\\*.png", {"*.png"}),
])
def test_each_exclusion_form_leaves_out_what_a_gitignore_would(pattern: str, left_out: set[str]) -> None:
    tree = {"cache/1.png", "x/cache/2.png", "x/y/cache/3.png", "cachefile/cache", "Trash/4.png", "a/Trash/5.png",
            "2019/private/6.png", "z/2019/private/9.png", "a/b/7.tmp.png", "8.png", "*.png", "keep.png"}
    rules = Rules(exclude=(pattern,))
    assert {path for path in tree if rules.skips(path, is_folder=False)} == left_out


def test_exclusions_through_the_cli_and_their_rules_in_help(cli: Cli, tmp_path: Path, model_spec: str) -> None:
    """`--exclude '*/cache'`, the README's example, missed a top-level cache/; `--exclude Trash` missed a/Trash."""
    root = make_photos(tmp_path / "p", ["cache/1.png", "x/cache/2.png", "Trash/3.png", "a/Trash/4.png",
                                        "2019/private/5.png", "b/2019/private/6.png", "keep.png"])
    result = cli("index", root, "--model", model_spec, "--exclude", "cache/", "--exclude", "Trash",
                 "--exclude", "/2019/private", "--json")
    assert result.exit_code == 0, result.stderr
    assert indexed_names(cli, root) == {"b/2019/private/6.png", "keep.png"}
    one_line(cli("index", root, "--exclude", "!keep.png"), "re-including with ! is not supported")
    help_text = " ".join(cli("index", "--help").stdout.split())
    assert "as in a .gitignore" in help_text and "a leading / anchors a name" in help_text and "** matches" in help_text


def test_exclusions_kept_by_an_older_index_leave_out_what_they_did(cli: Cli, tmp_path: Path, model_spec: str,
                                                                    index_dir: Path) -> None:
    """A format-8 index kept fnmatch patterns: `forget ROOT/sub` wrote `sub`, which must not start leaving out
    every `sub` below once a name matches at any depth."""
    root = make_photos(tmp_path / "p", ["sub/1.png", "a/sub/2.png", "tr/3.png", "a/tr4.png", "x/cache/5.png",
                                        "cache/6.png", "a/7.tmp.png", "keep.png"])
    assert cli("index", root, "--model", model_spec).exit_code == 0
    conn = sqlite3.connect(index_dir / "catalog.sqlite")
    with conn:  # as format 8 wrote them
        conn.execute("UPDATE roots SET settings = ?", (json.dumps({"include_hidden": False, "exclude": [
            "sub", "tr*", "*/cache", "*.tmp.png"]}),))
        conn.execute("UPDATE meta SET value = '8' WHERE key = 'format_version'")
    conn.close()
    assert cli("index", "--json").exit_code == 0
    assert cli("info", "--json").json()["root_settings"][str(root)]["exclude"] == [  # type: ignore[index]
        "/sub", "/tr*", "**/cache", "*.tmp.png"]
    assert indexed_names(cli, root) == {"a/sub/2.png", "a/tr4.png", "keep.png"}
