"""A copy of the catalog's schema beside it (``catalog.schema.json``), read by the salvage alone.

SQLite finds every table through its schema table (``sqlite_master``). Its rows start on page 1 and,
once they outgrow it (format 13 on has about 40), continue on pages allocated among the tables' own. A
catalog cut short, or with a bad page 1, then reads as nothing at all though most of its tables' pages
are whole. This copy holds what it takes to read them again: each schema row with its root page, the
page size, the rows of ``meta`` that give the stored vectors their meaning (the model record) and hold
the user's settings, and the names the user gave people, each with one face of theirs (its descriptor, by which
the next run finds them again when a salvage lost their faces: ``clipsearch.store.salvage``).

Invariants: a table's root page changes only when tables are created or dropped, or on VACUUM, all of
which happen in the writer; the writer calls ``keep`` after each of its commits, and ``keep`` rewrites
the copy (atomically: written beside, then renamed) when it differs from what the catalog now says. So
the copy lags the catalog by at most the commit a killed writer made last. The copy is never the
source of truth: the salvage uses it only where the catalog's own schema or model record is unreadable.
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
from pathlib import Path
from typing import Any

# Of ``meta``, what a run changes each time (the generation, the index files' record) stays out: the copy holds the
# model record and the settings a user chose (words, faces, vocabulary, index type), which change rarely.
RUN_KEYS = ("generation", "index_built", "index_base", "index_files", "index_trained")
HEADER = b"SQLite format 3\0"
LEAF_TABLE_PAGE = 0x0D  # the b-tree page type of an empty table (sqlite_master with no rows)


def of(conn: sqlite3.Connection) -> dict[str, Any]:
    """What the copy holds for the catalog open on ``conn`` (its committed state, or the open transaction's)."""
    rows = conn.execute("SELECT type, name, tbl_name, rootpage, sql FROM sqlite_master ORDER BY rowid").fetchall()
    has_meta = any(row[1] == "meta" for row in rows)
    meta = {key: value for key, value in conn.execute("SELECT key, value FROM meta").fetchall()
            if not key.startswith(RUN_KEYS)} if has_meta else {}
    named = conn.execute("SELECT id, name, (SELECT hex(descriptor) FROM faces WHERE person = people.id ORDER BY id "
                         "LIMIT 1) FROM people WHERE name IS NOT NULL ORDER BY id").fetchall() \
        if any(row[1] == "people" for row in rows) else []
    return {"page_size": conn.execute("PRAGMA page_size").fetchone()[0], "schema": [list(r) for r in rows],
            "meta": meta, "people": [list(r) for r in named]}


def keep(conn: sqlite3.Connection, path: Path, last: dict[str, Any] | None) -> dict[str, Any]:
    """Write the copy at ``path`` when the catalog's schema or model record differs from ``last`` (what the caller
    wrote or read before; None: compare with the file). Returns what the copy now holds. A copy that cannot be
    written (a full disk) is left as it was: it serves only a salvage, and the next commit tries again."""
    now = of(conn)
    if last is None:
        last = load(path)
    if now != last:
        spare = path.with_name(path.name + ".new")
        try:
            spare.write_text(json.dumps(now, ensure_ascii=False), encoding="utf-8")
            os.replace(spare, path)
        except OSError:
            spare.unlink(missing_ok=True)
            return last or {}
    return now


def load(path: Path) -> dict[str, Any] | None:
    """The copy at ``path``, or None when there is none or it cannot be read."""
    try:
        copy = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(copy, dict) or not isinstance(copy.get("schema"), list) or not copy.get("page_size"):
        return None
    return copy


def restore_first_page(data: bytearray, copy: dict[str, Any]) -> bytearray:
    """``data`` (a damaged catalog's bytes) with page 1 made a valid, empty schema table: the file header kept when
    it is whole (else made again with the copy's page size), the rest of the page emptied. The copy's schema rows
    are then put back by ``put_back`` on a connection to the result."""
    page_size = int(copy["page_size"])
    if len(data) < page_size:
        data.extend(bytes(page_size - len(data)))
    if not data.startswith(HEADER) or page_size_in(data) != page_size:
        data[0:100] = _header(page_size)
    data[18:20] = b"\x01\x01"  # a rollback journal: the copy is read alone, without the write-ahead log
    data[100:page_size] = bytes(page_size - 100)
    data[100] = LEAF_TABLE_PAGE
    data[105:107] = struct.pack(">H", page_size % 65536)  # where cell content starts: the page's end (none yet)
    return data


def put_back(conn: sqlite3.Connection, copy: dict[str, Any]) -> None:
    """Insert the copy's schema rows into an emptied schema table (``writable_schema`` must be on)."""
    conn.executemany("INSERT INTO sqlite_master (type, name, tbl_name, rootpage, sql) VALUES (?, ?, ?, ?, ?)",
                     [tuple(row) for row in copy["schema"]])


def page_size_in(data: bytes | bytearray) -> int:
    size = struct.unpack(">H", data[16:18])[0]
    return 65536 if size == 1 else size


def _header(page_size: int) -> bytes:
    """A file header as SQLite writes one (https://sqlite.org/fileformat.html, 1.3), for a UTF-8 database."""
    header = bytearray(100)
    header[0:16] = HEADER
    header[16:18] = struct.pack(">H", 1 if page_size == 65536 else page_size)
    header[18:24] = bytes([1, 1, 0, 64, 32, 32])  # versions, no reserved bytes, the fixed payload fractions
    header[24:28] = struct.pack(">I", 1)  # change counter
    header[40:48] = struct.pack(">II", 1, 4)  # schema cookie, schema format 4
    header[56:60] = struct.pack(">I", 1)  # text encoding: UTF-8
    header[92:96] = struct.pack(">I", 1)  # version-valid-for: the change counter
    header[96:100] = struct.pack(">I", 3_037_000)
    return bytes(header)
