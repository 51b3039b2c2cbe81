"""Keeps the pages a searching process has mapped from the large index's lists under a budget.

The lists are memory-mapped (faiss ``OnDiskInvertedLists``), and every list a query probes stays mapped into the
process: left alone, its resident size grows toward the size of the lists (1.4 GB at 10M vectors, ~14 GB at 100M),
though none of it is private memory. Past ``BUDGET`` of file-backed pages, the lists' pages are dropped from this
process with ``madvise(MADV_DONTNEED)``: the file is mapped read-only, so nothing is lost, the pages stay in the
OS page cache, and the next query maps back the ones it probes by minor faults. bench/store_scale.py measures the
search process's and `serve`'s memory and the latency with it (docs/benchmarks.md). Linux only; elsewhere a no-op.
"""

from __future__ import annotations

import ctypes
import os

BUDGET = 512 << 20  # file-backed pages a process may keep mapped (the lists, the libraries) before a trim
MADV_DONTNEED = 4
_STATM = "/proc/self/statm"


class MappedPages:
    """The mappings of one file in this process, trimmed when the process's file-backed pages pass ``budget``."""

    def __init__(self, path: str, budget: int = BUDGET) -> None:
        self.path, self.budget = os.path.realpath(path), budget
        self.page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._madvise = None
        if os.path.exists(_STATM):
            try:
                madvise = ctypes.CDLL(None, use_errno=True).madvise
            except (OSError, AttributeError):
                return
            madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
            self._madvise = madvise

    def file_backed(self) -> int:
        """Bytes of this process's resident pages that a file backs (statm's "shared")."""
        with open(_STATM) as f:
            return int(f.read().split()[2]) * self.page

    def trim(self) -> bool:
        """Drop the file's pages from this process if its file-backed pages pass the budget; whether it did."""
        if self._madvise is None or self.file_backed() <= self.budget:
            return False
        for start, end in self._ranges():
            self._madvise(start, end - start, MADV_DONTNEED)
        return True

    def _ranges(self) -> list[tuple[int, int]]:
        out = []
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and parts[5].rstrip("\n") == self.path:
                    start, end = (int(x, 16) for x in parts[0].split("-"))
                    out.append((start, end))
        return out
