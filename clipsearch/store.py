"""The on-disk index: the one module that opens its files.

Layout of an index directory::

    catalog.sqlite        files, vectors, model record, roots, runs (the source of truth)
    vectors-<gen>.faiss   FAISS index over file ids, derived from the catalog at generation <gen>
    write.lock            held (flock) by the one process that writes
    runs.log              one JSON line per finished run (time, counts, seconds, failures)
    thumbs/ab/<hash>.jpg  thumbnails for the web page, keyed by content hash (a cache: deleting it loses nothing)

The catalog is authoritative. Each commit bumps a generation counter; the FAISS
file is a cache stamped with the generation it was built from. A reader that
finds no FAISS file for the current generation (a run was killed before it wrote
one) rebuilds it in memory from the stored vectors, so a search never sees a
half-written state and never loses committed work.

Vectors are stored once per distinct content hash (``vectors``), and each file
row points at its hash: a renamed or copied photo reuses the stored embedding.
FAISS ids are the catalog's ``files.id``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipsearch import vectors
from clipsearch.errors import IndexLocked, UserError

if TYPE_CHECKING:  # heavy imports stay out of start-up
    import faiss
    import numpy as np

FORMAT_VERSION = 1
CATALOG_NAME = "catalog.sqlite"
LOCK_NAME = "write.lock"
RUN_LOG_NAME = "runs.log"
_FAISS_PREFIX = "vectors-"
_FAISS_SUFFIX = ".faiss"
THUMBS_NAME = "thumbs"

_HASH_HEAD = 256 * 1024
_HASH_TAIL = 256 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS roots (path TEXT PRIMARY KEY, added REAL NOT NULL);
CREATE TABLE IF NOT EXISTS vectors (
    hash BLOB PRIMARY KEY,
    embedding BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    hash BLOB NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    seen INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS files_hash ON files(hash);
CREATE TABLE IF NOT EXISTS failures (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    error TEXT NOT NULL,
    seen INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started REAL NOT NULL,
    finished REAL,
    roots TEXT NOT NULL,
    report TEXT
);
"""


_HELD_LOCKS: set[int] = set()  # write.lock descriptors this process holds


def _drop_locks_in_child() -> None:
    """A forked child (a decode worker) lets go of the index's write lock.

    The flock belongs to the open file, which a child shares: a child that outlived a killed run
    would keep the index locked. Closing the child's copy leaves the parent's lock as it was.
    """
    for fd in _HELD_LOCKS:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD_LOCKS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_locks_in_child)


def content_hash(data: bytes, size: int | None = None) -> bytes:
    """Identity of a file's content, used to find renames and copies.

    sha256 over the size and the first and last 256 KiB: the whole file for
    most web images, and for camera photos the EXIF block (capture time) plus
    the start and end of the entropy-coded data, which any edit changes. Full
    hashing would cost about as much as the fast JPEG decode itself.
    """
    size = len(data) if size is None else size
    h = hashlib.sha256(size.to_bytes(8, "little"))
    if len(data) <= _HASH_HEAD + _HASH_TAIL:
        h.update(data)
    else:
        view = memoryview(data)  # one update: each one releases and retakes the GIL
        h.update(b"".join((view[:_HASH_HEAD], view[-_HASH_TAIL:])))
    return h.digest()[:16]


def file_content_hash(path: str | os.PathLike[str]) -> bytes:
    """``content_hash`` of a file on disk, reading only the parts it needs."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size <= _HASH_HEAD + _HASH_TAIL:
            return content_hash(f.read(), size)
        head = f.read(_HASH_HEAD)
        f.seek(size - _HASH_TAIL)
        return content_hash(head + f.read(_HASH_TAIL), size)


def under(path: str) -> tuple[str, str]:
    """SQL bounds (lo, hi) such that ``lo <= p < hi`` selects the paths inside folder ``path``."""
    prefix = path.rstrip(os.sep) + os.sep
    return prefix, prefix[:-1] + chr(ord(os.sep) + 1)


@dataclass(frozen=True)
class ModelRecord:
    """What the index was built with; search must embed queries with the same."""

    spec: str
    fingerprint: str
    dim: int


@dataclass(frozen=True)
class FileRow:
    id: int
    size: int
    mtime_ns: int
    hash: bytes


@dataclass(frozen=True)
class IndexedFile:
    """One catalog row, as the web page shows it."""

    id: int
    path: str
    size: int
    mtime_ns: int
    hash: bytes
    width: int
    height: int


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=30, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _faiss_path(directory: Path, generation: int) -> Path:
    return directory / f"{_FAISS_PREFIX}{generation}{_FAISS_SUFFIX}"


def _embedding_blob(vector: np.ndarray) -> bytes:
    import numpy as np

    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


class _Base:
    """Read access shared by readers and the writer."""

    def __init__(self, directory: Path, conn: sqlite3.Connection) -> None:
        self.directory = directory
        self._conn = conn

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    @property
    def generation(self) -> int:
        return int(self._meta("generation") or 0)

    @property
    def model(self) -> ModelRecord | None:
        spec = self._meta("model_spec")
        if spec is None:
            return None
        return ModelRecord(spec, self._meta("model_fingerprint") or "", int(self._meta("dim") or 0))

    def file_row(self, path: str) -> FileRow | None:
        row = self._conn.execute("SELECT id, size, mtime_ns, hash FROM files WHERE path = ?", (path,)).fetchone()
        return FileRow(row[0], row[1], row[2], bytes(row[3])) if row else None

    def indexed_file(self, file_id: int) -> IndexedFile | None:
        """The catalog row with this id; the only way the server turns a request into a file on disk."""
        row = self._conn.execute(
            "SELECT id, path, size, mtime_ns, hash, width, height FROM files WHERE id = ?", (file_id,)
        ).fetchone()
        return None if row is None else IndexedFile(row[0], row[1], row[2], row[3], bytes(row[4]), row[5], row[6])

    def count(self) -> int:
        return self._conn.execute("SELECT count(*) FROM files").fetchone()[0]

    def roots(self) -> list[str]:
        return [r[0] for r in self._conn.execute("SELECT path FROM roots ORDER BY path")]

    def paths(self, ids: Iterable[int]) -> dict[int, str]:
        ids = [int(i) for i in ids]
        out: dict[int, str] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            out.update(self._conn.execute(f"SELECT id, path FROM files WHERE id IN ({marks})", chunk))
        return out

    def ids_under(self, folder: str) -> list[int]:
        lo, hi = under(folder)
        rows = self._conn.execute(
            "SELECT id FROM files WHERE (path >= ? AND path < ?) OR path = ?", (lo, hi, folder.rstrip(os.sep))
        )
        return [r[0] for r in rows]

    def last_run(self) -> dict[str, Any] | None:
        row = self._conn.execute(
            "SELECT started, finished, roots, report FROM runs WHERE report IS NOT NULL ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        return {"started": row[0], "finished": row[1], "roots": json.loads(row[2]), **json.loads(row[3])}

    def info(self) -> dict[str, Any]:
        model = self.model
        return {
            "index": str(self.directory),
            "images": self.count(),
            "vectors": self._conn.execute("SELECT count(*) FROM vectors").fetchone()[0],
            "model": model.spec if model else None,
            "dim": model.dim if model else None,
            "fingerprint": json.loads(model.fingerprint) if model and model.fingerprint else None,
            "roots": self.roots(),
            "failing_files": self._conn.execute("SELECT count(*) FROM failures").fetchone()[0],
            "index_type": self._meta("index_built_as"),
            "index_type_setting": self._meta("index_type") or "auto",
            "generation": self.generation,
            "format_version": int(self._meta("format_version") or FORMAT_VERSION),
            "last_run": self.last_run(),
        }

    def iter_vectors(self, ids: Sequence[int] | None = None, chunk: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (ids, float32 matrix) blocks of stored embeddings, all files or the given ids."""
        import numpy as np

        model = self.model
        dim = model.dim if model else 0

        def block(rows: list[tuple[int, bytes]]) -> tuple[np.ndarray, np.ndarray]:
            block_ids = np.fromiter((r[0] for r in rows), dtype="int64", count=len(rows))
            matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), dim)
            return block_ids, matrix.astype("float32", copy=False)

        if ids is None:
            cursor = self._conn.execute(
                "SELECT files.id, vectors.embedding FROM files JOIN vectors ON vectors.hash = files.hash ORDER BY files.id"
            )
            while rows := cursor.fetchmany(chunk):
                yield block(rows)
            return
        ids = [int(i) for i in ids]
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = self._conn.execute(
                "SELECT files.id, vectors.embedding FROM files JOIN vectors ON vectors.hash = files.hash "
                f"WHERE files.id IN ({marks})",
                part,
            ).fetchall()
            if rows:
                yield block(rows)

    def embedding_of(self, path: str) -> np.ndarray | None:
        import numpy as np

        row = self._conn.execute(
            "SELECT vectors.embedding FROM files JOIN vectors ON vectors.hash = files.hash WHERE files.path = ?", (path,)
        ).fetchone()
        return None if row is None else np.frombuffer(row[0], dtype="<f4").astype("float32")

    def embedding_of_id(self, file_id: int) -> np.ndarray | None:
        import numpy as np

        row = self._conn.execute(
            "SELECT vectors.embedding FROM files JOIN vectors ON vectors.hash = files.hash WHERE files.id = ?", (file_id,)
        ).fetchone()
        return None if row is None else np.frombuffer(row[0], dtype="<f4").astype("float32")

    def _thumbnail_path(self, digest: bytes) -> Path:
        name = digest.hex()
        return self.directory / THUMBS_NAME / name[:2] / f"{name}.jpg"

    def cached_thumbnail(self, digest: bytes) -> bytes | None:
        try:
            return self._thumbnail_path(digest).read_bytes()
        except OSError:
            return None

    def cache_thumbnail(self, digest: bytes, jpeg: bytes) -> None:
        """Keep a thumbnail for next time; a read-only or full index directory just means no cache."""
        target = self._thumbnail_path(digest)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(jpeg)
            os.replace(tmp, target)
        except OSError:
            tmp.unlink(missing_ok=True)

    def index_factory(self) -> str:
        """The FAISS index type for the collection as it is now: the --index-type override, else by size."""
        dim = self.model.dim if self.model else 0
        n = self.count()
        wanted = self._meta("index_type") or "auto"
        factory = vectors.choose(n, dim) if wanted == "auto" else wanted
        if factory.startswith("IVF") and n < int(factory[3:].split(",")[0]):
            return "Flat"  # too few vectors to train that many lists
        return factory

    def _build_index(self, factory: str | None = None) -> faiss.Index:
        """A fresh FAISS index of type ``factory`` (default: what the collection needs) holding every vector."""
        import numpy as np

        factory = factory or self.index_factory()
        dim = self.model.dim if self.model else 0
        sample = None
        size = vectors.training_size(factory, self.count())
        if size:
            rows = self._conn.execute(
                "SELECT embedding FROM vectors WHERE hash IN (SELECT hash FROM files) ORDER BY random() LIMIT ?", (size,)
            ).fetchall()
            sample = np.frombuffer(b"".join(r[0] for r in rows), dtype="<f4").reshape(len(rows), dim).astype("float32")
        index = vectors.new_index(factory, dim, sample)
        for block_ids, matrix in self.iter_vectors():
            index.add_with_ids(matrix, block_ids)
        return index


class StoreReader(_Base):
    """Read-only view used by search; sees only committed states."""

    @classmethod
    def open(cls, directory: Path) -> StoreReader:
        catalog = directory / CATALOG_NAME
        if not catalog.is_file():
            raise UserError(f"no index at {directory}: run 'clipsearch index FOLDER' first (or pass --index DIR)")
        try:
            conn = _connect(catalog, readonly=True)
            conn.execute("SELECT count(*) FROM files").fetchone()
        except sqlite3.OperationalError:
            # A directory we may not write to (a read-only mount, another user's index): SQLite cannot
            # take its WAL locks there. Writers checkpoint the WAL at the end of every run, so the
            # main file alone holds every finished run.
            try:
                conn = sqlite3.connect(f"{catalog.as_uri()}?mode=ro&immutable=1", uri=True, check_same_thread=False)
                conn.execute("SELECT count(*) FROM files").fetchone()
            except sqlite3.DatabaseError as exc:
                raise UserError(f"cannot read the index at {directory}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise UserError(f"cannot read the index at {directory}: {exc}") from None
        return cls(directory, conn)

    @contextmanager
    def snapshot(self) -> Iterator[StoreReader]:
        """Hold one committed state for several reads (index, then paths): a commit landing meanwhile is not seen."""
        self._conn.execute("BEGIN")
        try:
            yield self
        finally:
            self._conn.execute("COMMIT")

    def vector_index(self) -> faiss.Index:
        """The FAISS index of the committed generation; rebuilt in memory if its file is missing or unreadable.

        Call inside ``snapshot()`` so the generation and the vectors come from one state.
        """
        import faiss

        path = _faiss_path(self.directory, self.generation)
        if path.is_file():
            for flags in (faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY, 0):
                try:
                    return vectors.prepare_for_queries(faiss.read_index(str(path), flags))
                except RuntimeError:
                    continue  # this index type cannot be memory-mapped, or the file is damaged
        return vectors.prepare_for_queries(self._build_index())


class StoreWriter(_Base):
    """The one writer of an index directory (holds an exclusive flock for its lifetime).

    Work is committed in chunks by ``commit``; ``finish`` sweeps, garbage-collects
    vectors, writes the FAISS file for the final generation and logs the run.
    """

    def __init__(self, directory: Path, conn: sqlite3.Connection, lock_fd: int) -> None:
        super().__init__(directory, conn)
        self._lock_fd = lock_fd
        _HELD_LOCKS.add(lock_fd)
        self._run_id = 0
        self._start_generation = self.generation
        self._removed_ids: set[int] = set()
        self._added_ids: set[int] = set()
        self._dirty = False  # files or vectors changed in the open transaction

    # -- opening and locking -------------------------------------------------
    @classmethod
    def open(cls, directory: Path, on_wait: Callable[[str], None] | None = None) -> StoreWriter:
        """Take the index's write lock, or fail at once; with ``on_wait``, tell it who holds the lock and wait.

        The lock is an flock on ``write.lock``: the kernel drops it when its holder dies, so a
        lock left by a killed run is simply free (the PID written inside is only for messages).
        """
        import fcntl

        try:
            directory.mkdir(parents=True, exist_ok=True)
            lock_fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"cannot create the index at {directory}: {exc.strerror}") from None
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(lock_fd, 64, 0).decode(errors="replace").strip() or "another process"
            if on_wait is None:
                os.close(lock_fd)
                raise IndexLocked(
                    f"the index at {directory} is locked by PID {holder} (another 'clipsearch index' is running; "
                    "--wait waits for it)"
                ) from None
            on_wait(holder)
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
        os.ftruncate(lock_fd, 0)
        os.pwrite(lock_fd, f"{os.getpid()}\n".encode(), 0)
        try:
            conn = _connect(directory / CATALOG_NAME, readonly=False)
            conn.executescript(_SCHEMA)
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('format_version', ?)", (str(FORMAT_VERSION),))
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")
        except sqlite3.DatabaseError as exc:
            os.close(lock_fd)
            raise UserError(f"cannot open the index at {directory}: {exc}") from None
        version = int(conn.execute("SELECT value FROM meta WHERE key='format_version'").fetchone()[0])
        if version != FORMAT_VERSION:
            os.close(lock_fd)
            raise UserError(f"the index at {directory} has format {version}; this clipsearch reads format {FORMAT_VERSION}")
        return cls(directory, conn, lock_fd)

    def close(self) -> None:
        if self._conn.in_transaction:  # SQLite may already have rolled back (disk full)
            self._conn.execute("ROLLBACK")
        super().close()
        _HELD_LOCKS.discard(self._lock_fd)
        os.close(self._lock_fd)

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _txn(self) -> sqlite3.Connection:
        if not self._conn.in_transaction:
            self._conn.execute("BEGIN IMMEDIATE")
        return self._conn

    # -- model ---------------------------------------------------------------
    def bind_model(self, record: ModelRecord, reindex: bool = False) -> None:
        """Record the model of an empty index, or check it matches; ``reindex`` drops all vectors to switch."""
        current = self.model
        if current is not None and self.count() > 0:
            same = current.fingerprint == record.fingerprint
            if same and current.spec == record.spec:
                return
            if not reindex:
                raise UserError(
                    f"this index was built with --model {current.spec}; to re-embed everything with "
                    f"{record.spec} pass --reindex (or use another --index)"
                )
            conn = self._txn()
            self._removed_ids.update(r[0] for r in conn.execute("SELECT id FROM files"))
            conn.execute("DELETE FROM files")
            conn.execute("DELETE FROM vectors")
            conn.execute("DELETE FROM failures")
            self._dirty = True
        conn = self._txn()
        for key, value in (("model_spec", record.spec), ("model_fingerprint", record.fingerprint), ("dim", str(record.dim))):
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
        self.commit()

    # -- a run ---------------------------------------------------------------
    def begin_run(self, roots: Sequence[str]) -> int:
        conn = self._txn()
        for root in roots:
            conn.execute("INSERT OR IGNORE INTO roots VALUES (?, ?)", (root, time.time()))
        cur = conn.execute("INSERT INTO runs (started, roots) VALUES (?, ?)", (time.time(), json.dumps(list(roots))))
        self._run_id = int(cur.lastrowid or 0)
        self.commit()
        return self._run_id

    def known_failure(self, path: str, size: int, mtime_ns: int) -> bool:
        """True (and marks it seen) if the file failed before and has not changed since."""
        row = self._conn.execute("SELECT size, mtime_ns FROM failures WHERE path = ?", (path,)).fetchone()
        if row is None or row != (size, mtime_ns):
            return False
        self._txn().execute("UPDATE failures SET seen = ? WHERE path = ?", (self._run_id, path))
        return True

    def vector_lookup(self) -> VectorLookup:
        """A thread-safe "is this content embedded (committed)?" check for decode workers."""
        return VectorLookup(self.directory / CATALOG_NAME)

    def mark_seen(self, file_id: int) -> None:
        self._txn().execute("UPDATE files SET seen = ? WHERE id = ?", (self._run_id, file_id))

    def touch(self, file_id: int, size: int, mtime_ns: int) -> None:
        """Same content under a new size/mtime stamp: remember the stamp, keep the vector."""
        self._txn().execute(
            "UPDATE files SET size = ?, mtime_ns = ?, seen = ? WHERE id = ?", (size, mtime_ns, self._run_id, file_id)
        )

    def put(
        self,
        path: str,
        size: int,
        mtime_ns: int,
        digest: bytes,
        width: int,
        height: int,
        embedding: np.ndarray | None,
    ) -> int:
        """Insert or replace a file's row; ``embedding`` None means the vector for ``digest`` is already stored."""
        conn = self._txn()
        if embedding is not None:
            conn.execute("INSERT OR IGNORE INTO vectors VALUES (?, ?)", (digest, _embedding_blob(embedding)))
        conn.execute("DELETE FROM failures WHERE path = ?", (path,))
        old = conn.execute("SELECT id FROM files WHERE path = ?", (path,)).fetchone()
        if old is not None:
            conn.execute(
                "UPDATE files SET size=?, mtime_ns=?, hash=?, width=?, height=?, seen=? WHERE id=?",
                (size, mtime_ns, digest, width, height, self._run_id, old[0]),
            )
            file_id = int(old[0])
            self._removed_ids.add(file_id)
        else:
            cur = conn.execute(
                "INSERT INTO files (path, size, mtime_ns, hash, width, height, seen) VALUES (?,?,?,?,?,?,?)",
                (path, size, mtime_ns, digest, width, height, self._run_id),
            )
            file_id = int(cur.lastrowid or 0)
        self._added_ids.add(file_id)
        self._dirty = True
        return file_id

    def fail(self, path: str, size: int, mtime_ns: int, error: str) -> None:
        """Remember a file that could not be read (not retried until it changes); drop any stale vector."""
        conn = self._txn()
        old = conn.execute("SELECT id FROM files WHERE path = ?", (path,)).fetchone()
        if old is not None:
            conn.execute("DELETE FROM files WHERE id = ?", (old[0],))
            self._removed_ids.add(int(old[0]))
            self._added_ids.discard(int(old[0]))
            self._dirty = True
        conn.execute("INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?, ?)", (path, size, mtime_ns, error, self._run_id))

    def commit(self) -> None:
        """Make everything so far durable and visible to readers; a new generation if any vector changed."""
        if not self._conn.in_transaction:
            return
        if self._dirty:
            self._conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
        self._conn.execute("COMMIT")
        self._dirty = False

    def sweep(self, root: str) -> list[tuple[int, str, bytes]]:
        """Delete files under ``root`` not seen in this run (mark-and-sweep); returns (id, path, hash) of each."""
        conn = self._txn()
        lo, hi = under(root)
        gone = conn.execute(
            "SELECT id, path, hash FROM files WHERE path >= ? AND path < ? AND seen != ?", (lo, hi, self._run_id)
        ).fetchall()
        for file_id, _, _ in gone:
            conn.execute("DELETE FROM files WHERE id = ?", (file_id,))
            self._removed_ids.add(file_id)
            self._added_ids.discard(file_id)
            self._dirty = True
        conn.execute("DELETE FROM failures WHERE path >= ? AND path < ? AND seen != ?", (lo, hi, self._run_id))
        return [(int(i), p, bytes(h)) for i, p, h in gone]

    def forget(self, root: str) -> int:
        """Drop a folder and everything indexed under it; returns how many files were dropped."""
        self._run_id = -1  # nothing is "seen": everything under root goes
        conn = self._txn()
        conn.execute("DELETE FROM roots WHERE path = ?", (root,))
        return len(self.sweep(root))

    def check(self, repair: bool = False) -> list[str]:
        """Problems found between catalog, vectors and FAISS file (empty: consistent); ``repair`` mends them.

        Repair never re-embeds: files whose vector is missing or damaged are dropped from the
        catalog (the next ``index`` run embeds them again) and the FAISS index is rebuilt from the
        stored vectors.
        """
        import faiss

        problems: list[str] = []
        conn = self._conn
        quick = conn.execute("PRAGMA quick_check").fetchone()[0]
        if quick != "ok":
            problems.append(f"catalog database: {quick}")
        dim = self.model.dim if self.model else 0
        bad = [bytes(r[0]) for r in conn.execute("SELECT hash FROM vectors WHERE length(embedding) != ?", (dim * 4,))]
        if bad:
            problems.append(f"{len(bad)} stored vectors have the wrong size")
        orphans = conn.execute(
            "SELECT count(*) FROM files LEFT JOIN vectors ON vectors.hash = files.hash WHERE vectors.hash IS NULL"
        ).fetchone()[0]
        if orphans:
            problems.append(f"{orphans} files have no stored vector")
        path = _faiss_path(self.directory, self.generation)
        index = None
        if not path.is_file():
            problems.append(f"no FAISS index for generation {self.generation} (a run was interrupted)")
        else:
            try:
                index = faiss.read_index(str(path))
            except RuntimeError as exc:
                problems.append(f"FAISS index unreadable: {str(exc).splitlines()[0]}")
        if index is not None:
            ids = _index_ids(index)
            catalog_ids = {r[0] for r in conn.execute("SELECT id FROM files")}
            if ids is not None and ids != catalog_ids:
                problems.append(f"FAISS index and catalog disagree on {len(ids ^ catalog_ids)} ids")
            elif index.ntotal != len(catalog_ids):
                problems.append(f"FAISS index holds {index.ntotal} vectors, the catalog {len(catalog_ids)} files")
        if repair and problems:
            txn = self._txn()
            for digest in bad:
                txn.execute("DELETE FROM vectors WHERE hash = ?", (digest,))
            txn.execute("DELETE FROM files WHERE hash NOT IN (SELECT hash FROM vectors)")
            self._dirty = True
            self.commit()
            _write_index_atomically(self._build_index(), _faiss_path(self.directory, self.generation))
            self._drop_stale_indexes()
        return problems

    def _drop_stale_indexes(self) -> None:
        keep = _faiss_path(self.directory, self.generation)
        for stale in self.directory.glob(f"{_FAISS_PREFIX}*{_FAISS_SUFFIX}"):
            if stale != keep:
                stale.unlink(missing_ok=True)

    def finish(self, report: dict[str, Any]) -> None:
        """Drop unreferenced vectors, commit, bring the FAISS file up to date and log the run."""
        conn = self._txn()
        orphans = [bytes(r[0]) for r in conn.execute("SELECT hash FROM vectors WHERE hash NOT IN (SELECT hash FROM files)")]
        if orphans:
            conn.execute("DELETE FROM vectors WHERE hash NOT IN (SELECT hash FROM files)")
            self._dirty = True
        finished = time.time()
        conn.execute("UPDATE runs SET finished = ?, report = ? WHERE id = ?", (finished, json.dumps(report), self._run_id))
        self.commit()
        for digest in orphans:  # after the commit, so a killed run leaves at worst a stale cache file
            self._thumbnail_path(digest).unlink(missing_ok=True)
        self.sync_vector_index()
        try:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # keep the WAL small; the main file whole
        except sqlite3.OperationalError:
            pass  # readers hold it open: the next run checkpoints
        line = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(finished)), "roots": self.roots(), **report}
        try:
            with open(self.directory / RUN_LOG_NAME, "a", encoding="utf-8") as log:
                log.write(json.dumps(line) + "\n")
        except OSError:
            pass  # the run is committed; a log line that cannot be written loses nothing

    def set_index_type(self, index_type: str) -> None:
        """Pin the FAISS index type ("auto", "Flat", or a faiss factory string such as "IVF4096,SQ8")."""
        import faiss

        if index_type != "auto":
            try:
                faiss.index_factory(8 if "PQ" not in index_type else 64, index_type, faiss.METRIC_INNER_PRODUCT)
            except RuntimeError:
                raise UserError(f"--index-type '{index_type}' is not a FAISS index type (auto, Flat, IVF4096,SQ8, ...)") from None
        if (self._meta("index_type") or "auto") != index_type:
            self._txn().execute("INSERT OR REPLACE INTO meta VALUES ('index_type', ?)", (index_type,))
            self.commit()
            _faiss_path(self.directory, self.generation).unlink(missing_ok=True)  # rebuilt by the next sync

    def sync_vector_index(self) -> None:
        """Write the FAISS file for the current generation: patch the previous one, or rebuild."""
        generation = self.generation
        target = _faiss_path(self.directory, generation)
        if target.is_file():
            return
        factory = self.index_factory()
        built_as = self._meta("index_built_as") or ""
        built_at = int(self._meta("index_built_at") or 0)
        grown = self.count() > vectors.RETRAIN_GROWTH * built_at
        if vectors.same_family(built_as, factory) and not grown and (self._meta("index_type") or "auto") == "auto":
            factory = built_as  # hysteresis: keep the trained lists until the collection has really grown
        index = None
        # patch the previous file while the collection still wants that type and has not outgrown its training
        if factory == built_as and not (factory.startswith("IVF") and grown):
            index = self._patched_index()
        if index is None:
            index = self._build_index(factory)
            conn = self._txn()
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('index_built_as', ?)", (factory,))
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('index_built_at', ?)", (str(self.count()),))
            self.commit()  # not a new generation: the vectors did not change
        _write_index_atomically(index, target)
        self._drop_stale_indexes()
        self._start_generation = generation
        self._removed_ids.clear()
        self._added_ids.clear()

    def _patched_index(self) -> faiss.Index | None:
        import faiss
        import numpy as np

        base = _faiss_path(self.directory, self._start_generation)
        if not base.is_file():
            return None
        try:
            index = faiss.read_index(str(base))
        except RuntimeError:
            return None
        if self._removed_ids:
            index.remove_ids(np.fromiter(sorted(self._removed_ids), dtype="int64"))
        for block_ids, matrix in self.iter_vectors(sorted(self._added_ids)):
            index.add_with_ids(matrix, block_ids)
        if index.ntotal != self.count():
            return None  # something outside this run changed the catalog: rebuild instead
        return index


class VectorLookup:
    """Thread-local read-only connections answering whether a content hash has a stored vector."""

    def __init__(self, catalog: Path) -> None:
        self._catalog = catalog
        self._local = threading.local()

    def __call__(self, digest: bytes) -> bool:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = _connect(self._catalog, readonly=True)
        try:
            return conn.execute("SELECT 1 FROM vectors WHERE hash = ?", (digest,)).fetchone() is not None
        except sqlite3.Error:
            return False


def _index_ids(index: faiss.Index) -> set[int] | None:
    """The ids an ID-mapped FAISS index holds, or None for a type that does not expose them."""
    import faiss

    id_map = getattr(index, "id_map", None)
    return None if id_map is None else {int(i) for i in faiss.vector_to_array(id_map)}


def _write_index_atomically(index: faiss.Index, target: Path) -> None:
    import faiss

    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    try:
        faiss.write_index(index, str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
