"""Filtered search at scale, and the metadata backfill of an older index, as whole processes where it matters.

    python bench/filters.py --n 1000000 [--queries 50]
    python bench/filters.py --backfill 10000 --old-code /path/to/a/format-4/checkout

1. ``n`` clustered 512-d vectors with synthetic metadata (dates over 10 years, 4 cameras) go through the
   store's real write path and the store builds its index (IVF at this size). Then vector queries ("like" a
   stored photo) with filters that keep about 50%, 1% and 0.01% of the photos: the first query under each
   filter (which evaluates it over the catalog) and the median of the rest (the searcher keeps the last few
   filters' results) in-process, against the same queries unfiltered (the baseline), and whether each
   filtered answer came back full (k hits wherever at least k pass). ``--reuse DIR`` searches an index this
   bench made before.
2. ``--backfill N``: N generated JPEGs with EXIF indexed by the code in ``--old-code`` (a checkout from before
   format 5), then one plain `clipsearch index` by this code as a whole process: its seconds and report
   (headers read, nothing embedded), against a no-op re-index of the same folder afterwards (the baseline).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def scale(n: int, queries: int, reuse: Path | None) -> None:
    import numpy as np

    from clipsearch.store import StoreReader

    rng = np.random.default_rng(4)
    if reuse is not None:
        directory = reuse
        with StoreReader.open(directory) as store:
            n = store.catalog.count()
        print(f"reusing {directory} ({n:,} photos)")
    else:
        directory = Path(tempfile.mkdtemp(prefix="filters-bench-"))
        build(directory, n, rng)
    search_all(directory, n, queries, rng)


def build(directory: Path, n: int, rng) -> None:  # noqa: ANN001

    from search_scale import clustered

    from clipsearch.photo_meta import PhotoMeta
    from clipsearch.store import FileRecord, ModelRecord, StoreWriter

    vectors = clustered(n, 512, seed=3)
    days = rng.integers(0, 3650, size=n)
    cameras = rng.choice(4, size=n, p=[0.5, 0.3, 0.19, 0.01])
    names = [("Google", "Pixel 6"), ("Canon", "EOS R5"), ("Apple", "iPhone 13"), ("Nikon", "Z 9")]
    started = time.perf_counter()
    with StoreWriter.open(directory) as store:
        store.bind_model(ModelRecord("ViT-B-32-256:none", json.dumps({"bench": 1}), 512))
        store.remember("vocabulary", "none")
        store.begin_run(["/bench"])
        base = datetime(2015, 1, 1)
        for i in range(n):
            make, model = names[cameras[i]]
            meta = PhotoMeta((base + timedelta(days=int(days[i]), seconds=i % 86400)).isoformat(), "DateTimeOriginal",
                             make, model)
            store.put(FileRecord(f"/bench/{i:08d}.jpg", 1, 1, i.to_bytes(16, "big"), 4000, 3000), vectors[i], meta)
            if i % 50_000 == 49_999:
                store.commit()
        store.finish({})
        built = store.info()["index_type"]
    print(f"{n:,} vectors with metadata stored and indexed ({built}) in {time.perf_counter() - started:.0f} s "
          f"({directory}: --reuse it)")


def search_all(directory: Path, n: int, queries: int, rng) -> None:  # noqa: ANN001
    from search.engine import Searcher
    from search.filters import Filters
    from search.query import Query, Term

    kept = {"50%": Filters(camera="pixel"), "1%": Filters(camera="nikon"),
            "0.01%": Filters(camera="nikon", after="2015-01-01", before="2015-04-07")}
    with Searcher(directory, device="cpu") as searcher:
        starts = [int(i) for i in rng.integers(1, n, size=queries)]
        timings: dict[str, list[float]] = {"unfiltered": []}
        full: dict[str, int] = {}
        for label, filters in [("unfiltered", Filters()), *kept.items()]:
            times, complete = [], 0
            passing = filters.allowed_ids(searcher.store)
            for start in starts:
                t = time.perf_counter()
                hits = searcher.answer(Query((Term.like(start),), filters, k=10))
                times.append(time.perf_counter() - t)
                complete += len(hits) == min(10, len(passing) if passing is not None else n)
            timings[label] = times
            full[label] = complete
            share = "" if passing is None else f" ({len(passing):,} pass)"
            warm = statistics.median(times[1:])
            print(f"  {label:10}{share:22} first {times[0] * 1000:7.1f} ms, then p50 {warm * 1000:7.1f} ms  "
                  f"({warm / statistics.median(timings['unfiltered'][1:]):.1f}x unfiltered), "
                  f"full answers {complete}/{queries}")


def backfill(n: int, old_code: Path) -> None:
    from PIL import Image

    work = Path(tempfile.mkdtemp(prefix="backfill-bench-"))
    folder = work / "photos"
    folder.mkdir()
    for i in range(n):
        exif = Image.Exif()
        exif[0x010F], exif[0x0110] = "Google", "Pixel 6"
        exif.get_ifd(0x8769)[0x9003] = f"20{10 + i % 14}:0{1 + i % 9}:1{i % 10} 12:00:00"
        Image.new("RGB", (64, 48), (i % 256, (i * 7) % 256, (i * 13) % 256)).save(folder / f"{i:06d}.jpg", exif=exif)
    env = {**os.environ, "CLIPSEARCH_INDEX": str(work / "index"), "CLIPSEARCH_CACHE": str(work / "cache"),
           "CLIPSEARCH_TEXT_EXPORT": "0"}
    old = subprocess.run([sys.executable, str(old_code / "cli.py"), "index", str(folder), "--model", "demo",
                          "--vocabulary", "none", "--json"], env={**env, "PYTHONPATH": str(old_code)},
                         capture_output=True, text=True, check=True, cwd=old_code)
    print(f"{n:,} JPEGs indexed by {old_code}: {json.loads(old.stdout)['seconds']:.0f} s")
    for label in ("this code, first run (backfill)", "this code, again (no-op baseline)"):
        t = time.perf_counter()
        done = subprocess.run([sys.executable, str(ROOT / "cli.py"), "index", "--json"], env=env, capture_output=True,
                              text=True, check=True)
        report = json.loads(done.stdout)
        print(f"  {label}: {time.perf_counter() - t:.1f} s as a whole process; headers read "
              f"{report['headers_read']:,}, added {report['added']}, model {report['model_seconds']} s; "
              f"notes: {report.get('notes', [])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--backfill", type=int, default=0)
    parser.add_argument("--old-code", type=Path)
    parser.add_argument("--reuse", type=Path, help="an index this bench made before: search it again")
    args = parser.parse_args()
    if args.backfill:
        if args.old_code is None:
            parser.error("--backfill needs --old-code (a checkout from before format 5)")
        backfill(args.backfill, args.old_code)
    else:
        scale(args.n, args.queries, args.reuse)


if __name__ == "__main__":
    main()
