"""A server no request can stall or trick (issue 31, items 7-12): each through a real `clipsearch serve` process."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Cli, cli_env, lines
from tests.serving import SAMPLE, Server, request

quote = urllib.parse.quote


@pytest.fixture
def served(cli: Cli, tmp_path: Path, index_dir: Path) -> Iterator[tuple[Server, Path]]:
    photos = tmp_path / "photos"
    shutil.copytree(SAMPLE, photos)
    assert cli("index", photos, "--model", "demo").exit_code == 0
    server = Server(index_dir, extra=["--allow-host", "Photos.Local"]).start()
    try:
        yield server, photos
    finally:
        server.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One indexed sample and its server for the tests that only ask (the others change files under theirs)."""
    from typer.testing import CliRunner

    from cli import app

    base = tmp_path_factory.mktemp("shared")
    shutil.copytree(SAMPLE, base / "photos")
    done = CliRunner().invoke(app, ["index", str(base / "photos"), "--model", "demo", "--index", str(base / "index"),
                                    "--quiet"], catch_exceptions=False)
    assert done.exit_code == 0, done.stderr
    server = Server(base / "index", extra=["--allow-host", "Photos.Local"]).start()
    try:
        yield server
    finally:
        server.stop()


def _id_of(server: Server, name: str) -> int:
    hits = server.get("/search?q=" + quote("a red star") + "&k=60").json()
    return next(h["id"] for h in hits if h["name"] == name)  # type: ignore[union-attr]


def _rss_peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_form_of_thousands_of_parts_is_refused_before_it_is_parsed(served: tuple[Server, Path]) -> None:
    """Item 7: a 1.7 MB multipart POST of 30,000 parts stalled every other request for 18 s while it was parsed."""
    srv, _ = served
    body = b"".join(b'--X\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nv\r\n' % i for i in range(30_000))
    body += b"--X--\r\n"
    response = srv.get("/search", method="POST", body=body, headers={"Content-Type": "multipart/form-data; boundary=X"})
    assert response.status == 400 and "parts" in response.json()["error"]  # type: ignore[index]
    assert srv.get("/info").status == 200


def test_a_chunked_upload_is_counted_while_it_streams(served: tuple[Server, Path]) -> None:
    """Item 8: without a Content-Length the whole body was buffered before the 64 MiB check (+200 MB for 200 MiB)."""
    srv, _ = served
    assert srv.proc is not None
    before = _rss_peak_kib(srv.proc.pid)
    host, port = srv.base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    block = b"\0" * (1 << 20)
    status = None
    try:
        conn.putrequest("POST", "/search")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.putheader("Content-Type", "image/png")
        conn.endheaders()
        for _ in range(200):  # 200 MiB, as chunks
            conn.send(b"%x\r\n%s\r\n" % (len(block), block))
        conn.send(b"0\r\n\r\n")
    except OSError:
        pass  # the server answered 413 and closed while this was still sending: what it should do
    try:
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException):
        status = None
    finally:
        conn.close()
    assert status in (413, None)
    grown_mib = (_rss_peak_kib(srv.proc.pid) - before) / 1024
    assert grown_mib < 100, f"the server's peak memory grew by {grown_mib:.0f} MiB"
    assert srv.get("/info").status == 200


@pytest.mark.parametrize(("host", "status"), [("127.0.0.1", 200), ("localhost:8000", 200), ("[::1]:80", 200),
                                              ("photos.local:8000", 200), ("192.168.1.20", 200),
                                              ("attacker.example", 403), ("127.0.0.1.nip.io", 403), ("", 403)])
def test_only_the_servers_own_names_are_answered(shared: Server, host: str, status: int) -> None:
    """Item 9: any Host header was served, so a page that rebinds its name to 127.0.0.1 could read every photo."""
    srv = shared
    response = srv.get("/info", headers={"Host": host})
    assert response.status == status, response.body
    if status == 403:
        assert "--allow-host" in response.json()["error"]  # type: ignore[index]


def test_only_the_indexed_file_is_served(served: tuple[Server, Path], tmp_path: Path) -> None:
    """Item 10: an indexed file replaced by a link (to another photo, to /dev/zero) or a pipe was served, read
    until the server ran out of memory, or hung the request."""
    srv, photos = served
    outside = tmp_path / "outside.png"
    shutil.copy(SAMPLE / "blue-star.png", outside)
    cases = {"red-star.png": lambda p: p.symlink_to(outside), "red-circle.jpg": lambda p: p.symlink_to("/dev/zero"),
             "red-square.jpg": lambda p: os.mkfifo(p), "red-cross.webp": lambda p: p.write_bytes(b"edited")}
    ids = {name: _id_of(srv, name) for name in cases}
    kept = _id_of(srv, "red-triangle.jpg")
    for name, replace in cases.items():
        (photos / name).unlink()
        replace(photos / name)
    for name, file_id in ids.items():
        for route in ("/file/", "/thumb/"):
            response = srv.get(f"{route}{file_id}")
            assert response.status == 409, (name, route, response.status)
            assert "error" in response.json()  # type: ignore[operator]
    (photos / "red-triangle.jpg").unlink()
    assert srv.get(f"/file/{kept}").status == 404
    good = _id_of(srv, "yellow-star.png")
    response = srv.get(f"/file/{good}")
    assert response.status == 200 and response.body == (photos / "yellow-star.png").read_bytes()
    assert response.headers["x-content-type-options"] == "nosniff"
    thumb = srv.get(f"/thumb/{good}")
    assert thumb.status == 200 and thumb.headers["x-content-type-options"] == "nosniff"


def test_a_thumbnail_cache_entry_that_is_not_one_is_made_again(served: tuple[Server, Path], index_dir: Path) -> None:
    srv, _ = served
    good = _id_of(srv, "yellow-star.png")
    first = srv.get(f"/thumb/{good}")
    cached = next((index_dir / "thumbs").rglob("*.jpg"))
    cached.unlink()
    cached.symlink_to("/dev/zero")  # planted in the cache
    again = srv.get(f"/thumb/{good}")
    assert again.status == 200 and again.body == first.body and not cached.is_symlink()


def test_a_cached_thumbnail_is_not_shown_once_its_photo_is_gone_or_replaced(served: tuple[Server, Path]) -> None:
    """The trial: /thumb answered from its cache after the file was deleted, appended to or swapped for a link,
    while /file refused; the guide says both refuse."""
    srv, photos = served
    gone, grown, linked = (_id_of(srv, name) for name in ("yellow-star.png", "red-star.png", "blue-circle.jpg"))
    assert all(srv.get(f"/thumb/{i}").status == 200 for i in (gone, grown, linked))  # now in the cache
    (photos / "yellow-star.png").unlink()
    with open(photos / "red-star.png", "ab") as appended:
        appended.write(b"more")
    (photos / "blue-circle.jpg").unlink()
    (photos / "blue-circle.jpg").symlink_to("/etc/hostname")
    assert [srv.get(f"/thumb/{i}").status for i in (gone, grown, linked)] == [404, 409, 409]


@pytest.mark.parametrize(("query", "needle"), [
    ("q=star&min_pixels=99999999999999999999MP", "more than any photo has"),
    ("q=star&camera=" + "x" * 100_000, "at most 200"),
    ("q=star&min_score=nan", "min_score must be a number"),
    ("q=star&k=abc", "k must be a whole number"),
    ("q=star&k=0", "k (how many results) must be between 1 and 10,000"),
    ("q=star&offset=-1", "offset must be between"),
    ("q=star&after=tuesday", "after must be a date"),
    ("q=star&near=1,2", "near must be LATITUDE"),
    ("like=abc", "like must be a photo id"),
])
def test_every_error_has_one_shape_in_the_words_of_http(shared: Server, query: str, needle: str) -> None:
    """Item 11: a plain-text 500 (an overflow, a 100,000-character camera), nothing for min_score=nan, pydantic's
    words for k=abc, and messages that named the CLI's flags (--after, --near)."""
    srv = shared
    response = srv.get("/search?" + query)
    assert response.status == 400, (response.status, response.body[:200])
    error = response.json()["error"]  # type: ignore[index]
    assert needle in error and "--" not in error, error


def test_a_malformed_photo_id_is_the_requests_mistake_everywhere(shared: Server) -> None:
    srv = shared
    assert srv.get("/classify?id=abc").status == 400  # as /search?like=abc
    assert srv.get("/classify?id=99999").status == 404
    assert srv.get("/classify?id=1&top=abc").json()["error"] == "top must be a whole number, not 'abc'"  # type: ignore[index]


def test_a_folder_that_is_not_utf8_is_named_as_the_json_wrote_it(cli: Cli, tmp_path: Path, index_dir: Path) -> None:
    """Item 11: HTTP in= could not take the \\udcXX form that --json and /search give for a non-UTF-8 folder."""
    folder = os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9")
    os.makedirs(folder)
    shutil.copy(SAMPLE / "red-star.png", os.path.join(folder, "red-star.png"))
    shutil.copy(SAMPLE / "blue-star.png", tmp_path / "blue-star.png")
    assert cli("index", tmp_path, "--model", "demo").exit_code == 0
    server = Server(index_dir).start()
    try:
        hits = server.get("/search?q=star&k=5").json()
        written = next(h["path"] for h in hits if h["name"] == "red-star.png")  # type: ignore[union-attr]
        assert "\udce9" in written
        escaped = json.dumps(os.path.dirname(written))[1:-1]  # \udce9 as six characters, as a script copies it
        response = server.get("/search?q=star&in=" + quote(escaped))
        assert response.status == 200 and [h["name"] for h in response.json()] == ["red-star.png"]  # type: ignore[union-attr]
    finally:
        server.stop()


@pytest.mark.parametrize("args", [["-k", "0"], ["--offset", "-1"], ["--min-pixels", "99999999999999999999MP"],
                                  ["--min-score", "nan"], ["--camera", "x" * 100_000]])
def test_the_cli_says_the_same_mistakes_in_one_line(cli: Cli, shared: Server, args: list[str]) -> None:
    result = cli("search", "a star", "--index", shared.index_dir, *args)
    assert result.exit_code == 2 and result.stderr.startswith("clipsearch: error: ")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_token_from_the_environment_is_not_printed_and_docs_need_no_cdn(cli: Cli, tmp_path: Path,
                                                                         index_dir: Path) -> None:
    """Item 12: the start-up line printed ?token=SECRET from CLIPSEARCH_TOKEN (into journald); /docs loaded
    Swagger UI from a CDN."""
    from tests.conftest import start_cli, wait_for_line
    from tests.serving import free_port

    shutil.copytree(SAMPLE, tmp_path / "photos")
    assert cli("index", tmp_path / "photos", "--model", "demo").exit_code == 0
    port = free_port()
    proc = start_cli("serve", "--port", port, env=cli_env(index_dir, CLIPSEARCH_TOKEN="s3cret-from-env"))
    try:
        line = wait_for_line(proc, "clipsearch: serving", 120)
        assert "s3cret-from-env" not in line and "CLIPSEARCH_TOKEN" in line
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": "Bearer s3cret-from-env"}
        assert request(base, "/docs", headers=auth).status == 404
        assert request(base, "/openapi.json", headers=auth).status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        lines(proc).text()


def test_a_client_that_trickles_its_headers_is_let_go(cli: Cli, tmp_path: Path, index_dir: Path) -> None:
    """Item 12: no header-read timeout: a client sending a byte now and then held its connection for ever."""
    from tests.conftest import start_cli, wait_for_line
    from tests.serving import free_port

    shutil.copytree(SAMPLE, tmp_path / "photos")
    assert cli("index", tmp_path / "photos", "--model", "demo").exit_code == 0
    port = free_port()
    proc = start_cli("serve", "--port", port, env=cli_env(index_dir, CLIPSEARCH_HEADER_TIMEOUT="1"))
    try:
        wait_for_line(proc, "clipsearch: serving", 120)
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(b"GET /info HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
            assert sock.recv(1024) == b""  # closed by the server (a timeout here would raise)
        assert request(f"http://127.0.0.1:{port}", "/info").status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        lines(proc).text()


def test_a_png_with_a_huge_text_or_profile_chunk_is_indexed_without_it(cli: Cli, tmp_path: Path) -> None:
    """Item 12: PNGs with a large text or ICC chunk were refused ("Decompressed data too large")."""
    import io

    from PIL import Image, PngImagePlugin

    photos = tmp_path / "photos"
    photos.mkdir()
    picture = Image.open(SAMPLE / "red-star.png").convert("RGB")
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "x" * (3 << 20), zip=True)
    out = io.BytesIO()
    picture.save(out, "PNG", pnginfo=info)
    (photos / "with-text.png").write_bytes(out.getvalue())
    out = io.BytesIO()
    picture.save(out, "PNG", icc_profile=b"\0" * (3 << 20))
    (photos / "with-profile.png").write_bytes(out.getvalue())
    report = cli("index", photos, "--model", "demo", "--json").json()
    assert report["failed"] == [] and report["added"] == 2, report  # type: ignore[index]
    hits = cli("search", "a red star", "--json").json()
    assert {h["path"].rsplit("/", 1)[1] for h in hits} == {"with-text.png", "with-profile.png"}  # type: ignore[union-attr]


def test_an_upload_being_decoded_holds_up_no_other_request(cli: Cli, tmp_path: Path, index_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The model's first load and an uploaded image's decode (9-26 s for a 13000x13000 PNG) ran under the lock every
    request takes: /info and word searches waited for all of it. Now they run before it (``Searcher.prepare``); this
    holds an image query there, and asks the others meanwhile."""
    import threading

    photos = tmp_path / "photos"
    shutil.copytree(SAMPLE, photos)
    assert cli("index", photos, "--model", "demo").exit_code == 0
    hold = tmp_path / "release"
    monkeypatch.setenv("CLIPSEARCH_HOLD_IN_PREPARE", str(hold))
    server = Server(index_dir).start()
    answers: list[object] = []
    try:
        upload = (photos / "red-star.png").read_bytes()
        held = threading.Thread(target=lambda: answers.append(
            server.get("/search?k=1", method="POST", body=upload, headers={"Content-Type": "image/png"})))
        held.start()
        reached = Path(f"{hold}.reached")
        while not reached.exists():  # the image query has its picture and waits, outside the lock
            assert held.is_alive(), answers
            held.join(0.05)
        assert server.get("/info").status == 200
        words = server.get("/search?q=a+red+star&k=1")
        assert words.status == 200 and json.loads(words.body)[0]["name"] == "red-star.png"
        hold.touch()
        held.join(120)
        (image,) = answers
        assert image.status == 200 and json.loads(image.body)[0]["name"] == "red-star.png"  # type: ignore[attr-defined]
    finally:
        hold.touch()
        server.stop()
