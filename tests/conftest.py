"""Shared fixtures: a small random-weight open_clip model saved to disk, a generated photo folder, and the CLI."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import imagegen  # noqa: E402

ARCH = "clipsearch-demo"  # the small architecture shipped in clipsearch/model_configs


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep exported text and image towers out of the user's ~/.cache, and skip the exports (seconds per model)
    except in the tests about them (tests/test_fast_text.py and tests/test_onnx_image.py turn them on). Pictures are
    read for their text (OCR: 3x the CPU of a run on the sample) only in the tests about words, which say ``--words on`` or set
    ``CLIPSEARCH_WORDS`` back (``words_on``)."""
    saved = {k: os.environ.get(k) for k in ("CLIPSEARCH_CACHE", "CLIPSEARCH_TEXT_EXPORT", "CLIPSEARCH_IMAGE_EXPORT",
                                        "CLIPSEARCH_WORDS")}
    os.environ["CLIPSEARCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["CLIPSEARCH_TEXT_EXPORT"] = "0"
    os.environ["CLIPSEARCH_IMAGE_EXPORT"] = "0"
    os.environ["CLIPSEARCH_WORDS"] = "later"
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def words_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """An index that has not chosen a words mode reads pictures, as a user's does (the suite defers it elsewhere)."""
    monkeypatch.delenv("CLIPSEARCH_WORDS")


@pytest.fixture(scope="session")
def model_spec(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``ARCH:/path`` of a random-initialised small open_clip model written to disk (no download anywhere)."""
    import open_clip
    import torch

    from clipsearch.encoders.openclip import register_model_configs

    register_model_configs()
    torch.manual_seed(1234)
    model = open_clip.create_model(ARCH, pretrained=None)
    path = tmp_path_factory.mktemp("model") / "random.pt"
    torch.save(model.state_dict(), path)
    return f"{ARCH}:{path}"


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str
    stdout_bytes: bytes = b""  # what was written, before decoding (paths that are not UTF-8 survive only here)

    def json(self) -> object:
        return json.loads(self.stdout)


Cli = Callable[..., CliResult]


@pytest.fixture
def index_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "index"
    monkeypatch.setenv("CLIPSEARCH_INDEX", str(path))
    return path


@pytest.fixture
def cli(index_dir: Path) -> Cli:
    """Run the real typer app in-process (the same object the console script calls)."""
    from typer.testing import CliRunner

    from cli import app

    runner = CliRunner()

    def run(*args: str) -> CliResult:
        result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr, result.stdout_bytes)

    return run


@pytest.fixture
def photos(tmp_path: Path) -> imagegen.PhotoFolder:
    return imagegen.make_photo_folder(tmp_path / "photos")


def search_json(cli: Cli, *args: str) -> list[dict]:
    result = cli("search", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return result.json()  # type: ignore[return-value]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def open_image(path: Path) -> Image.Image:
    return Image.open(path)


def cli_env(index_dir: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a real `python cli.py` process: this one's, with ``CLIPSEARCH_INDEX`` set to ``index_dir``
    (or unset without one), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "CLIPSEARCH_INDEX"}
    if index_dir is not None:
        env["CLIPSEARCH_INDEX"] = str(index_dir)
    return {**env, **extra}


def cli_command(*args: object) -> list[str]:
    return [sys.executable, str(ROOT / "cli.py"), *map(str, args)]


def run_cli(*args: object, env: dict[str, str] | None = None, timeout: float = 300,
            **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """`python cli.py ARGS` to its end, as a user runs it."""
    return subprocess.run(cli_command(*args), capture_output=True, text=True, env=env if env is not None else cli_env(),
                          timeout=timeout, **kwargs)


def run_cli_watching_torch(index_dir: Path, *args: str, timeout: float = 600) -> tuple[str, bool, str]:
    """`python cli.py ARGS` in a fresh process, to its end (exit 0 asserted): (stdout, whether torch got imported,
    stderr). For the commands that must stay torch-free (tests/test_fast_text.py, tests/test_onnx_image.py)."""
    code = ("import atexit, runpy, sys\n"
            "atexit.register(lambda: sys.stderr.write('\\nTORCH=%s\\n' % ('torch' in sys.modules)))\n"
            f"sys.argv = ['cli.py', *{list(args)!r}]\n"
            f"runpy.run_path({str(ROOT / 'cli.py')!r}, run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", code], env=cli_env(index_dir), capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done.stdout, "TORCH=True" in done.stderr, done.stderr


def start_cli(*args: object, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen[str]:
    """`python cli.py ARGS` started, its output on pipes."""
    return subprocess.Popen(cli_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env if env is not None else cli_env(), **kwargs)


def wait_for(condition: Callable[[], object], seconds: float, what: str) -> Any:
    """Poll ``condition`` until it returns something true (returned), or fail saying ``what`` never happened."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds:.0f} s")
        time.sleep(0.05)


class Lines:
    """One output stream of a process, read line by line by a thread of its own and kept: a test can wait for a
    line and still see everything the process printed afterwards."""

    def __init__(self, pipe: Any) -> None:
        self.seen: list[str] = []
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: Any) -> None:
        for line in iter(pipe.readline, ""):
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, needle: str, seconds: float) -> str:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                self._queue.put(None)
                raise AssertionError(f"the process ended before it printed {needle!r}: {''.join(self.seen)}")
            self.seen.append(line)
            if needle in line:
                return line
        raise AssertionError(f"no line with {needle!r} within {seconds:.0f} s: {''.join(self.seen)}")

    def text(self) -> str:
        """Everything printed, once the stream has ended (call after the process has)."""
        self._thread.join(timeout=30)
        while (line := self._queue.get()) is not None:
            self.seen.append(line)
        self._queue.put(None)
        return "".join(self.seen)


def lines(proc: subprocess.Popen[str], stream: str = "stderr") -> Lines:
    """``proc``'s ``stream`` as ``Lines``, made on first use (read it only through this from then on)."""
    key = f"_clipsearch_lines_{stream}"
    if not hasattr(proc, key):
        setattr(proc, key, Lines(getattr(proc, stream)))
    return getattr(proc, key)


def interrupt(proc: subprocess.Popen[str], seconds: float = 30) -> str:
    """Ctrl-C ``proc`` (killed if it has not ended within ``seconds``); returns what it wrote to stderr."""
    import signal

    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return lines(proc).text()


def wait_for_line(proc: subprocess.Popen[str], needle: str, seconds: float = 120, stream: str = "stderr") -> str:
    """The first line of ``proc``'s ``stream`` holding ``needle``, once printed; fail if the process ends first."""
    return lines(proc, stream).wait_for(needle, seconds)


def index_folder(root: Path, index: Path, encoder: Any, options: Any = None,
                 progress: Any = None) -> tuple[Any, dict[str, np.ndarray]]:
    """One real run (``IndexRun``) over ``root`` into ``index`` with a loaded ``encoder``: (report, {file name: its
    stored vector})."""
    from clipsearch.store import ModelRecord, StoreWriter
    from indexer.run import IndexRun

    with StoreWriter.open(index) as store:
        store.bind_model(ModelRecord(encoder.spec, encoder.fingerprint, encoder.dim))
        report = IndexRun(store, [str(root)], lambda: encoder, options, progress).run()
        return report, vectors_by_name(store)


def vectors_by_name(store: Any) -> dict[str, np.ndarray]:
    """{file name: stored vector} of an open store (names must be unique in it)."""
    return {Path(path).name: vector for path, vector in store.vectors.by_path().items()}


@dataclass
class Library:
    """A generated photo library indexed with the demo model, served by a real `clipsearch serve`."""

    root: Path
    index_dir: Path
    server: Any  # tests.serving.Server


@pytest.fixture(scope="session")
def library(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    from typer.testing import CliRunner

    from cli import app
    from tests.serving import Server, make_library

    base = tmp_path_factory.mktemp("library")
    root = make_library(base / "photos")
    index_dir = base / "index"
    result = CliRunner().invoke(app, ["index", str(root), "--model", "demo", "--index", str(index_dir), "--quiet"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    server = Server(index_dir).start()
    try:
        yield Library(root, index_dir, server)
    finally:
        server.stop()


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CLIPSEARCH_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        executable = None
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser tests: install Debian's chromium and the test extra (playwright)")
        pytest.skip("no Chromium here (apt-get install chromium) or no playwright")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()
