"""``search --preview``: each hit's thumbnail inline in the terminal, as rclip's ``--preview`` does.

Three protocols, chosen from what the terminal says it is (or ``CLIPSEARCH_PREVIEW=kitty|iterm|sixel|off``):

    kitty   the kitty graphics protocol (kitty, WezTerm, Ghostty, Konsole): PNG sent in 4096-byte base64 chunks
    iterm   iTerm2's inline images (iTerm2, WezTerm, mintty): the JPEG in one OSC 1337 sequence
    sixel   DEC sixel (foot, mlterm, xterm -ti vt340, Windows Terminal): 256 colours, six pixel rows per band

Where none applies, and whenever stdout is not a terminal (a pipe, a file, ``--json``), nothing but the plain
listing is printed: escape sequences never reach a script.
"""

from __future__ import annotations

import base64
import io
import os
import sys
from typing import IO

PROTOCOLS = ("kitty", "iterm", "sixel")
WIDTH = 192  # pixels: a preview a few lines high, beside the rank, score and path
_SIXEL_TERMS = ("foot", "mlterm", "yaft", "contour", "xterm-sixel")


def protocol(stream: IO[str] | None = None, env: dict[str, str] | None = None) -> str | None:
    """The image protocol this terminal speaks, or None (not a terminal, or one that shows no images)."""
    env = dict(os.environ) if env is None else env
    forced = env.get("CLIPSEARCH_PREVIEW", "").strip().lower()
    if forced in ("off", "none", "0"):
        return None
    stream = stream or sys.stdout
    if not stream.isatty():
        return None
    if forced in PROTOCOLS:
        return forced
    term, program = env.get("TERM", ""), env.get("TERM_PROGRAM", "")
    if "kitty" in term or env.get("KITTY_WINDOW_ID") or program in ("ghostty", "WezTerm") or env.get("KONSOLE_VERSION"):
        return "kitty"
    if program in ("iTerm.app", "mintty") or env.get("LC_TERMINAL") == "iTerm2":
        return "iterm"
    if term.startswith(_SIXEL_TERMS) or env.get("WT_SESSION"):
        return "sixel"
    return None


def _small(jpeg: bytes, width: int) -> object:
    from PIL import Image

    im = Image.open(io.BytesIO(jpeg))
    im.draft("RGB", (width, width))
    im = im.convert("RGB")
    if im.width > width:
        im = im.resize((width, max(1, round(im.height * width / im.width))), Image.Resampling.LANCZOS)
    return im


def encode(jpeg: bytes, kind: str, width: int = WIDTH) -> str:
    """The escape sequence that shows ``jpeg`` (a thumbnail) ``width`` pixels wide, then a newline."""
    if kind == "iterm":
        data = base64.b64encode(jpeg).decode("ascii")
        return f"\x1b]1337;File=inline=1;size={len(jpeg)};width={width}px;preserveAspectRatio=1:{data}\x07\n"
    im = _small(jpeg, width)
    if kind == "kitty":
        out = io.BytesIO()
        im.save(out, "PNG")  # type: ignore[attr-defined]
        data = base64.b64encode(out.getvalue()).decode("ascii")
        chunks = [data[i:i + 4096] for i in range(0, len(data), 4096)]
        parts = [f"\x1b_G{'a=T,f=100,' if n == 0 else ''}m={int(n < len(chunks) - 1)};{chunk}\x1b\\"
                 for n, chunk in enumerate(chunks)]
        return "".join(parts) + "\n"
    if kind == "sixel":
        return sixel(im) + "\n"
    raise ValueError(f"unknown preview protocol {kind!r}")


def sixel(im: object) -> str:
    """A DEC sixel image of ``im`` (RGB): quantised to 256 colours, then per band of six rows one run-length
    encoded line per colour present in it."""
    from PIL import Image

    quantised = im.quantize(256, dither=Image.Dither.NONE)  # type: ignore[attr-defined]
    width, height = quantised.size
    palette = quantised.getpalette()[: 3 * 256]
    pixels = quantised.tobytes()
    used = sorted(set(pixels))
    out = [f"\x1bPq\"1;1;{width};{height}"]
    out += [f"#{c};2;{palette[3 * c] * 100 // 255};{palette[3 * c + 1] * 100 // 255};{palette[3 * c + 2] * 100 // 255}"
            for c in used]
    for top in range(0, height, 6):
        rows = [pixels[y * width:(y + 1) * width] for y in range(top, min(top + 6, height))]
        lines = []
        for colour in sorted({p for row in rows for p in row}):
            bits = [sum(1 << dy for dy, row in enumerate(rows) if row[x] == colour) for x in range(width)]
            lines.append(f"#{colour}" + _run_length("".join(chr(63 + b) for b in bits)))
        out.append("$".join(lines) + "-")
    return "".join(out) + "\x1b\\"


def _run_length(line: str) -> str:
    """Sixel's repeat introducer: ``!N<char>`` for a run of more than three of one character."""
    out, i = [], 0
    while i < len(line):
        j = i
        while j < len(line) and line[j] == line[i]:
            j += 1
        out.append(f"!{j - i}{line[i]}" if j - i > 3 else line[i] * (j - i))
        i = j
    return "".join(out)
