"""A real `clipsearch serve` process for tests, and plain HTTP helpers that send paths exactly as given."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from tests import imagegen
from tests.conftest import ROOT, lines, start_cli, wait_for_line

SAMPLE = ROOT / "data" / "sample"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body or b"null")


def request(base: str, path: str, method: str = "GET", body: bytes | None = None,
            headers: dict[str, str] | None = None) -> Response:
    """One HTTP request with ``path`` sent verbatim (no client-side ``..`` normalisation or quoting)."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def make_library(root: Path) -> Path:
    """The bundled sample split into two folders, a full copy (108 files: more than one page of the grid),
    and one large EXIF-rotated photo."""
    for src in sorted(SAMPLE.iterdir()):
        sub = "reds" if src.name.startswith("red-") else "others"
        (root / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(src, root / sub / src.name)
    shutil.copytree(SAMPLE, root / "copies")
    (root / "big").mkdir()
    # stored 1600x1200, EXIF 6: shown 1200x1600 (portrait)
    (root / "big" / "rotated.jpg").write_bytes(imagegen.with_orientation(imagegen.photo(7, (1600, 1200)), 6))
    return root


@dataclass
class Server:
    """`python cli.py serve` on a free localhost port, until ``stop()``."""

    index_dir: Path
    extra: list[str] = field(default_factory=list)
    base: str = ""
    proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 120) -> Server:
        """Start it and return once it says it is serving: from then on its port answers."""
        port = free_port()
        self.proc = start_cli("serve", "--index", self.index_dir, "--port", port, *self.extra)
        self.base = f"http://127.0.0.1:{port}"
        try:
            wait_for_line(self.proc, "clipsearch: serving", timeout)
        except AssertionError:
            self.stop()
            raise
        return self

    def stop(self) -> str:
        """Stop it; returns what it wrote to stderr."""
        if self.proc is None:
            return ""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        err = lines(self.proc).text()
        self.proc = None
        return err

    def get(self, path: str, **kwargs: object) -> Response:
        return request(self.base, path, **kwargs)  # type: ignore[arg-type]


def image_size(data: bytes) -> tuple[int, int]:
    import io

    with Image.open(io.BytesIO(data)) as im:
        return im.size
