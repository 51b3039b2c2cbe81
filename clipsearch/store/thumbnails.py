"""Thumbnails for the web page, keyed by content hash: a cache, so deleting it loses nothing."""

from __future__ import annotations

import os
import threading
from pathlib import Path


class Thumbnails:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, digest: bytes) -> Path:
        name = digest.hex()
        return self.folder / name[:2] / f"{name}.jpg"

    def get(self, digest: bytes) -> bytes | None:
        try:
            return self.path(digest).read_bytes()
        except OSError:
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
