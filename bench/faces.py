"""What the faces stage finds and costs, on real faces nobody here made, pasted into composed photos.

    python bench/faces.py [--photos 60] [--empty 20] [--runs 5] [--seed 1]
        [--face-repo /work/.mirror/ageitgey+face_recognition/repo] [--pillow-repo /work/.mirror/python-pillow+Pillow/repo]
        [--skimage-wheel scikit_image-*.whl]

Sources: the single-face photos of ageitgey/face_recognition's examples and tests (Obama, Biden, Alex Lacamoire,
Kit Harington, Rose Leslie, Lin-Manuel Miranda), Pillow's Hopper and scikit-image's astronaut (Eileen Collins):
8 people, 2-5 photos each. Each face is cut out with its head and some background (found at full size)
and pasted into scikit-image's faceless photos (brick, grass, gravel, coffee, rocket, a cat, ...) scaled to
2 MP (1632x1224): 1-4 people a photo, faces 40-400 px tall, turned up to 10 degrees, brightness x0.6-1.4,
saved as JPEG at quality 50-90; ``--empty`` photos are the backgrounds alone, treated alike.

Reported, as the stage reads (``clipsearch.faces.detect``: longer side 1600, upsampled when read at 800 or less):
  - recall by face size and false faces per photo (a detection matches a pasted face at IoU >= 0.3), against
    HOG upsampled once at that size (what finds 40 px faces, at four times the cost);
  - people, by ``clipsearch.faces.grouping``: purity (the share of each person's faces from their main person,
    weighted), completeness (the share of each real person's faces in their largest group), faces left to
    nobody; incremental (the photos in ``--runs`` runs, each placing only its new faces) against grouping
    every face at once;
  - cost: seconds a photo (read + detect + describe), with faces and without, at 2 MP and at 12 MP (4000x3000,
    the same scene scaled), one thread, and the ratio to decoding the photo for the model (the baseline a run
    pays anyway: ``images.decode`` at 224).
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
import zipfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clipsearch import images  # noqa: E402
from clipsearch.faces import detect, grouping  # noqa: E402

FACES = {  # person -> (repository, path) of photos that show them alone
    "obama": [("face", "examples/obama.jpg"), ("face", "examples/obama2.jpg"), ("face", "tests/test_images/obama3.jpg"),
              ("face", "examples/knn_examples/test/obama1.jpg"), ("face", "examples/obama-720p.jpg")],
    "biden": [("face", "examples/biden.jpg"), ("face", "examples/knn_examples/train/biden/biden2.jpg")],
    "lacamoire": [("face", "examples/alex-lacamoire.png"), ("face", "examples/knn_examples/train/alex_lacamoire/img1.jpg"),
                  ("face", "examples/knn_examples/test/alex_lacamoire1.jpg")],
    "harington": [("face", "examples/knn_examples/train/kit_harington/john1.jpeg"),
                  ("face", "examples/knn_examples/train/kit_harington/john2.jpeg"),
                  ("face", "examples/knn_examples/test/johnsnow_test1.jpg")],
    "leslie": [("face", "examples/knn_examples/train/rose_leslie/img1.jpg"),
               ("face", "examples/knn_examples/train/rose_leslie/img2.jpg")],
    "miranda": [("face", "examples/lin-manuel-miranda.png")],
    "hopper": [("pillow", "Tests/images/hopper.png")],
    "collins": [("skimage", "skimage/data/astronaut.png")],
}
BACKGROUNDS = ["brick", "grass", "gravel", "coffee", "rocket", "chelsea", "hubble_deep_field", "motorcycle_left", "moon",
               "coins", "retina", "page"]
SIZES = (40, 60, 80, 120, 200, 400)  # face box heights pasted, in 2 MP pixels
SMALL, LARGE = (1632, 1224), (4000, 3000)


class Sources:
    def __init__(self, args: argparse.Namespace) -> None:
        self.repos = {"face": args.face_repo, "pillow": args.pillow_repo}
        self.wheel = zipfile.ZipFile(args.skimage_wheel)

    def read(self, repo: str, path: str) -> Image.Image:
        if repo == "skimage":
            data = self.wheel.read(path)
        else:
            data = subprocess.run(["git", f"--git-dir={self.repos[repo]}", "show", f"HEAD:{path}"], check=True,
                                  capture_output=True).stdout
        return Image.open(io.BytesIO(data)).convert("RGB")

    def background(self, name: str) -> Image.Image:
        for ext in ("png", "jpg"):
            try:
                return self.read("skimage", f"skimage/data/{name}.{ext}")
            except KeyError:
                continue
        raise KeyError(name)


def cutouts(sources: Sources, model: detect.FaceModel) -> list[tuple[str, Image.Image, tuple[float, float, float, float]]]:
    """(person, the head with some background, the face's box in it) for every source photo."""
    out = []
    for person, where in FACES.items():
        for repo, path in where:
            picture = sources.read(repo, path)
            array = np.asarray(picture)
            detector = model._detector  # noqa: SLF001 - the truth, at full size (upsampled only if need be)
            found = sorted(detector(array, 0) or detector(array, 1), key=lambda r: -r.area())
            if not found or (len(found) > 1 and found[1].area() * 4 > found[0].area()):
                print(f"  skipped {path}: {len(found)} faces found at full size")
                continue
            r = found[0]  # the one face (the astronaut's badge holds a tiny one)
            w, h = r.right() - r.left(), r.bottom() - r.top()
            left, top = max(0, r.left() - 0.6 * w), max(0, r.top() - 0.7 * h)
            right, bottom = min(picture.width, r.right() + 0.6 * w), min(picture.height, r.bottom() + 0.5 * h)
            crop = picture.crop((int(left), int(top), int(right), int(bottom)))
            out.append((person, crop, (r.left() - int(left), r.top() - int(top), w, h)))
    return out


def compose(rng: np.random.Generator, heads: list, background: Image.Image, size: tuple[int, int], count: int,
            face_sizes: list[int]) -> tuple[bytes, list[tuple[str, tuple[float, float, float, float]]]]:
    """A JPEG of ``background`` at ``size`` with ``count`` heads pasted (distinct people), and the truth."""
    scale = size[0] / SMALL[0]
    canvas = background.resize(size, Image.BILINEAR)
    truth = []
    people = rng.permutation(sorted({h[0] for h in heads}))[:count]
    slots = [(int(size[0] * (i + 0.5) / max(count, 1)), int(size[1] * rng.uniform(0.35, 0.65))) for i in range(count)]
    for person, (cx, cy), face_size in zip(people, slots, face_sizes):
        options = [h for h in heads if h[0] == person]
        _, crop, (fx, fy, fw, fh) = options[rng.integers(len(options))]
        k = face_size * scale / fh
        head = crop.resize((max(1, int(crop.width * k)), max(1, int(crop.height * k))), Image.BILINEAR)
        head = ImageEnhance.Brightness(head).enhance(rng.uniform(0.6, 1.4))
        angle = rng.uniform(-10, 10)
        turned = head.convert("RGBA").rotate(angle, resample=Image.BILINEAR, expand=True)
        x = int(np.clip(cx - turned.width / 2, 0, max(0, size[0] - turned.width)))
        y = int(np.clip(cy - turned.height / 2, 0, max(0, size[1] - turned.height)))
        canvas.paste(turned, (x, y), turned)
        # the face's centre, turned with the head (about its centre); its box stays about as large
        c = np.array([fx + fw / 2, fy + fh / 2]) * k - np.array([head.width / 2, head.height / 2])
        t = np.radians(angle)
        cxy = np.array([c[0] * np.cos(t) + c[1] * np.sin(t), -c[0] * np.sin(t) + c[1] * np.cos(t)])
        cxy += np.array([x + turned.width / 2, y + turned.height / 2])
        truth.append((str(person), (cxy[0] - fw * k / 2, cxy[1] - fh * k / 2, fw * k, fh * k)))
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=int(rng.integers(50, 91)))
    return out.getvalue(), truth


def iou(a: tuple, b: tuple) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = w * h
    return inter / (aw * ah + bw * bh - inter) if inter else 0.0


def judge(photos: list, found: list[list]) -> tuple[dict[int, list[int]], int, list[tuple[str, np.ndarray, int]]]:
    """Recall by size ({size: [found, pasted]}), false faces, and (person, descriptor, photo) of matched faces."""
    recall: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    false, matched = 0, []
    for number, ((_, truth, sizes), faces) in enumerate(zip(photos, found)):
        used = set()
        for (person, box), size in zip(truth, sizes):
            recall[size][1] += 1
            best = max(range(len(faces)), key=lambda i: iou(faces[i].box, box), default=None)
            if best is not None and best not in used and iou(faces[best].box, box) >= 0.3:
                used.add(best)
                recall[size][0] += 1
                matched.append((person, faces[best].descriptor, number))
        false += len(faces) - len(used)
    return recall, false, matched


def scores(labels: list[str], groups: dict[int, int]) -> tuple[float, float, int]:
    """Purity, completeness over the faces placed, and faces placed with nobody (``groups``: face -> person)."""
    by_group: dict[int, Counter] = defaultdict(Counter)
    for face, person in groups.items():
        by_group[person][labels[face]] += 1
    placed = sum(sum(c.values()) for c in by_group.values())
    purity = sum(c.most_common(1)[0][1] for c in by_group.values()) / max(placed, 1)
    by_person: dict[str, Counter] = defaultdict(Counter)
    for face, person in groups.items():
        by_person[labels[face]][person] += 1
    completeness = sum(c.most_common(1)[0][1] for c in by_person.values()) / max(placed, 1)
    return purity, completeness, len(labels) - placed


def group(matched: list, runs: int) -> dict[int, int]:
    """face index -> person, placing the photos' faces in ``runs`` runs (1: every face at once)."""
    photos = sorted({m[2] for m in matched})
    cut = np.array_split(np.array(photos), runs)
    placed: dict[int, int] = {}
    waiting: list[int] = []
    next_person = 0
    for batch in cut:
        new = waiting + [i for i, m in enumerate(matched) if m[2] in set(batch.tolist())]
        known = sorted(placed)
        result = grouping.place(np.array(known, dtype="int64"), np.array([placed[i] for i in known], dtype="int64"),
                                np.array([matched[i][1] for i in known]).reshape(-1, 128), np.array(new, dtype="int64"),
                                np.array([matched[i][1] for i in new]).reshape(-1, 128))
        for face, person in result.joined:
            placed[face] = person
        for members in result.groups:
            for face in members:
                placed[face] = next_person
            next_person += 1
        waiting = [i for i in new if i not in placed]
    return placed


def timed(fn, repeat: int = 1) -> float:
    """CPU seconds of this process a call (the machine is shared: CPU time is what another load does not inflate;
    the work runs on the calling thread, dlib-bin having no BLAS threads)."""
    start = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=60)
    parser.add_argument("--empty", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cost-photos", type=int, default=8)
    parser.add_argument("--cost-only", action="store_true", help="only the cost (no recall, no people)")
    parser.add_argument("--face-repo", default="/work/.mirror/ageitgey+face_recognition/repo")
    parser.add_argument("--pillow-repo", default="/work/.mirror/python-pillow+Pillow/repo")
    parser.add_argument("--skimage-wheel", default=next(iter(sorted(Path("/tmp").glob("*/scikit_image-*.whl"))), None))
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    sources = Sources(args)
    model = detect.FaceModel()
    heads = cutouts(sources, model)
    print(f"{len(heads)} source photos of {len({h[0] for h in heads})} people")
    backgrounds = [sources.background(b) for b in BACKGROUNDS]
    if args.cost_only:
        cost(rng, heads, backgrounds, args.cost_photos)
        return

    photos = []  # (jpeg, truth, sizes)
    for n in range(args.photos + args.empty):
        count = 0 if n >= args.photos else int(rng.choice([1, 1, 2, 3, 4]))
        sizes = [int(rng.choice(SIZES)) for _ in range(count)]
        data, truth = compose(rng, heads, backgrounds[n % len(backgrounds)], SMALL, count, sizes)
        photos.append((data, truth, sizes))

    def found_at(upsample: int | None) -> list[list]:
        out = []
        for data, _, _ in photos:
            picture, scale = detect.read(data)
            out.append(model.faces(picture, scale, upsample))
        return out

    for label, upsample in (("read at 1600 (the default)", None), ("read at 1600, upsampled once", 1)):
        start = time.process_time()
        found = found_at(upsample)
        seconds = (time.process_time() - start) / len(photos)
        recall, false, matched = judge(photos, found)
        total = [sum(v[0] for v in recall.values()), sum(v[1] for v in recall.values())]
        by_size = "  ".join(f"{s}px {recall[s][0]}/{recall[s][1]}" for s in SIZES)
        empty_false = sum(len(f) for f in found[args.photos:])
        print(f"{label}: recall {total[0]}/{total[1]} = {total[0] / max(total[1], 1):.1%} ({by_size}); "
              f"false faces {false / len(photos):.3f}/photo ({empty_false} in {args.empty} faceless photos); "
              f"{seconds:.3f} CPU s/photo")
        if upsample is None:
            kept = matched

    labels = [m[0] for m in kept]
    for label, runs in (("every face at once", 1), (f"incremental, {args.runs} runs", args.runs)):
        placed = group(kept, runs)
        purity, completeness, nobody = scores(labels, placed)
        print(f"people, {label}: {len(set(placed.values()))} people for {len(set(labels))} real; purity {purity:.3f}, "
              f"completeness {completeness:.3f}; {nobody} of {len(labels)} faces with nobody")

    cost(rng, heads, backgrounds, args.cost_photos)


def cost(rng: np.random.Generator, heads: list, backgrounds: list, count: int) -> None:
    """Seconds a photo on one thread (median), and photos/s on two threads (what the stage runs on two cores)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(data: bytes) -> int:
        return len(detect.FaceModel.for_this_thread().faces(*detect.read(data)))

    print("cost (read + detect + describe; baseline: decoding for the model at 224, which a run pays anyway); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs:")
    for size_label, size in (("2 MP", SMALL), ("12 MP", LARGE)):
        for kind, faces in (("3 faces", 3), ("no face", 0)):
            made = [compose(rng, heads, backgrounds[i % len(backgrounds)], size, faces, [120, 200, 80])[0]
                    for i in range(count)]
            one(made[0])  # this thread's model loaded, its buffers made
            base = float(np.median([timed(lambda d=d: images.decode(d, 224)) for d in made]))
            alone = float(np.median([timed(lambda d=d: one(d)) for d in made]))
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(one, made[:2]))  # each thread's model loaded
                start = time.perf_counter()
                list(pool.map(one, made))
                rate = len(made) / (time.perf_counter() - start)
            print(f"  {size_label:5} {kind}: {alone:.3f} CPU s/photo ({alone / base:.0f}x its decode for the model, "
                  f"{base:.3f} s); {rate:.2f} photos/s on two threads (wall clock)")

if __name__ == "__main__":
    main()
