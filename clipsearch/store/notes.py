"""The content_notes table (format 12): what the decoder had to say of a content it indexed anyway.

A JPEG that lost its last bytes (a camera's card pulled early, a copy cut short) decodes as far as it goes:
it is indexed, not failed, and its note ("the file is cut short: ...") stays with its content, so that
``info --failed`` lists it beside the files that failed, long after the run that found it. Per content, like
metadata: a copy of the same bytes has the same note; a note outlives no file of its content (it is read
through ``files``).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from clipsearch.store.migrations import OptionalTable


def put(conn: sqlite3.Connection, digest: bytes, note: str) -> None:
    conn.execute("INSERT OR REPLACE INTO content_notes VALUES (?, ?)", (digest, note))


class NotesReader(OptionalTable):
    TABLE = "content_notes"

    def noted(self) -> list[dict[str, Any]]:
        """Each indexed file whose content has a note, as ``Catalog.failures`` gives a failure, with ``indexed``."""
        if not self.available:
            return []
        rows = self._conn.execute("SELECT f.path, n.note, f.size, f.mtime_ns FROM content_notes n "
                                  "JOIN files f ON f.hash = n.hash ORDER BY f.path")
        return [{"path": p, "error": e, "size": s, "mtime_ns": m, "indexed": True} for p, e, s, m in rows]
