"""Checksums of the derived index files (the FAISS file, the large index's training, base, lists and delta): a
sidecar ``<name>.crc`` beside each, written before the file takes its name.

A derived file is a cache of the catalog, so damage to it loses nothing: a search that finds a small one failing its
checksum builds the index in memory from the stored vectors instead (``VERIFY_ON_OPEN``), ``check`` reads them all,
and ``check --repair`` rebuilds what fails. Invariant: a derived file at its final name has a sidecar, written
first; a kill between the two leaves a sidecar that does not match, which reads as damage and is rebuilt.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

SUFFIX = ".crc"
VERIFY_ON_OPEN = 64 << 20  # bytes: a search checks files up to this size as it opens them (a Flat index to ~30k
# photos at 512-d); larger ones (the large index's lists) only ``check`` reads whole: a search's scores are guarded
# by their range and the large index re-ranks from checksummed stored vectors


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + SUFFIX)


def crc_of(path: Path) -> tuple[int, int]:
    """(CRC-32, size) of the file at ``path``, read in 8 MB blocks."""
    crc, size = 0, 0
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            crc = zlib.crc32(block, crc)
            size += len(block)
    return crc, size


def write(path: Path, written: Path | None = None) -> None:
    """Record the checksum of ``written`` (default: ``path`` itself; a temporary file about to be renamed to ``path``)
    in ``path``'s sidecar, durably."""
    crc, size = crc_of(written or path)
    target = sidecar(path)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    try:
        with open(tmp, "w", encoding="ascii") as f:
            f.write(f"crc32 {crc:08x} {size}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def verify(path: Path) -> str | None:
    """None if ``path`` matches its sidecar; else what is wrong, in words."""
    try:
        kind, crc, size = sidecar(path).read_text(encoding="ascii").split()
        expected = (int(crc, 16), int(size))
        assert kind == "crc32"
    except (OSError, ValueError, AssertionError):
        return f"{path.name} has no readable checksum beside it"
    try:
        found = crc_of(path)
    except OSError as exc:
        return f"{path.name} cannot be read: {exc.strerror or exc}"
    if found != expected:
        return (f"{path.name} is damaged (its checksum differs)" if found[1] == expected[1] else
                f"{path.name} is damaged ({found[1]} bytes where {expected[1]} were written)")
    return None


def verify_if_small(path: Path) -> bool:
    """Whether ``path`` may be used as it is: it matches its sidecar, or is too large to check on open."""
    try:
        if path.stat().st_size > VERIFY_ON_OPEN:
            return True
    except OSError:
        return False
    return verify(path) is None
