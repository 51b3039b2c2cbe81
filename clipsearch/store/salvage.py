"""``check --repair`` on a damaged catalog (a truncated file, a bad sector): save what SQLite can still read.

SQLite refuses the whole file once a page it needs is missing, schema included. So the salvage works on
a copy: the header's page count is set to the pages the file has, the schema rows of tables whose root
page is gone are dropped (``writable_schema``), and each table is read row by row until a missing page
stops it. What was read goes into a new catalog of the current format; the damaged file is kept beside
it (``catalog.sqlite.damaged-<time>``), never deleted. The vectors of a catalog of format 7 on are in
segment files, which the damage does not reach: each saved pointer into them is kept if its row is in
the file (the segments' row counts are read from the files themselves); a catalog of an older format
has its readable vectors copied into segment files. Files whose vector was lost are left out, so the
next ``index`` run embeds them again; nothing else is re-embedded.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from clipsearch.errors import UserError
from clipsearch.store import file_sums, migrations, schema_copy, segments, words, write_ahead_log
from clipsearch.store.catalog import connect
from clipsearch.store.layout import Layout
from clipsearch.store.lock import WriteLock
from clipsearch.store.segments import SegmentAppender, SegmentError, Segments

TABLES = ("meta", "roots", "vectors", "files", "failures", "runs")
_COLUMNS = {
    "meta": "key, value", "roots": "path, added, settings", "vectors": "hash, segment, row",
    "files": "id, path, size, mtime_ns, hash, width, height, seen", "failures": "path, size, mtime_ns, error, seen",
    "runs": "id, started, finished, roots, report",
}
T = "CAST(? AS TEXT)"  # text read back as its bytes goes in as the same bytes (names that are not UTF-8 included)
_VALUES = {
    "meta": f"{T}, {T}", "roots": f"{T}, ?, {T}", "vectors": "?, ?, ?", "files": f"?, {T}, ?, ?, ?, ?, ?, ?",
    "failures": f"{T}, ?, ?, {T}, ?", "runs": f"?, ?, ?, {T}, {T}",
}

# Kept as read, beside the core tables above (columns by name, so any format's): what each content and file was
# found to hold, and the user's own rows (people's names, faces taken out of a person). Not kept: ``segments``
# (recorded from the segment files), ``vectors_next`` (an unfinished re-embedding starts over, as the next run
# does), ``changed_after_build`` and the words' FTS table (made again from what is kept).
CARRIED = ("sqlite_sequence", "tags", "tagged", "photo_meta", "signatures", "content_notes", "seen_text",
           "file_words", "videos", "moments", "faces", "faced", "people", "not_person")
# A table and the one that says which contents it was made for: cut short, both go (a run makes them again), or
# contents would be marked done without their rows.
PAIRED = {"tags": "tagged", "tagged": "tags", "faces": "faced", "faced": "faces", "videos": "moments",
          "moments": "videos"}


@dataclass
class Salvage:
    rows: dict[str, list[tuple[object, ...]]] = field(default_factory=dict)
    columns: dict[str, list[str]] = field(default_factory=dict)  # of the ``CARRIED`` tables, as read
    incomplete: list[str] = field(default_factory=list)  # tables a missing page cut short (or lost whole)
    files_without_vector: int = 0
    files_misrecorded: int = 0  # rows whose path disagrees with the paths' index: left for the next run to find
    left_out: list[str] = field(default_factory=list)  # the paths of the files left out (as read: maybe damaged)
    schema_from_copy: bool = False  # the catalog's own schema was unreadable: the copy beside it stood in
    copied_meta: dict[str, str] = field(default_factory=dict)  # model record and settings, as the schema copy has them

    @property
    def lost_anything(self) -> bool:
        return bool(self.incomplete or self.files_without_vector or self.files_misrecorded)

    def summary(self) -> str:
        files, vectors = len(self.rows.get("files", [])), len(self.rows.get("vectors", []))
        lost = f"; lost: {', '.join(self.incomplete)} (cut short by the damage)" if self.incomplete else ""
        if "meta" in self.incomplete and self.copied_meta:
            lost += "; the model record and settings read from the schema copy"
        copied = " (its schema unreadable, read with the copy beside it)" if self.schema_from_copy else ""
        if self.files_misrecorded:
            copied += (f"; {self.files_misrecorded} files whose path was damaged are left out (the next index run "
                       "finds them again, re-embedding nothing)")
        return (f"saved {files} files and {vectors} stored vectors{lost}; {self.files_without_vector} files whose "
                f"vector was lost are left for the next index run to embed again{copied}")


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
        out.copied_meta = dict(copy.get("meta", {}))
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
    out.rows["files"], misrecorded = _paths_as_indexed(conn, out.rows["files"])
    out.files_misrecorded, out.left_out = len(misrecorded), misrecorded
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


def _paths_as_indexed(conn: sqlite3.Connection, files: list[tuple[object, ...]]) -> tuple[list[tuple[object, ...]], list[str]]:
    """The file rows whose path is also in the paths' own index (``path UNIQUE``) or names a file of the recorded
    size and time, and the paths of the others: a byte changed in a row's path would otherwise be saved as a photo
    that is not there, served until a run noticed (a byte changed in the index's entry instead leaves the row whole).
    A file left out here is found again by the next run, its vector reused (same content): nothing is re-embedded.
    An index that cannot be read whole vouches for nothing: the rows are kept as read."""
    try:
        (index,) = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'files' "
                                "AND sql IS NULL AND name LIKE 'sqlite_autoindex_files_%'").fetchone()
        indexed = {bytes(p) for (p,) in conn.execute(f"SELECT path FROM files INDEXED BY {bytes(index).decode()}")}
    except (TypeError, ValueError, sqlite3.DatabaseError):
        return files, []
    def vouched(row: tuple[object, ...]) -> bool:  # by the index, or by the file itself at that path, as recorded
        path = bytes(row[1])  # type: ignore[arg-type]
        if path in indexed:
            return True
        try:
            found = os.stat(path)
        except OSError:
            return False
        return (found.st_size, found.st_mtime_ns) == (row[2], row[3])

    kept: list[tuple[object, ...]] = []
    left: list[tuple[object, ...]] = []
    for row in files:
        (kept if vouched(row) else left).append(row)
    return kept, [os.fsdecode(bytes(row[1])) for row in left]  # type: ignore[arg-type]


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


def inspect(directory: Path) -> Salvage:
    """What a salvage would save from the damaged catalog, changing nothing: the same choice ``salvage`` makes."""
    with tempfile.TemporaryDirectory(prefix="clipsearch-check-") as tmp:
        found = read_what_remains(Layout(directory).catalog, Path(tmp) / "catalog.sqlite")
    _keep_whole(found, directory)
    return found


def repair(directory: Path) -> Salvage:
    """``salvage`` under the index's write lock."""
    lock = WriteLock.take(Layout(directory).lock)
    try:
        return salvage(directory)
    finally:
        lock.release()


def _segments_in_files(files: Segments, dim: int) -> dict[int, tuple[int, int]]:
    """(bytes per number, rows) of each segment file of the index's size (a damaged catalog's counts may be lost)."""
    out = {}
    for segment in files.listed():
        try:
            found_dim, itemsize = files.shape_of(segment)
        except SegmentError:
            continue
        if found_dim == dim:
            out[segment] = (itemsize, files.rows_in_file(segment, dim, itemsize))
    return out


def _keep_whole(found: Salvage, directory: Path) -> tuple[dict[str, str], int, dict[int, tuple[int, int]]]:
    """Keep, of what was read, the vectors that are whole (a blob of ``dim`` float32s, formats 1-6; or a row inside
    its segment file that passes its checksum) and the files whose vector is kept; count the others. Returns the
    meta, the vectors' size and the segments as their files hold them. Refuses, keeping nothing, when the model
    record cannot be read (the vectors would mean nothing)."""
    catalog = Layout(directory).catalog
    meta = {bytes(k).decode(): bytes(v).decode() for k, v in found.rows["meta"]}  # type: ignore[arg-type]
    meta = {**{k: v for k, v in found.copied_meta.items() if k != "format_version"}, **meta}  # the catalog's own first
    if "model_spec" not in meta or "dim" not in meta:
        raise UserError(f"the model record of {catalog} is lost: the saved vectors could not be used; "
                        "index again into a new --index (the damaged catalog is left as it is)")
    dim = int(meta["dim"])
    files_there = Segments(Layout(directory).segments)
    in_files = _segments_in_files(files_there, dim)
    damaged = {s: set(files_there.damaged_rows(s, dim, itemsize, rows)) for s, (itemsize, rows) in in_files.items()}

    def whole(row: tuple[object, ...]) -> bool:
        if len(row) == 2:
            return len(bytes(row[1])) == dim * 4  # type: ignore[arg-type]
        segment, at = int(row[1]), int(row[2])  # type: ignore[call-overload]
        return 0 <= at < in_files.get(segment, (0, 0))[1] and at not in damaged[segment]

    found.rows["vectors"] = [r for r in found.rows["vectors"] if whole(r)]
    stored = {bytes(r[0]) for r in found.rows["vectors"]}  # type: ignore[arg-type]
    videos_whole = _videos_whole(found, stored)
    files = [r for r in found.rows["files"] if bytes(r[4]) in stored or bytes(r[4]) in videos_whole]  # type: ignore[arg-type]
    found.files_without_vector = len(found.rows["files"]) - len(files)
    kept_ids = {r[0] for r in files}
    found.left_out += [os.fsdecode(bytes(r[1])) for r in found.rows["files"] if r[0] not in kept_ids]  # type: ignore[arg-type]
    found.rows["files"] = files
    return meta, dim, in_files


def _videos_whole(found: Salvage, stored: set[bytes]) -> set[bytes]:
    """The videos (content hashes) whose every moment was read with its vector whole (``clipsearch.store.moments``)."""
    if not found.rows.get("videos"):
        return set()
    expected = {bytes(r[0]): int(r[found.columns["videos"].index("moments")]) for r in found.rows["videos"]}  # type: ignore[arg-type,call-overload]
    at = found.columns["moments"].index("moment")
    seen: dict[bytes, list[bytes]] = {}
    for row in found.rows["moments"]:
        seen.setdefault(bytes(row[0]), []).append(bytes(row[at]))  # type: ignore[arg-type]
    return {video for video, count in expected.items()
            if len(moments := seen.get(video, [])) == count and all(m in stored for m in moments)}


def _put_back_carried(conn: sqlite3.Connection, found: Salvage) -> None:
    """The ``CARRIED`` rows into the new catalog, by column name; text columns as the bytes they were."""
    for table in CARRIED:
        rows, names = found.rows.get(table), found.columns.get(table, [])
        if not rows:
            continue
        if table == "sqlite_sequence":  # ids handed out stay handed out (files, faces, people): never again
            for name, seq in rows:
                name = bytes(name).decode()  # type: ignore[arg-type]
                if not conn.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?", (seq, name)).rowcount:
                    conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (name, seq))
            continue
        types = {r[1]: str(r[2]).upper() for r in conn.execute(f"PRAGMA table_info({table})")}
        kept = [i for i, name in enumerate(names) if name in types]
        marks = ", ".join(T if types[names[i]] == "TEXT" else "?" for i in kept)
        conn.executemany(f"INSERT OR IGNORE INTO {table} ({', '.join(names[i] for i in kept)}) VALUES ({marks})",
                         [tuple(row[i] for i in kept) for row in rows])
    words.refresh(conn, [int(r[0]) for r in found.rows["files"]])  # type: ignore[call-overload]


def salvage(directory: Path) -> Salvage:
    """Replace a damaged catalog by what can be read of it; the damaged file stays beside it. The caller holds the
    write lock. Refuses, saving nothing, when the model record cannot be read (the vectors would mean nothing)."""
    import numpy as np

    layout = Layout(directory)
    scratch = directory / "catalog.sqlite.salvage-read"
    fresh = directory / "catalog.sqlite.salvaged"
    try:
        found = read_what_remains(layout.catalog, scratch)
        meta, dim, in_files = _keep_whole(found, directory)
        files_there = Segments(layout.segments)
        vectors = found.rows["vectors"]
        fresh.unlink(missing_ok=True)
        conn = connect(fresh, readonly=False)
        migrations.create_or_upgrade(conn, directory)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM meta")
        segments.record(conn, [(segment, dim, itemsize, rows) for segment, (itemsize, rows) in in_files.items()])
        blobs = [r for r in vectors if len(r) == 2]  # an older format's: copied into segment files now
        if blobs:
            found.rows["vectors"] = [r for r in vectors if len(r) == 3]
            appender = SegmentAppender(files_there, conn, dim)
            matrix = np.frombuffer(b"".join(bytes(e) for _, e in blobs), dtype="<f4").reshape(len(blobs), dim)  # type: ignore[misc]
            placed = appender.add_block(matrix)
            found.rows["vectors"] += [(h, s, r) for (h, _), (s, r) in zip(blobs, placed)]
            segments.record(conn, appender.flush())
        for table in TABLES:
            rows = found.rows[table]
            if table == "meta":
                rows = [(k, v) for k, v in meta.items() if k != "format_version"] + [
                    ("format_version", str(migrations.CURRENT))]
            if rows:
                conn.executemany(f"INSERT OR IGNORE INTO {table} ({_COLUMNS[table]}) VALUES ({_VALUES[table]})", rows)
        _put_back_carried(conn, found)
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        kept = directory / f"catalog.sqlite.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
        if (log := Path(str(layout.catalog) + "-wal")).is_file():
            os.replace(log, str(kept) + "-wal")  # the damaged catalog is kept whole: with its log
        Path(str(layout.catalog) + "-shm").unlink(missing_ok=True)
        os.replace(layout.catalog, kept)
        os.replace(fresh, layout.catalog)
        for stale in list(layout.faiss_files()):  # built from the old catalog: rebuilt from the saved vectors
            stale.unlink(missing_ok=True)
            Path(str(stale) + file_sums.SUFFIX).unlink(missing_ok=True)
        return found
    finally:
        scratch.unlink(missing_ok=True)
        for leftover in (fresh, Path(str(fresh) + "-wal"), Path(str(fresh) + "-shm")):
            leftover.unlink(missing_ok=True)
