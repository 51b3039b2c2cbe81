"""The tags table: each content's tags (``clipsearch.zeroshot.tagging``), read by search and written by a run.

Tags belong to a content (a hash), like its vector: a renamed or copied photo keeps them, and they go
when the last file of that content goes. ``tagged`` lists the contents whose tags are current, and
``meta.tags_key`` says what they were computed with (model, vocabulary, templates, rule): a run that
finds another key drops them all and tags every stored vector again, which costs a matrix product,
never a decode. Format 4 on; readers of older catalogs see no tags.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from clipsearch.store.migrations import OptionalTable

if TYPE_CHECKING:
    import numpy as np

    from clipsearch.store.stored_vectors import StoredVectors

_IN_CHUNK = 500


class TagReader(OptionalTable):
    """The tag queries of a catalog connection (a reader's snapshot or the writer's)."""

    TABLE = "tags"

    def key(self) -> str | None:
        """What the stored tags were computed with (None: no tags yet)."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'tags_key'").fetchone()
        return row[0] if row else None

    def counts(self) -> list[tuple[str, int]]:
        """Every tag with how many indexed files carry it, most common first."""
        if not self.available:
            return []
        return self._conn.execute("SELECT tags.tag, count(*) FROM tags JOIN files ON files.hash = tags.hash "
                                  "GROUP BY tags.tag ORDER BY count(*) DESC, tags.tag").fetchall()

    def tagged_files(self) -> int:
        if not self.available:
            return 0
        return self._conn.execute("SELECT count(*) FROM files WHERE hash IN (SELECT hash FROM tags)").fetchone()[0]

    def of_ids(self, ids: Iterable[int]) -> dict[int, list[tuple[str, float]]]:
        """Each file's tags, most probable first (files with none are left out)."""
        ids = [int(i) for i in ids]
        out: dict[int, list[tuple[str, float]]] = {}
        if not self.available:
            return out
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute("SELECT files.id, tags.tag, tags.probability FROM files JOIN tags ON "
                                      f"tags.hash = files.hash WHERE files.id IN ({marks}) ORDER BY tags.probability DESC",
                                      chunk)
            for file_id, tag, probability in rows:
                out.setdefault(file_id, []).append((tag, probability))
        return out

    def ids_with(self, wanted: Sequence[str]) -> list[int]:
        """The files that carry every tag in ``wanted`` (case-insensitive)."""
        if not self.available:
            return []
        hashes: set[bytes] | None = None
        for tag in wanted:
            found = {bytes(r[0]) for r in self._conn.execute("SELECT hash FROM tags WHERE tag = ? COLLATE NOCASE", (tag,))}
            hashes = found if hashes is None else hashes & found
        if not hashes:
            return []
        ids: list[int] = []
        keys = list(hashes)
        for start in range(0, len(keys), _IN_CHUNK):
            chunk = keys[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            ids.extend(r[0] for r in self._conn.execute(f"SELECT id FROM files WHERE hash IN ({marks})", chunk))
        return sorted(ids)


# -- the writer's side: ``conn`` is in the writer's open transaction ---------------------------
def reset(conn: sqlite3.Connection, key: str) -> bool:
    """Make ``key`` the tags' key; if it was another, drop every tag (all are computed again). True if it changed."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'tags_key'").fetchone()
    if row is not None and row[0] == key:
        return False
    clear(conn)
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('tags_key', ?)", (key,))
    return True


def clear(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM tags")
    conn.execute("DELETE FROM tagged")
    conn.execute("DELETE FROM meta WHERE key = 'tags_key'")


def untagged(conn: sqlite3.Connection, stored: StoredVectors, chunk: int) -> Iterator[tuple[list[bytes], np.ndarray]]:
    """The stored contents whose tags are not computed yet, with their vectors, in blocks of ``chunk``."""
    digests = [bytes(r[0]) for r in conn.execute("SELECT hash FROM vectors WHERE hash NOT IN (SELECT hash FROM tagged) "
                                                 "AND hash IN (SELECT hash FROM files)")]  # not a video's moments
    for start in range(0, len(digests), chunk):
        part = digests[start : start + chunk]
        rows: dict[bytes, tuple[object, ...]] = {}
        for at in range(0, len(part), _IN_CHUNK):
            keys = part[at : at + _IN_CHUNK]
            marks = ",".join("?" * len(keys))
            rows.update((bytes(r[0]), r) for r in conn.execute(
                f"SELECT vectors.hash, {stored.columns} FROM vectors WHERE hash IN ({marks})", keys))
        found = [h for h in part if h in rows]
        yield found, stored.matrix([rows[h] for h in found], 1)


def put(conn: sqlite3.Connection, found: Sequence[tuple[bytes, Sequence[tuple[str, float]]]]) -> None:
    """Each content's tags (replacing any it had), and each marked tagged, in three statements for the lot."""
    digests = [(digest,) for digest, _ in found]
    conn.executemany("DELETE FROM tags WHERE hash = ?", digests)
    conn.executemany("INSERT OR REPLACE INTO tags VALUES (?, ?, ?)",
                     [(digest, tag, p) for digest, tags in found for tag, p in tags])
    conn.executemany("INSERT OR IGNORE INTO tagged VALUES (?)", digests)


def drop_orphans(conn: sqlite3.Connection) -> None:
    """Tags of contents no longer stored (their last file went)."""
    conn.execute("DELETE FROM tags WHERE hash NOT IN (SELECT hash FROM vectors)")
    conn.execute("DELETE FROM tagged WHERE hash NOT IN (SELECT hash FROM vectors)")
