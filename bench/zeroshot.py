"""Zero-shot at scale: tagging a million stored vectors, and classifying indexed photos as a whole process.

    python bench/zeroshot.py [--n 1000000] [--labels 1000] [--photos 1000]

1. Tagging: ``n`` synthetic 512-d vectors are put through StoreWriter.put (as a run stores them), each
   near one to three of ``labels`` random label vectors (so that the rule assigns one to three tags, as on
   real photos), then the tag stage's own steps run on them, timed one by one: read the untagged vectors
   from the catalog, score them against the label matrix (matrix product), apply the rule (softmax at
   logit scale 100, threshold, cap), write the tags and commit. Baseline in the same run: the bare
   matrix product on vectors already in memory.
2. Classifying: ``photos`` generated photos indexed with the demo model, then `clipsearch classify FOLDER
   --top 3 --json` (built-in vocabulary) as a whole process: first with the label matrix not cached yet,
   then cached; each says whether it imported torch (it should not once the text tower is exported).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def tagging(n: int, n_labels: int, dim: int = 512) -> dict[str, float]:
    import numpy as np

    from clipsearch.store import FileRecord, ModelRecord, StoreWriter
    from clipsearch.zeroshot import tagging as rule
    from clipsearch.zeroshot.labels import Classifier

    rng = np.random.default_rng(0)
    labels = rng.normal(size=(n_labels, dim)).astype("float32")
    labels /= np.linalg.norm(labels, axis=1, keepdims=True)
    directory = Path(tempfile.mkdtemp(prefix="zeroshot-bench-"))
    out: dict[str, float] = {}
    with StoreWriter.open(directory) as store:
        store.bind_model(ModelRecord("bench", "bench", dim))
        store.begin_run(["/bench"])
        started = time.perf_counter()
        for start in range(0, n, 50_000):
            count = min(50_000, n - start)
            picks = rng.integers(0, n_labels, size=(count, 3))
            weights = rng.uniform(0.0, 1.0, size=(count, 3)) * (rng.uniform(size=(count, 3)) < [1, 0.5, 0.25])
            x = (labels[picks] * weights[..., None]).sum(axis=1) + 0.08 * rng.normal(size=(count, dim))
            x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("float32")
            for i in range(count):
                k = start + i
                store.put(FileRecord(f"/bench/{k:08d}.jpg", 1, 1, k.to_bytes(16, "big"), 1, 1), x[i])
            store.commit()
        out["insert_s"] = time.perf_counter() - started
        classifier = Classifier([f"label {i}" for i in range(n_labels)], labels, 100.0)
        names = classifier.labels
        read = score = assign = write = 0.0
        tags = 0
        store.retag_unless("bench")
        t = time.perf_counter()
        for digests, vectors in store.untagged():
            t1 = time.perf_counter()
            read += t1 - t
            classifier.scores(vectors)
            t2 = time.perf_counter()
            score += t2 - t1
            found = rule.assign(classifier, vectors)  # scores again inside: subtracted below
            t3 = time.perf_counter()
            assign += t3 - t2
            store.put_tags([(digest, [(names[j], p) for j, p in picked]) for digest, picked in zip(digests, found)])
            tags += sum(len(picked) for picked in found)
            store.commit()
            t = time.perf_counter()
            write += t - t3
        out.update(read_s=read, score_s=score, rule_s=assign - score, write_s=write, tags_per_photo=tags / n)
        out["tagging_s"] = read + assign + write
        everything = np.concatenate([v for _, v in store.untagged(chunk=n)] or [np.zeros((0, dim), "float32")])
    vectors = np.asarray(x, dtype="float32")
    t = time.perf_counter()
    for _ in range(0, n, vectors.shape[0]):  # the baseline: the same product, vectors already in memory
        vectors @ labels.T
    out["bare_matmul_s"] = time.perf_counter() - t
    out["left_untagged"] = float(len(everything))
    out["catalog_mb"] = sum(f.stat().st_size for f in directory.iterdir()) / 1e6
    return out


def classify_process(photos: int) -> dict[str, object]:
    sys.path.insert(0, str(ROOT / "tests"))
    from tests import imagegen

    work = Path(tempfile.mkdtemp(prefix="zeroshot-classify-"))
    folder = work / "photos"
    folder.mkdir()
    for i in range(photos):
        (folder / f"{i:05d}.jpg").write_bytes(imagegen.jpeg_bytes(imagegen.photo(i, (320, 240))))
    env = {**os.environ, "CLIPSEARCH_CACHE": str(work / "cache"), "CLIPSEARCH_INDEX": str(work / "index")}
    cli = [sys.executable, str(ROOT / "cli.py")]
    t = time.perf_counter()
    subprocess.run([*cli, "index", str(folder), "--model", "demo", "--json"], env=env, check=True, capture_output=True)
    out: dict[str, object] = {"index_s": time.perf_counter() - t}
    probe = ("import atexit, runpy, sys\n"
             "atexit.register(lambda: sys.stderr.write('TORCH=%s' % ('torch' in sys.modules)))\n"
             f"sys.argv = ['cli.py', 'classify', {str(folder)!r}, '--top', '3', '--json']\n"
             f"runpy.run_path({str(ROOT / 'cli.py')!r}, run_name='__main__')\n")
    for run in ("labels not cached", "labels cached"):
        if run == "labels not cached":  # the index run embedded the vocabulary for its tags: start without it
            shutil.rmtree(work / "cache" / "labels", ignore_errors=True)
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
        rows = json.loads(done.stdout)
        out[run] = {"seconds": round(time.perf_counter() - t, 2), "photos": len(rows),
                    "from_stored_vectors": sum("id" in r for r in rows), "torch": "TORCH=True" in done.stderr}
    return out


def rule_quality(per_class: int = 4, seed: int = 99) -> dict[str, object]:
    """Precision and recall of the tag rule on held-out renderings (demo model), at its threshold and around it,
    for the 54 colour-shape labels (one right tag per photo) and for colour and shape words given apart (two
    right tags; words the demo model never saw alone), and how many tags a random-weight model would give."""
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT / "data" / "demo_model"))
    import shapes

    from clipsearch.encoders import load_encoder
    from clipsearch.zeroshot import tagging, templates
    from clipsearch.zeroshot.labels import Classifier, embed_labels

    out: dict[str, object] = {}
    for spec in ("demo", "clipsearch-demo:none"):
        encoder = load_encoder(spec, device="cpu", precision="fp32")
        rng = np.random.default_rng(seed)
        truth, pixels = [], []
        for colour, shape in shapes.CLASSES:
            for _ in range(per_class):
                pixels.append(encoder.image_transform(shapes.render(colour, shape, rng)[0]))
                truth.append((colour, shape))
        vectors = encoder.encode_images(torch.stack(pixels))
        for name, labels, right in (
            ("54 colour-shape labels", [f"a {c} {s}" for c, s in shapes.CLASSES], lambda c, s: {f"a {c} {s}"}),
            ("15 colour and shape words", [*shapes.COLOURS, *shapes.SHAPES], lambda c, s: {c, s}),
        ):
            matrix = embed_labels(labels, templates.PHOTO, encoder, encoder.fingerprint)
            classifier = Classifier(labels, matrix, encoder.logit_scale)
            probabilities = classifier.probabilities(classifier.scores(vectors))
            rows = {}
            rule = max(tagging.MIN_PROBABILITY, 2 / len(labels))  # the rule's own threshold, and others around it
            for threshold in sorted({0.02, 0.05, 0.1, 0.2, 0.3, 0.5, rule}):
                assigned = right_count = wanted = 0
                for (c, s), row in zip(truth, probabilities):
                    picked = np.flatnonzero(row >= threshold)
                    picked = picked[np.argsort(-row[picked])][: tagging.MAX_TAGS]
                    tags = {labels[j] for j in picked}
                    assigned += len(tags)
                    right_count += len(tags & right(c, s))
                    wanted += len(right(c, s))
                key = f"{threshold:.3g}" + (" (the rule)" if threshold == rule else "")
                rows[key] = (round(right_count / max(assigned, 1), 3), round(right_count / wanted, 3))
            out[f"{spec}: {name}"] = {"logit_scale": round(encoder.logit_scale, 2), "photos": len(truth),
                                      "precision, recall by threshold": rows,
                                      "max probability": round(float(probabilities.max()), 3)}
    return out


def vocabulary_cost(spec: str = "ViT-B-32:none", sample: int = 512) -> dict[str, float]:
    """Seconds to embed the built-in vocabulary through the photo templates (what the first tagged run of a new model
    pays, once), projected from ``sample`` texts: over each batch's own tokens (our encode_texts) against
    open_clip's encode_text over all 77 (the baseline)."""
    import torch

    from clipsearch.encoders import load_encoder
    from clipsearch.zeroshot import templates, vocabulary

    encoder = load_encoder(spec, device="cpu", precision="auto")
    texts = [templates.fill(t, label) for label in vocabulary.builtin() for t in templates.PHOTO]
    part = texts[:: max(1, len(texts) // sample)][:sample]
    t = time.perf_counter()
    encoder.encode_texts(part)
    short = time.perf_counter() - t
    model = encoder._model  # noqa: SLF001 - the baseline is open_clip's own path on the same model
    tokens = encoder._tokenizer(part)  # noqa: SLF001
    t = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(part), 256):
            model.encode_text(tokens[start : start + 256])
    full = time.perf_counter() - t
    scale = len(texts) / len(part)
    return {"texts": len(texts), "ours_s": round(short * scale, 1), "open_clip_77_tokens_s": round(full * scale, 1),
            "speed-up": round(full / short, 1), "precision": encoder.precision}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--labels", type=int, default=1000)
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--quality-only", action="store_true", help="Only the rule's precision and recall.")
    args = parser.parse_args()
    print(json.dumps({"tag rule": rule_quality()}, indent=1))
    if args.quality_only:
        return
    print(json.dumps({"embedding the built-in vocabulary, ViT-B-32 on this CPU": vocabulary_cost()}, indent=1))
    tagged = tagging(args.n, args.labels)
    print(f"tagging {args.n:,} stored vectors x {args.labels:,} labels: {tagged['tagging_s']:.1f} s "
          f"({args.n / tagged['tagging_s']:,.0f} vectors/s; {tagged['tags_per_photo']:.2f} tags per photo)")
    for part in ("read_s", "score_s", "rule_s", "write_s"):
        print(f"  {part[:-2]:6} {tagged[part]:7.1f} s  ({tagged[part] / tagged['tagging_s']:.0%})")
    print(f"  baseline: bare matrix product in memory {tagged['bare_matmul_s']:.1f} s; "
          f"tag stage / baseline = {tagged['tagging_s'] / tagged['bare_matmul_s']:.1f}x")
    print(f"  (insert of the vectors beforehand: {tagged['insert_s']:.0f} s; catalog {tagged['catalog_mb']:.0f} MB; "
          f"left untagged: {tagged['left_untagged']:.0f})")
    print(json.dumps({"classify": classify_process(args.photos)}, indent=1))


if __name__ == "__main__":
    main()
