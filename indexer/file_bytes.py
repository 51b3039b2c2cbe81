"""One file's bytes, bounded: how every stage reads a file it is given by path (the router, the decode worker
processes, the backfill, the words and faces stages).

A leaf with no torch and no store: the decode worker processes import it (``indexer.decode_pool``).
"""

from __future__ import annotations

import os

MAX_FILE_BYTES = 1 << 30  # a single "image" over 1 GiB is refused rather than read into memory


def read_file(path: str, size: int | None = None) -> bytes:
    """The file's bytes, or its first ``MAX_FILE_BYTES + 1`` (so a caller sees it is too big).

    One unbuffered read() of ``size`` (the walk's, else fstat's) + 1 bytes: each call that releases the GIL
    costs a wait to get it back while other threads run Python (up to the switch interval), and a buffered
    ``read(huge)`` makes two calls and a 1 GiB allocation per photo. A file whose size is not ``size`` any
    more is read on to its end.
    """
    with open(path, "rb", buffering=0) as f:
        if size is None:
            size = os.fstat(f.fileno()).st_size
        data = f.read(min(size, MAX_FILE_BYTES) + 1)
        if len(data) == size or len(data) > MAX_FILE_BYTES:
            return data
        parts, total = [data], len(data)
        while total <= MAX_FILE_BYTES and (chunk := f.read(min(1 << 24, MAX_FILE_BYTES + 1 - total))):
            parts.append(chunk)
            total += len(chunk)
    return b"".join(parts)
