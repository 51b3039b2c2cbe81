"""Reading stored vectors, whichever way the catalog keeps them: float32 blobs in its ``vectors`` table (formats 1-6,
still read as they are on a read-only mount) or rows of segment files (format 7 on, ``clipsearch.store.segments``).

A query selects ``columns`` from the ``vectors`` table (after any columns of its own) and hands the rows to
``matrix``; nothing else needs to know where the numbers lie.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from clipsearch.store.segments import Segments

if TYPE_CHECKING:
    import numpy as np

SEGMENTS_FROM = 7  # the first catalog format whose vectors are in segment files


class StoredVectors:
    def __init__(self, conn: sqlite3.Connection, segments: Segments, dim: int, format_version: int) -> None:
        self._conn = conn
        self.segments = segments
        self.dim = dim
        self.in_segments = format_version >= SEGMENTS_FROM

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
