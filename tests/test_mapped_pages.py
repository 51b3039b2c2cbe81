"""The large index's lists stay mapped into a searching process only up to a budget (clipsearch.store.mapped_pages)."""

from __future__ import annotations

import mmap
import sys
from pathlib import Path

import pytest

from clipsearch.store.mapped_pages import MappedPages

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self (Linux)")


def test_a_trim_gives_back_the_pages_of_the_file_and_keeps_its_bytes(tmp_path: Path) -> None:
    size = 64 << 20
    path = tmp_path / "lists.ivfdata"
    path.write_bytes(bytes(range(256)) * (size // 256))
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        pages = MappedPages(str(path), budget=1 << 40)
        before = pages.file_backed()
        total = sum(mapped[i] for i in range(0, size, pages.page))  # every page mapped in
        touched = pages.file_backed()
        assert touched - before >= size * 0.9
        assert not pages.trim()  # under its budget: nothing done

        pages.budget = 0
        assert pages.trim()
        assert touched - pages.file_backed() >= size * 0.9  # the file's pages left this process
        assert sum(mapped[i] for i in range(0, size, pages.page)) == total  # and read back the same
