"""`search --preview`: thumbnails inline on terminals that show images, the plain listing everywhere else."""

from __future__ import annotations

import base64
import io
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from clipsearch.console import preview
from tests.conftest import ROOT, Cli, cli_env

SAMPLE = ROOT / "data" / "sample"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _jpeg(colour: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (64, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "JPEG")
    return out.getvalue()


@pytest.mark.parametrize(("env", "expected"), [
    ({"TERM": "xterm-kitty"}, "kitty"), ({"TERM": "xterm-256color", "KITTY_WINDOW_ID": "1"}, "kitty"),
    ({"TERM_PROGRAM": "iTerm.app"}, "iterm"), ({"TERM_PROGRAM": "WezTerm"}, "kitty"), ({"TERM": "foot"}, "sixel"),
    ({"TERM": "xterm-256color"}, None), ({"TERM": "xterm-kitty", "CLIPSEARCH_PREVIEW": "off"}, None),
    ({"TERM": "xterm-256color", "CLIPSEARCH_PREVIEW": "sixel"}, "sixel")])
def test_the_protocol_follows_what_the_terminal_says_it_is(env: dict[str, str], expected: str | None) -> None:
    assert preview.protocol(_Tty(), env) == expected


def test_no_protocol_where_stdout_is_not_a_terminal() -> None:
    assert preview.protocol(io.StringIO(), {"TERM": "xterm-kitty", "CLIPSEARCH_PREVIEW": "kitty"}) is None


def test_each_protocol_carries_the_picture() -> None:
    jpeg = _jpeg(size=(400, 300))
    iterm = preview.encode(jpeg, "iterm")
    assert iterm.startswith("\x1b]1337;File=inline=1;") and iterm.endswith("\x07\n")
    assert base64.b64decode(iterm.split(":", 1)[1][:-2]) == jpeg
    kitty = preview.encode(jpeg, "kitty")
    chunks = kitty.strip("\n").split("\x1b\\")[:-1]
    assert chunks[0].startswith("\x1b_Ga=T,f=100,") and all(len(c.split(";", 1)[1]) <= 4096 for c in chunks)
    png = base64.b64decode("".join(c.split(";", 1)[1] for c in chunks))
    assert Image.open(io.BytesIO(png)).size == (preview.WIDTH, 144)  # 400x300 at 192 px wide


def test_sixel_bands_cover_the_picture_in_its_colours() -> None:
    im = Image.new("RGB", (10, 13), (255, 0, 0))
    im.paste((0, 0, 255), (0, 6, 10, 13))
    text = preview.sixel(im)
    assert text.startswith('\x1bPq"1;1;10;13') and text.endswith("\x1b\\")
    body = text[len('\x1bPq"1;1;10;13'):-2]
    colours = [part for part in body.split("#") if part.count(";") == 4]
    assert len(colours) == 2 and any(c.endswith(";2;100;0;0") for c in colours)  # red, in sixel's 0-100 scale
    assert body.count("-") == 3  # ceil(13 / 6) bands
    assert "!10~" in body  # a full band of one colour: ten columns of all six rows, run-length encoded


def test_search_preview_is_plain_text_when_not_a_terminal(cli: Cli, tmp_path: Path) -> None:
    shutil.copytree(SAMPLE, tmp_path / "photos")
    assert cli("index", tmp_path / "photos", "--model", "demo").exit_code == 0
    plain = cli("search", "a red star", "-k", "3")
    shown = cli("search", "a red star", "-k", "3", "--preview")
    assert shown.exit_code == 0 and shown.stdout == plain.stdout and "\x1b" not in shown.stdout


def test_search_preview_shows_thumbnails_on_a_terminal(cli: Cli, index_dir: Path, tmp_path: Path) -> None:
    """The real CLI on a pseudo-terminal, as kitty: a picture after each hit's line, the thumbnails cached."""
    shutil.copytree(SAMPLE, tmp_path / "photos")
    assert cli("index", tmp_path / "photos", "--model", "demo").exit_code == 0
    parent, child = pty.openpty()
    env = cli_env(index_dir, TERM="xterm-kitty", COLUMNS="200")
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "search", "a red star", "-k", "2", "--preview"],
                            stdout=child, stderr=subprocess.PIPE, env=env)
    os.close(child)
    out = b""
    while True:
        try:
            data = os.read(parent, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not data:
            break
        out += data
    assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    text = out.decode()
    assert text.count("\x1b_Ga=T,f=100,") == 2 and "red-star.png" in text
    assert len(list((index_dir / "thumbs").rglob("*.jpg"))) == 2
