"""The torch-free text path: CLIP's BPE without open_clip, the exported text tower, and a cold CLI search."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from clipsearch.encoders import onnx_text
from tests.conftest import ROOT, Cli, run_cli_watching_torch

SAMPLE = ROOT / "data" / "sample"
QUERIES = ["a red star", "Blue CIRCLE!!", "", "x", "the 3 green squares near Müller's café", "½ of a ² yellow cross",
           " ".join(["a pink diamond on a gray background"] * 15)]  # the last one is past 77 tokens


@pytest.fixture
def export_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("CLIPSEARCH_CACHE", str(cache))
    monkeypatch.setenv("CLIPSEARCH_TEXT_EXPORT", "1")
    return cache


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding the demo model's exported text tower, made once for the tests that need one there and do not
    test the export itself (an export costs seconds; tests/test_fast_text.py's others make theirs)."""
    import os

    from clipsearch.encoders import load_encoder

    cache, saved = tmp_path_factory.mktemp("demo-export"), os.environ["CLIPSEARCH_CACHE"]
    os.environ["CLIPSEARCH_CACHE"] = str(cache)
    try:
        assert load_encoder("demo", "cpu", "fp32").export_text_tower(quiet=True) is not None
    finally:
        os.environ["CLIPSEARCH_CACHE"] = saved
    return cache


def test_bpe_matches_open_clip_tokenizer(tmp_path: Path) -> None:
    import open_clip

    reference = open_clip.get_tokenizer("ViT-B-32")
    onnx_text.ClipBpe.write(tmp_path / "bpe.sqlite", onnx_text._clip_bpe_tables(reference))  # type: ignore[arg-type]
    bpe = onnx_text.ClipBpe(tmp_path / "bpe.sqlite")
    rng = random.Random(0)
    alphabet = "abcXYZ _-!?.,'’\"0123456789éü²½ⅫΩж中😀\u0301\t&;"
    texts = [*onnx_text.PROBES, *QUERIES, "snake_case__name!_?", "日本語のテキスト", "ﬁne ＡＢＣ", "٣ arabic digit",
             "&amp;lt; tag", "it's we're they'll I'd", "emoji 🐶🏖️"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(1500)]
    expected = reference(texts).numpy()
    for text, row in zip(texts, expected):
        row = [int(i) for i in row]
        assert bpe.encode(text) == row[: row.index(reference.eot_token_id) + 1], text
    assert onnx_text._clip_bpe_tables(object()) is None  # any other tokenizer: no export


def test_export_reproduces_the_model(model_spec: str, export_on: Path) -> None:
    from clipsearch.encoders import load_encoder

    encoder = load_encoder(model_spec, "cpu", "fp32")
    directory = encoder.export_text_tower(quiet=True)
    assert directory is not None and directory.parent.parent == export_on
    assert {p.name for p in directory.iterdir()} >= {"text.onnx", "config.json", "bpe.sqlite", "token_embedding.npy"}
    fast = onnx_text.load(encoder.fingerprint)
    assert fast is not None
    ours, theirs = fast.encode_texts(QUERIES), encoder.encode_texts(QUERIES)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert float(np.min(np.sum(ours * theirs, axis=1))) >= 0.9999
    assert encoder.export_text_tower(quiet=True) == directory  # once per model
    assert onnx_text.load(encoder.fingerprint + "x") is None  # another model: nothing


def cold_search(query: str, index_dir: Path, *extra: str) -> tuple[list[dict], bool, str]:
    """`python cli.py search` in a fresh process: the hits, whether torch got imported, stderr."""
    out, used_torch, err = run_cli_watching_torch(index_dir, "search", query, "--json", "-k", "54", *extra, timeout=300)
    return json.loads(out), used_torch, err


def test_cold_cli_search_without_torch(cli: Cli, index_dir: Path, tmp_path: Path, export_on: Path) -> None:
    photos = tmp_path / "photos"
    shutil.copytree(SAMPLE, photos)
    assert cli("index", photos, "--model", "demo").exit_code == 0  # the model is loaded: its text tower exported
    assert list(export_on.glob("text/*/config.json"))

    fast, used_torch, _ = cold_search("a red star", index_dir)
    assert not used_torch
    assert fast[0]["path"] == str(photos / "red-star.png")
    slow, used_torch, _ = cold_search("a red star", index_dir, "--precision", "fp32")  # the model itself
    assert used_torch
    assert [h["path"] for h in fast[:5]] == [h["path"] for h in slow[:5]]
    slow_scores = {h["path"]: h["score"] for h in slow}
    assert len(slow_scores) == len(fast) == 54
    assert max(abs(h["score"] - slow_scores[h["path"]]) for h in fast) < 2e-3


def test_missing_or_damaged_export_falls_back_to_the_model(cli: Cli, index_dir: Path, tmp_path: Path,
                                                          export_on: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    photos = tmp_path / "photos"
    shutil.copytree(SAMPLE, photos)
    monkeypatch.setenv("CLIPSEARCH_TEXT_EXPORT", "0")
    assert cli("index", photos, "--model", "demo").exit_code == 0
    assert not export_on.exists() or not list(export_on.glob("text/*"))

    monkeypatch.setenv("CLIPSEARCH_TEXT_EXPORT", "1")
    hits, used_torch, err = cold_search("a blue circle", index_dir)  # no export yet: torch, then export
    assert used_torch and hits[0]["path"] == str(photos / "blue-circle.jpg")
    [config] = export_on.glob("text/*/config.json")
    hits, used_torch, _ = cold_search("a blue circle", index_dir)
    assert not used_torch and hits[0]["path"] == str(photos / "blue-circle.jpg")

    (config.parent / "text.onnx").write_bytes(b"damaged")
    hits, used_torch, _ = cold_search("a blue circle", index_dir)  # the model answers and exports afresh
    assert used_torch and hits[0]["path"] == str(photos / "blue-circle.jpg")
    hits, used_torch, _ = cold_search("a blue circle", index_dir)
    assert not used_torch and hits[0]["path"] == str(photos / "blue-circle.jpg")


def test_server_answers_words_from_the_export_and_images_from_the_model(cli: Cli, index_dir: Path, tmp_path: Path,
                                                                        export_on: Path, demo_export: Path) -> None:
    from tests.serving import Server

    shutil.copytree(demo_export, export_on)  # the export is there already (test_cold_cli_search: index makes it)
    photos = tmp_path / "photos"
    shutil.copytree(SAMPLE, photos)
    assert cli("index", photos, "--model", "demo").exit_code == 0
    assert len(list(export_on.glob("text/*/config.json"))) == 1  # that one: the index run made no other
    server = Server(index_dir).start()
    try:
        hits = server.get("/search?k=1&q=a+red+star").json()
        assert hits[0]["path"] == str(photos / "red-star.png")  # type: ignore[index]
        hits = server.get("/search?k=1", method="POST", body=(photos / "blue-circle.jpg").read_bytes()).json()
        assert hits[0]["path"] == str(photos / "blue-circle.jpg")  # type: ignore[index]  # the model, loaded now
    finally:
        server.stop()
