"""Opening a file the index holds, for someone who asks by id (the server's /file and /thumb, previews): only
what was indexed is read, never what now sits at its path.

The path is opened without following a link (``O_NOFOLLOW``) and without blocking (``O_NONBLOCK``: a FIFO put
at the path would hang the reader otherwise), then the open descriptor must be a regular file whose size and
mtime are the catalog's. A path the index reached through a link (kept when nothing else reaches the file) is
followed, under the same test on what it leads to. Anything else (a link to another photo or to /dev/zero, a
pipe, a file edited since) is refused: ``FileGone`` when nothing is there, ``FileChanged`` otherwise.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator

from clipsearch.errors import FileChanged, FileGone

CHUNK = 1 << 20


def open_indexed(path: str, size: int, mtime_ns: int) -> int:
    """A descriptor of the file at ``path``, which must be the indexed one (``size``, ``mtime_ns``); close it."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno != errno.ELOOP:  # ELOOP: the last part of the path is a link
            raise FileGone("the file is in the index but no longer on disk") from None
        try:
            fd = os.open(path, flags & ~getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            raise FileGone("the file is in the index but no longer on disk") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileChanged("what is at the indexed path now is not a regular file: run 'clipsearch index'")
        if st.st_size != size or st.st_mtime_ns != mtime_ns:
            raise FileChanged("the file changed since it was indexed: run 'clipsearch index' to see it again")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_indexed(path: str, size: int, mtime_ns: int) -> bytes:
    """The indexed file's bytes (no more than the catalog's size, whatever grows there meanwhile)."""
    fd = open_indexed(path, size, mtime_ns)
    with os.fdopen(fd, "rb") as f:
        return f.read(size)


def stream_indexed(fd: int, size: int) -> Iterator[bytes]:
    """The bytes of an opened indexed file in chunks, ``size`` at most; closes ``fd`` when done."""
    with os.fdopen(fd, "rb") as f:
        left = size
        while left > 0 and (chunk := f.read(min(CHUNK, left))):
            left -= len(chunk)
            yield chunk
