"""How well `clipsearch duplicates` tells copies from similar shots, and how fast it runs.

    python bench/duplicates.py [--scenes 300] [--models demo,ViT-B-32:none] [--seed 1]
    python bench/duplicates.py --synthetic 1000000          # neighbours and groups over planted vectors
    python bench/duplicates.py --photos 10000               # `clipsearch duplicates` as a whole process
    python bench/duplicates.py --sources skimage,pillow,generated,shapes --pillow-git PILLOW/.git [--keep DIR]

(a) Ground truth (tests/duplicate_sets.py): ``--scenes`` photo-like originals; a third get copies (resized
    25-75%, JPEG quality 30-95, PNG, WebP, 2-5% crops, 2-5% borders, EXIF-orientation-only, brightness
    +-10%), a third get similar shots (the camera moved 5-10%, turned 1-2 degrees, something added), the rest
    stand alone. Indexed with each model by `clipsearch index`, then judged by the rules of
    search/duplicates.py over pairs of files: copy precision and recall, similar shots wrongly called copies,
    similar-shot recall and precision, and per kind of copy or shot how it was called.
(b) ``--synthetic N``: N random 512-d unit vectors with 1% of them in planted groups of 2-5 (copies: a tiny
    perturbation, the same signature give or take 3 bits, the grids of a generated scene and of copies of it
    made as in (a)), through the same neighbour search and rules (grid comparisons included):
    recall of the planted groups, seconds, peak memory.
(d) ``--sources``: photos the rules were never tuned on (bench/duplicate_sources.py: scikit-image's and Pillow's
    real photos at camera sizes, 2-12 MP, and chat size, 1280 px; copies made by Pillow and by ImageMagick;
    the generator's scenes; rendered shapes), judged as `clipsearch duplicates --similar` lists them: copy
    precision and recall over pairs of files, similar shots called copies, per kind and tool, group sizes.
    The thresholds were chosen on ``skimage`` only; ``--keep DIR`` keeps the sets and indexes and judges them
    again on a later run.
(c) ``--photos N``: N generated JPEGs indexed with the demo model, then `clipsearch duplicates --json` timed
    as a whole process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from processes import timed  # noqa: E402


def cli(*args: str) -> list[str]:
    return [sys.executable, str(HERE.parent / "cli.py"), *args]


def judged(index: Path) -> tuple[dict[str, str], dict[str, int]]:
    """File name -> the group it fell in per level ("copy" groups hold identical files too), as the rules say."""
    from clipsearch.store import StoreReader
    from search import duplicates as dup

    with StoreReader.open(index) as store:
        collection = dup.Collection.of(store)
        groups = dup.find(collection, similar=True)
    copy_of: dict[str, str] = {}
    similar_of: dict[str, str] = {}
    for n, group in enumerate(groups):
        names = [Path(f.path).name for c in group.contents for f in collection.files[c]]
        target = similar_of if group.level == "similar" else copy_of
        for name in names:
            target[name] = f"{group.level}{n}"
    return copy_of, similar_of


def same(groups: dict[str, str], pair: frozenset[str]) -> bool:
    a, b = tuple(pair)
    return a in groups and groups.get(a) == groups.get(b)


def evaluate(truth, copy_of: dict[str, str], similar_of: dict[str, str]) -> dict[str, object]:  # noqa: ANN001
    names = sorted(truth.kind)
    together = {frozenset((a, b)) for a in names for b in names if a < b and same(copy_of, frozenset((a, b)))}
    close = {frozenset((a, b)) for a in names for b in names if a < b and
             (same(similar_of, frozenset((a, b))) or same(copy_of, frozenset((a, b))))}
    copy_pairs, similar_pairs = truth.copy_pairs(), truth.similar_pairs()
    out: dict[str, object] = {
        "copy precision": len(together & copy_pairs) / max(1, len(together)),
        "copy recall": len(together & copy_pairs) / max(1, len(copy_pairs)),
        "similar called copies": len(together & similar_pairs) / max(1, len(similar_pairs)),
        "similar recall": len(close & similar_pairs) / max(1, len(similar_pairs)),
        "similar precision": len(close & (similar_pairs | copy_pairs)) / max(1, len(close)),
    }
    by_kind: dict[str, Counter] = {}
    for group in truth.copies + truth.similar:
        original = next(n for n in group if truth.kind[n] == "original")
        for name in group - {original}:
            pair = frozenset((original, name))
            called = "copy" if same(copy_of, pair) else "similar" if same(similar_of, pair) else "apart"
            by_kind.setdefault(truth.kind[name], Counter())[called] += 1
    out["by kind"] = {kind: dict(c) for kind, c in sorted(by_kind.items())}
    return out


def ground_truth(scenes: int, models: list[str], seed: int) -> None:
    from tests import duplicate_sets

    with tempfile.TemporaryDirectory() as tmp:
        truth = duplicate_sets.make(Path(tmp) / "photos", scenes, seed=seed)
        print(f"(a) {scenes} scenes, seed {seed}: {len(truth.kind)} files, {len(truth.copy_pairs())} copy pairs, "
              f"{len(truth.similar_pairs())} similar pairs")
        for model in models:
            index = Path(tmp) / f"index-{model.replace(':', '_')}"
            done = subprocess.run(cli("index", str(truth.root), "--index", str(index), "--model", model, "--vocabulary",
                                      "none", "--quiet"), capture_output=True, text=True,
                                  env={**os.environ, "CLIPSEARCH_TEXT_EXPORT": "0"})
            if done.returncode:
                raise SystemExit(done.stderr)
            result = evaluate(truth, *judged(index))
            kinds = result.pop("by kind")
            print(f"  {model}: " + ", ".join(f"{k} {v:.3f}" for k, v in result.items()))
            for kind, called in kinds.items():  # type: ignore[union-attr]
                print(f"      {kind:22s} {called}")


def synthetic(n: int, dim: int = 512) -> None:
    from clipsearch import images, picture_grid
    from search import duplicates as dup
    from tests import duplicate_sets

    rng = np.random.default_rng(0)
    started = time.perf_counter()
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    signs = rng.integers(0, 1 << 62, n, dtype=np.int64)
    planted: list[list[int]] = []
    grids: dict[int, bytes] = {}  # the planted photos' grids: a generated scene and copies of it
    at = 0
    while at < n // 100:
        size = int(rng.integers(2, 6))
        members = list(range(at, at + size))
        original = duplicate_sets.view(duplicate_sets.scene(len(planted)))
        grids[members[0]] = picture_grid.encode(original)
        for m in members[1:]:
            vectors[m] = vectors[members[0]] + 0.1 * rng.standard_normal(dim).astype(np.float32)  # cosine ~0.995
            flips = rng.choice(63, int(rng.integers(0, 4)), replace=False)
            signs[m] = signs[members[0]] ^ int(sum(1 << int(b) for b in flips))
            kind = duplicate_sets.COPY_KINDS[m % len(duplicate_sets.COPY_KINDS)]
            grids[m] = picture_grid.encode(images.decode(duplicate_sets.copy_of(original, kind, rng)[1], 224).image)
        planted.append(members)
        at += size
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    made = time.perf_counter() - started
    compared, making = 0, 0.0

    def grids_of(indices: list[int]) -> dict[int, bytes]:
        """The planted grids, and for every other photo a grid of its own (smooth random colours, made here
        on demand: the time it takes is left out of the figure)."""
        nonlocal compared, making
        compared += len(indices)
        t = time.perf_counter()
        out = {i: grids[i] if i in grids else unrelated_grid(i) for i in indices}
        making += time.perf_counter() - t
        return out

    collection = dup.Collection([[None]] * n, vectors, signs, None, grids_of)  # type: ignore[list-item]
    started = time.perf_counter()
    groups = dup.find(collection)  # neighbours, rules, groups: what `clipsearch duplicates` runs
    grouped = time.perf_counter() - started - making
    found_groups = {tuple(sorted(g.contents)) for g in groups}
    found = sum(tuple(group) in found_groups for group in planted)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(b) {n:,} vectors, {len(planted):,} planted groups: {found / len(planted):.3f} found whole, "
          f"{len(groups) - found} other groups; {grouped:.1f} s (making the data {made:.1f} s); "
          f"peak RSS {peak:,.0f} MB; "
          f"grids read for {compared:,} photos (making them {making:.1f} s, not counted)")


def unrelated_grid(i: int) -> bytes:
    from PIL import Image

    from clipsearch import picture_grid

    cells = np.random.default_rng(i).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return picture_grid.encode(Image.fromarray(cells).resize((64, 48), Image.Resampling.BILINEAR))


def whole_process(photos: int) -> None:
    from tests import imagegen

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        for i in range(photos):
            imagegen.photo(60_000 + i, (160, 120)).save(folder / f"{i:05d}.jpg", quality=85)
        index = Path(tmp) / "index"
        env = {**os.environ, "CLIPSEARCH_TEXT_EXPORT": "0"}
        wall, _, _ = timed(cli("index", str(folder), "--index", str(index), "--model", "demo", "--vocabulary", "none",
                               "--quiet"), env=env)
        print(f"(c) {photos:,} photos indexed with the demo model in {wall:.1f} s")
        wall, rss, output = timed(cli("duplicates", "--index", str(index), "--json"), env=env)
        groups = json.loads(output[output.index("["):])
        wall_similar, rss_similar, _ = timed(cli("duplicates", "--index", str(index), "--similar", "--json"), env=env)
        print(f"    clipsearch duplicates: {wall:.2f} s, peak RSS {rss:,.0f} MB, {len(groups)} groups; "
              f"--similar {wall_similar:.2f} s, {rss_similar:,.0f} MB")


def listed(index: Path) -> tuple[dict[str, str], dict[str, str], list[dict[str, object]]]:
    """As `clipsearch duplicates --similar` lists them (the application layer): file name -> its copy group,
    file name -> its similar group (a copy group's files through its keeper), and the groups."""
    from clipsearch.app import Index

    with Index(index) as ix:
        groups = [g.as_dict() for g in ix.duplicates(similar=True).groups]
    copy_of: dict[str, str] = {}
    similar_of: dict[str, str] = {}
    for n, g in enumerate(groups):
        for m in g["members"]:
            (similar_of if g["level"] == "similar" else copy_of)[Path(m["path"]).name] = f"{g['level']}{n}"
    keeper = {Path(m["path"]).name: Path(g["keep"]).name for g in groups if g["level"] != "similar"
              for m in g["members"]}
    for name, k in keeper.items():
        if k in similar_of and name not in similar_of:
            similar_of[name] = similar_of[k]
    return copy_of, similar_of, groups


def evaluate_source(truth, copy_of: dict[str, str], similar_of: dict[str, str],  # noqa: ANN001
                    groups: list[dict[str, object]]) -> dict[str, object]:
    names = sorted(truth.kind)
    pairs = [frozenset((a, b)) for i, a in enumerate(names) for b in names[i + 1:]]
    together = {p for p in pairs if same(copy_of, p)}
    copy_pairs, similar_pairs = truth.copy_pairs(), truth.similar_pairs()
    shot_pairs = {p for p in similar_pairs if any(truth.kind[n] == "original" for n in p)}
    out: dict[str, object] = {
        "copy P": len(together & copy_pairs) / max(1, len(together)),
        "copy R": len(together & copy_pairs) / max(1, len(copy_pairs)),
        "similar as copy": len(together & similar_pairs) / max(1, len(similar_pairs)),
        "similar R": len({p for p in shot_pairs if same(similar_of, p)}) / max(1, len(shot_pairs)),
    }
    by_kind: dict[str, Counter] = {}
    for name, kind in truth.kind.items():
        if kind == "original":
            continue
        original = next(n for n, k in truth.kind.items() if k == "original" and truth.family[n] == truth.family[name])
        pair = frozenset((original, name))
        called = "copy" if same(copy_of, pair) else "similar" if same(similar_of, pair) else "apart"
        by_kind.setdefault(kind.split(":")[0] + ":" + kind.split(":")[1], Counter())[called] += 1
        if kind.count(":") == 2:
            by_kind.setdefault(kind, Counter())[called] += 1
    out["by kind"] = {k: dict(c) for k, c in sorted(by_kind.items())}
    diam: dict[str, list[int]] = {}
    for g in groups:
        families = {truth.family.get(Path(m["path"]).name, "?") for m in g["members"]}  # type: ignore[union-attr]
        low = min(m["score"] for m in g["members"])  # type: ignore[union-attr]
        d = diam.setdefault(str(g["level"]), [0, 0, 0, 1000])
        d[0] += 1
        d[1] = max(d[1], len(g["members"]))  # type: ignore[arg-type]
        d[2] += len(families) > 1
        d[3] = min(d[3], int(1000 * low))
    out["groups"] = {level: f"{d[0]} groups, largest {d[1]}, {d[2]} mixing originals, lowest score to keeper "
                            f"{d[3] / 1000:.3f}" for level, d in diam.items()}
    return out


def sources(names: list[str], sizes: list[str], models: list[str], pillow_git: Path | None, keep: Path | None) -> None:
    import duplicate_sources as ds

    makers = {
        "skimage": ds.skimage_photos,
        "pillow": lambda: ds.pillow_photos(pillow_git) if pillow_git else [],
        "generated": lambda: ds.generated_photos(20, 7),
        "shapes": lambda: ds.shapes_photos(40, 7),
    }
    with tempfile.TemporaryDirectory() as tmp:
        base = keep or Path(tmp)
        for name in names:
            try:
                photos = makers[name]()
            except ImportError as exc:
                print(f"{name}: skipped ({exc})")
                continue
            if not photos:
                print(f"{name}: skipped (no photos: --pillow-git?)")
                continue
            for size in sizes if name not in ("generated", "shapes") else ["as made"]:
                folder = base / f"{name}-{size}".replace(" ", "_")
                made = folder.is_dir() and any(folder.iterdir())  # --keep: a set made before is judged again
                truth = ds.Truth.from_folder(folder, size) if made else ds.make(folder, name, size, photos)
                print(f"{name}, {size}: {len(photos)} originals, {len(truth.kind)} files, "
                      f"{len(truth.copy_pairs())} copy pairs, {len(truth.similar_pairs())} similar pairs"
                      f"{'' if ds.magick() else ' (no ImageMagick: Pillow copies only)'}")
                for model in models:
                    index = base / f"index-{name}-{size}-{model}".replace(":", "_").replace(" ", "_")
                    if not (index / "catalog.sqlite").exists():
                        done = subprocess.run(cli("index", str(truth.root), "--index", str(index), "--model", model,
                                                  "--vocabulary", "none", "--quiet"), capture_output=True, text=True,
                                              env={**os.environ, "CLIPSEARCH_TEXT_EXPORT": "0"})
                        if done.returncode:
                            raise SystemExit(done.stderr)
                    result = evaluate_source(truth, *listed(index))
                    kinds, groups = result.pop("by kind"), result.pop("groups")
                    print(f"  {model}: " + ", ".join(f"{k} {v:.3f}" for k, v in result.items()))
                    for kind, called in kinds.items():  # type: ignore[union-attr]
                        print(f"      {kind:28s} {called}")
                    for level, text in groups.items():  # type: ignore[union-attr]
                        print(f"      {level} groups: {text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=300)
    parser.add_argument("--models", default="demo,ViT-B-32:none")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--synthetic", type=int, default=0)
    parser.add_argument("--photos", type=int, default=0)
    parser.add_argument("--sources", default="", help="skimage,pillow,generated,shapes (bench/duplicate_sources.py)")
    parser.add_argument("--sizes", default="camera,chat")
    parser.add_argument("--pillow-git", type=Path, default=None, help="a Pillow clone's git directory")
    parser.add_argument("--keep", type=Path, default=None, help="make the sets and indexes here, and keep them")
    args = parser.parse_args()
    if args.sources:
        sources(args.sources.split(","), args.sizes.split(","), args.models.split(","), args.pillow_git, args.keep)
    elif args.synthetic:
        synthetic(args.synthetic)
    elif args.photos:
        whole_process(args.photos)
    else:
        ground_truth(args.scenes, args.models.split(","), args.seed)


if __name__ == "__main__":
    main()
