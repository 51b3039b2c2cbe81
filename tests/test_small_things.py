"""What a week of real use finds (issue 37), through the real CLI and a real server: answers that say why nothing
can match, --in through a link, exclusions as a .gitignore writes them, JPEGs cut short, and the words.
The page's share (the Duplicates view, the address keeping every control) is in tests/test_web.py."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

from indexer.walk import Rules
from tests import imagegen
from tests.conftest import Cli, Library, cli_command, cli_env, lines, run_cli, search_json, start_cli, wait_for_line
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
    one_line(cli("search", "a star", "--type", "xyz"), "--type xyz: clipsearch indexes no such files (types: 3gp, avi, avif, bmp")
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
    (photos / "link-to-sub").symlink_to(photos / "sub")  # a link inside the indexed folder (the trial's case)
    assert under(photos / "link-to-sub") == {"sub/b.png", "sub/b-copy.png", "sub/c.png"}
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


# ---- 6. JPEGs a camera or a copy left almost whole ------------------------------------------------------------------

@pytest.mark.parametrize("workers", ["threads", "processes"])
def test_a_jpeg_cut_short_is_indexed_as_far_as_it_decodes(cli: Cli, tmp_path: Path, model_spec: str,
                                                          workers: str) -> None:
    """A JPEG missing its last 2 bytes (the end marker) was refused ("1 bytes not processed"), though viewers show it.
    What decodes to garbage (broken data, or most of the picture missing) is still refused."""
    data = imagegen.jpeg_bytes(imagegen.photo(7, (640, 480)))
    folder = tmp_path / "card"
    folder.mkdir()
    (folder / "whole.jpg").write_bytes(data)
    (folder / "no-end-marker.jpg").write_bytes(data[:-2])
    (folder / "tenth-missing.jpg").write_bytes(data[: len(data) * 9 // 10])
    (folder / "zero-filled.jpg").write_bytes(data[: len(data) * 9 // 10] + bytes(len(data) // 10))  # a copy cut short
    (folder / "half-missing.jpg").write_bytes(data[: len(data) // 2])
    (folder / "broken.jpg").write_bytes(data[:700] + np.random.default_rng(0).bytes(len(data) - 700))  # noise
    result = cli("index", folder, "--model", model_spec, "--worker-kind", workers, "--decode", "cpu", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    noted = {Path(n["path"]).name: n["note"] for n in report["noted"]}  # type: ignore[index]
    assert noted == {"no-end-marker.jpg": "the file ends early (no JPEG end marker): every row decoded",
                     "tenth-missing.jpg": "the file ends early: the bottom 10% of the picture is missing (indexed as "
                                          "far as it decodes)",
                     "zero-filled.jpg": "the file ends early: the bottom 10% of the picture is missing (indexed as "
                                        "far as it decodes)"}
    failed = {Path(f["path"]).name: f["error"] for f in report["failed"]}  # type: ignore[index]
    assert failed.keys() == {"half-missing.jpg", "broken.jpg"}
    assert failed["half-missing.jpg"] == "image file is truncated: 50% of the picture is missing"
    assert report["added"] == 4  # type: ignore[index]
    best = search_json(cli, "--image", folder / "whole.jpg", "-k", "2")
    assert {Path(h["path"]).name for h in best} >= {"whole.jpg"} and best[1]["score"] > 0.9


def test_the_run_tells_people_what_was_indexed_with_a_note(cli: Cli, tmp_path: Path, model_spec: str) -> None:
    data = imagegen.jpeg_bytes(imagegen.photo(8))
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "cut.jpg").write_bytes(data[:-2])
    result = cli("index", tmp_path / "p", "--model", model_spec)
    assert result.exit_code == 0 and "0 failed" in result.stdout
    assert (f"  indexed with a note: {tmp_path / 'p' / 'cut.jpg'}: the file ends early (no JPEG end marker): every "
            "row decoded") in result.stderr
    assert "0 failed (1 indexed with a note: a JPEG cut short) in" in cli("info").stdout
    assert cli("index", tmp_path / "p").exit_code == 0  # a later run, which decodes nothing: the note stays
    cut = str(tmp_path / "p" / "cut.jpg")
    assert cli("info", "--failed").stdout == (f"{cut}: the file ends early (no JPEG end marker): every row decoded  "
                                              "(indexed as far as it decodes)\n")
    (row,) = cli("info", "--failed", "--json").json()  # type: ignore[misc]
    assert row["path"] == cut and row["indexed"] is True
    assert [h["path"] for h in search_json(cli, "--image", cut, "-k", "1")] == [cut]  # indexed, not failed


# ---- 7. words ---------------------------------------------------------------------------------------------------------

def test_one_file_is_one_file(cli: Cli, tmp_path: Path, model_spec: str) -> None:
    root = make_photos(tmp_path / "p", ["a.png"])
    (root / "again.png").symlink_to(root / "a.png")
    result = cli("index", root, "--model", model_spec)
    assert result.exit_code == 0
    assert "clipsearch: note: 1 file was reached again through a link" in result.stderr


def test_places_are_rounded_for_people_and_kept_whole_in_json(cli: Cli, tmp_path: Path) -> None:
    from tests.test_filters import camera_exif, jpeg_with

    (tmp_path / "p").mkdir()
    exif = camera_exif(gps=((33, 1), (52, 1), (1656, 100), (151, 1), (12, 1), (36, 1)))  # Sydney: 151°12'36"
    (tmp_path / "p" / "opera.jpg").write_bytes(jpeg_with(exif))
    assert cli("index", tmp_path / "p", "--model", "demo").exit_code == 0
    hit = search_json(cli, "a red star", "--near", "33.87,151.21,5km")[0]
    assert hit["lon"] == 151 + 12 / 60 + 36 / 3600  # the float, as stored (151.20999999999998)
    table = cli("search", "a red star", "--near", "33.87,151.21,5km").stdout
    assert "33.87127, 151.21000" in table and "151.2099" not in table and table.splitlines()[0].split()[:3] == [
        "rank", "score", "place"]


def test_two_outputs_at_once_are_refused_in_one_line(cli: Cli, tmp_path: Path, model_spec: str) -> None:
    """`duplicates -0` without --paths-only, and `search --json --paths`, were silently resolved."""
    assert cli("index", make_photos(tmp_path / "p", ["a.png"]), "--model", model_spec).exit_code == 0
    one_line(cli("duplicates", "-0"), "-0 goes with --paths-only")
    one_line(cli("duplicates", "--paths-only", "--json"), "give --json or --paths-only, not both")
    one_line(cli("search", "a star", "--json", "--paths"), "give --json or --paths, not both")
    one_line(cli("search", "a star", "--json", "-0"), "give --json or -0, not both")
    assert cli("duplicates", "--paths-only", "-0").exit_code == 0
    assert cli("search", "a star", "-0").exit_code == 0


def test_every_stopped_by_sigterm_says_it_stopped(tmp_path: Path, model_spec: str, index_dir: Path) -> None:
    """`index --every` printed "clipsearch: error: terminated" on SIGTERM, which is how a container stops it."""
    root = make_photos(tmp_path / "p", ["a.png"])
    proc = start_cli("index", root, "--model", model_spec, "--every", "1h", "--json", env=cli_env(index_dir))
    try:
        wait_for_line(proc, '"added": 1', 120, stream="stdout")  # the first run is done: now it waits
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    said = lines(proc).text()
    assert proc.returncode == 143
    assert said == "clipsearch: stopped (SIGTERM); what was done is committed\n"


def test_serve_json_names_where_it_serves(tmp_path: Path, model_spec: str, index_dir: Path) -> None:
    """The README says every command has --json; serve had none. With --port 0 it is how a script learns the port."""
    root = make_photos(tmp_path / "p", ["a.png"])
    assert run_cli("index", root, "--model", model_spec, env=cli_env(index_dir)).returncode == 0
    proc = start_cli("serve", "--index", index_dir, "--port", "0", "--json")
    try:
        said = json.loads(wait_for_line(proc, '"url"', 120, stream="stdout"))
        assert said.keys() == {"url", "host", "port", "index"} and said["port"] > 0 and said["host"] == "127.0.0.1"
        assert said["url"] == f"http://127.0.0.1:{said['port']}/" and said["index"] == str(index_dir)
        from tests.serving import request

        assert request(said["url"].rstrip("/"), "/info").json()["images"] == 1  # type: ignore[index]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_file_names_and_missing_addresses_are_said_properly(tmp_path: Path, model_spec: str, index_dir: Path) -> None:
    """`filename*=UTF-8''bad-%FF%FE` is not UTF-8; /static/nope said "not found" and /nope "Not Found"."""
    folder = tmp_path / "card"
    folder.mkdir()
    imagegen.photo(1).save((os.fsencode(folder) + b"/bad-\xff\xfe.png").decode("utf-8", "surrogateescape"))
    assert run_cli("index", folder, "--model", model_spec, env=cli_env(index_dir)).returncode == 0
    server = Server(index_dir).start()
    try:
        photo = server.get("/search?sort=date").json()[0]  # type: ignore[index]
        disposition = server.get(f"/file/{photo['id']}").headers["content-disposition"]
        assert disposition == "inline; filename*=UTF-8''bad-%EF%BF%BD%EF%BF%BD.png"
        urllib.parse.unquote(disposition.split("''", 1)[1], errors="strict")  # valid UTF-8
        for path in ("/static/nope.js", "/nope", "/thumb"):
            answer = server.get(path)
            assert answer.status == 404 and answer.json() == {  # type: ignore[comparison-overlap]
                "error": f"nothing at {path} on this server (the page is /, the API /search, /thumb/ID, /file/ID, /info)"}
        wrong = server.get("/info", method="DELETE")
        assert wrong.status == 405 and wrong.json() == {"error": "DELETE is not how /info is asked"}
        assert server.get("/thumb/999999").json() == {"error": "no such photo in the index"}
    finally:
        server.stop()


@pytest.mark.parametrize("args", [("search", "a star", "-k", "abc"), ("index", "--batch-size", "0", "."),
                                  ("search", "a star", "-k"), ("nosuchcommand",)])
def test_a_mistyped_option_is_one_line_naming_the_help(args: tuple[str, ...], index_dir: Path) -> None:
    done = run_cli(*args, env=cli_env(index_dir))
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("clipsearch: error: ") and "--help'" in done.stderr


@pytest.mark.parametrize("args", [("models",), ("search", "a red star", "--json")])
def test_output_cut_short_by_a_closed_pipe_ends_quietly(args: tuple[str, ...], library: Library) -> None:
    """`clipsearch search ... | head -0`: the reader has gone before the first write."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(cli_command(*args), stdout=write_end, stderr=subprocess.PIPE,
                              env=cli_env(library.index_dir), timeout=300)
    finally:
        os.close(write_end)
    errors = done.stderr.decode()
    assert done.returncode == 1
    assert errors == "", errors


def test_the_api_schema_names_each_operation_once(library: Library) -> None:
    """Generators of API clients refuse a schema whose operationIds repeat (GET and HEAD of one route did)."""
    schema = json.loads(library.server.get("/openapi.json").body)
    ids = [op["operationId"] for methods in schema["paths"].values() for op in methods.values()]
    assert len(ids) == len(set(ids)) and "/file/{raw_id}" in schema["paths"]
    assert library.server.get("/thumb/1", method="HEAD").status == 200


@pytest.mark.parametrize("path", ["/", "/search?q=a+red+star", "/info", "/tags", "/static/app.js", "/file/1"])
def test_head_is_answered_wherever_get_is(path: str, library: Library) -> None:
    """A proxy's health check or `curl -I` asks HEAD: every route that answers GET answers it, without a body."""
    got, head = library.server.get(path), library.server.get(path, method="HEAD")
    assert got.status == head.status == 200 and head.body == b""
    assert head.headers["content-type"] == got.headers["content-type"]
