"""The command line as a user meets it: real processes, one-line errors, exit codes, cheap --help."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import imagegen
from tests.conftest import ROOT, Cli, cli_env, run_cli, search_json


def one_line_error(proc: subprocess.CompletedProcess[str] | object, needle: str) -> None:
    stderr = proc.stderr  # type: ignore[attr-defined]
    code = getattr(proc, "returncode", getattr(proc, "exit_code", None))
    assert code not in (0, None), stderr
    assert "Traceback" not in stderr
    assert stderr.count("\n") == 1, stderr
    assert stderr.startswith("clipsearch: error: ") and needle in stderr, stderr


def test_python_cli_py_end_to_end(tmp_path: Path, model_spec: str) -> None:
    """``python cli.py`` as a real process: index, search, info, with JSON for scripts."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for seed in range(3):
        imagegen.photo(seed).save(photos / f"p{seed}.jpg")
    env = cli_env(tmp_path / "idx")
    proc = run_cli("index", photos, "--model", model_spec, "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert '"added": 3' in proc.stdout
    assert "RANDOM" not in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("search", "--image", photos / "p1.jpg", "-k", "1", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert f'"path": "{photos / "p1.jpg"}"' in proc.stdout
    proc = run_cli("info", env=env)
    assert proc.returncode == 0 and "images:" in proc.stdout and model_spec in proc.stdout


def test_no_index_yet(tmp_path: Path) -> None:
    env = cli_env(XDG_DATA_HOME=str(tmp_path / "xdg"))
    proc = run_cli("search", "a dog", env=env)
    one_line_error(proc, f"no index at {tmp_path / 'xdg' / 'clipsearch'}")
    one_line_error(run_cli("info", "--index", tmp_path / "elsewhere", env=env), "no index at")


def test_help_does_not_import_torch() -> None:
    code = ("import sys; from typer.testing import CliRunner; import cli\n"
            "for args in (['--help'], ['index', '--help'], ['search', '--help'], ['info', '--help']):\n"
            "    r = CliRunner().invoke(cli.app, args); assert r.exit_code == 0, r.output\n"
            "print(sorted(m for m in ('torch', 'open_clip', 'faiss', 'numpy') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_user_mistakes_get_one_line(cli: Cli, tmp_path: Path, model_spec: str) -> None:
    one_line_error(cli("search", "x"), "no index at")
    one_line_error(cli("index", tmp_path / "missing"), "folder not found")
    one_line_error(cli("index", tmp_path, "--model", "NoSuchNet:none"), "unknown model architecture")
    one_line_error(cli("index", tmp_path, "--model", "justaname"), "is not ARCH:TAG")
    one_line_error(cli("search", "x"), "no index at")  # the rejected commands created nothing
    (tmp_path / "empty").mkdir()
    assert cli("index", tmp_path / "empty", "--model", model_spec).exit_code == 0
    one_line_error(cli("search", "x"), "holds no images yet")
    imagegen.photo(1).save(tmp_path / "one.png")
    assert cli("index", tmp_path, "--model", model_spec).exit_code == 0
    one_line_error(cli("search"), "give a query, --image PATH or --like ID to look for, or --sort date to browse")
    one_line_error(cli("search", "x", "--image", tmp_path / "one.png"), "give a query, --image PATH or --like ID")
    one_line_error(cli("search", "--image", tmp_path / "nope.jpg"), "cannot read query image")
    (tmp_path / "junk.jpg").write_bytes(b"junk")
    one_line_error(cli("search", "--image", tmp_path / "junk.jpg"), "cannot use")
    one_line_error(cli("search", "   "), "the query is empty")


def test_another_model_needs_reindex(cli: Cli, tmp_path: Path, model_spec: str) -> None:
    import open_clip
    import torch

    imagegen.photo(1).save(tmp_path / "one.png")
    assert cli("index", tmp_path, "--model", model_spec).exit_code == 0
    torch.manual_seed(5)
    other = tmp_path / "other.pt"
    torch.save(open_clip.create_model("clipsearch-demo").state_dict(), other)
    other_spec = f"clipsearch-demo:{other}"
    one_line_error(cli("index", tmp_path, "--model", other_spec), "clipsearch index --reindex --model")
    result = cli("index", tmp_path, "--model", other_spec, "--reindex", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["updated"] == 1  # re-embedded in place: the photo keeps its id
    assert cli("info", "--json").json()["model"] == other_spec
    assert search_json(cli, "--image", tmp_path / "one.png")[0]["score"] >= 0.99

    # weights replaced under the same path: refused rather than mixing two models
    torch.manual_seed(6)
    torch.save(open_clip.create_model("clipsearch-demo").state_dict(), other)
    one_line_error(cli("search", "x"), "no longer matches")


def test_search_survives_a_missing_faiss_file(cli: Cli, tmp_path: Path, model_spec: str, index_dir: Path) -> None:
    """The catalog is the truth; the FAISS file is rebuilt from it when it is missing (a killed run)."""
    for seed in range(4):
        imagegen.photo(seed).save(tmp_path / f"{seed}.png")
    assert cli("index", tmp_path, "--model", model_spec).exit_code == 0
    for f in index_dir.glob("*.faiss"):
        f.unlink()
    assert search_json(cli, "--image", tmp_path / "2.png", "-k", "1")[0]["path"] == str(tmp_path / "2.png")
    imagegen.photo(9).save(tmp_path / "9.png")
    assert cli("index").exit_code == 0
    assert len(list(index_dir.glob("*.faiss"))) == 1
    assert search_json(cli, "--image", tmp_path / "9.png", "-k", "1")[0]["path"] == str(tmp_path / "9.png")


def test_second_writer_is_refused(cli: Cli, tmp_path: Path, model_spec: str, index_dir: Path) -> None:
    from clipsearch.store import StoreWriter

    imagegen.photo(1).save(tmp_path / "one.png")
    with StoreWriter.open(index_dir):
        one_line_error(cli("index", tmp_path, "--model", model_spec), f"locked by PID {os.getpid()}")
    assert cli("index", tmp_path, "--model", model_spec).exit_code == 0


def _make_read_only(index_dir: Path) -> bool:
    """Make the index directory and its files unwritable, for root too (chattr +i); False where impossible."""
    if os.geteuid() != 0:
        for f in [*index_dir.iterdir(), index_dir]:
            f.chmod(0o500 if f.is_dir() else 0o400)
        return True
    paths = [*map(str, index_dir.iterdir()), str(index_dir)]
    return subprocess.run(["chattr", "+i", *paths], capture_output=True).returncode == 0


def _make_writable(index_dir: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(index_dir), *map(str, index_dir.iterdir())], capture_output=True)
    else:
        index_dir.chmod(0o700)
        for f in index_dir.iterdir():
            f.chmod(0o600)


def test_read_only_index_dir(cli: Cli, tmp_path: Path, model_spec: str, index_dir: Path) -> None:
    imagegen.photo(1).save(tmp_path / "one.png")
    assert cli("index", tmp_path, "--model", model_spec).exit_code == 0
    imagegen.photo(2).save(tmp_path / "two.png")
    if not _make_read_only(index_dir):
        pytest.skip("cannot make a directory read-only here (no chattr)")
    try:
        one_line_error(cli("index", tmp_path), f"cannot write to the index at {index_dir}")  # it exists: not "create"
        hits = search_json(cli, "--image", tmp_path / "one.png", "-k", "5")  # searching a read-only index works
        assert [h["path"] for h in hits] == [str(tmp_path / "one.png")]
        check = cli("check", "--json")  # checking it too: only --repair writes
        assert check.exit_code == 0 and check.json()["ok"] is True, check.stderr
        one_line_error(cli("check", "--repair"), f"cannot write to the index at {index_dir}")
        assert cli("info", "--failed", "--json").json() == []
    finally:
        _make_writable(index_dir)
    assert cli("info", "--json").json()["images"] == 1
    again = cli("index", tmp_path, "--json")
    assert again.exit_code == 0, again.stderr
    assert again.json()["added"] == 1
