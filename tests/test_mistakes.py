"""What a new user's first week meets (issue 19), through the real CLI and a real server process: a model switch,
index types FAISS cannot build here, rejected commands, failures to list, a port already taken."""

from __future__ import annotations

import shutil
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests import hfmodels, imagegen
from tests.conftest import ROOT, Cli, cli_env, run_cli, search_json, start_cli, wait_for
from tests.serving import Server

SAMPLE = ROOT / "data" / "sample"


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    photos = tmp_path / "photos"
    shutil.copytree(SAMPLE, photos)
    return photos


@pytest.fixture(scope="module")
def other_size_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A saved Hugging Face CLIP with 24-d embeddings, against the demo model's 128."""
    return "hf:" + str(hfmodels.tiny_clip(tmp_path_factory.mktemp("tiny-clip") / "model"))


def one_line(stderr: str, needle: str) -> None:
    assert "Traceback" not in stderr
    assert stderr.count("\n") == 1 and stderr.startswith("clipsearch: error: ") and needle in stderr, stderr


def ids_by_path(cli: Cli) -> dict[str, int]:
    return {h["path"]: h["id"] for h in search_json(cli, "a shape", "-k", "1000")}


def test_reindex_to_a_model_of_another_size_keeps_every_id(cli: Cli, sample: Path, other_size_model: str) -> None:
    """The documented way from `fast` to `best`: it crashed in FAISS and left the catalog switched with no FAISS
    file; and the ids a saved /file/ID points at were renumbered."""
    assert cli("index", sample, "--model", "demo").exit_code == 0
    before = ids_by_path(cli)
    result = cli("index", sample, "--model", other_size_model, "--reindex", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["updated"] == 54 and report["added"] == 0 and report["removed"] == 0  # type: ignore[index]
    info = cli("info", "--json").json()
    assert info["dim"] == 24 and info["model"] == other_size_model  # type: ignore[index]
    assert ids_by_path(cli) == before
    assert cli("check", "--json").json()["ok"] is True  # type: ignore[index]


def test_reindex_without_a_model_re_embeds_everything_with_the_recorded_one(cli: Cli, sample: Path) -> None:
    """It silently did nothing (and with the same --model too)."""
    assert cli("index", sample, "--model", "demo").exit_code == 0
    for args in (("--reindex",), ("--reindex", "--model", "demo")):
        report = cli("index", *args, "--json").json()
        assert report["updated"] == 54 and report["unchanged"] == 0 and report["model_seconds"] > 0, args  # type: ignore[index]
    hits = search_json(cli, "a red star", "-k", "1")
    assert Path(hits[0]["path"]).name == "red-star.png"


def test_an_id_is_never_handed_out_again_after_forget(cli: Cli, tmp_path: Path, model_spec: str) -> None:
    for name, seed in (("a", 1), ("b", 2), ("c", 3)):
        (tmp_path / name).mkdir()
        imagegen.photo(seed).save(tmp_path / name / f"{name}.png")
    assert cli("index", tmp_path / "a", tmp_path / "b", "--model", model_spec).exit_code == 0
    last = max(ids_by_path(cli).values())
    assert cli("forget", tmp_path / "b").exit_code == 0
    assert cli("index", tmp_path / "c").exit_code == 0
    assert ids_by_path(cli)[str(tmp_path / "c" / "c.png")] > last


def test_index_types_are_checked_before_any_work_and_never_leave_an_unsearchable_index(
        cli: Cli, sample: Path, index_dir: Path) -> None:
    result = cli("index", sample, "--model", "demo", "--index-type", "HNSW32")
    assert result.exit_code == 2
    one_line(result.stderr, "--index-type 'HNSW32' is not one clipsearch builds")
    assert not index_dir.exists()  # refused before anything was written

    assert cli("index", sample, "--model", "demo", "--index-type", "flat").exit_code == 0
    assert cli("info", "--json").json()["index_type"] == "Flat"  # type: ignore[index]

    result = cli("index", "--index-type", "IVF16,PQ5")
    one_line(result.stderr, "PQ5 needs the embedding size (128) to be a multiple of 5")

    for wanted, needs in (("IVF16,PQ4", "256"), ("IVF4096,SQ8", "4,096")):
        result = cli("index", "--index-type", wanted, "--json")
        assert result.exit_code == 0, result.stderr
        note = f"--index-type {wanted} needs at least {needs} photos to train; until then the index is exact (Flat)"
        assert result.json()["notes"] == [note]  # type: ignore[index]
        info = cli("info", "--json").json()
        assert info["index_type"] == "Flat" and info["index_type_note"] == note  # type: ignore[index]
        assert note in cli("info").stdout
        assert Path(search_json(cli, "a red star", "-k", "1")[0]["path"]).name == "red-star.png"
        assert cli("check", "--repair", "--json").json()["ok"] is True  # type: ignore[index]


def test_failed_files_can_be_listed(cli: Cli, tmp_path: Path, model_spec: str) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    imagegen.photo(1).save(folder / "good.png")
    (folder / "broken.jpg").write_bytes(b"not a JPEG at all")
    (folder / "empty.png").write_bytes(b"")
    assert cli("index", folder, "--model", model_spec).exit_code == 0
    listed = cli("info", "--failed", "--json").json()
    assert [(row["path"], row["error"]) for row in listed] == [  # type: ignore[union-attr,index]
        (str(folder / "broken.jpg"), "not a recognised image format"), (str(folder / "empty.png"), "empty file")]
    assert cli("info", "--failed").stdout.splitlines() == [
        f"{folder / 'broken.jpg'}: not a recognised image format", f"{folder / 'empty.png'}: empty file"]
    assert "clipsearch info --failed lists them" in cli("info").stdout


@pytest.mark.parametrize("args", [
    ("index", "{photos}", "--model", "banana"),
    ("index",),
    ("watch", "{tmp}/nowhere"),
    ("index", "{photos}", "--model", "clipsearch-demo:no-such-tag"),
    ("index", "{photos}", "--model", "demo", "--index-type", "IVF64,PQ7"),  # PQ7 does not divide the demo's 128
])
def test_a_rejected_command_creates_no_index(cli: Cli, tmp_path: Path, index_dir: Path, args: tuple[str, ...]) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    imagegen.photo(1).save(photos / "a.png")
    done = cli(*(a.format(photos=photos, tmp=tmp_path) for a in args))
    assert done.exit_code == 2
    one_line(done.stderr, "")
    assert not index_dir.exists()


def test_a_rejected_command_changes_nothing_in_an_existing_index(cli: Cli, sample: Path, tmp_path: Path) -> None:
    """Issue 31, item 5: refused before anything is written, so no folder, setting or index type is recorded."""
    assert cli("index", sample, "--model", "demo").exit_code == 0
    before = cli("info", "--json").json()
    other = tmp_path / "other"
    other.mkdir()
    imagegen.photo(2).save(other / "b.png")
    done = cli("index", other, "--index-type", "IVF64,PQ7", "--exclude", "junk", "--include-hidden")
    assert done.exit_code == 2
    one_line(done.stderr, "PQ7")
    after = cli("info", "--json").json()
    assert after["roots"] == before["roots"] and after["root_settings"] == before["root_settings"]  # type: ignore[index]
    assert after["index_type_setting"] == before["index_type_setting"]  # type: ignore[index]
    assert cli("index", "--json").json()["added"] == 0  # type: ignore[index]  # the next plain run does not take it


def test_serve_says_it_serves_only_once_its_port_answers(cli: Cli, sample: Path, index_dir: Path) -> None:
    assert cli("index", sample, "--model", "demo").exit_code == 0
    server = Server(index_dir).start()  # returns on the "serving" line, with no retries after it
    try:
        assert server.get("/info").status == 200
    finally:
        server.stop()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = start_cli("serve", "--index", index_dir, "--port", port)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    one_line(err, f"cannot listen on 127.0.0.1:{port}: the port is in use")
    assert "serving" not in err.split("error:")[0]


def test_a_running_server_answers_with_the_model_the_index_was_switched_to(cli: Cli, sample: Path, index_dir: Path,
                                                                           other_size_model: str) -> None:
    """Its first query after `index --reindex --model OTHER` used the old model's text vector: HTTP 500 with a
    model of another size (wrong results with one of the same size)."""
    assert cli("index", sample, "--model", "demo").exit_code == 0
    server = Server(index_dir).start()
    try:
        first = server.get("/search?q=a+red+star&k=3")
        assert first.status == 200 and Path(first.json()[0]["path"]).name == "red-star.png"  # type: ignore[index]
        assert cli("index", sample, "--model", other_size_model, "--reindex").exit_code == 0
        after = server.get("/search?q=a+red+star&k=5")
        assert after.status == 200, after.body
        want = search_json(cli, "a red star", "-k", "5")
        assert [(h["id"], round(h["score"], 4)) for h in after.json()] == [  # type: ignore[union-attr]
            (h["id"], round(h["score"], 4)) for h in want]
    finally:
        server.stop()


def test_a_file_name_that_is_not_utf8_is_indexed_searched_shown_and_forgotten(cli: Cli, tmp_path: Path,
                                                                             model_spec: str, index_dir: Path) -> None:
    """Such names (old camera cards, SMB shares) made `index` die with a UnicodeEncodeError, nothing indexed."""
    import json
    import os

    folder = tmp_path / "card"
    folder.mkdir()
    raw = os.fsencode(folder) + b"/bad-\xff\xfe-name.png"
    imagegen.photo(1).save(raw.decode("utf-8", "surrogateescape"))
    imagegen.photo(2).save(folder / "good.png")
    odd = os.fsencode(folder) + b"/sub-\xe9"  # a folder named in Latin-1 holding a photo
    os.mkdir(odd)
    imagegen.photo(3).save((odd + b"/x.png").decode("utf-8", "surrogateescape"))

    done = run_cli("index", folder, "--model", model_spec, "--json", env=cli_env(index_dir))  # a real process, once
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["added"] == 3 and "Traceback" not in done.stderr
    found = cli("search", "--image", folder / "good.png", "-k", "3", "--json")
    assert found.exit_code == 0, found.stderr
    paths = {os.fsencode(h["path"]) for h in json.loads(found.stdout)}  # the exact bytes come back from the JSON
    assert paths == {raw, odd + b"/x.png", os.fsencode(folder / "good.png")}
    table = cli("search", "--image", folder / "good.png", "-k", "3")
    assert table.exit_code == 0 and "bad-\\xff\\xfe-name.png" in table.stdout and "sub-\\xe9/x.png" in table.stdout
    within = cli("search", "--image", folder / "good.png", "--in", odd.decode("utf-8", "surrogateescape"), "--json")
    assert [os.fsencode(h["path"]) for h in json.loads(within.stdout)] == [odd + b"/x.png"]
    again = cli("index", "--json")
    assert json.loads(again.stdout)["unchanged"] == 3  # found again by the same bytes: nothing re-read
    gone = cli("forget", odd.decode("utf-8", "surrogateescape"))
    assert gone.exit_code == 0
    assert gone.stdout == f"dropped 1 image under {folder}/sub-\\xe9; it stays out of {folder} from now on\n"
    assert cli("index", "--json").json()["removed"] == 0  # type: ignore[index]  # and the next run leaves it out


def test_version_short_help_and_an_empty_query_image(cli: Cli, sample: Path, tmp_path: Path) -> None:
    from clipsearch import __version__

    assert cli("--version").stdout == f"clipsearch {__version__}\n"
    assert cli("index", "-h").exit_code == 0 and "--reindex" in cli("index", "-h").stdout
    assert cli("index", sample, "--model", "demo").exit_code == 0
    (tmp_path / "empty.jpg").write_bytes(b"")
    result = cli("search", "--image", tmp_path / "empty.jpg")
    one_line(result.stderr, f"cannot use {tmp_path / 'empty.jpg'} as a query image: empty file")


def first_changes_watched(root: Path, changes: Callable[[], None], **watch: Any) -> list[list[str]]:
    """What ``watch_folders`` over ``root`` reports first after ``changes()``, made once it is watching."""
    import threading

    from indexer.watch import watch_folders

    started, stop, batches = threading.Event(), threading.Event(), []
    watcher = threading.Thread(target=watch_folders, kwargs={
        "roots": [str(root)], "on_change": batches.append, "debounce": 0.2, "ready": lambda _: started.set(),
        "stop": stop, **watch})
    watcher.start()
    try:
        assert started.wait(30)
        changes()
        wait_for(lambda: batches, 180, "the watcher reporting a change")
    finally:
        stop.set()
        watcher.join(30)
    return batches


def test_watch_ignores_its_own_index_and_hidden_folders(tmp_path: Path) -> None:
    """With the index inside a watched folder, each run's writes started another run: a no-op run every ~2 s
    forever. Hidden folders, which the walk skips, started runs too."""
    root = tmp_path / "photos"
    for folder in ("album", ".index", ".hidden", "album/.thumbs"):
        (root / folder).mkdir(parents=True)

    def changes() -> None:
        imagegen.photo(1).save(root / ".index" / "thumb.jpg")  # what a run writes into its index
        (root / ".index" / "catalog.sqlite-wal").write_bytes(b"x")
        imagegen.photo(2).save(root / ".hidden" / "secret.jpg")
        imagegen.photo(3).save(root / "album" / ".thumbs" / "t.jpg")
        imagegen.photo(4).save(root / "album" / "new.jpg")  # the one change the walk would find

    batches = first_changes_watched(root, changes, exclude=[str(root / ".index")])
    assert batches == [[str(root / "album")]]


def test_the_cli_and_the_api_follow_one_set_of_rules(cli: Cli, sample: Path, index_dir: Path) -> None:
    """Before: like=99999 gave 400 {"error"}, like=abc 404 {"detail"}, k=0 422 with a list; q with like used like;
    POST ignored q; a multipart upload was "not a recognised image format"; HEAD /file/ID was 405."""
    assert cli("index", sample, "--model", "demo").exit_code == 0
    star = next(h for h in search_json(cli, "a red star", "-k", "1"))
    server = Server(index_dir).start()
    try:
        for path, status in (("/search?like=99999", 404), ("/search?like=abc", 400), ("/search?q=x&k=0", 400),
                             ("/search?q=x&k=10001", 400), ("/search?q=x&k=abc", 400), ("/search?k=3", 400),
                             (f"/search?q=star&like={star['id']}", 400), ("/file/99999", 404), ("/file/abc", 404),
                             ("/nowhere", 404)):
            response = server.get(path)
            assert response.status == status, (path, response.body)
            assert set(response.json()) == {"error"}, path  # type: ignore[arg-type]
        image = (sample / "blue-circle.jpg").read_bytes()
        assert server.get("/search?q=x", method="POST", body=image).status == 400
        boundary = "clipsearchboundary"
        form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"q.jpg\"\r\n"
                "Content-Type: image/jpeg\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
        uploaded = server.get("/search?k=1", method="POST", body=form,
                              headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert uploaded.status == 200 and uploaded.json()[0]["path"] == str(sample / "blue-circle.jpg")  # type: ignore[index]
        like = server.get(f"/search?like={star['id']}&k=3").json()
        head = server.get(f"/file/{star['id']}", method="HEAD")
        assert head.status == 200 and head.body == b"" and head.headers["content-type"].startswith("image/")
    finally:
        server.stop()
    by_cli = search_json(cli, "--like", str(star["id"]), "-k", "3")  # the same answer, the photo itself left out
    assert [(h["id"], round(h["score"], 5)) for h in by_cli] == [(h["id"], round(h["score"], 5)) for h in like]  # type: ignore[union-attr]
    assert star["id"] not in {h["id"] for h in by_cli}
    one_line(cli("search", "x", "-k", "10001").stderr, "k (how many results) must be between 1 and 10,000")
    one_line(cli("search", "--like", "99999").stderr, "no indexed photo has id 99999")


def test_a_damaged_catalog_is_checked_salvaged_and_never_reported_whole(cli: Cli, sample: Path, index_dir: Path) -> None:
    """A truncated catalog left every command at "database disk image is malformed", check --repair included; a
    0-byte one was "repaired" into an empty index with exit 0."""
    assert cli("index", sample, "--model", "demo").exit_code == 0
    catalog = index_dir / "catalog.sqlite"
    original = catalog.read_bytes()
    for kept in (0.3, 0.5, 0.67, 0.9):  # a bad copy, a full disk at the wrong moment: cut anywhere
        catalog.write_bytes(original[: int(len(original) * kept)])
        seen = cli("check")
        # SQLite's verdict ("database disk image is malformed", "Fragmentation of N bytes ...") depends on the cut
        assert seen.exit_code == 1 and "problem: catalog database: " in seen.stdout, (kept, seen.stdout)
        assert "'check --repair' would save what can be read: kept" in seen.stdout, kept
        searched = cli("search", "a red star", "-k", "54")
        if searched.exit_code != 0:  # the damage may lie where this search does not read
            one_line(searched.stderr, "'clipsearch check' says what can be saved")
    # a third of the file: where the photos' rows are (past it, since format 8, lie mostly the signatures' grids,
    # which a run makes again: a repair that loses only those has lost nothing)
    catalog.write_bytes(original[: len(original) // 3])

    repaired = cli("check", "--repair", "--json")
    assert repaired.exit_code == 1  # not a success: something was lost, and it says what
    assert "kept" in repaired.json()["lost"] and repaired.json()["ok"] is False  # type: ignore[index]
    assert catalog.read_bytes() != original[: len(original) // 3]
    assert [p.name for p in index_dir.glob("catalog.sqlite.damaged-*")]  # the damaged file is kept, not deleted
    assert cli("check", "--json").json()["ok"] is True  # type: ignore[index]
    assert cli("index", "--json").exit_code == 0  # the next run embeds what was lost
    assert cli("info", "--json").json()["images"] == 54  # type: ignore[index]

    catalog.write_bytes(b"")  # emptied
    for args in (("index",), ("check", "--repair")):
        result = cli(*args)
        assert result.exit_code != 0, args
        assert "nothing can be saved" in result.stderr + result.stdout, args
    assert catalog.stat().st_size == 0  # and nothing was passed off as a new, empty index


def test_each_folder_remembers_hidden_files_and_exclusions(cli: Cli, tmp_path: Path, model_spec: str) -> None:
    """`index DIR --include-hidden` followed by the scheduled plain `index` removed the hidden files again, and
    `forget DIR/sub` was undone by the next run."""
    root = tmp_path / "p"
    for folder in (".hidden", "sub", "trash"):
        (root / folder).mkdir(parents=True)
    for i, name in enumerate(("a.png", ".hidden/h.png", ".dot.png", "sub/s.png", "trash/t.png")):
        imagegen.photo(90 + i).save(root / name)

    def run(*args: object) -> dict:
        result = cli("index", *args, "--json")
        assert result.exit_code == 0, result.stderr
        return result.json()  # type: ignore[return-value]

    assert run(root, "--include-hidden", "--model", model_spec)["added"] == 5
    assert (run()["removed"], run()["unchanged"]) == (0, 5)  # the scheduled run keeps them
    forgot = cli("forget", root / "sub")
    assert forgot.stdout == f"dropped 1 image under {root / 'sub'}; it stays out of {root} from now on\n"
    assert (run()["added"], run()["unchanged"]) == (0, 4)  # not indexed again
    assert run(root, "--exclude", "tr*")["removed"] == 1
    info = cli("info", "--json").json()
    assert info["root_settings"] == {str(root): {"include_hidden": True, "exclude": ["/sub", "tr*"]}}  # type: ignore[index]
    assert f"{root}: hidden files included; excluding /sub, tr*" in cli("info").stdout
    assert run(root, "--no-include-hidden")["removed"] == 2
    assert run(root, "--clear-excludes")["added"] == 2  # sub and trash again
    assert cli("info", "--json").json()["root_settings"][str(root)] == {  # type: ignore[index]
        "include_hidden": False, "exclude": []}


def test_watch_follows_each_folders_rules(tmp_path: Path) -> None:
    from indexer.walk import Rules

    root = tmp_path / "photos"
    for folder in (".hidden", "trash", "album"):
        (root / folder).mkdir(parents=True)

    def changes() -> None:
        imagegen.photo(1).save(root / "trash" / "t.jpg")  # excluded
        imagegen.photo(2).save(root / ".hidden" / "h.jpg")  # hidden files are on for this folder

    batches = first_changes_watched(root, changes, rules={str(root): Rules(include_hidden=True, exclude=("trash",))})
    assert batches == [[str(root / ".hidden")]]


def test_models_lists_without_torch_from_the_first_use(tmp_path: Path) -> None:
    """`clipsearch models` took 6 s each time (it imported open_clip and torch to list them), then 4-16 s on a fresh
    HOME (issue 33): the table ships in the package, and neither the first listing nor the second imports torch."""
    import json
    import subprocess

    code = ("import atexit, runpy, sys\n"
            "atexit.register(lambda: sys.stderr.write('TORCH=%s' % ('torch' in sys.modules)))\n"
            "sys.argv = ['cli.py', 'models', '--json']\n"
            f"runpy.run_path({str(ROOT / 'cli.py')!r}, run_name='__main__')\n")
    env = cli_env(CLIPSEARCH_CACHE=str(tmp_path / "cache"))
    first, second = (subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
                     for _ in range(2))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "TORCH=False" in first.stderr and "TORCH=False" in second.stderr
    rows = json.loads(second.stdout)
    assert rows == json.loads(first.stdout) and len(rows) > 100
    demo = next(r for r in rows if r["spec"] == "demo")
    assert demo["cached"] is True and demo["dim"] == 128  # the shipped weights are on this machine


def test_the_shipped_model_table_is_what_open_clip_says_now() -> None:
    """The table in clipsearch/assets/models.json equals the rows made from the open_clip installed here (else run
    `python -m clipsearch.encoders.listing`); with another open_clip it is not used (its key differs)."""
    import json

    from clipsearch.encoders import listing

    shipped = json.loads(listing._SHIPPED.read_text())
    assert shipped["key"] == list(listing._rows_key())
    assert shipped["rows"] == json.loads(json.dumps(listing.shippable_rows()))
    package = str(listing._SHIPPED.parent.parent)  # a checkout's path in the table breaks every other checkout
    assert package not in listing._SHIPPED.read_text()


def test_the_watch_command_ignores_its_index_hidden_and_excluded_folders(cli: Cli, tmp_path: Path) -> None:
    """The `watch` process itself (issue 19 #4 and #12): its index inside the watched folder, a hidden folder and a
    remembered exclusion never start a run; each real change starts one run, and nothing from them is indexed."""
    import json

    from clipsearch.store import StoreReader
    from tests.conftest import interrupt, wait_for_line

    root = tmp_path / "photos"
    for folder in ("album", ".hidden", "trash"):
        (root / folder).mkdir(parents=True)
    imagegen.photo(1).save(root / "album" / "one.jpg")
    index = root / ".clipsearch"
    assert cli("index", root, "--index", index, "--model", "demo", "--exclude", "trash").exit_code == 0
    log = index / "runs.log"

    def runs() -> list[dict]:
        return [json.loads(line) for line in log.read_text().splitlines()]

    proc = start_cli("watch", "--index", index, "--debounce", "0.3", env=cli_env(index))
    try:
        wait_for_line(proc, "watching")
        before = len(runs())
        imagegen.photo(2).save(index / "stray.jpg")  # what a run writes lands in the index directory
        imagegen.photo(3).save(root / ".hidden" / "h.jpg")
        imagegen.photo(4).save(root / "trash" / "t.jpg")
        imagegen.photo(5).save(root / "album" / "two.jpg")
        wait_for(lambda: any(r["added"] for r in runs()[before:]), 180, "a run for the new photo")
        imagegen.photo(6).save(root / "album" / "three.jpg")
        wait_for(lambda: sum(r["added"] for r in runs()[before:]) == 2, 180, "a run for the second photo")
        new = runs()[before:]
        assert [r["added"] for r in new] == [1, 1], new  # no run for the index, hidden or excluded folders
    finally:
        said = interrupt(proc)
    assert "Traceback" not in said
    with StoreReader.open(index) as store:
        names = sorted(Path(p).name for p in store.catalog.paths(store.catalog.file_ids()).values())
    assert names == ["one.jpg", "three.jpg", "two.jpg"]


def test_another_index_inside_a_folder_is_never_indexed(cli: Cli, tmp_path: Path, sample: Path) -> None:
    """Issue 31, item 6: `--include-hidden` on a folder that holds another clipsearch index indexed its thumbs/."""
    photos = tmp_path / "album"
    photos.mkdir()
    imagegen.photo(1).save(photos / "mine.png")
    other = photos / ".clipsearch-index"
    assert cli("index", sample, "--index", other, "--model", "demo").exit_code == 0
    thumbs = other / "thumbs" / "ab"
    thumbs.mkdir(parents=True, exist_ok=True)
    imagegen.photo(2).save(thumbs / "cached.jpg")
    report = cli("index", photos, "--model", "demo", "--include-hidden", "--json").json()
    assert report["added"] == 1  # type: ignore[index]
    listed = {h["path"] for h in search_json(cli, "a shape", "-k", "100")}
    assert listed == {str(photos / "mine.png")}


def test_a_link_to_an_indexed_folder_given_as_a_folder_is_that_folder(cli: Cli, tmp_path: Path) -> None:
    """Issue 31, item 6: a symlinked folder given in a later run indexed its files again (2 results for 1 file), and
    alternating runs added and removed them with nothing changed on disk."""
    album = tmp_path / "album"
    album.mkdir()
    for i in range(3):
        imagegen.photo(10 + i).save(album / f"{i}.png")
    assert cli("index", album, "--model", "demo").exit_code == 0
    link = tmp_path / "link"
    link.symlink_to(album)
    for args in ((link,), (), (link,), ()):
        report = cli("index", *args, "--json").json()
        assert (report["added"], report["removed"], report["unchanged"]) == (0, 0, 3), (args, report)  # type: ignore[index]
    assert cli("info", "--json").json()["roots"] == [str(album)]  # type: ignore[index]
    assert len(search_json(cli, "a shape", "-k", "100")) == 3


def test_forgetting_a_root_inside_another_keeps_it_out_of_later_runs(cli: Cli, tmp_path: Path) -> None:
    """Issue 31, item 6: `forget X`, X both a root and inside another root, was added back by the next plain run."""
    album = tmp_path / "album"
    (album / "trip").mkdir(parents=True)
    imagegen.photo(21).save(album / "a.png")
    imagegen.photo(22).save(album / "trip" / "b.png")
    assert cli("index", album, "--model", "demo").exit_code == 0
    assert cli("index", album / "trip").exit_code == 0  # a root of its own too
    forgotten = cli("forget", album / "trip", "--json")
    assert forgotten.exit_code == 0, forgotten.stderr
    assert cli("index", "--json").json()["added"] == 0  # type: ignore[index]
    assert {h["path"] for h in search_json(cli, "a shape", "-k", "10")} == {str(album / "a.png")}
    assert cli("info", "--json").json()["roots"] == [str(album)]  # type: ignore[index]
