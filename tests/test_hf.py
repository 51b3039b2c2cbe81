"""Hugging Face backends (CLIPModel, AlignModel) through the real CLI, the offline cache, model listing, precision."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from clipsearch.encoders import load_encoder, parse_spec
from clipsearch.errors import UserError
from clipsearch.store import StoreReader
from tests import hfmodels, imagegen
from tests.conftest import ROOT, Cli, cli_env, cosine, run_cli, search_json

pytest.importorskip("transformers")

BUILDERS = {"clip": hfmodels.tiny_clip, "align": hfmodels.tiny_align}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def hf_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return BUILDERS[request.param](tmp_path_factory.mktemp(f"hf_{request.param}") / "model")


def reference(model_dir: Path, paths: list[Path], texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """transformers' own processor + get_image_features / get_text_features, fp32."""
    from PIL import Image
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir)

    def features(out: object) -> torch.Tensor:
        return out if isinstance(out, torch.Tensor) else out.pooler_output  # type: ignore[attr-defined]

    with torch.inference_mode():
        pixels = processor.image_processor(images=[Image.open(p).convert("RGB") for p in paths], return_tensors="pt")
        images = features(model.get_image_features(pixel_values=pixels["pixel_values"]))
        tokens = processor.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        if model.config.model_type != "align":
            tokens.pop("token_type_ids", None)
        text = features(model.get_text_features(**tokens))
    return images.numpy(), text.numpy()  # cosine() does not need unit length


def test_index_and_search_with_a_saved_hf_model(cli: Cli, hf_model: Path, tmp_path: Path, index_dir: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    # smaller than twice the model input: no reduced decoding, so the pixels are exactly transformers' own
    paths = [folder / "a.png", folder / "b.jpg", folder / "c.png"]
    imagegen.photo(1, (60, 48)).save(paths[0])
    imagegen.photo(2, (50, 40)).save(paths[1], quality=95)
    imagegen.photo(3, (40, 60)).convert("RGBA").save(paths[2])
    spec = f"hf:{hf_model}"
    result = cli("index", folder, "--model", spec, "--precision", "fp32", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["added"] == 3
    assert cli("info", "--json").json()["model"] == spec

    ref_images, ref_texts = reference(hf_model, paths, ["a photo of a dog", "a red circle"])
    store = StoreReader.open(index_dir)
    for path, ref in zip(paths, ref_images):
        assert cosine(store.vectors.of_path(str(path)), ref) >= 0.999, path.name

    from search.engine import Searcher

    searcher = Searcher(index_dir, precision="fp32")
    for text, ref in zip(["a photo of a dog", "a red circle"], ref_texts):
        assert cosine(searcher.query_model.embed_text(text), ref) >= 0.999
    hits = search_json(cli, "--image", str(paths[1]), "-k", "1", "--precision", "fp32")
    assert hits[0]["path"] == str(paths[1]) and hits[0]["score"] >= 0.99


def test_hf_cache_offline(tmp_path: Path) -> None:
    """A model laid out in the Hugging Face cache as the hub lays it out loads with HF_HUB_OFFLINE=1."""
    home = tmp_path / "hf_home"
    snapshot = home / "hub" / "models--tiny-org--tiny-clip" / "snapshots" / ("0123456789abcdef" * 2 + "01234567")
    hfmodels.tiny_clip(tmp_path / "built")
    shutil.copytree(tmp_path / "built", snapshot, ignore=shutil.ignore_patterns("_tok"))
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text(snapshot.name)
    # a real process: huggingface_hub reads its cache location once, at import
    env = cli_env(tmp_path / "index", HF_HOME=str(home), HF_HUB_OFFLINE="1")
    env.pop("HF_HUB_CACHE", None)

    def clipsearch(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env=env)

    folder = tmp_path / "p"
    folder.mkdir()
    imagegen.photo(1, (40, 40)).save(folder / "x.png")
    result = clipsearch("index", str(folder), "--model", "hf:tiny-org/tiny-clip", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(clipsearch("info", "--json").stdout)
    assert info["model"] == "hf:tiny-org/tiny-clip"
    assert snapshot.name in json.dumps(info["fingerprint"])  # the resolved revision is part of the identity
    hits = json.loads(clipsearch("search", "a dog", "-k", "1", "--json").stdout)
    assert hits[0]["path"] == str(folder / "x.png")

    missing = clipsearch("index", str(folder), "--model", "hf:tiny-org/not-here", "--index", str(tmp_path / "other"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
    assert "hf:tiny-org/not-here are not on this machine" in missing.stderr


def test_hf_spec_forms_and_errors(tmp_path: Path) -> None:
    assert parse_spec("hf:facebook/metaclip-b32-400m").text == "hf:facebook/metaclip-b32-400m"
    rev = parse_spec("hf:openai/clip-vit-base-patch32@3d74acf")
    assert (rev.backend, rev.arch, rev.weights) == ("hf", "openai/clip-vit-base-patch32", "3d74acf")
    assert parse_spec(f"hf:{tmp_path}").arch == str(tmp_path)
    with pytest.raises(UserError, match="no saved model at"):
        load_encoder(f"hf:{tmp_path / 'nothing'}")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert", "hidden_size": 8}')
    with pytest.raises(UserError, match="is a 'bert' model"):
        load_encoder(f"hf:{tmp_path / 'bert'}")


def test_presets_resolve() -> None:
    assert parse_spec("fast").text == "ViT-B-32-quickgelu:metaclip_fullcc"
    assert parse_spec("best").text == "ViT-H-14-quickgelu:metaclip_fullcc"
    assert parse_spec("multilingual").text == "ViT-H-14-worldwide-quickgelu:metaclip2_worldwide"
    assert parse_spec("demo").text == "demo"


def test_models_command_lists_every_family(cli: Cli) -> None:
    result = cli("models", "--json")
    assert result.exit_code == 0, result.stderr
    rows = {r["spec"]: r for r in result.json()}  # type: ignore[union-attr]
    for spec in ("fast", "best", "multilingual", "demo", "ViT-B-32-quickgelu:metaclip_fullcc",
                 "ViT-H-14-quickgelu:metaclip_fullcc", "ViT-B-32:metaclip_400m", "ViT-H-14:metaclip_altogether",
                 "ViT-H-14-worldwide-quickgelu:metaclip2_worldwide", "hf:facebook/metaclip-h14-fullcc2.5b",
                 "hf:facebook/metaclip-b32-400m", "hf:openai/clip-vit-base-patch32", "hf:kakaobrain/align-base"):
        assert spec in rows, spec
    assert rows["demo"]["cached"] is True and rows["demo"]["dim"] == 128
    assert rows["fast"]["cached"] is False  # no weights can be downloaded here
    assert rows["best"]["dim"] == 1024 and rows["best"]["cost"] > 20 * rows["fast"]["cost"]
    assert rows["hf:kakaobrain/align-base"]["resolution"] == 289
    import open_clip

    assert len([r for r in rows.values() if r["backend"] == "open_clip"]) >= len(open_clip.list_pretrained())
    # every tower's cost is known (counted by bench/tower_flops.py), not only the ViTs' (issue 19 #16: 96 were "?")
    assert [r["spec"] for r in rows.values() if not r["cost"]] == []
    assert rows["RN50:openai"]["cost"] == 1.4 and rows["convnext_base:laion400m_s13b_b51k"]["cost"] == 3.5
    assert cli("models", "--cached", "--json").json() == [r for r in result.json() if r["cached"]]  # type: ignore


def test_precision_modes_agree_with_fp32() -> None:
    """bf16 (auto on this CPU) against fp32 on the trained demo model: embeddings and rankings."""
    from PIL import Image

    fp32 = load_encoder("demo", device="cpu", precision="fp32")
    bf16 = load_encoder("demo", device="cpu", precision="bf16")
    sample = sorted((ROOT / "data" / "sample").iterdir())
    batch = torch.stack([fp32.image_transform(Image.open(p).convert("RGB")) for p in sample])
    a, b = fp32.encode_images(batch), bf16.encode_images(batch)
    assert min(cosine(x, y) for x, y in zip(a, b)) >= 0.995
    queries = [p.stem.replace("-", " ") for p in sample]
    ta, tb = fp32.encode_texts(queries), bf16.encode_texts(queries)
    assert min(cosine(x, y) for x, y in zip(ta, tb)) >= 0.995
    top_a, top_b = (ta @ a.T).argmax(axis=1), (tb @ b.T).argmax(axis=1)
    assert (top_a == top_b).mean() >= 0.95  # rankings barely move
