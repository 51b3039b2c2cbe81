"""The committed pages of a catalog's write-ahead log (``catalog.sqlite-wal``), read without SQLite.

The writer runs SQLite in WAL mode: a commit lands in the log first and reaches the catalog file at the next
checkpoint (each run's end, or every 1,000 pages). A salvage that read the damaged file alone would lose every
commit since: the names a user gave people, a killed run's vectors. SQLite will not replay the log onto a file
whose own pages it cannot read, so the salvage lays the log's pages over the file's bytes itself, as a checkpoint
would (https://sqlite.org/fileformat.html, 4: the WAL format).

Invariants: a frame counts only when its salts are the log header's and its cumulative checksum holds; frames
count up to the last commit frame that does (a transaction cut off by a crash is not one); later frames of a page
replace earlier ones.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = (0x377F0682, 0x377F0683)  # the checksums' words are little-endian, or big-endian
HEADER = 32
FRAME_HEADER = 24


@dataclass(frozen=True)
class Committed:
    pages: dict[int, bytes]  # page number (from 1) -> the page as last committed
    size: int  # the database's size in pages after the last commit
    page_size: int


def committed(log: bytes) -> Committed | None:
    """What ``log`` holds as committed, or None when it is no log (empty, foreign, or its header damaged)."""
    if len(log) < HEADER:
        return None
    magic, _, page_size, _, salt1, salt2, check1, check2 = struct.unpack(">8I", log[:HEADER])
    if magic not in MAGIC or page_size < 512 or page_size & (page_size - 1):
        return None
    order = ">" if magic & 1 else "<"
    running = _checksum(log[:24], (0, 0), order)
    if running != (check1, check2):
        return None
    pages: dict[int, bytes] = {}
    pending: dict[int, bytes] = {}
    size = 0
    frame = FRAME_HEADER + page_size
    at = HEADER
    while at + frame <= len(log):
        number, commit, frame_salt1, frame_salt2, frame_check1, frame_check2 = struct.unpack(">6I", log[at:at + 24])
        if (frame_salt1, frame_salt2) != (salt1, salt2):
            break
        page = log[at + FRAME_HEADER:at + frame]
        running = _checksum(log[at:at + 8] + page, running, order)
        if running != (frame_check1, frame_check2):
            break
        pending[number] = page
        if commit:
            pages.update(pending)
            pending, size = {}, commit
        at += frame
    return Committed(pages, size, page_size) if pages else None


def lay_over(data: bytearray, log: Committed) -> bytearray:
    """``data`` (a catalog file's bytes) with the log's committed pages in place and its size after the last
    commit; the header then says "no log" (its pages are in)."""
    size = log.page_size
    end = log.size * size
    if len(data) < end:
        data.extend(bytes(end - len(data)))  # pages the file lost and the log does not hold stay zero: unreadable
    for number, page in log.pages.items():
        if number <= log.size:
            data[(number - 1) * size:number * size] = page
    del data[end:]
    if len(data) >= 20:
        data[18:20] = b"\x01\x01"
    return data


def _checksum(data: bytes, start: tuple[int, int], order: str) -> tuple[int, int]:
    """SQLite's WAL checksum: Fibonacci-weighted sums of 32-bit words, carried from ``start``."""
    first, second = start
    words = struct.unpack(f"{order}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        first = (first + words[i] + second) & 0xFFFFFFFF
        second = (second + words[i + 1] + first) & 0xFFFFFFFF
    return first, second
