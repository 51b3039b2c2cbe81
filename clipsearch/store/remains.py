"""What can still be read of a damaged catalog (a truncated file, a bad sector), for ``check`` and its repair.

SQLite refuses the whole file once a page it needs is missing, schema included. So the reading works on a
copy: the write-ahead log's committed pages laid over it (``write_ahead_log``), the header's page count set to
the pages the file has, the schema taken from the copy beside the catalog where its own cannot be read
(``schema_copy``), the schema rows of tables whose root page is gone dropped (``writable_schema``), and each
table read row by row until a missing page stops it. ``clipsearch.store.salvage`` decides what of it is kept.
"""

from __future__ import annotations

import os
import sqlite3
import struct
from dataclasses import dataclass, field
from pathlib import Path

from clipsearch.errors import UserError
from clipsearch.store import migrations, schema_copy, write_ahead_log
from clipsearch.store.catalog import connect
from clipsearch.store.layout import Layout

TABLES = ("meta", "roots", "vectors", "files", "failures", "runs")
# Kept as read, beside the core tables above (columns by name, so any format's): what each content and file was
# found to hold, and the user's own rows (people's names, faces taken out of a person). Not kept: ``segments``
# (recorded from the segment files), ``vectors_next`` (an unfinished re-embedding starts over, as the next run
# does), ``changed_after_build`` and the words' FTS table (made again from what is kept).
CARRIED = ("sqlite_sequence", "tags", "tagged", "photo_meta", "signatures", "content_notes", "seen_text",
           "file_words", "videos", "moments", "faces", "faced", "people", "not_person", "face_memory")
# A table and the one that says which contents it was made for: cut short, both go (a run makes them again), or
# contents would be marked done without their rows.
PAIRED = {"tags": "tagged", "tagged": "tags", "faces": "faced", "faced": "faces", "videos": "moments",
          "moments": "videos"}



@dataclass
class Salvage:
    """What a salvage reads and keeps, and the one account of it that ``check`` gives (``story``)."""

    rows: dict[str, list[tuple[object, ...]]] = field(default_factory=dict)
    columns: dict[str, list[str]] = field(default_factory=dict)  # of the ``CARRIED`` tables, as read
    incomplete: list[str] = field(default_factory=list)  # tables a missing page cut short (or lost whole)
    without_vector: list[str] = field(default_factory=list)  # files left out, their vector lost: embedded again
    misrecorded: list[str] = field(default_factory=list)  # files left out, their path damaged, as the user knows it
    unknown: list[str] = field(default_factory=list)  # paths damaged past telling (as read): no file to name
    mended: list[str] = field(default_factory=list)  # damaged paths read again from the paths' index, the file vouching
    schema_from_copy: bool = False  # the catalog's own schema was unreadable: the copy beside it stood in
    copied_meta: dict[str, str] = field(default_factory=dict)  # model record and settings, as the schema copy has them
    copied_people: list[list[object]] = field(default_factory=list)  # (id, name, a face's descriptor in hex) named
    awaited: list[tuple[int, str, bytes]] = field(default_factory=list)  # named, their faces lost: found again by a run
    names_lost: list[str] = field(default_factory=list)  # named, their faces lost, and no face of theirs known

    @property
    def left_out(self) -> list[str]:
        """The files the salvage drops, named as the user knows them (``lost_paths``)."""
        return self.without_vector + self.misrecorded

    @property
    def lost_anything(self) -> bool:
        return bool(self.incomplete or self.without_vector or self.misrecorded or self.unknown or self.names_lost)

    def story(self) -> str:
        """What was kept, what was lost, and what the next index run will do: one account, in that order, so that no
        part of it says another thing than the rest (the trial's said "re-embeds" and "re-embedding nothing")."""
        files, vectors = len(self.rows.get("files", [])), len(self.rows.get("vectors", []))
        kept = f"kept {files} files and {vectors} stored vectors"
        if self.schema_from_copy:
            kept += " (the catalog's schema was unreadable: read with the copy beside it)"
        if self.mended:
            kept += (f"; {_counted(len(self.mended), 'damaged path')} read again from the catalog's index of paths (the "
                     "file there has the recorded size and time)")
        lost = []
        if self.incomplete:
            lost.append(f"the rows of {', '.join(self.incomplete)} past the damage")
        if "meta" in self.incomplete and self.copied_meta:
            lost[-1] += " (the model record and settings were read from the schema copy)"
        if self.without_vector:
            lost.append(f"{_counted(len(self.without_vector), 'file')} whose stored vector was lost")
        if self.misrecorded or self.unknown:
            told = f" ({len(self.unknown)} of them past telling: no file has the recorded size and time)" if \
                self.unknown else ""
            lost.append(f"{_counted(len(self.misrecorded) + len(self.unknown), 'file')} whose path was damaged{told}")
        if self.names_lost:
            lost.append(f"the names {', '.join(sorted(self.names_lost))} (no face of theirs is known any more)")
        if self.awaited:
            kept += (f"; the names {', '.join(sorted(n for _, n, _ in self.awaited))} (their faces were lost: the next run "
                     "with faces on gives each back to their face when it finds it again)")
        account = kept + ("; lost: " + "; ".join(lost) if lost else "; nothing lost")
        again = self.without_vector or "vectors" in self.incomplete
        refind = bool(self.misrecorded or self.unknown or "files" in self.incomplete)
        nxt = (f"embeds {_counted(len(self.without_vector), 'photo')} again" if self.without_vector else "") + \
            (" and any other photo whose stored vector was lost" if "vectors" in self.incomplete else "")
        if not again:
            nxt = "re-embeds nothing"
        if refind:
            nxt += ", and finds the files whose record was lost again under their paths, their vectors reused"
        if self.incomplete and not {"meta", "files", "vectors"} >= set(self.incomplete):
            nxt += "; what was cut short of tags, faces, words or videos is made again"
        return f"{account}; the next index run {nxt}" if (lost or self.mended or self.awaited) else account


def _counted(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def damage(directory: Path) -> str | None:
    """What SQLite says is wrong with the index's catalog, or None when it reads it whole. A catalog with no tables
    yet (a first run killed before its first commit) is not damaged: there is nothing in it to lose."""
    catalog = Layout(directory).catalog
    for immutable in (False, True):  # with its write-ahead log (a killed run's commits are there), else as it lies
        try:
            conn = connect(catalog, readonly=True, immutable=immutable)
            try:
                if migrations.version_of(conn) is None:
                    return None
                conn.execute("SELECT count(*) FROM files").fetchone()
                verdict = [r[0] for r in conn.execute("PRAGMA integrity_check(20)")]  # indexes against tables too
                return None if verdict == ["ok"] else "; ".join(verdict)
            finally:
                conn.close()
        except sqlite3.OperationalError:
            if immutable:  # not a question of damage (a directory we may not write to, even immutable fails)
                raise
        except sqlite3.DatabaseError as exc:
            return str(exc)
    return None


def read_what_remains(catalog: Path, scratch: Path) -> Salvage:
    """Every row SQLite can still read from the damaged ``catalog``, read from a patched copy at ``scratch`` (which
    may lie outside the index: a read-only one can be inspected too). Where the catalog's own schema cannot be read
    (its pages cut off or spoilt, its header gone), the schema copy beside it (``schema_copy``) stands in for it.
    The write-ahead log's committed pages are laid over the file's first (``write_ahead_log``)."""
    copy = schema_copy.load(Layout(catalog.parent).schema_copy)
    data = bytearray(catalog.read_bytes())
    log = Path(str(catalog) + "-wal")  # the commits since the last checkpoint are there, not in the file yet
    if data and (logged := write_ahead_log.committed(log.read_bytes() if log.is_file() else b"")) is not None:
        data = write_ahead_log.lay_over(data, logged)
    header_whole = len(data) >= 100 and data.startswith(schema_copy.HEADER)
    page_size = schema_copy.page_size_in(data) if header_whole else int(copy["page_size"]) if copy else 0
    pages = len(data) // page_size if page_size else 0
    if pages < 2 or (not header_whole and copy is None):  # no page past the first: no table's row is left
        raise UserError(f"{catalog} is not an SQLite catalog any more (its header is gone): nothing can be saved "
                        "from it; restore it from a backup, or index again into a new --index")
    del data[pages * page_size:]
    data[28:32] = struct.pack(">I", pages)  # the pages there are, not the pages there were
    out = Salvage()
    if not header_whole or not _schema_readable(scratch, data):
        if copy is None:
            raise UserError(f"the schema of {catalog} is lost: nothing can be saved from it; restore it from a "
                            "backup, or index again into a new --index")
        scratch.write_bytes(bytes(schema_copy.restore_first_page(data, copy)))
        conn = sqlite3.connect(scratch, isolation_level=None)
        conn.execute("PRAGMA writable_schema=ON")
        schema_copy.put_back(conn, copy)
        conn.close()
        out.schema_from_copy = True
    if copy is not None:
        out.copied_meta, out.copied_people = dict(copy.get("meta", {})), list(copy.get("people", []))
    conn = sqlite3.connect(scratch, isolation_level=None)
    conn.text_factory = bytes
    try:
        conn.execute("PRAGMA writable_schema=ON")
        conn.execute("DELETE FROM sqlite_master WHERE rootpage > ?", (pages,))
        # A virtual table (the words' FTS5) whose shadow tables were cut off leaves a schema SQLite will not load;
        # the salvage reads none of them (a run makes the words again), so they all go.
        for (virtual,) in conn.execute("SELECT name FROM sqlite_master WHERE sql LIKE 'CREATE VIRTUAL TABLE%'").fetchall():
            conn.execute("DELETE FROM sqlite_master WHERE name = ? OR name LIKE ? ESCAPE '!'",
                         (virtual, virtual.replace(b"!", b"!!").replace(b"_", b"!_").replace(b"%", b"!%") + b"!_%"))
        conn.execute("PRAGMA writable_schema=OFF")
    except sqlite3.DatabaseError:
        raise UserError(f"the schema of {catalog} is lost: nothing can be saved from it; restore it from a backup, "
                        "or index again into a new --index") from None
    for table in TABLES:
        rows: list[tuple[object, ...]] = []
        try:
            for row in conn.execute(f"SELECT * FROM {table}"):  # the columns of the format it was written in
                rows.append(row + (b"{}",) if table == "roots" and len(row) == 2 else row)
        except sqlite3.DatabaseError:
            out.incomplete.append(table)
        out.rows[table] = rows
    out.rows["files"] = _paths_as_indexed(conn, out.rows["files"], out)
    present = {bytes(n).decode() for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for table in CARRIED:
        if table in present:
            rows = []
            try:
                cursor = conn.execute(f"SELECT * FROM {table}")
                out.columns[table] = [d[0] for d in cursor.description]
                rows.extend(cursor)
            except sqlite3.DatabaseError:
                out.incomplete.append(table)
            out.rows[table] = rows
    for table in out.incomplete:
        if (other := PAIRED.get(table)) in out.rows:
            out.rows[table], out.rows[other] = [], []
    conn.close()
    return out


def _paths_as_indexed(conn: sqlite3.Connection, files: list[tuple[object, ...]], out: Salvage) -> list[tuple[object, ...]]:
    """The file rows to keep: those whose path is also in the paths' own index (``path UNIQUE``) or names a file of
    the recorded size and time. A byte changed in a row's path would otherwise be saved as a photo that is not there,
    served until a run noticed (a byte changed in the index's entry instead leaves the row whole). The index keeps
    each path with its row's id: a row whose own path is damaged is mended from it when the file there has the
    recorded size and time (``out.mended``: nothing lost); else it is left out (``out.misrecorded``, named as the
    index has it, the path the user knows; ``out.unknown`` when the index names none) and the next run finds the
    file again, its vector reused (same content): nothing is re-embedded. An index that cannot be read whole vouches
    for nothing: the rows are kept as read."""
    try:
        (index,) = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'files' "
                                "AND sql IS NULL AND name LIKE 'sqlite_autoindex_files_%'").fetchone()
        named = {int(i): bytes(p) for i, p in conn.execute(f"SELECT id, path FROM files INDEXED BY {bytes(index).decode()}")}
    except (TypeError, ValueError, sqlite3.DatabaseError):
        return files
    indexed = set(named.values())

    def as_recorded(path: bytes, row: tuple[object, ...]) -> bool:  # the file at ``path`` is the one the row records
        try:
            found = os.stat(path)
        except OSError:
            return False
        return (found.st_size, found.st_mtime_ns) == (row[2], row[3])

    kept: list[tuple[object, ...]] = []
    for row in files:
        path, real = bytes(row[1]), named.get(int(row[0]))  # type: ignore[arg-type,call-overload]
        if path in indexed or as_recorded(path, row):
            kept.append(row)
        elif real is not None and as_recorded(real, row):  # the index's path is unique: no other row has it
            kept.append((row[0], real, *row[2:]))
            out.mended.append(os.fsdecode(real))
        elif real is not None:
            out.misrecorded.append(os.fsdecode(real))
        else:
            out.unknown.append(os.fsdecode(path))
    return kept


def _schema_readable(scratch: Path, data: bytearray) -> bool:
    """Write ``data`` to ``scratch``; whether SQLite reads its whole schema table there."""
    scratch.write_bytes(bytes(data))
    conn = sqlite3.connect(scratch, isolation_level=None)
    try:
        conn.execute("SELECT type, name, tbl_name, rootpage, sql FROM sqlite_master").fetchall()
        return True
    except sqlite3.DatabaseError:
        return False
    finally:
        conn.close()
