"""Words in photos (issue 34): what the text reading finds, what it costs, and what it adds to a whole run.

    nice -n 10 .venv/bin/python bench/words.py [--model ViT-B-32-quickgelu:none] [--renderings 24]

Three kinds of photo, in one folder:
  renderings  made here: signs, receipts, posters and screenshots, in every TrueType font the machine has
              (DejaVu, Noto, Droid), turned, blurred and JPEG-compressed in turn; each holds a phrase of its own
  real        photos with text nobody here made: Pillow's Tests/images (from the mirror's bare git directory),
              with phrases read off them by a person (``REAL``)
  plain       photos without text: scikit-image's bundled photos where it is installed, and Pillow's

1. The reading, photo by photo (``clipsearch.ocr``): the gate alone at 320, 480 and 640 px, the whole reading
   without a gate, and the gated reading the stage does; what each gate lets through and what it misses.
   Character accuracy (1 - edit distance / length) of the whole reading against the renderings' own text.
2. Two whole runs of `clipsearch index` (a subprocess, as a user runs it) over the same folder into two new
   indexes, --words off and --words on: the wall time of each, and the ratio.
3. Recall@1 of each phrase through `search --text '"PHRASE"'` and through a plain search for the phrase (the
   hybrid ranking), on the index with words (the application layer, as the CLI calls it).

The default model is ViT-B/32 with random weights: the same compute as the default preset, which cannot be
downloaded here, so the runs' times are a user's; its rankings mean nothing, so the plain search's recall is
the words' part of the hybrid ranking.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PILLOW = Path(os.environ.get("PILLOW_MIRROR", "/work/.mirror/python-pillow+Pillow/repo"))
# Pillow's test images with text, and phrases a person read off them (not the OCR's output).
REAL = {
    "exif_gps_typeerror.jpg": ["SX336", "Royal Navy"],  # a Sea Fury at an air show
    "junk_jpeg_header.jpg": ["362569"],  # a watermark over a field of grass
    "caption_6_33_22.png": ["Bern", "Torino", "Geneve"],  # a map (Genève, asked without its accent)
    "rdf.tif": ["CLOSE-WAIT", "SYN-SENT", "Active Open"],  # a TCP state diagram
    "issue_2278.tif": ["quick brown dog", "12 point text"],
    "total-pages-zero.tif": ["Cannot save .TIF file", "Unsubscribe"],  # a screenshot of a GitHub issue
    "test.colors.gif": ["MAGENTA"],
    "old-style-jpeg-compression.png": ["Kodak Gray Scale", "Tiffen Company"],  # a scanned grey card
}
ISSUE_2278 = ("This is a lot of 12 point text to test the ocr code and see if it works on all types of file format. "
              "The quick brown dog jumped over the lazy fox. The quick brown dog jumped over the lazy fox. The quick "
              "brown dog jumped over the lazy fox. The quick brown dog jumped over the lazy fox.")
PLAIN_PILLOW = ["flower.jpg", "flower2.jpg", "hopper.png", "iss634.webp", "sugarshack_bad_mpo_header.jpg",
                "exif-72dpi-int.jpg", "uncompressed_rgb.png", "xmp_test.jpg", "icc_profile_big.jpg", "exif.png"]
PLAIN_SKIMAGE = ["astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "grass.png",
                 "gravel.png", "horse.png", "hubble_deep_field.jpg", "moon.png", "motorcycle_left.png", "retina.jpg",
                 "rocket.jpg", "clock_motion.png", "cell.png"]
SHOPS = ["Hardware", "Bakery", "Pharmacy", "Bookshop", "Florist", "Garage", "Laundry", "Optician", "Butcher", "Cafe"]
NAMES = ["ACME", "Zenith", "Orion", "Baltic", "Juniper", "Maple", "Granite", "Harbor", "Cobalt", "Sierra", "Falcon",
         "Willow", "Amber", "Boreal", "Cedar", "Delta", "Ember", "Fjord", "Gable", "Heron", "Indigo", "Jasper", "Kestrel",
         "Lumen"]  # one per rendering, so that each phrase is on one photo only (a first run shared three)


def fonts() -> list[Path]:
    found = sorted(Path("/usr/share/fonts").rglob("*.ttf"))
    keep = [f for f in found if "Math" not in f.name and "Fallback" not in f.name and "ExtraLight" not in f.name]
    return keep or found


def rendering(n: int, font_files: list[Path]) -> tuple[bytes, str, list[str], str]:
    """(file bytes, extension, phrases, the whole text) of rendering ``n``: kind and font and distortion in turn."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    rng = random.Random(n)
    kind = ("sign", "receipt", "poster", "screenshot")[n % 4]
    font = font_files[n % len(font_files)]
    name, shop, number = NAMES[n % len(NAMES)], SHOPS[(n // 2) % len(SHOPS)], rng.randint(1000, 9999)
    total = f"{rng.randint(1, 199)}.{rng.randint(0, 99):02d}"
    if kind == "sign":
        lines, size, height, paper, ink = [f"{name} {shop}".upper(), f"Open {rng.randint(7, 10)}-{rng.randint(17, 21)}"], \
            (1200, 800), 90, (30, 60, 110), (250, 245, 230)
        phrases = [f"{name} {shop}"]
    elif kind == "receipt":
        lines = [f"{name} {shop}", f"Invoice {number}", f"2 x Item {rng.randint(10, 99)}", f"Total: {total} EUR"]
        size, height, paper, ink, phrases = (900, 1200), 48, (246, 244, 238), (30, 30, 30), [f"Invoice {number}",
                                                                                           f"Total: {total} EUR"]
    elif kind == "poster":
        lines = [f"{name} Festival", f"{rng.randint(1, 28)} June {rng.randint(2019, 2026)}", "Live music"]
        size, height, paper, ink, phrases = (1000, 1400), 80, (200, 40, 60), (255, 255, 255), [f"{name} Festival"]
    else:
        lines = ["Error", f"Cannot open file report_{number}.pdf", "The file is damaged.", "OK    Cancel"]
        size, height, paper, ink, phrases = (1280, 800), 34, (240, 240, 240), (20, 20, 20), [f"report_{number}.pdf"]
    image = Image.new("RGB", size, paper)
    draw = ImageDraw.Draw(image)
    face = ImageFont.truetype(str(font), height)
    y = size[1] // 6
    for line in lines:
        draw.text((size[0] // 10, y), line, font=face, fill=ink)
        y += int(height * 1.7)
    distortion = n // 4 % 4  # none, turned, blurred, turned + blurred; every other one JPEG at low quality
    if distortion in (1, 3):
        image = image.rotate(rng.choice((-1, 1)) * rng.uniform(4, 12), expand=True, fillcolor=paper)
    if distortion in (2, 3):
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.8, 1.6)))
    out = io.BytesIO()
    if n % 2:
        image.save(out, "JPEG", quality=rng.randint(25, 45))
        return out.getvalue(), ".jpg", phrases, "\n".join(lines)
    image.save(out, "PNG")
    return out.getvalue(), ".png", phrases, "\n".join(lines)


def pillow_image(name: str) -> bytes:
    return subprocess.run(["git", f"--git-dir={PILLOW}", "show", f"HEAD:Tests/images/{name}"], check=True,
                          capture_output=True).stdout


def make_folder(root: Path, renderings: int) -> dict[str, dict]:
    """The photos, and for each: its kind, its phrases, its whole text where known."""
    truth: dict[str, dict] = {}
    for kind in ("renderings", "real", "plain"):
        (root / kind).mkdir(parents=True)
    font_files = fonts()
    for n in range(renderings):
        data, ext, phrases, text = rendering(n, font_files)
        path = root / "renderings" / f"r{n:03d}{ext}"
        path.write_bytes(data)
        truth[str(path)] = {"kind": "rendering", "phrases": phrases, "text": text}
    if PILLOW.is_dir():
        for name, phrases in REAL.items():
            path = root / "real" / name
            path.write_bytes(pillow_image(name))
            truth[str(path)] = {"kind": "real", "phrases": phrases, "text": ISSUE_2278 if name == "issue_2278.tif" else None}
        for name in PLAIN_PILLOW:
            (root / "plain" / name).write_bytes(pillow_image(name))
            truth[str(root / "plain" / name)] = {"kind": "plain", "phrases": []}
    try:
        import skimage

        data_dir = Path(skimage.__file__).parent / "data"
        for name in PLAIN_SKIMAGE:
            if (data_dir / name).is_file():
                (root / "plain" / f"sk-{name}").write_bytes((data_dir / name).read_bytes())
                truth[str(root / "plain" / f"sk-{name}")] = {"kind": "plain", "phrases": []}
    except ImportError:
        pass
    return truth


def distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def accuracy(read: str, truth: str) -> float:
    read, truth = " ".join(read.split()), " ".join(truth.split())
    return max(0.0, 1 - distance(read, truth) / max(1, len(truth)))


def reading(truth: dict[str, dict]) -> dict:
    """Step 1: the reading's cost and quality, photo by photo, on the models the stage uses."""
    import numpy as np
    from rapidocr import RapidOCR

    from clipsearch import images
    from clipsearch.ocr import READ_SIDE, Reader, _bounded

    whole = Reader(gate_side=None)
    gates = {side: RapidOCR(params={"Global.log_level": "error", "Det.limit_type": "max", "Det.limit_side_len": side,
                                    "Global.use_cls": False, "Global.use_rec": False}) for side in (320, 480, 640)}
    rows = []
    for path, facts in truth.items():
        image = images.decode(Path(path).read_bytes(), READ_SIDE // 2).image
        pixels = np.asarray(_bounded(image, READ_SIDE))[:, :, ::-1]
        row = {"path": path, "kind": facts["kind"]}
        for side, gate in gates.items():
            started = time.perf_counter()
            row[f"gate{side}"] = gate(pixels).boxes is not None
            row[f"gate{side}_s"] = time.perf_counter() - started
        started = time.perf_counter()
        seen = whole.read(image)
        row["read_s"] = time.perf_counter() - started
        row["text"] = seen.text
        if facts.get("text"):
            row["accuracy"] = accuracy(seen.text, facts["text"])
        rows.append(row)
        print(f"  {Path(path).name:40} gate480={row['gate480']!s:5} read {row['read_s']:.2f} s  {seen.text[:50]!r}",
              file=sys.stderr, flush=True)
    return summarise(rows)


def summarise(rows: list[dict]) -> dict:
    out: dict = {"photos": {k: sum(r["kind"] == k for r in rows) for k in ("rendering", "real", "plain")}}
    texted = [r for r in rows if r["kind"] != "plain"]
    plain = [r for r in rows if r["kind"] == "plain"]
    for side in (320, 480, 640):
        out[f"gate{side}"] = {
            "s_per_photo": round(statistics.mean(r[f"gate{side}_s"] for r in rows), 3),
            "plain_let_through": f"{sum(r[f'gate{side}'] for r in plain)}/{len(plain)}",
            "text_missed": [Path(r["path"]).name for r in texted if not r[f"gate{side}"]],
        }
    gate = 480  # the stage's (clipsearch.ocr.GATE_SIDE)
    for name, group in (("with_text", texted), ("without_text", plain)):
        ungated = [r["read_s"] for r in group]
        gated = [r[f"gate{gate}_s"] + (r["read_s"] if r[f"gate{gate}"] else 0) for r in group]
        out[name] = {"read_s_mean": round(statistics.mean(ungated), 3), "gated_s_mean": round(statistics.mean(gated), 3),
                     "photos_per_s_gated": round(len(gated) / sum(gated), 2),
                     "gated_over_ungated": round(sum(gated) / sum(ungated), 3)}
    scored = [r["accuracy"] for r in rows if "accuracy" in r]
    out["char_accuracy"] = {"renderings_mean": round(statistics.mean(r["accuracy"] for r in rows if r["kind"] ==
                                                                      "rendering"), 4),
                            "renderings_exact": f"{sum(r.get('accuracy') == 1.0 for r in rows)}/{out['photos']['rendering']}",
                            "issue_2278": round(next((r["accuracy"] for r in rows if r["kind"] == "real" and
                                                      "accuracy" in r), float("nan")), 4),
                            "all_mean": round(statistics.mean(scored), 4)}
    return out


def whole_runs(folder: Path, model: str, work: Path) -> dict:
    """Step 2: `clipsearch index` over the folder, without and with words, each into a new index."""
    out = {}
    env = {**os.environ, "CLIPSEARCH_TEXT_EXPORT": "0"}
    for mode in ("off", "on"):
        index = work / f"index-{mode}"
        started = time.perf_counter()
        done = subprocess.run([sys.executable, str(ROOT / "cli.py"), "index", str(folder), "--index", str(index),
                               "--model", model, "--words", mode, "--json"], capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(done.stderr)
        report = json.loads(done.stdout)
        out[mode] = {"wall_s": round(seconds, 1), "run_s": report["seconds"], "model_s": report["model_seconds"],
                     "added": report["added"], "words": report.get("words")}
    out["on_over_off_wall"] = round(out["on"]["wall_s"] / out["off"]["wall_s"], 2)
    return out


def recall(index: Path, truth: dict[str, dict]) -> dict:
    """Step 3: recall@1 of each phrase through --text (quoted) and through a plain search (hybrid)."""
    import clipsearch

    counts = {kind: {"phrases": 0, "text_at_1": 0, "plain_at_1": 0} for kind in ("rendering", "real")}
    misses = []
    with clipsearch.open_index(index) as searcher:
        for path, facts in truth.items():
            for phrase in facts["phrases"]:
                c = counts[facts["kind"]]
                c["phrases"] += 1
                by_text = searcher.search(text=f'"{phrase}"', k=1)
                by_plain = searcher.search(phrase, k=1)
                c["text_at_1"] += bool(by_text) and by_text[0].path == path
                c["plain_at_1"] += bool(by_plain) and by_plain[0].path == path
                if not by_text or by_text[0].path != path:
                    misses.append(f"{Path(path).name}: {phrase}")
    for c in counts.values():
        c["text_recall@1"] = round(c["text_at_1"] / max(1, c["phrases"]), 3)
        c["plain_recall@1"] = round(c["plain_at_1"] / max(1, c["phrases"]), 3)
    return {**counts, "text_misses": misses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="ViT-B-32-quickgelu:none")
    parser.add_argument("--renderings", type=int, default=len(NAMES))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="words-bench-"))
    folder = work / "photos"
    truth = make_folder(folder, args.renderings)
    print(f"{len(truth)} photos in {folder}; fonts: {', '.join(f.stem for f in fonts())}", file=sys.stderr)
    result = {"reading": reading(truth)}
    result["runs"] = whole_runs(folder, args.model, work)
    result["recall"] = recall(work / "index-on", truth)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
