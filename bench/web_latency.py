"""How fast the search page shows results, measured in a real headless Chromium.

    python bench/web_latency.py [--photos 400] [--size 1600x1200] [--model demo] [--chromium /usr/bin/chromium]

Generates photo-like JPEGs, indexes them, starts `clipsearch serve`, then for a
few queries measures in the browser, from pressing Enter: the first thumbnail
loaded, and the whole first page (60 thumbnails) loaded; once with
thumbnails still to be made (first visit) and once from the thumbnail cache
(a new browser context, so the browser's own cache does not help). The
baseline is the JSON API round trip for the same query from Python in the same
run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

QUERIES = ["a red star", "a blue circle", "a green square", "yellow triangle", "a black cross", "pink diamond"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=400)
    parser.add_argument("--size", default="1600x1200", help="generated photo size, WxH")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright
    from typer.testing import CliRunner

    from cli import app
    from tests import imagegen
    from tests.serving import Server

    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        photos, index_dir = Path(tmp) / "photos", Path(tmp) / "index"
        photos.mkdir()
        for i in range(args.photos):
            (photos / f"p{i:05d}.jpg").write_bytes(imagegen.jpeg_bytes(imagegen.photo(i, (width, height))))
        result = CliRunner().invoke(app, ["index", str(photos), "--model", args.model, "--index", str(index_dir), "--quiet"])
        assert result.exit_code == 0, result.output
        server = Server(index_dir).start()
        rows = []
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
                for label in ("thumbnails made on demand", "thumbnails from the cache"):
                    firsts, fulls, apis = [], [], []
                    for query in QUERIES:
                        t0 = time.perf_counter()
                        server.get("/search?k=60&q=" + urllib.parse.quote(query))
                        apis.append((time.perf_counter() - t0) * 1000)
                        context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
                        page = context.new_page()
                        page.goto(server.base + "/")
                        page.wait_for_function("document.readyState === 'complete'")
                        page.fill("#q", query)
                        page.press("#q", "Enter")
                        page.wait_for_function("window.clipsearch.timings.length && window.clipsearch.pageTimings.length",
                                               timeout=120_000)
                        firsts.append(page.evaluate("window.clipsearch.timings[0]"))
                        fulls.append(page.evaluate("window.clipsearch.pageTimings[0]"))
                        context.close()
                    rows.append((label, statistics.median(apis), statistics.median(firsts), statistics.median(fulls)))
                browser.close()
        finally:
            server.stop()
    print(f"{args.photos} photos {args.size}, model {args.model}, {len(QUERIES)} queries, medians")
    print(f"{'':28} {'API round trip':>15} {'first thumbnail':>16} {'x API':>6} {'first page (60)':>16} {'x API':>6}")
    for label, api_ms, first_ms, full_ms in rows:
        print(f"{label:28} {api_ms:13.1f}ms {first_ms:14.1f}ms {first_ms / api_ms:6.1f} "
              f"{full_ms:14.1f}ms {full_ms / api_ms:6.1f}")


if __name__ == "__main__":
    main()
