"""The exported image tower: its agreement with the model, int8, and a small index run that never imports torch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipsearch.encoders import onnx_image
from tests.conftest import ROOT, Cli, run_cli_watching_torch

SAMPLE = ROOT / "data" / "sample"


@pytest.fixture
def export_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("CLIPSEARCH_CACHE", str(cache))
    monkeypatch.setenv("CLIPSEARCH_IMAGE_EXPORT", "1")
    return cache


def _sample_batch(split: object) -> tuple[list[Path], np.ndarray]:
    """The sample photos as the decode workers hand them over: uint8 (N, H, W, 3) after the model's resize and crop."""
    paths = sorted(p for p in SAMPLE.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    return paths, np.stack([split.to_uint8(Image.open(p).convert("RGB")) for p in paths])  # type: ignore[attr-defined]


def test_export_agrees_with_the_model_in_fp32_and_int8(export_on: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from clipsearch.encoders import load_encoder

    model = load_encoder("demo", "cpu", "fp32")
    directory = model.export_image_tower()
    assert directory is not None and directory.parent.parent == export_on
    assert "exporting the image tower of demo (once" in capsys.readouterr().err
    assert model.export_image_tower() == directory and capsys.readouterr().err == ""  # once per model

    fast = onnx_image.load(model.fingerprint)
    assert fast is not None and fast.fingerprint == model.fingerprint and fast.dim == model.dim
    paths, pixels = _sample_batch(fast.staged_transform)
    assert len(paths) >= 8
    ours = fast.encode_images(fast.staged_transform.finish(pixels))  # type: ignore[union-attr]
    assert model.staged_transform is not None
    theirs = model.encode_images(model.staged_transform.finish(torch.from_numpy(pixels)))
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert float(np.min(np.sum(ours * theirs, axis=1))) >= 0.999  # per photo

    # An index run with its recorded model: the export for its first images, then the model
    chosen = load_encoder("demo", "cpu", "auto", fingerprint=model.fingerprint)
    assert isinstance(chosen, onnx_image.Handoff) and chosen.array_kind == "numpy"
    assert chosen.fingerprint == model.fingerprint
    assert not isinstance(load_encoder("demo", "cpu", "bf16", fingerprint=model.fingerprint), onnx_image.Handoff)
    handoff = onnx_image.Handoff(fast, lambda: model, limit=4)
    inputs = fast.staged_transform.finish(pixels)  # type: ignore[union-attr]
    first, rest = handoff.encode_images(inputs[:4]), handoff.encode_images(inputs[4:])
    assert handoff.precision == "fp32" and np.array_equal(rest, model.encode_images(torch.from_numpy(inputs[4:])))
    assert float(np.min(np.sum(np.concatenate([first, rest]) * theirs, axis=1))) >= 0.999

    int8 = load_encoder("demo", "cpu", "int8", fingerprint=model.fingerprint)
    assert int8.precision == "int8" and (directory / onnx_image.FILES["int8"]).is_file()
    quantized = int8.encode_images(int8.staged_transform.finish(pixels))  # type: ignore[union-attr]
    assert float(np.min(np.sum(quantized * theirs, axis=1))) >= 0.99  # docs/benchmarks.md has the measured figures
    assert onnx_image.load(model.fingerprint + "x") is None  # another model: nothing


def small_run(index_dir: Path, *args: str, as_json: bool = True) -> tuple[dict, bool, str]:
    """`python cli.py index [--json] ...` in a fresh process: its report, whether torch got imported, stderr."""
    out, used_torch, err = run_cli_watching_torch(index_dir, "index", *(["--json"] if as_json else []), *args)
    return json.loads(out) if as_json else {"stdout": out}, used_torch, err


def _new_photo(source: Path, target: Path, mark: int = 1) -> None:
    """A new content that looks like ``source`` (one pixel changed to ``mark``): the run embeds it."""
    image = Image.open(source).convert("RGB")
    image.putpixel((0, 0), (mark, 2, 3))
    image.save(target)


def test_a_small_run_embeds_on_the_export_without_torch(cli: Cli, index_dir: Path, tmp_path: Path,
                                                         export_on: Path) -> None:
    photos = tmp_path / "photos"
    shutil.copytree(SAMPLE, photos)
    report, used_torch, err = small_run(index_dir, str(photos), "--model", "demo", as_json=False)  # exports
    assert used_torch and "exporting the image tower of demo (once" in err
    assert list(export_on.glob("image/*/image.onnx"))

    _new_photo(photos / "red-star.png", photos / "red-star-2.png")
    _new_photo(photos / "blue-circle.jpg", photos / "blue-circle-2.png")
    report, used_torch, err = small_run(index_dir)
    assert not used_torch and "exporting" not in err
    assert report["added"] == 2, report
    hits = cli("search", "--image", photos / "red-star.png", "--json", "-k", "2", "--precision", "fp32").json()
    assert {h["path"] for h in hits} == {str(photos / "red-star.png"), str(photos / "red-star-2.png")}  # type: ignore[union-attr]
    assert min(h["score"] for h in hits) > 0.99  # type: ignore[union-attr]

    for config in export_on.glob("image/*/image.onnx"):
        config.write_bytes(b"damaged")
    _new_photo(photos / "blue-circle.jpg", photos / "blue-circle-3.png", mark=2)
    report, used_torch, err = small_run(index_dir, as_json=False)  # the model embeds, and exports afresh
    assert used_torch and "1 added" in report["stdout"] + err and "exporting the image tower" in err, (report, err)
    assert onnx_image.exported(json.loads(next(export_on.glob("image/*/config.json")).read_text())["fingerprint"])


def test_index_in_int8_through_the_cli(cli: Cli, tmp_path: Path, export_on: Path) -> None:
    photos = tmp_path / "photos"
    shutil.copytree(SAMPLE, photos)
    done = cli("index", photos, "--model", "demo", "--precision", "int8")
    assert done.exit_code == 0, done.stderr
    assert list(export_on.glob("image/*/image-int8.onnx"))
    hits = cli("search", "a red star", "--json", "-k", "1").json()
    assert hits[0]["path"] == str(photos / "red-star.png")  # type: ignore[index]
    [demo] = [row for row in cli("models", "--json").json() if row["spec"] == "demo"]  # type: ignore[union-attr]
    assert demo["int8"]["photos"] >= 32 and 0.99 <= demo["int8"]["min_cosine"] <= demo["int8"]["mean_cosine"] <= 1
    listed = cli("models", "--cached").stdout
    assert f"{demo['int8']['mean_cosine']:.4f}" in listed and "int8: --precision int8's mean cosine" in listed
    wrong = cli("index", photos, "--precision", "int8", "--device", "cuda")
    assert wrong.exit_code == 2 and "int8 runs on the CPU" in wrong.stderr


def test_an_export_of_a_checkpoint_that_changed_is_not_used(model_spec: str, export_on: Path) -> None:
    import os

    from clipsearch.encoders import load_encoder

    model = load_encoder(model_spec, "cpu", "fp32")
    assert model.export_image_tower(quiet=True) is not None
    assert isinstance(load_encoder(model_spec, "cpu", "fp32", fingerprint=model.fingerprint), onnx_image.Handoff)
    checkpoint = model_spec.split(":", 1)[1]
    stat = os.stat(checkpoint)
    os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the file was replaced
    try:
        assert onnx_image.exported(model.fingerprint) is None
        assert not isinstance(load_encoder(model_spec, "cpu", "fp32", fingerprint=model.fingerprint),
                              onnx_image.Handoff)
    finally:
        os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns))
