"""The signatures table (format 6): each content's perceptual signature (``clipsearch.signature``).

Per content, like vectors and metadata: copies of one file share it, and it goes with the last file of
its content. Photos indexed before format 6 have none until a run decodes them for it
(``indexer.backfill.SignatureBackfill``); nvJPEG-decoded photos have none until then either.
"""

from __future__ import annotations

import sqlite3

from clipsearch.signature import Signature
from clipsearch.store.migrations import OptionalTable


class SignatureReader(OptionalTable):
    TABLE = "signatures"

    def all(self) -> dict[bytes, Signature]:
        """Content hash -> signature, for every content that has one."""
        if not self.available:
            return {}
        return {bytes(digest): Signature(int(dct), bytes(edges))
                for digest, dct, edges in self._conn.execute("SELECT hash, dct, edges FROM signatures")}

    def count(self) -> int:
        return self._conn.execute("SELECT count(*) FROM signatures").fetchone()[0] if self.available else 0


# -- the writer's side: ``conn`` is in the writer's open transaction ---------------------------
def put(conn: sqlite3.Connection, digest: bytes, value: Signature) -> None:
    conn.execute("INSERT OR REPLACE INTO signatures VALUES (?, ?, ?)", (digest, value.dct, value.edges))


def missing(conn: sqlite3.Connection) -> list[tuple[bytes, str, int, int]]:
    """(hash, path, size, mtime_ns) of one file per indexed content without a signature: what a backfill decodes."""
    rows = conn.execute("SELECT hash, path, size, mtime_ns FROM files WHERE id IN (SELECT min(id) FROM files "
                        "WHERE hash NOT IN (SELECT hash FROM signatures) GROUP BY hash)").fetchall()
    return [(bytes(digest), path, size, mtime_ns) for digest, path, size, mtime_ns in rows]


def drop_orphans(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM signatures WHERE hash NOT IN (SELECT hash FROM files)")
