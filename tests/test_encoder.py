"""What the index stores is what open_clip itself computes; model specs and their errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from clipsearch.encoders import load_encoder, parse_spec
from clipsearch.errors import UserError
from clipsearch.store import StoreReader
from tests import imagegen
from tests.conftest import ARCH, Cli, cosine


def open_clip_reference(model_spec: str, paths: list[Path]) -> np.ndarray:
    """open_clip's own preprocess + encode_image in fp32 on the full-resolution file."""
    import open_clip
    from PIL import Image

    model, _, preprocess = open_clip.create_model_and_transforms(ARCH, pretrained=model_spec.split(":", 1)[1])
    model.eval()
    with torch.inference_mode():
        batch = torch.stack([preprocess(Image.open(p)) for p in paths])
        return torch.nn.functional.normalize(model.encode_image(batch), dim=-1).numpy()


@pytest.mark.parametrize("precision", ["auto", "fp32"])
def test_stored_embeddings_match_open_clip(cli: Cli, tmp_path: Path, model_spec: str, index_dir: Path,
                                           precision: str) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    files = [folder / "small.png", folder / "large.png", folder / "small.jpg", folder / "camera.jpg"]
    imagegen.photo(1, (300, 200)).save(files[0])
    imagegen.photo(2, (1600, 1200)).save(files[1])
    imagegen.photo(3, (300, 200)).save(files[2], quality=95)
    files[3].write_bytes(imagegen.jpeg_bytes(imagegen.photo(4, (3000, 2000))))  # decoded at 1/8 scale (draft)
    result = cli("index", folder, "--model", model_spec, "--precision", precision, "--json")
    assert result.exit_code == 0, result.stderr
    reference = open_clip_reference(model_spec, files)
    store = StoreReader.open(index_dir)
    for path, ref in zip(files, reference):
        stored = store.vectors.of_path(str(path))
        assert stored is not None and stored.shape == (128,)
        assert abs(np.linalg.norm(stored) - 1) < 1e-4
        assert cosine(stored, ref) >= 0.99, (path.name, cosine(stored, ref))


def test_text_embeddings_match_open_clip(model_spec: str) -> None:
    import open_clip

    encoder = load_encoder(model_spec, device="cpu", precision="fp32")
    model = open_clip.create_model(ARCH, pretrained=model_spec.split(":", 1)[1]).eval()
    texts = ["a dog on a beach", "a red circle"]
    with torch.inference_mode():
        ref = torch.nn.functional.normalize(model.encode_text(open_clip.get_tokenizer(ARCH)(texts)), dim=-1).numpy()
    ours = encoder.encode_texts(texts)
    assert ours.dtype == np.float32 and ours.shape == (2, 128)
    assert min(cosine(a, b) for a, b in zip(ours, ref)) >= 0.9999


def test_fingerprint_tells_weights_apart(model_spec: str, tmp_path: Path) -> None:
    import open_clip

    a = load_encoder(model_spec, device="cpu", precision="fp32")
    torch.manual_seed(99)
    other = tmp_path / "other.pt"
    torch.save(open_clip.create_model(ARCH).state_dict(), other)
    b = load_encoder(f"{ARCH}:{other}", device="cpu", precision="fp32")
    assert a.fingerprint != b.fingerprint
    assert a.fingerprint == load_encoder(model_spec, device="cpu", precision="bf16").fingerprint


def test_spec_forms() -> None:
    assert parse_spec("fast").text == "ViT-B-32-quickgelu:metaclip_fullcc"
    assert parse_spec("ViT-L-14:openai").weights == "openai"
    assert parse_spec("ViT-B-32:./w.pt").weights_path == str(Path("w.pt").absolute())
    for bad in ("ViT-B-32", ":tag", "ViT-B-32:"):
        with pytest.raises(UserError, match="is not ARCH:TAG"):
            parse_spec(bad)


@pytest.mark.parametrize("spec,message", [
    ("NoSuchNet:none", "unknown model architecture 'NoSuchNet'"),
    ("ViT-B-32:no_such_tag", "'no_such_tag' is not a pretrained tag of ViT-B-32 (known: "),
    ("ViT-B-32:/nowhere/weights.pt", "model checkpoint not found: /nowhere/weights.pt"),
    ("ViT-B-32-quickgelu:metaclip_fullcc", "are not on this machine"),
])
def test_model_errors_are_one_line(spec: str, message: str, monkeypatch: pytest.MonkeyPatch,
                                   tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache: no weights here
    with pytest.raises(UserError) as info:
        load_encoder(spec, device="cpu")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_precision_and_device_errors(model_spec: str) -> None:
    with pytest.raises(UserError, match="unknown --precision"):
        load_encoder(model_spec, precision="int3")
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        load_encoder(model_spec, device="cpu", precision="fp16")
    with pytest.raises(UserError, match="unknown --device"):
        load_encoder(model_spec, device="tpu")


def test_a_checkpoint_loads_without_random_fills_and_every_weight_is_the_checkpoints(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import open_clip

    from clipsearch.encoders.openclip import register_model_configs

    register_model_configs()  # the demo architecture, as a load does
    torch.manual_seed(5)
    reference = open_clip.create_model(ARCH).eval().state_dict()
    path = tmp_path / "weights.pt"
    torch.save(reference, path)
    fills: list[str] = []
    real_normal, real_uniform = torch.nn.init.normal_, torch.nn.init.uniform_
    monkeypatch.setattr(torch.nn.init, "normal_", lambda t, *a, **k: fills.append("normal_") or real_normal(t, *a, **k))
    monkeypatch.setattr(torch.nn.init, "uniform_", lambda t, *a, **k: fills.append("uniform_") or real_uniform(t, *a, **k))
    encoder = load_encoder(f"{ARCH}:{path}", device="cpu", precision="fp32")
    assert fills == []  # open_clip's random fills were skipped: the checkpoint sets every weight
    loaded = encoder._model.state_dict()  # type: ignore[attr-defined]
    assert loaded.keys() == reference.keys()
    assert all(torch.equal(loaded[name], reference[name]) for name in reference)
    load_encoder(f"{ARCH}:none", device="cpu", precision="fp32")
    assert fills  # random weights are still drawn (seeded), and torch.nn.init is itself again after a load
