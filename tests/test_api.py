"""The Python API as docs/api.md shows it: every example block run in order, in one namespace, on a copy of the
bundled sample with the demo model; then what the page promises beyond the examples (cheap import, one error
type, the same JSON as the CLI)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, Cli

SAMPLE = ROOT / "data" / "sample"


def _examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "api.md").read_text(), re.S)


def test_the_examples_of_docs_api_md_run(tmp_path: Path, capsys: object) -> None:
    photos = tmp_path / "photos"
    shutil.copytree(SAMPLE, photos)
    blocks = _examples()
    assert len(blocks) >= 5
    namespace: dict[str, object] = {"INDEX": str(tmp_path / "index"), "PHOTOS": str(photos)}
    for number, block in enumerate(blocks, 1):
        try:
            exec(compile(block, f"docs/api.md block {number}", "exec"), namespace)  # noqa: S102
        except Exception as exc:  # say which block, then fail with its own error
            raise AssertionError(f"docs/api.md block {number} failed: {exc!r}\n{block}") from exc
    assert namespace["report"].unchanged == 54  # type: ignore[attr-defined]
    assert namespace["seen"], "the progress callback was never called"
    assert namespace["labels"][0].labels[0].label == "a blue circle"  # type: ignore[index]


def test_import_clipsearch_loads_nothing_heavy_and_the_api_is_there() -> None:
    code = ("import sys, clipsearch\n"
            "assert callable(clipsearch.open_index) and clipsearch.Index and clipsearch.UserError\n"
            "index = clipsearch.open_index('/nonexistent/index')\n"
            "print(sorted(m for m in ('torch', 'faiss', 'numpy', 'ray', 'open_clip', 'fastapi') if m in sys.modules))\n"
            "assert clipsearch.Hit and clipsearch.Term and clipsearch.Report and clipsearch.Classified\n"
            "assert set(clipsearch.__all__) <= set(dir(clipsearch))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_api_answers_as_the_cli_does(cli: Cli, index_dir: Path, tmp_path: Path) -> None:
    import clipsearch

    photos = tmp_path / "photos"
    shutil.copytree(SAMPLE, photos)
    assert cli("index", photos, "--model", "demo").exit_code == 0
    printed = cli("search", "a red star", "-k", "5", "--json").json()
    with clipsearch.open_index() as index:  # the default index: $CLIPSEARCH_INDEX, as the CLI's
        assert [h.as_dict() for h in index.search("a red star", k=5)] == printed
        assert index.info().as_dict() == cli("info", "--json").json()
        assert [t.as_dict() for t in index.tags()] == cli("tags", "--json").json()
        try:
            index.search("a star", like=3)
        except clipsearch.UserError as error:
            assert "one of them" in str(error)
        else:
            raise AssertionError("a question with both words and like was answered")


def test_a_script_without_the_main_guard_runs_its_top_level_once(tmp_path: Path) -> None:
    """multiprocessing's children import the parent's main script by path: the decode workers must not, or a
    script that indexes at its top level would run again (and index again) in each of them."""
    photos = tmp_path / "photos"
    shutil.copytree(SAMPLE, photos)
    ran = tmp_path / "ran.log"
    script = tmp_path / "unguarded.py"
    script.write_text("import clipsearch\n"
                      f"open({str(ran)!r}, 'a').write('top level\\n')\n"
                      f"index = clipsearch.open_index({str(tmp_path / 'index')!r})\n"
                      f"report = index.update([{str(photos)!r}], model='demo', workers=2, worker_kind='processes')\n"
                      "print(report.added)\n")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "54"
    assert ran.read_text() == "top level\n"
