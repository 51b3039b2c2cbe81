"""Zero-shot classification (issue 20): the same probabilities as open_clip's own zero-shot classifier, meaning with
the demo model through the real CLI, and the HTTP API."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, Cli
from tests.serving import Server

sys.path.insert(0, str(ROOT / "data" / "demo_model"))
import shapes  # noqa: E402

HELD_OUT_SEED = 5150  # neither training (2026), eval (7), the sample (31337) nor test_demo_model's (4242)
LABELS = [f"{colour} {shape}" for colour, shape in shapes.CLASSES]


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("held_out")
    for colour, shape, k, image in shapes.held_out(HELD_OUT_SEED, 2):
        image.save(folder / f"{colour}-{shape}-{k}.{'png' if k else 'jpg'}")
    return folder


def _reference(model_spec: str, files: list[Path], classnames: list[str], templates: tuple[str, ...]) -> np.ndarray:
    """open_clip's own zero-shot classifier on the model's own preprocessing: softmax(logit_scale * image @ W)."""
    import open_clip
    import torch
    from PIL import Image

    from clipsearch.encoders.openclip import register_model_configs

    register_model_configs()
    arch, path = model_spec.split(":", 1)
    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=path)
    model.eval()
    tokenizer = open_clip.get_tokenizer(arch)
    with torch.no_grad():
        weights = open_clip.build_zero_shot_classifier(model, tokenizer, classnames, templates)
        pixels = torch.stack([preprocess(Image.open(f).convert("RGB")) for f in files])
        features = torch.nn.functional.normalize(model.encode_image(pixels), dim=-1)
        return (model.logit_scale.exp() * features @ weights).softmax(dim=-1).numpy()


def _probabilities(rows: list[dict], classnames: list[str]) -> dict[str, np.ndarray]:
    return {Path(r["path"]).name: np.array([{s["label"]: s["probability"] for s in r["labels"]}[c] for c in classnames])
            for r in rows}


def test_probabilities_equal_open_clips_zero_shot_classifier(cli: Cli, tmp_path: Path, model_spec: str) -> None:
    """A random-weight open_clip model, PNG files (decoded the same by both), files and indexed ids alike."""
    from clipsearch.zeroshot import templates

    folder = tmp_path / "p"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i, (colour, shape) in enumerate(shapes.CLASSES[:6]):
        shapes.render(colour, shape, rng, jpeg=False)[0].save(folder / f"{i}.png")
    files = sorted(folder.iterdir())
    classnames = ["playing music", "playing sports", "a red star", "receipts"]
    for name in ("photo", "imagenet"):
        want = dict(zip((f.name for f in files), _reference(model_spec, files, classnames, templates.by_name(name))))
        asked = ("classify", folder, "--labels", ", ".join(classnames), "--templates", name, "--top", "4", "--json",
                 "--precision", "fp32", "--device", "cpu")
        as_files = cli(*asked, "--model", model_spec)  # no index here: decoded and embedded now
        assert as_files.exit_code == 0, as_files.stderr
        got = _probabilities(as_files.json(), classnames)  # type: ignore[arg-type]
        assert got.keys() == want.keys()
        for file in want:
            np.testing.assert_allclose(got[file], want[file], atol=1e-4)
        if name == "photo":
            indexed = cli("index", folder, "--model", model_spec, "--precision", "fp32", "--device", "cpu", "--json")
            assert indexed.exit_code == 0, indexed.stderr
        stored = cli(*asked)  # the index's model and its stored vectors
        rows = stored.json()
        assert all("id" in r for r in rows)  # type: ignore[union-attr]
        for file, probabilities in _probabilities(rows, classnames).items():  # type: ignore[arg-type]
            np.testing.assert_allclose(probabilities, want[file], atol=1e-4)


def test_the_demo_model_names_what_it_sees(cli: Cli, held_out: Path, tmp_path: Path) -> None:
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("# the demo model's world\n" + "\n".join(LABELS) + "\n\n")
    result = cli("classify", held_out, "--labels-file", labels_file, "--top", "1", "--json", "--model", "demo")
    assert result.exit_code == 0, result.stderr
    rows = result.json()
    assert len(rows) == 2 * len(LABELS)  # type: ignore[arg-type]
    right = [r["labels"][0]["label"] == " ".join(Path(r["path"]).stem.split("-")[:2]) for r in rows]  # type: ignore
    assert sum(right) / len(right) >= 0.95, sum(right)

    seed_form = cli("classify", next(held_out.glob("red-star-*")), "--labels", "playing music, playing sports",
                    "--json", "--model", "demo").json()
    labels = seed_form[0]["labels"]  # type: ignore[index]
    assert [s["label"] for s in labels] in (["playing music", "playing sports"], ["playing sports", "playing music"])
    assert sum(s["probability"] for s in labels) == pytest.approx(1, abs=1e-5)
    assert labels[0]["probability"] >= labels[1]["probability"]


def test_without_labels_the_built_in_vocabulary_answers(cli: Cli, held_out: Path) -> None:
    from clipsearch.zeroshot import vocabulary

    assert 300 <= len(vocabulary.builtin()) <= 5000
    photo = next(held_out.glob("blue-circle-*"))
    result = cli("classify", photo, "--top", "3", "--model", "demo", "--json")
    assert result.exit_code == 0, result.stderr
    ranked = result.json()[0]["labels"]  # type: ignore[index]
    assert len(ranked) == 3 and all(s["label"] in vocabulary.builtin() for s in ranked)
    assert ranked[0]["probability"] >= ranked[1]["probability"] >= ranked[2]["probability"]
    text = cli("classify", photo, "--labels", "blue circle, red star", "--model", "demo")
    assert text.exit_code == 0 and text.stdout.splitlines()[1].split()[-2:] == ["blue", "circle"]


def test_classify_mistakes_are_one_line(cli: Cli, held_out: Path, tmp_path: Path) -> None:
    photo = next(held_out.glob("*.png"))
    for args, said in (
        ((photo, "--labels", " , ,"), "--labels holds no labels"),
        ((photo, "--labels-file", tmp_path / "nope.txt"), "label file not found"),
        ((photo, "--labels", "a", "--labels-file", tmp_path / "x"), "not both"),
        ((photo, "--templates", "fancy", "--labels", "a, b"), "unknown templates"),
        ((tmp_path / "missing.jpg", "--labels", "a, b"), "no such file or folder"),
        ((tmp_path, "--labels", "a, b"), "no image files"),
    ):
        result = cli("classify", *args, "--model", "demo")
        assert result.exit_code == 2 and said in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    mixed = cli("classify", broken, photo, "--labels", "red star, blue circle", "--model", "demo", "--json")
    assert mixed.exit_code == 0
    rows = mixed.json()
    assert "error" in rows[0] and rows[0]["labels"] == [] and len(rows[1]["labels"]) == 2  # type: ignore[index]


def test_http_classify_tags_and_tag_filter(cli: Cli, index_dir: Path, held_out: Path) -> None:
    assert cli("index", held_out, "--model", "demo", "--json").exit_code == 0
    indexed = cli("classify", next(held_out.glob("green-square-*")), "--labels", "green square, red star",
                  "--json").json()
    photo_id = indexed[0]["id"]  # type: ignore[index]
    tag_rows = cli("tags", "--json").json()
    assert tag_rows and all(r["photos"] >= 1 for r in tag_rows)  # type: ignore[union-attr]
    server = Server(index_dir).start()
    try:
        got = server.get(f"/classify?id={photo_id}&labels=green%20square,red%20star").json()
        assert got["id"] == photo_id and got["labels"][0]["label"] == "green square"  # type: ignore[index]
        assert got["labels"] == indexed[0]["labels"]  # type: ignore[index]
        image = next(held_out.glob("red-star-*")).read_bytes()
        posted = server.get("/classify?labels=green%20square,red%20star&top=1", method="POST", body=image).json()
        assert [s["label"] for s in posted["labels"]] == ["red star"]  # type: ignore[index]
        everyday = server.get(f"/classify?id={photo_id}&top=4").json()
        assert len(everyday["labels"]) == 4  # type: ignore[index]
        assert server.get("/tags").json() == tag_rows
        tag = tag_rows[0]["tag"]  # type: ignore[index]
        hits = server.get(f"/search?q=a%20red%20star&k=200&tag={tag.replace(' ', '%20')}").json()
        assert len(hits) == tag_rows[0]["photos"] and all(tag in h["tags"] for h in hits)  # type: ignore
        for path, status in (("/classify?id=99999", 404), ("/classify?id=1&templates=x", 400),
                             ("/classify?labels=a", 400), ("/classify?id=abc", 400)):  # as /search?like=abc
            answer = server.get(path)
            assert answer.status == status and "error" in answer.json(), (path, answer.body)  # type: ignore[operator]
    finally:
        server.stop()
