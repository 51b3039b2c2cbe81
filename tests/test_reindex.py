"""A re-embedding (``index --reindex``, with the same model or another) is built beside the vectors searches use and
swapped in by one commit (issue 31, item 4): until then every search is answered in full by the old model, a killed
re-embedding leaves the old index answering, and the next run finishes it. The run is held at a point the test
controls (``CLIPSEARCH_HOLD_AFTER_COMMIT``), never raced."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest

from tests import imagegen
from tests.conftest import Cli, cli_env, start_cli, wait_for

N = 24


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for i in range(N):
        imagegen.photo(9100 + i, (160, 120)).save(folder / f"{i:03d}.jpg", quality=85)
    return folder


def answers(cli: Cli) -> list[tuple[str, float]]:
    """What a search says now. The commands that only read run in this process (``cli``): only the re-embedding, which
    is held and killed, needs a process of its own."""
    done = cli("search", "a photo", "--json", "-k", "100")
    assert done.exit_code == 0, done.stderr
    return [(h["path"], h["score"]) for h in done.json()]  # type: ignore[union-attr]


def pending(index: Path) -> int:
    try:
        with sqlite3.connect(f"file:{index / 'catalog.sqlite'}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT count(*) FROM vectors_next").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_searches_during_a_reindex_are_answered_in_full_by_the_old_model_until_one_commit_swaps(
        photos: Path, tmp_path: Path, model_spec: str, cli: Cli, index_dir: Path) -> None:
    index = index_dir
    first = cli("index", photos, "--model", "demo", "--vocabulary", "none", "--json")
    assert first.exit_code == 0, first.stderr
    before = answers(cli)
    assert len(before) == N

    go = tmp_path / "go"
    proc = start_cli("index", "--reindex", "--model", model_spec, "--batch-size", "4", "--commit-every", "4",
                     "--vocabulary", "none", "--json", env=cli_env(index, CLIPSEARCH_HOLD_AFTER_COMMIT=f"8:{go}"))
    try:
        wait_for(lambda: proc.poll() is not None or pending(index) >= 8, 300, "the re-embedding holding after 8")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert answers(cli) == before  # in full, by the old model, while the new vectors are being built
        info = cli("info", "--json").json()
        assert info["model"] == "demo" and info["images"] == N  # type: ignore[index]
        assert info["reembedding"]["model"] == model_spec and info["reembedding"]["vectors_done"] >= 8  # type: ignore
        assert f"re-embedding:   with {model_spec}: " in cli("info").stdout
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert answers(cli) == before  # a killed re-embedding leaves the old index answering
    assert cli("check", "--json").json()["ok"] is True  # type: ignore[index]

    again = cli("index", "--vocabulary", "none", "--json")  # a plain run finishes it
    assert again.exit_code == 0, again.stderr
    report = again.json()
    assert any("re-embedded with" in note for note in report["notes"]), report["notes"]  # type: ignore[index]
    assert 0 < report["model_seconds"]  # type: ignore[index]
    info = cli("info", "--json").json()
    assert info["model"] == model_spec and info["images"] == N and info["reembedding"] is None  # type: ignore[index]
    after = answers(cli)
    assert sorted(p for p, _ in after) == sorted(p for p, _ in before) and after != before  # the new model's answers
    assert cli("check", "--json").json()["ok"] is True  # type: ignore[index]


def test_a_plain_run_with_the_old_model_during_a_reindex_is_refused_in_one_line(
        photos: Path, tmp_path: Path, model_spec: str, cli: Cli, index_dir: Path) -> None:
    index = index_dir
    assert cli("index", photos, "--model", "demo", "--vocabulary", "none").exit_code == 0
    go = tmp_path / "go"
    proc = start_cli("index", "--reindex", "--model", model_spec, "--batch-size", "4", "--commit-every", "4",
                     "--vocabulary", "none", env=cli_env(index, CLIPSEARCH_HOLD_AFTER_COMMIT=f"4:{go}"))
    wait_for(lambda: proc.poll() is not None or pending(index) >= 4, 300, "the re-embedding holding")
    proc.kill()
    proc.wait()
    refused = cli("index", "--model", "demo")
    assert refused.exit_code == 2 and "Traceback" not in refused.stderr
    assert "under way" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert len(answers(cli)) == N
