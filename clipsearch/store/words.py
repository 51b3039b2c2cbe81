"""The words of photos (format 12): what the picture shows written in it, what the file carries, what it is called.

    seen_text   per content (hash), like its vector: the text read from the picture (``indexer.words``; a video's
                from its moments' frames, each box with the ``t`` it was read at), its boxes, and how the reading
                went (``read``, ``none``: no text found, ``failed: ...``). A content with a row was looked at;
                one without is read by the next run whose words mode is ``on``.
    file_words  per file (id): its name and folders' names, and the words its header carries (XMP, IPTC,
                EXIF), read for the content ``hash`` it had then: a file whose content changed is read again.
    words_fts   FTS5 (trigram) over both, one row per file (rowid = ``files.id``), in ``fold``ed form: a word
                matches inside longer words (OCR runs words together) and across case and accents.

The FTS rows are derived: ``refresh`` rebuilds the rows of the files given from the two tables, and the writer
calls it whenever either changes. Readers of older formats see no words (``available``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from clipsearch.errors import UserError
from clipsearch.store.migrations import OptionalTable

_IN_CHUNK = 500
MODES = ("on", "later", "off")  # meta.words: read pictures each run; not yet (keep what was read); never (dropped)
DEFAULT_MODE_VARIABLE = "CLIPSEARCH_WORDS"


def default_mode() -> str:
    """The words mode of an index that has not chosen one (``index --words``): ``on``, unless $CLIPSEARCH_WORDS
    names another (an operator's default for new indexes; the test suite's, which reads pictures only in the tests
    about words). A value that is not a mode is refused by ``index`` (``check_default_mode``)."""
    chosen = os.environ.get(DEFAULT_MODE_VARIABLE, "on")
    return chosen if chosen in MODES else "on"


def check_default_mode() -> None:
    chosen = os.environ.get(DEFAULT_MODE_VARIABLE)
    if chosen is not None and chosen not in MODES:
        raise UserError(f"${DEFAULT_MODE_VARIABLE} must be one of {', '.join(MODES)}, not {chosen[:20]!r}")

def fold(text: str) -> str:
    """Text as the FTS table holds it and queries are matched: accents dropped, case folded, spaces collapsed."""
    decomposed = unicodedata.normalize("NFKD", text)
    return " ".join("".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold().split())


class WordsReader(OptionalTable):
    """The word queries of a catalog connection (a reader's snapshot or the writer's)."""

    TABLE = "words_fts"

    def seen_of_ids(self, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Each file's text read from its picture: {"text", "boxes"} (files whose picture was not read are left out;
        one read with no text found has "")."""
        out: dict[int, dict[str, Any]] = {}
        if not self.available:
            return out
        ids = [int(i) for i in ids]
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            rows = self._conn.execute("SELECT files.id, s.text, s.boxes FROM files JOIN seen_text s ON s.hash = "
                                      f"files.hash WHERE files.id IN ({','.join('?' * len(chunk))})", chunk)
            out.update((file_id, {"text": text, "boxes": json.loads(boxes)}) for file_id, text, boxes in rows)
        return out

    def of_id(self, file_id: int) -> dict[str, Any]:
        """One file's words: text and boxes read in its picture (None and [] if not read), carried words, names."""
        seen = self.seen_of_ids([file_id]).get(file_id, {"text": None, "boxes": []})
        row = self._conn.execute("SELECT carried, names FROM file_words WHERE id = ?", (file_id,)).fetchone() \
            if self.available else None
        return {**seen, "carried": row[0] if row else "", "names": row[1] if row else ""}

    def matching(self, match: str | None, like: Sequence[str], limit: int, count: bool = False) -> Any:
        """The ids of the files whose words match, best first (bm25): ``match`` an FTS5 query over the folded text,
        ``like`` folded fragments each of which must appear (too short for trigrams). Only files still indexed.
        ``count``: how many there are, up to ``limit``, instead."""
        if not self.available or (match is None and not like):
            return 0 if count else []
        where = ["files.id = words_fts.rowid"]
        params: list[Any] = []
        if match is not None:
            where.append("words_fts MATCH ?")
            params.append(match)
        for fragment in like:
            escaped = fragment.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            # qualified: ``files`` has a ``seen`` column too (an ambiguous name failed every query with a short word)
            where.append("(words_fts.names || ' ' || words_fts.carried || ' ' || words_fts.seen) LIKE ? ESCAPE '\\'")
            params.append(f"%{escaped}%")
        order = "bm25(words_fts), words_fts.rowid" if match is not None and not count else "words_fts.rowid"
        query = f"SELECT words_fts.rowid FROM words_fts, files WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?"
        try:
            if count:
                return self._conn.execute(f"SELECT count(*) FROM ({query})", (*params, limit)).fetchone()[0]
            return [int(r[0]) for r in self._conn.execute(query, (*params, limit))]
        except sqlite3.OperationalError as exc:  # a query FTS5 cannot parse finds nothing (they are built quoted)
            if "fts5" not in str(exc):
                raise  # anything else is a defect to see, not "no results"
            return 0 if count else []

    def summary(self) -> dict[str, Any]:
        """For ``info``: the words mode, and how many contents were looked at and hold text, and how many contents of
        files (a video's moments are read with their video) wait to be."""
        if not self.available:
            return {"mode": None}
        mode = self._conn.execute("SELECT value FROM meta WHERE key = 'words'").fetchone()
        read, with_text = self._conn.execute("SELECT count(*), coalesce(sum(text != ''), 0) FROM seen_text").fetchone()
        waiting = self._conn.execute("SELECT count(DISTINCT hash) FROM files WHERE hash NOT IN (SELECT hash FROM seen_text)")
        return {"mode": mode[0] if mode else default_mode(), "pictures_read": read, "pictures_with_text": with_text,
                "pictures_waiting": waiting.fetchone()[0]}


# -- the writer's side: ``conn`` is in the writer's open transaction ---------------------------
def pictures_unread(conn: sqlite3.Connection) -> list[tuple[bytes, str, int, int]]:
    """(hash, path, size, mtime_ns) of one file of each stored content whose picture was not read yet."""
    rows = conn.execute("SELECT hash, path, size, mtime_ns FROM files WHERE id IN (SELECT min(id) FROM files WHERE "
                        "hash NOT IN (SELECT hash FROM seen_text) GROUP BY hash) ORDER BY id").fetchall()
    return [(bytes(h), p, s, m) for h, p, s, m in rows]


def videos_read_again(conn: sqlite3.Connection) -> int:
    """Once per index (``meta.words_videos``): the videos that a words stage from before videos were read at their
    moments marked ``failed`` (it decoded them as pictures) are made unread, for this run to read; how many."""
    if conn.execute("SELECT 1 FROM meta WHERE key = 'words_videos'").fetchone():
        return 0
    dropped = conn.execute("DELETE FROM seen_text WHERE how LIKE 'failed:%' AND hash IN (SELECT hash FROM videos)")
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('words_videos', '1')")
    return dropped.rowcount


def files_unnamed(conn: sqlite3.Connection) -> list[tuple[int, bytes, str]]:
    """(id, hash, path) of the files whose names and carried words are not kept for their current content."""
    rows = conn.execute("SELECT files.id, files.hash, files.path FROM files LEFT JOIN file_words w ON w.id = files.id "
                        "WHERE w.hash IS NULL OR w.hash != files.hash ORDER BY files.id").fetchall()
    return [(int(i), bytes(h), p) for i, h, p in rows]


def put_seen(conn: sqlite3.Connection, found: Sequence[tuple[bytes, str, list[Any], str]]) -> None:
    """(hash, text, boxes, how) per content; the FTS rows of every file of those contents follow."""
    conn.executemany("INSERT OR REPLACE INTO seen_text VALUES (?, ?, ?, ?)",
                     [(digest, text, json.dumps(boxes, separators=(",", ":")), how) for digest, text, boxes, how in found])
    digests = [digest for digest, *_ in found]
    ids: list[int] = []
    for start in range(0, len(digests), _IN_CHUNK):
        chunk = digests[start : start + _IN_CHUNK]
        ids += [r[0] for r in conn.execute(f"SELECT id FROM files WHERE hash IN ({','.join('?' * len(chunk))})", chunk)]
    refresh(conn, ids)


def put_named(conn: sqlite3.Connection, found: Sequence[tuple[int, bytes, str, str]]) -> None:
    """(file id, the content hash read, names, carried words) per file, and its FTS row. A name that is not valid
    UTF-8 (an old camera card's) is kept as words with its stray bytes as U+FFFD: searched by its other letters."""
    conn.executemany("INSERT OR REPLACE INTO file_words VALUES (?, ?, ?, ?)",
                     [(file_id, digest, _words_of(names), _words_of(carried)) for file_id, digest, names, carried in found])
    refresh(conn, [file_id for file_id, *_ in found])


def refresh(conn: sqlite3.Connection, ids: Sequence[int]) -> None:
    """The FTS rows of ``ids`` made again from ``file_words`` and ``seen_text`` (a file without a name row yet gets
    none: the stage names every file)."""
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = list(ids[start : start + _IN_CHUNK])
        marks = ",".join("?" * len(chunk))
        conn.execute(f"DELETE FROM words_fts WHERE rowid IN ({marks})", chunk)
        rows = conn.execute(f"SELECT w.id, w.names, w.carried, coalesce(s.text, '') FROM file_words w JOIN files f ON "
                            f"f.id = w.id LEFT JOIN seen_text s ON s.hash = f.hash WHERE w.id IN ({marks})", chunk)
        conn.executemany("INSERT INTO words_fts (rowid, names, carried, seen) VALUES (?, ?, ?, ?)",
                         [(i, fold(n), fold(c), fold(s)) for i, n, c, s in rows.fetchall()])


def set_mode(conn: sqlite3.Connection, mode: str) -> None:
    """Record the words mode; ``off`` drops the text read from pictures (names and carried words stay)."""
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('words', ?)", (mode,))
    if mode == "off" and conn.execute("SELECT 1 FROM seen_text LIMIT 1").fetchone():
        conn.execute("DELETE FROM seen_text")
        refresh(conn, [r[0] for r in conn.execute("SELECT id FROM file_words")])


def drop_orphans(conn: sqlite3.Connection) -> None:
    """Words of files and contents no longer indexed."""
    conn.execute("DELETE FROM seen_text WHERE hash NOT IN (SELECT hash FROM files)")
    conn.execute("DELETE FROM file_words WHERE id NOT IN (SELECT id FROM files)")
    conn.execute("DELETE FROM words_fts WHERE rowid NOT IN (SELECT id FROM files)")


class WordsWriter:
    """The writer's words calls, each in the writer's open transaction (``txn`` opens it)."""

    def __init__(self, txn: Any) -> None:
        self._txn = txn

    def pictures_unread(self) -> list[tuple[bytes, str, int, int]]:
        return pictures_unread(self._txn())

    def videos_read_again(self) -> int:
        return videos_read_again(self._txn())

    def files_unnamed(self) -> list[tuple[int, bytes, str]]:
        return files_unnamed(self._txn())

    def put_seen(self, found: Sequence[tuple[bytes, str, list[Any], str]]) -> None:
        put_seen(self._txn(), found)

    def put_named(self, found: Sequence[tuple[int, bytes, str, str]]) -> None:
        put_named(self._txn(), found)

    def set_mode(self, mode: str) -> None:
        set_mode(self._txn(), mode)


def _words_of(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
