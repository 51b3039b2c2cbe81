"""What changed since the large index's base was built (``clipsearch.store.large_index``): the ids whose vector in
the base no longer holds, removed or re-embedded since (``changed_after_build``); the photos added since have ids
past the base's last one (ids are never handed out again). A delta is computed from these alone, without
reading every id of the collection."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

SCHEMA = "CREATE TABLE changed_after_build (id INTEGER PRIMARY KEY)"


def record(conn: sqlite3.Connection, ids: Iterable[int]) -> None:
    """Ids whose stored vector went or was replaced (in the caller's transaction)."""
    conn.executemany("INSERT OR IGNORE INTO changed_after_build VALUES (?)", [(int(i),) for i in ids])


def clear(conn: sqlite3.Connection) -> None:
    """A new base holds every vector as it is now."""
    conn.execute("DELETE FROM changed_after_build")


def since(conn: sqlite3.Connection, base_max: int) -> tuple[list[int], np.ndarray]:
    """(ids the delta holds: added past ``base_max`` or re-embedded, sorted; base ids to skip, sorted)."""
    import numpy as np

    skipped = np.fromiter((r[0] for r in conn.execute(
        "SELECT id FROM changed_after_build WHERE id <= ? ORDER BY id", (base_max,))), dtype="int64")
    again = [r[0] for r in conn.execute(
        "SELECT files.id FROM changed_after_build JOIN files ON files.id = changed_after_build.id "
        "WHERE files.id <= ? ORDER BY files.id", (base_max,))]
    added = [r[0] for r in conn.execute("SELECT id FROM files WHERE id > ? ORDER BY id", (base_max,))]
    return again + added, skipped


def counts(conn: sqlite3.Connection, base_max: int) -> tuple[int, int]:
    """(photos the delta holds, base ids it skips) without reading them: whether the base is due a rebuild."""
    skipped = conn.execute("SELECT count(*) FROM changed_after_build WHERE id <= ?", (base_max,)).fetchone()[0]
    again = conn.execute("SELECT count(*) FROM changed_after_build JOIN files ON files.id = changed_after_build.id "
                         "WHERE files.id <= ?", (base_max,)).fetchone()[0]
    added = conn.execute("SELECT count(*) FROM files WHERE id > ?", (base_max,)).fetchone()[0]
    return int(again + added), int(skipped)
