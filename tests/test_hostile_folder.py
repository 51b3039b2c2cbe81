"""A folder built to be hostile to names and links, indexed as a user would: each real file once, what cannot be
indexed listed, and every later command working on it (issue 19's held-out check, kept as a test)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests import imagegen
from tests.conftest import Cli
from tests.serving import Server

NAMES = [b"plain.png", b"bad-\xff\xfe-name.png", b"new\nline.png", b"tab\there.png", b"bell\x07.png",
         "caf\u00e9 \u2014 \u5199\u771f.png".encode(), b"-starts-with-dash.png", b" spaces .png"]


def _str(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def test_each_real_file_once_failures_listed_and_every_command_works(cli: Cli, tmp_path: Path, model_spec: str,
                                                                     index_dir: Path) -> None:
    root = tmp_path / "hostile"
    real = root / "real"
    real.mkdir(parents=True)
    for i, name in enumerate(NAMES):
        imagegen.photo(60 + i).save(_str(os.fsencode(real) + b"/" + name), "PNG")
    (real / "corrupt.jpg").write_bytes(b"\xff\xd8\xff not really")
    os.symlink(real / "plain.png", root / "link-to-plain.png")  # a link to a file
    os.link(real / "tab\there.png", root / "hard-link.png")  # the same file under a second name
    os.symlink(root, real / "loop")  # a link back up: a loop
    os.symlink(real / "gone.png", root / "dangling.png")  # a link to nothing
    os.symlink(real, tmp_path / "linked")  # a linked folder, added as a second root below

    result = cli("index", root, tmp_path / "linked", "--model", model_spec, "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["added"] == len(NAMES)  # type: ignore[index]
    assert [Path(f["path"]).name for f in report["failed"]] == ["corrupt.jpg"]  # type: ignore[index]
    assert any("reached again through a link" in note for note in report["notes"])  # type: ignore[index]

    hits = json.loads(cli("search", "a photo", "-k", "100", "--json").stdout)
    inodes = [os.stat(os.fsencode(h["path"])).st_ino for h in hits]
    assert len(hits) == len(NAMES) and len(set(inodes)) == len(NAMES)  # each real file once
    assert {os.stat(real / _str(n)).st_ino for n in NAMES} == set(inodes)
    kept = [os.fsencode(h["path"]) for h in hits]  # the files' own paths: not the link walked first, nor the linked root
    assert not any(os.path.islink(p) for p in kept) and all(p.startswith(os.fsencode(root) + b"/") for p in kept)

    table = cli("search", "a photo", "-k", "100").stdout.splitlines()
    assert len(table) == 1 + len(NAMES)  # one line per hit: a newline in a name does not break the table
    assert any("new\\x0aline.png" in line for line in table) and any("bad-\\xff\\xfe-name.png" in line for line in table)
    failed = json.loads(cli("info", "--failed", "--json").stdout)
    assert [Path(f["path"]).name for f in failed] == ["corrupt.jpg"]
    assert cli("check", "--json").json()["ok"] is True  # type: ignore[index]

    again = cli("index", "--json").json()  # the scheduled run: the same choice of paths, nothing re-read
    assert (again["added"], again["removed"], again["unchanged"]) == (0, 0, len(NAMES))  # type: ignore[index]
    within = json.loads(cli("search", "a photo", "--in", real, "-k", "100", "--json").stdout)
    assert {h["id"] for h in within} <= {h["id"] for h in hits}

    server = Server(index_dir).start()
    try:
        for hit in hits:
            assert server.get(f"/file/{hit['id']}").status == 200, hit
        answered = server.get("/search?q=a+photo&k=100")
        assert answered.status == 200
        assert sorted(os.fsencode(h["path"]) for h in answered.json()) == sorted(  # type: ignore[union-attr]
            os.fsencode(h["path"]) for h in hits)
    finally:
        server.stop()
    assert cli("forget", tmp_path / "linked").exit_code == 0
    assert cli("forget", root).exit_code == 0
    assert cli("info", "--json").json()["images"] == 0  # type: ignore[index]


def test_paths_only_output_gives_each_name_exactly(cli: Cli, tmp_path: Path, model_spec: str) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    names = [b"new\nline.png", b"bad-\xff.png", b"plain.png"]
    for i, name in enumerate(names):
        imagegen.photo(80 + i).save(_str(os.fsencode(folder) + b"/" + name), "PNG")
    assert cli("index", folder, "--model", model_spec).exit_code == 0
    by_null = cli("search", "a photo", "--paths", "-0").stdout_bytes
    assert sorted(by_null.split(b"\0")[:-1]) == sorted(os.fsencode(folder) + b"/" + n for n in names)
    ranked = [os.fsencode(h["path"]) for h in json.loads(cli("search", "a photo", "--json").stdout)]
    assert by_null.split(b"\0")[:-1] == ranked  # best first, as the other outputs
    second = cli("search", "a photo", "--paths", "--offset", "1", "-k", "1").stdout_bytes
    assert second == ranked[1] + b"\n"
