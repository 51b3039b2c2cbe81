"""A re-embedding (``index --reindex``, with the same model or another) is built beside the vectors searches use and
swapped in by one commit (issue 31, item 4): until then every search is answered in full by the old model, a killed
re-embedding leaves the old index answering, and the next run finishes it. The run is held at a point the test
controls (``CLIPSEARCH_HOLD_AFTER_COMMIT``), never raced."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path

import pytest

from tests import imagegen
from tests.conftest import cli_env, run_cli, start_cli, wait_for

N = 24


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for i in range(N):
        imagegen.photo(9100 + i, (160, 120)).save(folder / f"{i:03d}.jpg", quality=85)
    return folder


def answers(index: Path) -> list[tuple[str, float]]:
    done = run_cli("search", "a photo", "--json", "-k", "100", env=cli_env(index))
    assert done.returncode == 0, done.stderr
    return [(h["path"], h["score"]) for h in json.loads(done.stdout)]


def pending(index: Path) -> int:
    try:
        with sqlite3.connect(f"file:{index / 'catalog.sqlite'}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT count(*) FROM vectors_next").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_searches_during_a_reindex_are_answered_in_full_by_the_old_model_until_one_commit_swaps(
        photos: Path, tmp_path: Path, model_spec: str) -> None:
    index = tmp_path / "index"
    first = run_cli("index", photos, "--model", "demo", "--vocabulary", "none", "--json", env=cli_env(index))
    assert first.returncode == 0, first.stderr
    before = answers(index)
    assert len(before) == N

    go = tmp_path / "go"
    proc = start_cli("index", "--reindex", "--model", model_spec, "--batch-size", "4", "--commit-every", "4",
                     "--vocabulary", "none", "--json", env=cli_env(index, CLIPSEARCH_HOLD_AFTER_COMMIT=f"8:{go}"))
    try:
        wait_for(lambda: proc.poll() is not None or pending(index) >= 8, 300, "the re-embedding holding after 8")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert answers(index) == before  # in full, by the old model, while the new vectors are being built
        info = json.loads(run_cli("info", "--json", env=cli_env(index)).stdout)
        assert info["model"] == "demo" and info["images"] == N
        assert info["reembedding"]["model"] == model_spec and info["reembedding"]["vectors_done"] >= 8
        assert f"re-embedding:   with {model_spec}: " in run_cli("info", env=cli_env(index)).stdout
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert answers(index) == before  # a killed re-embedding leaves the old index answering
    assert json.loads(run_cli("check", "--json", env=cli_env(index)).stdout)["ok"] is True

    again = run_cli("index", "--vocabulary", "none", "--json", env=cli_env(index))  # a plain run finishes it
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert any("re-embedded with" in note for note in report["notes"]), report["notes"]
    assert 0 < report["model_seconds"]
    info = json.loads(run_cli("info", "--json", env=cli_env(index)).stdout)
    assert info["model"] == model_spec and info["images"] == N and info["reembedding"] is None
    after = answers(index)
    assert sorted(p for p, _ in after) == sorted(p for p, _ in before) and after != before  # the new model's answers
    assert json.loads(run_cli("check", "--json", env=cli_env(index)).stdout)["ok"] is True


def test_a_plain_run_with_the_old_model_during_a_reindex_is_refused_in_one_line(
        photos: Path, tmp_path: Path, model_spec: str) -> None:
    index = tmp_path / "index"
    assert run_cli("index", photos, "--model", "demo", "--vocabulary", "none", env=cli_env(index)).returncode == 0
    go = tmp_path / "go"
    proc = start_cli("index", "--reindex", "--model", model_spec, "--batch-size", "4", "--commit-every", "4",
                     "--vocabulary", "none", env=cli_env(index, CLIPSEARCH_HOLD_AFTER_COMMIT=f"4:{go}"))
    wait_for(lambda: proc.poll() is not None or pending(index) >= 4, 300, "the re-embedding holding")
    proc.kill()
    proc.wait()
    refused = run_cli("index", "--model", "demo", env=cli_env(index))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "under way" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert len(answers(index)) == N
