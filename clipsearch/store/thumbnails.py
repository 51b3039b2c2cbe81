"""Thumbnails for the web page, keyed by content hash: a cache, so deleting it loses nothing."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

MAX_BYTES = 4 << 20  # far above any ~256 px JPEG: a bigger file in the cache is not one of ours


class Thumbnails:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, digest: bytes) -> Path:
        name = digest.hex()
        return self.folder / name[:2] / f"{name}.jpg"

    def get(self, digest: bytes) -> bytes | None:
        """The kept thumbnail, if what is kept is one: a regular file (no link followed) of a JPEG's size, whole
        from its start to its end marker. Anything else (damage, a link planted in the cache) is dropped and made
        again from the photo."""
        path = self.path(digest)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            return None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            data = f.read(MAX_BYTES + 1) if stat.S_ISREG(st.st_mode) else b""
        if len(data) <= MAX_BYTES and data.startswith(b"\xff\xd8") and data.rstrip(b"\0").endswith(b"\xff\xd9"):
            return data
        self.drop(digest)
        return None

    def put(self, digest: bytes, jpeg: bytes) -> None:
        """Keep a thumbnail for next time; a read-only or full index directory just means no cache."""
        target = self.path(digest)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(jpeg)
            os.replace(tmp, target)
        except OSError:
            tmp.unlink(missing_ok=True)

    def drop(self, digest: bytes) -> None:
        self.path(digest).unlink(missing_ok=True)
