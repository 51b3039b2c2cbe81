"""The signatures table (format 6; its grids from format 8): each content's perceptual signature
(``clipsearch.signature``).

Per content, like vectors and metadata: copies of one file share it, and it goes with the last file of
its content. Photos indexed before format 6 have none, and those indexed before format 8 no grid, until a run
decodes them for it (``indexer.backfill.SignatureBackfill``); nvJPEG-decoded photos have none until then either.
Grids (~1.2 KB each) are read only for the pairs that need them (``grids``), never all at once.
"""

from __future__ import annotations

import sqlite3

from clipsearch.signature import Signature
from clipsearch.store.migrations import OptionalTable

_IN_CHUNK = 500  # hashes per "IN (...)" query


class SignatureReader(OptionalTable):
    TABLE = "signatures"

    def all(self) -> dict[bytes, Signature]:
        """Content hash -> signature without its grid, for every content that has one."""
        if not self.available:
            return {}
        return {bytes(digest): Signature(int(dct), bytes(edges))
                for digest, dct, edges in self._conn.execute("SELECT hash, dct, edges FROM signatures")}

    def grids(self, digests: list[bytes]) -> dict[bytes, bytes]:
        """Content hash -> grid, for those of ``digests`` that have one."""
        if not self.available or "grid" not in {r[1] for r in self._conn.execute("PRAGMA table_info(signatures)")}:
            return {}
        out: dict[bytes, bytes] = {}
        for start in range(0, len(digests), _IN_CHUNK):
            chunk = digests[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            out.update((bytes(d), bytes(g)) for d, g in self._conn.execute(
                f"SELECT hash, grid FROM signatures WHERE grid IS NOT NULL AND hash IN ({marks})", chunk))
        return out

    def count(self) -> int:
        return self._conn.execute("SELECT count(*) FROM signatures").fetchone()[0] if self.available else 0


# -- the writer's side: ``conn`` is in the writer's open transaction ---------------------------
def put(conn: sqlite3.Connection, digest: bytes, value: Signature) -> None:
    conn.execute("INSERT OR REPLACE INTO signatures (hash, dct, edges, grid) VALUES (?, ?, ?, ?)",
                 (digest, value.dct, value.edges, value.grid or None))


def missing(conn: sqlite3.Connection) -> list[tuple[bytes, str, int, int]]:
    """(hash, path, size, mtime_ns) of one file per indexed content without a signature or its grid: what a
    backfill decodes."""
    rows = conn.execute("SELECT hash, path, size, mtime_ns FROM files WHERE id IN (SELECT min(id) FROM files "
                        "WHERE hash NOT IN (SELECT hash FROM signatures WHERE grid IS NOT NULL) GROUP BY hash)"
                        ).fetchall()
    return [(bytes(digest), path, size, mtime_ns) for digest, path, size, mtime_ns in rows]


def drop_orphans(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM signatures WHERE hash NOT IN (SELECT hash FROM files)")
