"""What clipsearch reads from real camera files nobody here made: date taken, camera, lens, place, and whether
the picture decodes, file by file, with every failure kept to its field or its file.

    python bench/camera_files.py FOLDER [--json]

FOLDER is any folder of images: Pillow's own test images (in its source distribution, Tests/images: JPEG,
WebP, TIFF and MPO files from Nikon, Canon, Fujifilm, Xiaomi, Nokia, Nintendo, Google Pixel and FLIR cameras,
broken EXIF among them) are what docs/benchmarks.md reports. The headers are read as the backfill reads
them (``photo_meta.read``) and the pictures decoded as the indexer decodes them (``images.decode``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from clipsearch import images, photo_meta

    rows = []
    for path in sorted(p for p in args.folder.rglob("*") if p.suffix.lower() in images.supported_extensions()
                       | {".mpo"}):
        data = path.read_bytes()
        header = photo_meta.read(str(path))
        try:
            decoded = images.decode(data, 224)
            outcome, from_decoder = f"{decoded.width}x{decoded.height}", decoded.meta
        except images.ImageError as exc:
            outcome, from_decoder = f"not decoded: {exc}", None
        rows.append({"file": path.name, "decode": outcome, **header.as_dict(),
                     "decoder_agrees": from_decoder is None or from_decoder == header})
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    with_meta = [r for r in rows if r["taken"] or r["make"] or r["lat"] is not None]
    for r in with_meta:
        camera = " ".join(filter(None, (r["make"], r["model"])))
        place = f"{r['lat']:.4f},{r['lon']:.4f}" if r["lat"] is not None else "-"
        print(f"{r['file'][:44]:44}  {r['taken'] or '-':25}  {camera[:28]:28}  {place:20}  {r['decode'][:40]}")
    decoded = sum(not r["decode"].startswith("not") for r in rows)
    print(f"{len(rows)} files: {decoded} decoded, {len(with_meta)} with a date, camera or place "
          f"({sum(bool(r['taken']) for r in rows)} dates, {sum(bool(r['make']) for r in rows)} cameras, "
          f"{sum(r['lat'] is not None for r in rows)} places); header and decoder disagree on "
          f"{sum(not r['decoder_agrees'] for r in rows)}")


if __name__ == "__main__":
    main()
