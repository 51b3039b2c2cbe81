"""How paths are kept in the catalog, for every module of the store that queries them.

Paths are stored as their file-system bytes, whatever they are: a name that is not valid UTF-8 (an old camera
card, an SMB share) is indexed and comes back the same, as Python's os.fsdecode gives it (surrogate escapes).
A path parameter is bound as bytes and cast to TEXT (``PATH``), and TEXT is read back with ``text``; for a
valid UTF-8 name the stored bytes are what plain str binding stored, so older catalogs need no change.
"""

from __future__ import annotations

import os

PATH = "CAST(? AS TEXT)"


def path_param(path: str) -> bytes:
    return os.fsencode(path)


def text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def under(path: str) -> tuple[str, str]:
    """SQL bounds (lo, hi) such that ``lo <= p < hi`` selects the paths inside folder ``path``."""
    prefix = path.rstrip(os.sep) + os.sep
    return prefix, prefix[:-1] + chr(ord(os.sep) + 1)
