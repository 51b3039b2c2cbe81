"""The shipped demo model finds meaning offline: held-out renderings indexed and searched through the real CLI."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from clipsearch.encoders import DEMO_WEIGHTS
from tests.conftest import ROOT, Cli, search_json

sys.path.insert(0, str(ROOT / "data" / "demo_model"))
import shapes  # noqa: E402

HELD_OUT_SEED = 4242  # neither the training seed (2026), the eval seed (7) nor the sample's (31337)
PER_CLASS = 3


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("held_out")
    for colour, shape, k, image in shapes.held_out(HELD_OUT_SEED, PER_CLASS):
        image.save(folder / f"{colour}-{shape}-{k}.{'png' if k == 2 else 'jpg'}")
    return folder


def label(path: str) -> tuple[str, str]:
    colour, shape, _ = Path(path).stem.split("-")
    return colour, shape


def test_weights_are_shipped_and_small() -> None:
    assert DEMO_WEIGHTS.is_file()
    assert DEMO_WEIGHTS.stat().st_size <= 20 * 1024 * 1024


def test_text_queries_find_the_right_shapes(cli: Cli, held_out: Path, index_dir: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    result = cli("index", held_out, "--model", "demo", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["added"] == len(shapes.CLASSES) * PER_CLASS
    assert cli("info", "--json").json()["model"] == "demo"

    from search.engine import Searcher

    searcher = Searcher(index_dir)
    precisions = {}
    for colour, shape in shapes.CLASSES:
        hits = searcher.search(searcher.query_model.embed_text(f"a {colour} {shape}"), k=PER_CLASS)
        precisions[(colour, shape)] = sum(label(h.path) == (colour, shape) for h in hits) / PER_CLASS
    mean = float(np.mean(list(precisions.values())))

    # zero-shot classification of every held-out image over the 54 class prompts
    texts = searcher.query_model.encoder.encode_texts([f"a {c} {s}" for c, s in shapes.CLASSES])
    paths = sorted(held_out.iterdir())
    vectors = np.stack([searcher.store.vectors.of_path(str(p)) for p in paths])
    predicted = (vectors @ texts.T).argmax(axis=1)
    accuracy = float(np.mean([shapes.CLASSES[i] == label(str(p)) for i, p in zip(predicted, paths)]))
    worst = sorted(precisions.items(), key=lambda kv: kv[1])[:5]
    with capsys.disabled():
        print(f"\ndemo model on held-out seed {HELD_OUT_SEED}: precision@3 {mean:.3f}, "
              f"zero-shot accuracy over 54 classes {accuracy:.3f}; weakest: {worst}")
    assert mean >= 0.9
    assert accuracy >= 0.8

    # the same through the CLI, as a user types it, with synonyms
    for query, want in (("a red circle", ("red", "circle")), ("a photo of a blue plus sign", ("blue", "cross")),
                        ("yellow rhombus", ("yellow", "diamond"))):
        hits = search_json(cli, query, "-k", "3")
        assert Counter(label(h["path"]) for h in hits)[want] >= 2, (query, hits)


def test_image_queries_return_the_same_colour_and_shape(cli: Cli, held_out: Path, index_dir: Path) -> None:
    assert cli("index", held_out, "--model", "demo").exit_code == 0
    from search.engine import Searcher

    searcher = Searcher(index_dir)
    same = []
    for path in sorted(held_out.iterdir()):
        hits = searcher.search(searcher.query_model.embed_image(str(path)), k=PER_CLASS)
        assert hits[0].path == str(path)
        same += [label(h.path) == label(str(path)) for h in hits[1:]]
    assert float(np.mean(same)) >= 0.85


def test_training_script_runs_a_few_steps(tmp_path: Path) -> None:
    """The real script, a few steps: it trains, saves fp16 safetensors, and the result loads as a model."""
    out = tmp_path / "tiny.safetensors"
    proc = subprocess.run([sys.executable, str(ROOT / "data" / "demo_model" / "train.py"), "--steps", "3",
                           "--eval-every", "0", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "step     2" in proc.stdout and '"precision_at_3"' in proc.stdout
    from clipsearch.encoders import load_encoder

    encoder = load_encoder(f"clipsearch-demo:{out}", device="cpu", precision="fp32")
    assert encoder.dim == 128
    assert encoder.encode_texts(["a red circle"]).shape == (1, 128)
