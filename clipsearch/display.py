"""Text for people and for scripts from paths that may not be valid UTF-8 (old camera cards, SMB shares).

Python hands such a name over with surrogate escapes (``os.fsdecode``), which no UTF-8 output
accepts. People see the bytes escaped as ``\\xff``; JSON carries them as ``\\udcff`` escapes, valid
JSON from which ``os.fsencode(json.loads(...))`` gives back the exact name.
"""

from __future__ import annotations

import json
import re
from typing import Any

_ESCAPED = re.compile("[\udc80-\udcff]")
_UNPRINTABLE = re.compile("[\udc80-\udcff\x00-\x1f\x7f]")


def shown(text: str) -> str:
    """``text`` printable on one line as UTF-8: each byte that was not valid UTF-8, and each control character (a
    newline in a file name would break a table), as ``\\xNN``."""
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()) & 0xFF:02x}", text)


def to_json(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` that keeps UTF-8 as it is and writes the escaped bytes of a non-UTF-8 name as ``\\udcNN``."""
    return _ESCAPED.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(value, ensure_ascii=False, **kwargs))


def counted(n: int, one: str, many: str | None = None) -> str:
    """"1 file", "2 files": a count for people (``many`` where adding an s is not the plural)."""
    return f"{n} {one if n == 1 else many or one + 's'}"
