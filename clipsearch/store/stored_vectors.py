"""Reading stored vectors, whichever way the catalog keeps them: float32 blobs in its ``vectors`` table (formats 1-6,
still read as they are on a read-only mount) or rows of segment files (format 7 on, ``clipsearch.store.segments``).

A query selects ``columns`` from the ``vectors`` table (after any columns of its own) and hands the rows to
``matrix``; nothing else needs to know where the numbers lie. ``StoredVectors`` is the one reader of vectors: by file
id (FAISS ids, a video's moments included), by path, a random sample, or all of them in blocks.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from clipsearch.store.moments import MomentReader, moment_id, split_ids
from clipsearch.store.paths import PATH, path_param
from clipsearch.store.segments import Segments

if TYPE_CHECKING:
    import numpy as np


class _Catalog(Protocol):
    """What ``StoredVectors.of`` reads of a ``catalog.Catalog`` (not imported: it imports the tables that import this)."""

    @property
    def conn(self) -> sqlite3.Connection: ...

    @property
    def model(self) -> Any: ...

    @property
    def format_version(self) -> int: ...

SEGMENTS_FROM = 7  # the first catalog format whose vectors are in segment files
_IN_CHUNK = 500  # ids per "IN (...)" query


class StoredVectors:
    def __init__(self, conn: sqlite3.Connection, segments: Segments, dim: int, format_version: int) -> None:
        self._conn = conn
        self.segments = segments
        self.dim = dim
        self.in_segments = format_version >= SEGMENTS_FROM

    @classmethod
    def of(cls, catalog: _Catalog, segments: Segments) -> StoredVectors:
        """The vectors of the catalog's current model (searches use them; their size changes with a re-embedding)."""
        model = catalog.model
        return cls(catalog.conn, segments, model.dim if model else 0, catalog.format_version)

    def iter_vectors(self, ids: Sequence[int] | None = None, chunk: int = 4096,
                     between: tuple[int, int] = (0, 1 << 62), moments: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (ids, float32 matrix) blocks of stored vectors: all files (ids ``between`` the two, both included) or
        the given ids, and unless not ``moments`` their videos' moments (FAISS ids: ``moments.moment_id``)."""
        import numpy as np

        select = f"SELECT files.id, {self.columns} FROM files JOIN vectors ON vectors.hash = files.hash"
        file_ids, wanted = (None, None) if ids is None else split_ids(ids)
        if file_ids is None:
            cursor = self._conn.execute(f"{select} WHERE files.id BETWEEN ? AND ? ORDER BY files.id", between)
            blocks: Iterator[list[Any]] = iter(lambda: cursor.fetchmany(chunk), [])
        else:
            parts = (file_ids[start : start + _IN_CHUNK] for start in range(0, len(file_ids), _IN_CHUNK))
            blocks = (self._conn.execute(f"{select} WHERE files.id IN ({','.join('?' * len(p))})", p).fetchall()
                      for p in parts)
        for rows in blocks:
            if rows:
                yield np.fromiter((r[0] for r in rows), dtype="int64", count=len(rows)), self.matrix(rows, 1)
        yield from self._moment_blocks(wanted if moments else {}, between, chunk)

    def _moment_blocks(self, wanted: dict[int, set[int]] | None, between: tuple[int, int],
                       chunk: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(FAISS ids, float32 matrix) blocks of the moments ``wanted`` (None: of every file ``between`` the two ids)."""
        import numpy as np

        if wanted is not None and not wanted:
            return
        rows = MomentReader(self._conn).rows(self.columns, None if wanted is None else sorted(wanted), between)
        if wanted is not None:
            rows = [r for r in rows if r[1] in wanted[r[0]]]
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            yield np.fromiter((moment_id(r[0], r[1]) for r in part), dtype="int64", count=len(part)), self.matrix(part, 2)

    def exact(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, float32 matrix) of the vectors of ``ids``, as one block (the large index's re-ranking)."""
        import numpy as np

        blocks = list(self.iter_vectors(ids))
        if not blocks:
            return np.empty(0, dtype="int64"), np.empty((0, self.dim), dtype="float32")
        return np.concatenate([b[0] for b in blocks]), np.vstack([b[1] for b in blocks])

    def _of_file(self, column: str, value: object, param: str) -> np.ndarray | None:
        row = self._conn.execute(f"SELECT {self.columns} FROM files JOIN vectors ON vectors.hash = files.hash "
                                 f"WHERE files.{column} = {param}", (value,)).fetchone()
        return None if row is None else self.matrix([row])[0]

    def of_path(self, path: str) -> np.ndarray | None:
        return self._of_file("path", path_param(path), PATH)

    def of_id(self, file_id: int) -> np.ndarray | None:
        return self._of_file("id", file_id, "?")

    def by_path(self) -> dict[str, np.ndarray]:
        """Every indexed file's vector, by path."""
        paths = dict(self._conn.execute("SELECT id, path FROM files"))
        return {paths[int(i)]: row for ids, matrix in self.iter_vectors(moments=False) for i, row in zip(ids, matrix)}

    def sample(self, size: int) -> np.ndarray:
        """``size`` vectors of indexed files drawn at random (what an index type trains on)."""
        return self.matrix(self._conn.execute(
            f"SELECT {self.columns} FROM vectors WHERE hash IN (SELECT hash FROM files) ORDER BY random() LIMIT ?",
            (size,)).fetchall())

    @property
    def columns(self) -> str:
        return "vectors.segment, vectors.row" if self.in_segments else "vectors.embedding"

    @property
    def width(self) -> int:
        return 2 if self.in_segments else 1

    def matrix(self, rows: Sequence[Sequence[object]], start: int = 0) -> np.ndarray:
        """The float32 (n, dim) matrix of ``rows``, whose vector columns begin at ``start``."""
        import numpy as np

        if self.in_segments:
            segments = np.fromiter((r[start] for r in rows), dtype="int64", count=len(rows))
            positions = np.fromiter((r[start + 1] for r in rows), dtype="int64", count=len(rows))
            return self.segments.gather(segments, positions, self.dim)
        blobs = b"".join(r[start] for r in rows)  # type: ignore[misc]
        return np.frombuffer(blobs, dtype="<f4").reshape(len(rows), self.dim).astype("float32")

    def reembedding(self, pending: Any) -> dict[str, Any] | None:
        """An unfinished ``index --reindex`` with the ``pending`` model (``Catalog.pending_model``): its model and how
        many of the stored vectors it has made again (``vectors_next``)."""
        if pending is None:
            return None
        done = self._conn.execute("SELECT count(*) FROM vectors_next WHERE hash IN (SELECT hash FROM vectors)")
        return {"model": pending.spec, "vectors_done": done.fetchone()[0],
                "vectors": self._conn.execute("SELECT count(*) FROM vectors").fetchone()[0]}

    def damaged(self, table: str = "vectors") -> list[bytes]:
        """Content hashes whose vector cannot be trusted: a blob of the wrong size (formats 1-6), or a row that is past
        the end of its segment file, in a segment whose file is missing or not a segment, or failing its checksum
        (``Segments.damaged_rows``: every row is read)."""
        if not self.in_segments:
            return [bytes(r[0]) for r in self._conn.execute("SELECT hash FROM vectors WHERE length(embedding) != ?",
                                                            (self.dim * 4,))]
        assert table in ("vectors", "vectors_next"), table
        bad = {bytes(r[0]) for r in self._conn.execute(
            f"SELECT v.hash FROM {table} AS v LEFT JOIN segments ON segments.id = v.segment "
            "WHERE segments.id IS NULL OR v.row >= segments.rows OR v.row < 0")}
        for segment, dim, itemsize, rows in self._conn.execute("SELECT id, dim, itemsize, rows FROM segments").fetchall():
            if table == "vectors" and dim != self.dim:  # (a re-embedding's rows may be of another size)
                rows_bad = list(range(rows))
            else:
                rows_bad = self.segments.damaged_rows(segment, dim, itemsize, rows)
            for start in range(0, len(rows_bad), 500):
                part = rows_bad[start : start + 500]
                bad.update(bytes(r[0]) for r in self._conn.execute(
                    f"SELECT hash FROM {table} WHERE segment = ? AND row IN ({','.join('?' * len(part))})",
                    (segment, *part)))
        return sorted(bad)

    def unreferenced_rows(self) -> int:
        """Rows of segment files whose content left the index: disk that compaction reclaims."""
        if not self.in_segments:
            return 0
        total = self._conn.execute("SELECT coalesce(sum(rows), 0) FROM segments").fetchone()[0]
        live = self._conn.execute("SELECT (SELECT count(*) FROM vectors) + (SELECT count(*) FROM vectors_next)")
        return int(total) - int(live.fetchone()[0])
