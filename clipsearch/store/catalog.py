"""The catalog (SQLite): the owner of rows and SQL. What is indexed, the model and settings (``meta``), runs,
failures, and the optional tables' readers; the queries readers and the writer share.

The catalog is authoritative. Vectors are stored once per distinct content hash (``vectors``: where each lies in the
segment files, read by ``stored_vectors``), and each file row points at its hash: a renamed or copied photo reuses the
stored vector. FAISS ids are ``files.id``. Each commit that changes vectors bumps ``meta.generation``; the index files
(``index_files``) are caches stamped with the generation they were built from.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipsearch.store import migrations
from clipsearch.store.faces import FaceTable
from clipsearch.store.metadata import MetadataReader
from clipsearch.store.moments import MomentReader
from clipsearch.store.notes import NotesReader
from clipsearch.store.path_check import PathCheck
from clipsearch.store.paths import PATH, path_param, text, under
from clipsearch.store.signatures import SignatureReader
from clipsearch.store.tags import TagReader
from clipsearch.store.words import WordsReader

_IN_CHUNK = 500  # ids per "IN (...)" query


def connect(path: Path, readonly: bool, immutable: bool = False) -> sqlite3.Connection:
    """``immutable``: a catalog in a directory nobody may write to (no WAL locks can be taken there)."""
    if immutable:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro&immutable=1", uri=True, check_same_thread=False)
    elif readonly:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=30, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.text_factory = text
    return conn


@dataclass(frozen=True)
class ModelRecord:
    """What the index was built with; search must embed queries with the same."""

    spec: str
    fingerprint: str
    dim: int


@dataclass(frozen=True)
class FileRecord:
    """What a run stores about one file (its vector is stored by ``hash``)."""

    path: str
    size: int
    mtime_ns: int
    hash: bytes
    width: int
    height: int


@dataclass(frozen=True)
class IndexedFile(FileRecord):
    """One file row of the catalog: a record and the id that FAISS, the server's URLs and "more like this" use."""

    id: int


_FILE_COLUMNS = "id, path, size, mtime_ns, hash, width, height"


def _indexed_file(row: tuple[Any, ...] | None) -> IndexedFile | None:
    if row is None:
        return None
    return IndexedFile(id=row[0], path=row[1], size=row[2], mtime_ns=row[3], hash=bytes(row[4]), width=row[5],
                       height=row[6])


class Catalog:
    """The rows of one index's catalog, on the connection its store opened (read-only for a reader). Never
    subclassed: ``StoreReader`` and ``StoreWriter`` hold one."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path  # the catalog's file (``vector_lookup``'s threads open their own connections to it)
        self.words = WordsReader(conn)  # the words of photos (``clipsearch.store.words``)

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection, for the tables' own modules (``tags``, ``moments``, ``index_changes``...)."""
        return self._conn

    def close(self) -> None:
        self._conn.close()

    def txn(self) -> sqlite3.Connection:
        """The writer's connection inside a write transaction (begun here unless one is open); the writer commits."""
        if not self._conn.in_transaction:
            self._conn.execute("BEGIN IMMEDIATE")
        return self._conn

    def meta(self, key: str) -> str | None:
        """A setting or record of ``meta`` (the model, the index files' state, the user's choices)."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        """In the writer's open transaction (``txn``)."""
        self.txn().execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @property
    def format_version(self) -> int:
        return int(self.meta("format_version") or migrations.FIRST)

    @property
    def generation(self) -> int:
        return int(self.meta("generation") or 0)

    @property
    def model(self) -> ModelRecord | None:
        """The model of the stored vectors that searches use."""
        spec = self.meta("model_spec")
        if spec is None:
            return None
        return ModelRecord(spec, self.meta("model_fingerprint") or "", int(self.meta("dim") or 0))

    @property
    def pending_model(self) -> ModelRecord | None:
        """The model of a re-embedding under way (``index --reindex``), built beside the vectors searches use in
        ``vectors_next`` and swapped in by one commit once every file has its vector (``StoreWriter.swap_pending``)."""
        spec = self.meta("next_model_spec")
        if not spec:
            return None
        return ModelRecord(spec, self.meta("next_model_fingerprint") or "", int(self.meta("next_dim") or 0))

    @property
    def target_table(self) -> str:
        """Where a run's new vectors go: ``vectors_next`` while a re-embedding is under way, else ``vectors``."""
        return "vectors_next" if self.pending_model is not None else "vectors"

    @property
    def tags(self) -> TagReader:
        return TagReader(self._conn)

    @property
    def signatures(self) -> SignatureReader:
        return SignatureReader(self._conn)

    faces = property(lambda self: FaceTable(self._conn), doc="Faces and people (``clipsearch.store.faces``).")
    path_check = property(lambda self: PathCheck(self._conn), doc="Hits' paths against the paths' index.")

    @property
    def metadata(self) -> MetadataReader:
        return MetadataReader(self._conn)

    @property
    def moments(self) -> MomentReader:
        return MomentReader(self._conn)

    def file_row(self, path: str) -> IndexedFile | None:
        """The row of the file at ``path``, if it is indexed."""
        return _indexed_file(self._conn.execute(f"SELECT {_FILE_COLUMNS} FROM files WHERE path = {PATH}",
                                                (path_param(path),)).fetchone())

    def file_rows(self, within: str | None = None) -> list[IndexedFile]:
        """Every file's row (with a stored vector), or those under the folder ``within``, by id."""
        where, params = "", ()
        if within is not None:
            where, params = f"WHERE (path >= {PATH} AND path < {PATH}) OR path = {PATH}", (
                *map(path_param, under(within)), path_param(within.rstrip(os.sep)))
        rows = self._conn.execute(f"SELECT {_FILE_COLUMNS} FROM files {where} ORDER BY id", params).fetchall()
        return [f for f in map(_indexed_file, rows) if f is not None]

    def indexed_file(self, file_id: int) -> IndexedFile | None:
        """The row with this id; the only way the server turns a request into a file on disk."""
        return _indexed_file(self._conn.execute(f"SELECT {_FILE_COLUMNS} FROM files WHERE id = ?", (file_id,)).fetchone())

    def count(self) -> int:
        return self._conn.execute("SELECT count(*) FROM files").fetchone()[0]

    def roots(self) -> list[str]:
        return [r[0] for r in self._conn.execute("SELECT path FROM roots ORDER BY path")]

    def root_settings(self) -> dict[str, dict[str, Any]]:
        """Each indexed folder's settings (how it is walked: ``indexer.walk.Rules``), by path; format 3 on."""
        if self.format_version < 3:
            return {root: {} for root in self.roots()}
        return {path: json.loads(settings) for path, settings in
                self._conn.execute("SELECT path, settings FROM roots ORDER BY path")}

    def paths(self, ids: Iterable[int]) -> dict[int, str]:
        ids = [int(i) for i in ids]
        out: dict[int, str] = {}
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            out.update(self._conn.execute(f"SELECT id, path FROM files WHERE id IN ({marks})", chunk))
        return out

    def ids_under(self, folder: str) -> list[int]:
        lo, hi = under(folder)
        rows = self._conn.execute(f"SELECT id FROM files WHERE (path >= {PATH} AND path < {PATH}) OR path = {PATH}",
                                  (path_param(lo), path_param(hi), path_param(folder.rstrip(os.sep))))
        return [r[0] for r in rows]

    def failures(self) -> list[dict[str, Any]]:
        """The files that could not be indexed (not retried until they change), then those indexed as far as they
        decode (``indexed``: a JPEG cut short), each by path."""
        rows = self._conn.execute("SELECT path, error, size, mtime_ns FROM failures ORDER BY path")
        failed = [{"path": p, "error": e, "size": s, "mtime_ns": m, "indexed": False} for p, e, s, m in rows]
        return failed + NotesReader(self._conn).noted()

    def file_ids(self) -> set[int]:
        return {r[0] for r in self._conn.execute("SELECT id FROM files")}

    # -- consistency (``check``) -------------------------------------------------------
    def integrity_check(self) -> str:
        """SQLite's own verdict on the database file, every index checked against its table: "ok", or what is wrong
        (``quick_check`` passes a changed byte in a stored path)."""
        rows = [r[0] for r in self._conn.execute("PRAGMA integrity_check(20)")]
        return "ok" if rows == ["ok"] else "; ".join(rows)

    def paths_without_vector(self, damaged: Sequence[bytes] = ()) -> list[str]:
        """The files with no stored vector, or whose content's vector is among ``damaged``."""
        rows = self._conn.execute("SELECT files.path, files.hash FROM files LEFT JOIN vectors ON vectors.hash = "
                                  "files.hash WHERE vectors.hash IS NULL").fetchall()
        gone = set(damaged)
        if gone:
            rows += [r for r in self._conn.execute("SELECT path, hash FROM files") if bytes(r[1]) in gone]
        return sorted({p for p, _ in rows})

    def content_prefixes(self) -> bytes:
        """The first 8 bytes of every stored content's hash, concatenated (``index --engine ray``'s workers' list):
        of the re-embedding's vectors while one is under way."""
        return b"".join(bytes(r[0]) for r in self._conn.execute(f"SELECT substr(hash, 1, 8) FROM {self.target_table}"))

    def vector_lookup(self) -> VectorLookup:
        """A thread-safe "is this content embedded (committed)?" check for a run's reader threads (by the model the
        run embeds with: the re-embedding's while one is under way)."""
        return VectorLookup(self.path, self.target_table)

    def has_target_vector(self, digest: bytes) -> bool:
        return self._conn.execute(f"SELECT 1 FROM {self.target_table} WHERE hash = ?", (digest,)).fetchone() is not None

    def last_run(self) -> dict[str, Any] | None:
        row = self._conn.execute(
            "SELECT started, finished, roots, report FROM runs WHERE report IS NOT NULL ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        return {"started": row[0], "finished": row[1], "roots": json.loads(row[2]), **json.loads(row[3])}


class VectorLookup:
    """Whether a content hash has a committed vector, from any thread: each thread asks on a read-only connection
    of its own (the reader threads of a run ask while the writer's connection is in a transaction)."""

    def __init__(self, catalog: Path, table: str = "vectors") -> None:
        assert table in ("vectors", "vectors_next"), table
        self._catalog = catalog
        self._table = table
        self._local = threading.local()

    def __call__(self, digest: bytes) -> bool:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self._catalog, readonly=True)
        try:
            return conn.execute(f"SELECT 1 FROM {self._table} WHERE hash = ?", (digest,)).fetchone() is not None
        except sqlite3.Error:
            return False
