"""``check --repair`` on a damaged catalog (a truncated file, a bad sector): save what SQLite can still read.

What can be read of it (``clipsearch.store.remains``) goes into a new catalog of the current format; the damaged
file is kept beside it (``catalog.sqlite.damaged-<time>``, with its log), never deleted. The vectors of a
catalog of format 7 on are in segment files, which the damage does not reach: each saved pointer into them is
kept if its row is in the file (the segments' row counts are read from the files themselves); a catalog of an
older format has its readable vectors copied into segment files. Files whose vector was lost are left out, so
the next ``index`` run embeds them again; nothing else is re-embedded.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from pathlib import Path

from clipsearch.errors import UserError
from clipsearch.store import file_sums, migrations, segments, words
from clipsearch.store.catalog import connect
from clipsearch.store.layout import Layout
from clipsearch.store.lock import WriteLock
from clipsearch.store.remains import CARRIED, TABLES, Salvage, read_what_remains
from clipsearch.store.segments import SegmentAppender, SegmentError, Segments

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
    kept_ids = {r[0] for r in files}
    found.without_vector = [os.fsdecode(bytes(r[1])) for r in found.rows["files"] if r[0] not in kept_ids]  # type: ignore[arg-type]
    found.rows["files"] = files
    _names_of_faces_lost(found)
    return meta, dim, in_files


def _names_of_faces_lost(found: Salvage) -> None:
    """The names whose faces were all lost (the faces table cut short goes whole, ``remains.PAIRED``): each is kept,
    waiting for the next run to find one of their faces again (``found.awaited``: by the descriptor the schema copy
    holds), or, with no face of theirs known, said by name (``found.names_lost``). Never dropped in silence."""
    columns = found.columns.get("faces", [])
    faced = {row[columns.index("person")] for row in found.rows.get("faces", [])} if "person" in columns else set()
    copied = {int(pid): (str(name), str(look or "")) for pid, name, look in found.copied_people}  # type: ignore[call-overload,misc]
    for pid, (name, look) in copied.items():
        if pid not in faced:
            (found.awaited.append((pid, name, bytes.fromhex(look))) if look else found.names_lost.append(name))
    for pid, name in found.rows.get("people", []):  # named after the copy was written (a killed writer's last commit)
        if name is not None and pid not in faced and pid not in copied:
            found.names_lost.append(os.fsdecode(bytes(name)))  # type: ignore[arg-type]


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
        for pid, name, look in found.awaited:  # the person (their row lost, maybe) and a face to find them by
            conn.execute("INSERT OR IGNORE INTO people (id, name) VALUES (?, ?)", (pid, name))
            conn.execute("INSERT INTO face_memory (person, face, descriptor) VALUES (?, NULL, ?)", (pid, look))
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
