"""Whether the catalog stands behind the paths it is about to hand out: the few hits of a search, never a scan.

A file's path lies twice in the catalog: in its row and in the paths' own index (``path UNIQUE``), found by
different pages. A changed byte in either (a bad sector, a stray write) makes the two disagree, and SQLite reads
the row as it is: a search then served a path that does not exist, exit 0, until someone ran ``check`` (issue 31,
the second trial). Looking each hit's path up in the index (a covering look-up: the index holds the path and the
id) and comparing ids finds it, at one B-tree look-up per hit. ``integrity_check`` finds the same damage, but reads
the whole catalog: that is ``check``'s job, not a search's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from clipsearch.store.paths import PATH, path_param


class PathCheck:
    """The look-ups, on a reader's snapshot (call inside ``StoreReader.snapshot``, with the hits from it)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def disagreeing(self, hits: Iterable[tuple[int, str]]) -> list[tuple[int, str]]:
        """The (file id, path as its row has it) of ``hits`` whose path the paths' index does not give to that id."""
        hits = list(hits)
        if not hits:
            return []
        row = self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'files' AND "
                                 "sql IS NULL AND name LIKE 'sqlite_autoindex_files%'").fetchone()
        if row is None:  # a catalog without the index (none is made so): nothing to compare with
            return []
        query = f"SELECT id FROM files INDEXED BY {row[0]} WHERE path = {PATH}"
        out = []
        for file_id, path in hits:
            found = self._conn.execute(query, (path_param(path),)).fetchone()
            if found is None or found[0] != file_id:
                out.append((file_id, path))
        return out
