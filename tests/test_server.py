"""`clipsearch serve`: real HTTP requests to a server started by the test, over the demo model."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, Cli

SAMPLE = ROOT / "data" / "sample"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, data: bytes | None = None) -> tuple[int, object]:
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@pytest.fixture
def server(cli: Cli, tmp_path: Path, index_dir: Path) -> Iterator[tuple[str, Path]]:
    photos = tmp_path / "photos"
    shutil.copytree(SAMPLE, photos)
    assert cli("index", photos, "--model", "demo").exit_code == 0
    port = free_port()
    env = {**os.environ, "CLIPSEARCH_INDEX": str(index_dir)}
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(base + "/info", timeout=2).read()
            break
        except OSError:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.3)
    try:
        yield base, photos
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_endpoints(server: tuple[str, Path], cli: Cli) -> None:
    base, photos = server
    status, info = get(base + "/info")
    assert status == 200 and info["images"] == 54 and info["model"] == "demo"  # type: ignore[index]

    status, hits = get(base + "/search?q=" + urllib.request.quote("a red star") + "&k=3")
    assert status == 200
    assert [h["rank"] for h in hits] == [1, 2, 3]  # type: ignore[union-attr]
    assert hits[0]["path"] == str(photos / "red-star.png")  # type: ignore[index]

    status, hits = get(base + "/search?k=2", data=(photos / "blue-circle.jpg").read_bytes())
    assert status == 200 and hits[0]["path"] == str(photos / "blue-circle.jpg")  # type: ignore[index]
    assert hits[0]["score"] >= 0.99  # type: ignore[index]

    status, hits = get(base + "/search?q=star&k=50&in=" + urllib.request.quote(str(photos / "nowhere")))
    assert status == 200 and hits == []

    assert get(base + "/search?q=x&k=0")[0] == 422
    assert get(base + "/search?k=1", data=b"")[0] == 400
    status, body = get(base + "/search?k=1", data=b"not an image")
    assert status == 400 and "cannot use" in body["error"]  # type: ignore[index]

    # a rebuild while the server runs is picked up on the next query
    shutil.copy(photos / "green-square.jpg", photos / "zz-new-green-square.jpg")
    (photos / "red-star.png").unlink()
    assert cli("index", photos).exit_code == 0
    status, hits = get(base + "/search?q=" + urllib.request.quote("a red star") + "&k=54")
    paths = [h["path"] for h in hits]  # type: ignore[union-attr]
    assert str(photos / "red-star.png") not in paths and str(photos / "zz-new-green-square.jpg") in paths
