"""The index run's stages on their own: decode + embed away from any index, the plan's one rule for stored content,
and the query layer the CLI and the server share."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from clipsearch.errors import UserError
from tests import imagegen
from tests.conftest import ROOT, Cli, index_folder


def test_decode_and_embed_run_on_a_list_of_files_with_no_index(tmp_path: Path, model_spec: str) -> None:
    """What a Ray worker will do: files in, one outcome per file out, the vectors a run stores, nothing written."""
    from clipsearch.encoders import load_encoder
    from indexer.items import Embedded, Failed, Reused, Task
    from indexer.options import Options
    from indexer.pipeline import DecodeEmbed

    folder = tmp_path / "p"
    folder.mkdir()
    for i in range(5):
        (folder / f"{i}.jpg").write_bytes(imagegen.jpeg_bytes(imagegen.photo(40 + i, (320, 240))))
    shutil.copy(folder / "0.jpg", folder / "0-copy.jpg")
    (folder / "bad.jpg").write_bytes(b"not a picture")
    encoder = load_encoder(model_spec, device="cpu", precision="fp32")
    paths = sorted(str(p) for p in folder.iterdir())
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with DecodeEmbed(lambda: encoder, Options(batch_size=2, workers=2)) as stages:
        outcomes = {Path(o.task.path).name: o for o in stages.run(Task.for_path(p) for p in paths)}
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no index, no file written
    assert sorted(outcomes) == sorted(Path(p).name for p in paths)
    assert isinstance(outcomes["bad.jpg"], Failed)
    assert all(isinstance(outcomes[f"{i}.jpg"], Embedded) for i in range(5))
    copy = outcomes["0-copy.jpg"]
    assert isinstance(copy, (Embedded, Reused)) and copy.digest == outcomes["0.jpg"].digest  # type: ignore[union-attr]

    _, stored = index_folder(folder, tmp_path / "index", encoder)
    for name, outcome in outcomes.items():
        if isinstance(outcome, Embedded):
            np.testing.assert_allclose(outcome.vector, stored[name], atol=1e-5)


def test_the_run_sees_either_engine_only_through_the_engine_protocol() -> None:
    """``IndexRun`` holds one ``Engine``: both engines answer every member of the protocol, the local one lends
    nothing after the decoding, and the run asks its engine for nothing else (no reaching inside)."""
    import ast

    from indexer.engine import Engine
    from indexer.options import Options
    from indexer.pipeline import DecodeEmbed
    from indexer.ray_engine import RayDecodeEmbed

    members = {name for name in vars(Engine) if not name.startswith("_")}
    assert {"run", "close", "release", "encoder", "encoder_if_made", "model_seconds", "gpu_decoded", "notes",
            "shard_runner", "faces_runner"} <= members
    local = DecodeEmbed(lambda: None)  # type: ignore[arg-type, return-value]
    on_ray = RayDecodeEmbed(lambda: None, Options(engine="ray"), local.contents, bytes, [])  # type: ignore[arg-type]
    for engine in (local, on_ray):
        assert {name for name in members if not hasattr(engine, name)} == set(), type(engine).__name__
    assert (local.shard_runner(), local.faces_runner(), local.encoder_if_made(), local.gpu_decoded) == (None,) * 4
    local.close()
    local.release()

    tree = ast.parse((ROOT / "indexer" / "run.py").read_text())
    asked = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
             and isinstance(node.value, ast.Attribute) and node.value.attr == "engine"}
    assert asked and asked <= members


def test_one_rule_says_whether_a_content_needs_the_model() -> None:
    from clipsearch.store import IndexedFile
    from indexer.engine import Contents
    from indexer.items import Reused, Task
    from indexer.walk import Found

    committed = {b"c" * 16, b"o" * 16}
    contents = Contents(committed.__contains__)
    assert contents.stored(b"c" * 16)  # a copy of a committed photo, or the file's own content
    assert not contents.stored(b"n" * 16) and not contents.stored_since_read(b"n" * 16)
    contents.embedded(b"n" * 16)  # embedded in this run, not committed yet
    assert contents.stored(b"n" * 16) and contents.stored_since_read(b"n" * 16)
    contents.committed()
    assert not contents.stored_since_read(b"n" * 16)  # the catalog answers for it from here
    touched = Task(Found("/p/old.jpg", 1, 2), IndexedFile("/p/old.jpg", 1, 1, b"o" * 16, 1, 1, id=7))
    assert Reused(touched, b"o" * 16, 1, 1).same_file  # its own content under a new stamp: only touched
    assert not Reused(touched, b"c" * 16, 1, 1).same_file  # replaced by a copy of another photo


def test_terms_are_weighted_and_summed_into_one_unit_vector() -> None:
    from search.query import Query, Term, combine

    a, b = np.array([1.0, 0.0], dtype="float32"), np.array([0.0, 1.0], dtype="float32")
    np.testing.assert_allclose(combine([a], [1.0]), a)
    np.testing.assert_allclose(combine([a, b], [1.0, 1.0]), np.array([1, 1]) / np.sqrt(2), rtol=1e-6)
    np.testing.assert_allclose(combine([a, b], [1.0, -0.5]), np.array([2, -1]) / np.sqrt(5), rtol=1e-6)
    with pytest.raises(UserError, match="cancel"):
        combine([a, a], [1.0, -1.0])
    with pytest.raises(UserError, match="empty"):
        Term.text("   ")
    with pytest.raises(UserError, match="k \\(how many results\\)"):
        Query((Term.text("dog"),), k=0)
    assert Query((Term.like(3), Term.text("dog"))).excluded == {3}


def test_a_long_lived_searcher_answers_with_the_model_the_index_has_now(cli: Cli, tmp_path: Path, model_spec: str,
                                                                        index_dir: Path) -> None:
    """A server's searcher outlives rebuilds: after `index --reindex --model OTHER` its next answer is embedded with
    OTHER, as a fresh searcher's is (not with the model it had loaded)."""
    from search.engine import Searcher
    from search.query import Query, Term

    photos = tmp_path / "photos"
    shutil.copytree(ROOT / "data" / "sample", photos)
    assert cli("index", photos, "--model", "demo").exit_code == 0
    query = Query((Term.text("a red star"),), k=5)
    with Searcher(index_dir, device="cpu") as resident:
        assert Path(resident.answer(query)[0].path).name == "red-star.png"
        switched = cli("index", photos, "--model", model_spec, "--reindex")
        assert switched.exit_code == 0, switched.stderr
        after = [(h.path, round(h.score, 5)) for h in resident.answer(query)]
    with Searcher(index_dir, device="cpu") as fresh:
        assert after == [(h.path, round(h.score, 5)) for h in fresh.answer(query)]
