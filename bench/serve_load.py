"""`clipsearch serve` under load, on this machine only (127.0.0.1): what a heavy request beside the others costs them.

    python bench/serve_load.py [--requests 300] [--photos data/sample] [--root CHECKOUT]   # --root: another tree's server

One real server over an index of the sample with the demo model. A client sends GET /search (words) and GET /thumb,
one at a time: ``--requests`` of them alone, then for as long as a heavy client beside it sends, ``--rounds``
times in turn, a 64 MP PNG upload, a chunked 200 MiB upload, a multipart form of 30,000 parts, /classify with
2,000 labels and /duplicates. Printed: p50/p99 of the light requests in each phase and
their ratio, errors in each phase, the heavy requests' statuses, and the server's peak RSS. Every loop is bounded
in count and time. Figures: docs/benchmarks.md ("The server under load").
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _send(port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
          chunks: int = 0) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        if chunks:
            conn.putrequest(method, path)
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            block = b"\0" * (1 << 20)
            try:
                for _ in range(chunks):
                    conn.send(b"%x\r\n%s\r\n" % (len(block), block))
                conn.send(b"0\r\n\r\n")
            except OSError:
                pass  # refused while sending
        else:
            conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return -1
    finally:
        conn.close()


def _big_png() -> bytes:
    from PIL import Image

    out = io.BytesIO()  # 64 MP that compress to a few MB: under the upload limit, so it is decoded
    Image.radial_gradient("L").resize((8000, 8000)).convert("RGB").save(out, "PNG")
    return out.getvalue()


def _light(port: int, n: int, ids: list[int], until: threading.Event | None = None) -> tuple[list[float], int]:
    """``n`` light requests, or with ``until`` as many as run until it is set (at most 50,000)."""
    times, errors, i = [], 0, 0
    while (i < n) if until is None else (not until.is_set() and i < 50_000):
        path = f"/search?q=a+red+star&k=10&offset={i % 5}" if i % 2 == 0 else f"/thumb/{ids[i % len(ids)]}"
        started = time.perf_counter()
        status = _send(port, "GET", path)
        times.append(time.perf_counter() - started)
        errors += status != 200
        i += 1
    return times, errors


def _heavy_requests(port: int) -> list[tuple[str, object]]:
    """The heavy requests, their bodies made before any is sent."""
    png = _big_png()
    form = b"".join(b'--X\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nv\r\n' % i for i in range(30_000))
    labels = ",".join(f"a photo of thing number {i}" for i in range(2000))
    return [("png 64 MP", lambda: _send(port, "POST", "/search", png, {"Content-Type": "image/png"})),
            ("chunked 200 MiB", lambda: _send(port, "POST", "/search", chunks=200)),
            ("form of 30,000 parts", lambda: _send(port, "POST", "/search", form + b"--X--\r\n",
                                                     {"Content-Type": "multipart/form-data; boundary=X"})),
            ("classify 2,000 labels", lambda: _send(port, "GET", "/classify?id=1&labels=" + labels.replace(" ", "+"))),
            ("duplicates", lambda: _send(port, "GET", "/duplicates?level=similar"))]


def _heavy(kinds: list[tuple[str, object]], rounds: int, done: threading.Event, statuses: Counter[str],
           seconds: dict[str, float]) -> None:
    """Each heavy request ``rounds`` times in turn, then ``done``."""
    try:
        for _ in range(rounds):
            for name, send in kinds:
                started = time.perf_counter()
                statuses[f"{name}: {send()}"] += 1  # type: ignore[operator]
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started
    finally:
        done.set()


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _summary(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="light requests alone")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the heavy requests (light ones run beside)")
    parser.add_argument("--photos", type=Path, default=ROOT / "data" / "sample")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose cli.py serves (before/after)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="serve-load-"))
    env = {**os.environ, "CLIPSEARCH_INDEX": str(work / "index"), "CLIPSEARCH_CACHE": str(work / "cache")}
    shutil.copytree(args.photos, work / "photos")
    cli = [sys.executable, str(args.root / "cli.py")]
    subprocess.run([*cli, "index", str(work / "photos"), "--model", "demo", "--quiet"], env=env, check=True)
    port = _port()
    server = subprocess.Popen([*cli, "serve", "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None and "serving" in server.stderr.readline()
        import json

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/search?q=a+star&k=60")
        ids = [hit["id"] for hit in json.loads(conn.getresponse().read())]
        conn.close()
        _light(port, 20, ids)  # warm: the text tower, the index, the thumbnails
        alone, alone_errors = _light(port, args.requests, ids)
        kinds = _heavy_requests(port)
        done, statuses, seconds = threading.Event(), Counter[str](), {}
        heavy = threading.Thread(target=_heavy, args=(kinds, args.rounds, done, statuses, seconds), daemon=True)
        heavy.start()
        beside, beside_errors = _light(port, 0, ids, until=done)
        heavy.join(timeout=600)
        (a50, a99), (b50, b99) = _summary(alone), _summary(beside)
        print(f"light requests alone:        p50 {a50:7.1f} ms  p99 {a99:7.1f} ms  errors {alone_errors}")
        print(f"beside the heavy requests:   p50 {b50:7.1f} ms  p99 {b99:7.1f} ms  errors {beside_errors}")
        print(f"ratio beside / alone:        p50 {b50 / a50:5.2f}x   p99 {b99 / a99:5.2f}x")
        print(f"light requests beside: {len(beside)}")
        print("heavy requests (what: status x count): " + ", ".join(f"{k} x{v}" for k, v in sorted(statuses.items())))
        print("heavy requests' seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
        print(f"server peak RSS: {_peak_rss_mib(server.pid):.0f} MiB")
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
