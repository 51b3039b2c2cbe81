"""Segment files: the stored vectors, out of the catalog, as append-only rows a search can memory-map.

A segment is ``segments/<id>.seg`` in the index directory: a 64-byte header (magic, dimensions, bytes per
number) and then rows of float32 numbers, or float16 ones once the collection takes the large index. The
catalog's ``vectors`` table points each content hash at (segment, row), and its ``segments`` table holds
each segment's committed row count. Rows are appended and fsynced *before*
the catalog commit that points at them, so a killed run can leave rows nobody points at (cut off by
the next writer, ``Segments.cut_to_committed``) but never a row pointing at nothing. Rows whose
content left the index stay until compaction (``StoreWriter.compact``) copies a segment's live rows
into a new one.

Each segment has a sidecar ``<id>.sum``: the CRC-32 of every row (little-endian uint32, one a row), written and
fsynced with the rows. Every read checks the rows it returns against them (``SegmentError``, a ``DamagedIndex``,
on a mismatch: a damaged vector is never scored), and ``check`` reads them all (``damaged_rows``), so that
``check --repair`` drops exactly the rows that changed on disk.

Why float16 only for large collections: half the disk and page cache of float32 (1 KB a photo at 512
dimensions: 100 GB at 100M, what clip-retrieval keeps too), but a cosine moves by up to ~1e-4, which
reorders photos a model embeds that close together (random weights do; tests/test_pipeline.py saw it).
Below that size exact float32 costs little. Compaction rewrites the float32 segments of a collection
that has become large.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from clipsearch.errors import DamagedIndex

if TYPE_CHECKING:
    import numpy as np

MAGIC = b"CSVSEG01"
HEADER = 64  # bytes before the first row: MAGIC, dimensions (uint32), bytes per number (uint32: 2 or 4), zeros
# A search reads a few hundred scattered rows (re-ranking, "more like this") with pread, not through the map: each
# row touched through the map brought the 64 KB around it into the process (the kernel's fault-around;
# MADV_RANDOM did not stop it and only turned read-ahead off for bulk reads): a search process's resident set
# grew without bound at 10M photos (bench/store_scale.py; figures in docs/benchmarks.md). Bulk reads (a build, the
# training sample) go through the map.
FEW_ROWS = 4096
ROWS_PER_SEGMENT = 1 << 20  # 1 GiB at 512 dimensions: few files at 100M photos, and compaction rewrites little at once
SCHEMA = (
    "CREATE TABLE segments (id INTEGER PRIMARY KEY, dim INTEGER NOT NULL, itemsize INTEGER NOT NULL, "
    "rows INTEGER NOT NULL)",
    """CREATE TABLE vectors (
    hash BLOB PRIMARY KEY,
    segment INTEGER NOT NULL,
    row INTEGER NOT NULL
) WITHOUT ROWID""",
)


class SegmentError(DamagedIndex):
    """A segment file is missing, or shorter than the catalog says, or not a segment, or a row read from it fails its
    checksum."""


def _path(directory: Path, segment: int) -> Path:
    return directory / f"{segment:06d}.seg"


def _sum_path(directory: Path, segment: int) -> Path:
    return directory / f"{segment:06d}.sum"


def row_sums(block: bytes | memoryview, row_bytes: int) -> bytes:
    """The CRC-32 of each ``row_bytes`` row of ``block``, as the sidecar stores them (little-endian uint32s)."""
    view = memoryview(block)
    count = len(view) // row_bytes
    return struct.pack(f"<{count}I", *(zlib.crc32(view[i * row_bytes : (i + 1) * row_bytes]) for i in range(count)))


_REPAIR = "'clipsearch check --repair' drops them, and the next index run embeds those photos again"


def _failed_checksums(segment: int, bad: int) -> SegmentError:
    return SegmentError(f"{bad} stored vector{'s' if bad > 1 else ''} in segment {segment} failed "
                        f"{'their' if bad > 1 else 'its'} checksum (damaged on disk): {_REPAIR}")


def _header(dim: int, itemsize: int) -> bytes:
    return MAGIC + struct.pack("<II", dim, itemsize) + bytes(HEADER - len(MAGIC) - 8)


def _dtype(itemsize: int) -> str:
    return "<f2" if itemsize == 2 else "<f4"


class Segments:
    """The segment files of one index directory (``Layout.segments``), as a reader sees them: memory-mapped, each
    mapping renewed when a row past its end is asked for (the writer appends while readers read)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._maps: dict[int, np.ndarray] = {}
        self._sums: dict[int, np.ndarray] = {}  # each segment's row checksums, mapped
        self._fds: dict[int, int] = {}  # segment -> its file, -1 - segment -> its checksums

    def path(self, segment: int) -> Path:
        return _path(self.directory, segment)

    def sum_path(self, segment: int) -> Path:
        return _sum_path(self.directory, segment)

    def listed(self) -> list[int]:
        """The segment ids that have a file here (listed or not in the catalog)."""
        if not self.directory.is_dir():
            return []
        return sorted({int(p.stem) for p in self.directory.glob("*.s[eu][gm]") if p.stem.isdigit()})

    def shape_of(self, segment: int) -> tuple[int, int]:
        """(dimensions, bytes per number) in ``segment``'s header."""
        try:
            with open(self.path(segment), "rb") as f:
                head = f.read(HEADER)
        except OSError as exc:
            raise SegmentError(f"segment {segment}: {exc.strerror or exc}; {_REPAIR}") from None
        dim, itemsize = struct.unpack("<II", head[len(MAGIC) : len(MAGIC) + 8]) if len(head) >= HEADER else (0, 0)
        if not head.startswith(MAGIC) or itemsize not in (2, 4):
            raise SegmentError(f"segment {segment} is not a segment file (its header is damaged); {_REPAIR}")
        return dim, itemsize

    def rows_in_file(self, segment: int, dim: int, itemsize: int) -> int:
        try:
            size = self.path(segment).stat().st_size
        except OSError:
            return 0
        return max(0, size - HEADER) // (dim * itemsize)

    def _map(self, segment: int, dim: int, need: int) -> np.ndarray:
        import numpy as np

        mapped = self._maps.get(segment)
        if mapped is None or mapped.shape[0] < need:
            found_dim, itemsize = self.shape_of(segment)
            if found_dim != dim:
                raise SegmentError(f"segment {segment} holds vectors of another size than the index's {dim}")
            rows = self.rows_in_file(segment, dim, itemsize)
            if rows < need:
                raise SegmentError(f"segment {segment} holds {rows} rows; the catalog points at row {need - 1}; "
                                   f"{_REPAIR}")
            raw = np.memmap(self.path(segment), dtype=_dtype(itemsize), mode="r", offset=HEADER, shape=(rows, dim))
            mapped = np.asarray(raw)  # a plain array over the map (keeping it alive): memmap's indexing is slow per call
            self._maps[segment] = mapped
        return mapped

    def gather(self, segments: np.ndarray, rows: np.ndarray, dim: int) -> np.ndarray:
        """The float32 vectors at (segment, row) pairs, in their order."""
        import numpy as np

        out = np.empty((len(rows), dim), dtype="float32")
        if len(rows) == 0:
            return out
        for segment in np.unique(segments):
            where = np.flatnonzero(segments == segment)
            picked = rows[where]
            mapped = self._map(int(segment), dim, int(picked.max()) + 1)
            if len(picked) <= FEW_ROWS:  # read, not mapped: see FEW_ROWS
                out[where] = self._read_rows(int(segment), picked, mapped.dtype, dim)
                continue
            order = np.argsort(picked, kind="stable")  # in file order: the page cache reads ahead
            block = np.ascontiguousarray(mapped[picked[order]])
            self._verify(int(segment), picked[order], block)
            out[where[order]] = block
        return out

    def _verify(self, segment: int, rows: np.ndarray, block: np.ndarray) -> None:
        """Raise ``SegmentError`` unless every row of ``block`` (stored rows ``rows``) matches its checksum."""
        import numpy as np

        stored = self._sums.get(segment)
        if stored is None or len(stored) <= int(rows.max()):
            try:
                size = self.sum_path(segment).stat().st_size // 4
                stored = np.memmap(self.sum_path(segment), dtype="<u4", mode="r", shape=(size,)) if size else \
                    np.empty(0, dtype="<u4")
            except OSError:
                raise SegmentError(f"segment {segment} has lost its checksums (its .sum file): its vectors cannot be "
                                   f"trusted; {_REPAIR}") from None
            self._sums[segment] = stored
        self._compare(segment, rows, block, stored)

    @staticmethod
    def _compare(segment: int, rows: np.ndarray, block: np.ndarray, stored: np.ndarray) -> None:
        import numpy as np

        found = np.frombuffer(row_sums(block.tobytes(), block.shape[1] * block.dtype.itemsize), dtype="<u4")
        known = rows < len(stored)
        bad = int(np.count_nonzero(~known)) + int(np.count_nonzero(stored[rows[known]] != found[known]))
        if bad:
            raise _failed_checksums(segment, bad)

    def damaged_rows(self, segment: int, dim: int, itemsize: int, rows: int) -> list[int]:
        """The rows among the first ``rows`` of ``segment`` that are missing or fail their checksum (all of them when
        the file is not a segment of this shape, or its checksums are lost): what ``check`` reads the disk for."""
        try:
            ok = self.shape_of(segment) == (dim, itemsize)
        except SegmentError:
            ok = False
        if not ok:
            return list(range(rows))
        size = dim * itemsize
        try:
            sums = self.sum_path(segment).read_bytes()
        except OSError:
            sums = b""
        bad: list[int] = []
        step = 8192
        with open(self.path(segment), "rb") as f:
            f.seek(HEADER)
            for start in range(0, rows, step):
                data = f.read(min(step, rows - start) * size)
                found = row_sums(data, size)
                have = len(data) // size
                for i in range(min(step, rows - start)):
                    at = start + i
                    if i >= have or 4 * at + 4 > len(sums) or sums[4 * at : 4 * at + 4] != found[4 * i : 4 * i + 4]:
                        bad.append(at)
        return bad

    def _read_rows(self, segment: int, picked: np.ndarray, dtype: np.dtype, dim: int) -> np.ndarray:
        import numpy as np

        size = dim * dtype.itemsize
        fd = self._fds.get(segment)
        if fd is None:
            fd = self._fds[segment] = os.open(self.path(segment), os.O_RDONLY)
        data = b"".join(os.pread(fd, size, HEADER + int(row) * size) for row in picked)
        sums_fd = self._fds.get(-1 - segment)
        if sums_fd is None:
            try:
                sums_fd = self._fds[-1 - segment] = os.open(self.sum_path(segment), os.O_RDONLY)
            except OSError:
                raise SegmentError(f"segment {segment} has lost its checksums (its .sum file): its vectors cannot "
                                   f"be trusted; {_REPAIR}") from None
        stored = np.frombuffer(b"".join(os.pread(sums_fd, 4, 4 * int(row)).ljust(4, b"\0") for row in picked),
                               dtype="<u4")
        block = np.frombuffer(data, dtype=dtype).reshape(len(picked), dim)
        found = np.frombuffer(row_sums(data, size), dtype="<u4")
        if not np.array_equal(found, stored):
            bad = int(np.count_nonzero(found != stored))
            raise _failed_checksums(segment, bad)
        return block

    def forget_maps(self) -> None:
        self._maps.clear()
        self._sums.clear()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


class SegmentAppender:
    """The writer's end: hands out (segment, row) for new vectors and writes them, fsynced, before the commit.

    ``flush`` writes what was added since the last flush and returns the new committed row count of each segment
    it touched, which the caller records in the same transaction as the ``vectors`` rows that point there."""

    def __init__(self, files: Segments, conn: sqlite3.Connection, dim: int, itemsize: int = 4,
                 rows_per_segment: int | None = None):
        self.files = files
        self.dim, self.itemsize = dim, itemsize
        self.rows_per_segment = rows_per_segment or ROWS_PER_SEGMENT
        last = conn.execute("SELECT id, dim, itemsize, rows FROM segments ORDER BY id DESC LIMIT 1").fetchone()
        top = max([0, *(files.listed())])
        same = last is not None and (last[1], last[2]) == (dim, itemsize) and self._whole(files, int(last[0]), dim,
                                                                                            itemsize, int(last[3]))
        self._segment, self._rows = (int(last[0]), int(last[3])) if same else (0, self.rows_per_segment)
        self._next = max(top, int(last[0]) if last else 0) + 1
        self._pending: list[tuple[int, int, list[np.ndarray]]] = []  # (segment, first row, vectors)

    @staticmethod
    def _whole(files: Segments, segment: int, dim: int, itemsize: int, rows: int) -> bool:
        """Whether new rows may go after the ``rows`` committed in ``segment``: its file is there, a segment of this
        shape, with its rows and their checksums (a damaged one is left as it is for ``check`` to find)."""
        try:
            return (files.shape_of(segment) == (dim, itemsize) and files.rows_in_file(segment, dim, itemsize) >= rows
                    and files.sum_path(segment).stat().st_size >= 4 * rows)
        except (SegmentError, OSError):
            return False

    def add(self, vector: np.ndarray) -> tuple[int, int]:
        if self._rows >= self.rows_per_segment:
            self.start_segment()
        if not self._pending or self._pending[-1][0] != self._segment:
            self._pending.append((self._segment, self._rows, []))
        self._pending[-1][2].append(vector)
        self._rows += 1
        return self._segment, self._rows - 1

    def add_block(self, matrix: np.ndarray) -> list[tuple[int, int]]:
        """``add`` for each row of ``matrix``."""
        return [self.add(vector) for vector in matrix]

    def half_from_now(self) -> None:
        """Float16 rows from the next vector on, in a new segment; call right after ``flush``."""
        assert not self._pending, "rows added before the switch are written as they were placed"
        self.itemsize = 2
        self.start_segment()

    def start_segment(self) -> None:
        """Further vectors go to a new segment (compaction writes the live rows of old ones there)."""
        self._segment, self._rows = self._next, 0
        self._next += 1

    def flush(self) -> list[tuple[int, int, int, int]]:
        """Write and fsync the pending rows; (segment, dim, itemsize, committed rows) for each segment written to."""
        import numpy as np

        done: list[tuple[int, int, int, int]] = []
        created = False
        for segment, first, vectors in self._pending:
            path = self.files.path(segment)
            sums = self.files.sum_path(segment)
            if first == 0:
                self.files.directory.mkdir(parents=True, exist_ok=True)
                with open(path, "wb") as f:  # a stale file of a killed run under this id: replaced
                    f.write(_header(self.dim, self.itemsize))
                sums.write_bytes(b"")
                created = True
            data = np.ascontiguousarray(np.vstack(vectors), dtype=_dtype(self.itemsize)).tobytes()
            for target, at, content in ((path, HEADER + first * self.dim * self.itemsize, data),
                                        (sums, 4 * first, row_sums(data, self.dim * self.itemsize))):
                with open(target, "r+b") as f:
                    f.seek(at)  # after the committed rows, over what a killed run left
                    f.write(content)
                    f.truncate()
                    f.flush()
                    os.fsync(f.fileno())
            done.append((segment, self.dim, self.itemsize, first + len(vectors)))
        if created:
            _fsync_directory(self.files.directory)
        self._pending.clear()
        return done


POINTER_TABLES = ("vectors", "vectors_next")  # what points into segments: the vectors searches use, a re-embedding's
COMPACT_BELOW = 0.5  # a segment is rewritten once fewer than half of its rows are still pointed at


class SegmentWriter:
    """The vectors' side of the store's writer: puts a new content's vector in a segment, makes the rows durable just
    before each catalog commit, drops them all (``--reindex``), and compacts."""

    def __init__(self, files: Segments, conn: sqlite3.Connection, dim: int, itemsize: int,
                 table: str = "vectors") -> None:
        assert table in POINTER_TABLES, table
        self.files = files
        self._conn = conn
        self.table = table  # where new vectors are pointed at: ``vectors_next`` during a re-embedding
        self.appender = SegmentAppender(files, conn, dim, itemsize)

    def put(self, digest: bytes, vector: np.ndarray) -> None:
        """Store ``vector`` for ``digest`` unless a vector for it is stored already (in the open transaction)."""
        if self._conn.execute(f"SELECT 1 FROM {self.table} WHERE hash = ?", (digest,)).fetchone() is None:
            segment, row = self.appender.add(vector)
            self._conn.execute(f"INSERT INTO {self.table} (hash, segment, row) VALUES (?, ?, ?)", (digest, segment, row))

    def before_commit(self) -> None:
        """Write and fsync the rows added since the last commit, and record them in the open transaction."""
        record(self._conn, self.appender.flush())

    def compact(self, below: float = COMPACT_BELOW) -> list[int]:
        """Copy the live rows of every segment less than ``below`` alive, or of another number type than the one
        written now, into new segments (in the open transaction). Returns the segments whose files go after the
        commit."""
        import numpy as np

        counts = dict(self._conn.execute("SELECT segment, count(*) FROM (SELECT segment FROM vectors UNION ALL "
                                         "SELECT segment FROM vectors_next) GROUP BY segment").fetchall())
        sources = [int(s) for s, rows, itemsize, dim in self._conn.execute("SELECT id, rows, itemsize, dim FROM segments")
                   if rows and (counts.get(s, 0) == 0 or (dim == self.appender.dim and (
                       counts.get(s, 0) < below * rows or itemsize != self.appender.itemsize)))]
        if not sources:
            return []
        self.appender.start_segment()
        for segment in sources:
            for table in POINTER_TABLES:
                rows = self._conn.execute(f"SELECT hash, segment, row FROM {table} WHERE segment = ? ORDER BY row",
                                          (segment,)).fetchall()
                for start in range(0, len(rows), 65536):
                    block = rows[start : start + 65536]
                    at = np.array([r[2] for r in block], dtype="int64")
                    placed = self.appender.add_block(self.files.gather(np.full(len(block), segment), at,
                                                                       self.appender.dim))
                    self._conn.executemany(f"UPDATE {table} SET segment = ?, row = ? WHERE hash = ?",
                                           [(s, r, row[0]) for row, (s, r) in zip(block, placed)])
            self._conn.execute("DELETE FROM segments WHERE id = ?", (segment,))
        return sources


def record(conn: sqlite3.Connection, written: Iterable[tuple[int, int, int, int]]) -> None:
    """Record what ``SegmentAppender.flush`` wrote, in the caller's transaction."""
    conn.executemany("INSERT INTO segments (id, dim, itemsize, rows) VALUES (?, ?, ?, ?) "
                     "ON CONFLICT (id) DO UPDATE SET rows = excluded.rows", list(written))


def cut_to_committed(conn: sqlite3.Connection, files: Segments) -> None:
    """Undo what a killed writer left: rows past a segment's committed count are cut off, and files of segments the
    catalog does not list (a new segment whose first commit never came, a compaction's leftovers) are removed."""
    listed = {int(s): (int(size), int(rows)) for s, size, rows in
              conn.execute("SELECT id, dim * itemsize * rows + ?, rows FROM segments", (HEADER,))}
    for segment in files.listed():
        path, sums = files.path(segment), files.sum_path(segment)
        if segment not in listed:
            path.unlink(missing_ok=True)
            sums.unlink(missing_ok=True)
            continue
        size, rows = listed[segment]
        for target, length in ((path, size), (sums, 4 * rows)):
            try:
                if target.stat().st_size > length:
                    os.truncate(target, length)
            except FileNotFoundError:
                pass  # lost: check finds it, check --repair drops its vectors


def remove(files: Segments, segments: Sequence[int]) -> None:
    """Delete segment files the catalog no longer lists (after the commit that dropped them)."""
    for segment in segments:
        files.path(segment).unlink(missing_ok=True)
        files.sum_path(segment).unlink(missing_ok=True)


def write_sums(files: Segments, segment: int, rows: int) -> None:
    """Compute and write the checksums of the first ``rows`` of ``segment`` as its file holds them now (format 10's
    upgrade: the rows were written before checksums were kept)."""
    try:
        dim, itemsize = files.shape_of(segment)
    except SegmentError:
        return  # not readable as a segment: without checksums, check reports its rows as damaged
    size = dim * itemsize
    out = bytearray()
    with open(files.path(segment), "rb") as f:
        f.seek(HEADER)
        for start in range(0, rows, 8192):
            out += row_sums(f.read(min(8192, rows - start) * size), size)
    with open(files.sum_path(segment), "wb") as f:
        f.write(out)
        f.flush()
        os.fsync(f.fileno())


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
