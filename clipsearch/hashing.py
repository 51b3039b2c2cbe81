"""Identity of a file's content: how a run recognises a renamed, copied or untouched photo.

A leaf: the store, the encoders' fingerprints and the decode worker processes all hash, and the
workers must not import the store (or anything that brings torch) to do it.
"""

from __future__ import annotations

import hashlib
import os

_HASH_HEAD = 256 * 1024
_HASH_TAIL = 256 * 1024


def content_hash(data: bytes, size: int | None = None) -> bytes:
    """Identity of a file's content, used to find renames and copies.

    sha256 over the size and the first and last 256 KiB: the whole file for
    most web images, and for camera photos the EXIF block (capture time) plus
    the start and end of the entropy-coded data, which any edit changes. Full
    hashing would cost about as much as the fast JPEG decode itself.
    """
    size = len(data) if size is None else size
    h = hashlib.sha256(size.to_bytes(8, "little"))
    if len(data) <= _HASH_HEAD + _HASH_TAIL:
        h.update(data)
    else:
        view = memoryview(data)  # one update: each one releases and retakes the GIL
        h.update(b"".join((view[:_HASH_HEAD], view[-_HASH_TAIL:])))
    return h.digest()[:16]


def file_content_hash(path: str | os.PathLike[str]) -> bytes:
    """``content_hash`` of a file on disk, reading only the parts it needs."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size <= _HASH_HEAD + _HASH_TAIL:
            return content_hash(f.read(), size)
        head = f.read(_HASH_HEAD)
        f.seek(size - _HASH_TAIL)
        return content_hash(head + f.read(_HASH_TAIL), size)
