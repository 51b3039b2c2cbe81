"""The catalog (SQLite): what is indexed, the stored vectors, the model, and the queries readers and the writer share.

The catalog is authoritative. Vectors are stored once per distinct content hash (``vectors``), and
each file row points at its hash: a renamed or copied photo reuses the stored embedding. FAISS ids
are ``files.id``. Each commit that changes vectors bumps ``meta.generation``; the FAISS file is a
cache stamped with the generation it was built from.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipsearch.errors import UserError
from clipsearch.store import index_changes, migrations, vector_index
from clipsearch.store.faces import FaceTable
from clipsearch.store.layout import Layout
from clipsearch.store.metadata import MetadataReader
from clipsearch.store.moments import MomentReader, moment_blocks, split_ids
from clipsearch.store.notes import NotesReader
from clipsearch.store.paths import PATH, path_param, text, under
from clipsearch.store.segments import Segments
from clipsearch.store.signatures import SignatureReader
from clipsearch.store.stored_vectors import StoredVectors
from clipsearch.store.tags import TagReader
from clipsearch.store.thumbnails import Thumbnails
from clipsearch.store.words import WordsReader

if TYPE_CHECKING:  # heavy imports stay out of start-up
    import faiss
    import numpy as np

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
    """Read access shared by the readers and the writer of one index directory."""

    def __init__(self, directory: Path, conn: sqlite3.Connection) -> None:
        self.directory = directory
        self.layout = Layout(directory)
        self.thumbnails = Thumbnails(self.layout.thumbs)
        self._segments = Segments(self.layout.segments)
        self._conn = conn
        self.words = WordsReader(conn)  # the words of photos (``clipsearch.store.words``)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

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

    def damaged_vectors(self) -> list[bytes]:
        """Content hashes whose stored vector cannot be read whole."""
        return self.stored_vectors.damaged()

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
        return VectorLookup(self.layout.catalog, self.target_table)

    def has_target_vector(self, digest: bytes) -> bool:
        return self._conn.execute(f"SELECT 1 FROM {self.target_table} WHERE hash = ?", (digest,)).fetchone() is not None

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
            "vector_rows_to_reclaim": (stored := self.stored_vectors).unreferenced_rows(),
            "model": model.spec if model else None,
            "dim": model.dim if model else None,
            "fingerprint": json.loads(model.fingerprint) if model and model.fingerprint else None,
            "roots": self.roots(),
            "root_settings": self.root_settings(),
            "failing_files": self._conn.execute("SELECT count(*) FROM failures").fetchone()[0],
            "vocabulary": self.meta("vocabulary") or ("builtin" if self.tags.available else None),
            "tags": len(self.tags.counts()),
            "tagged_images": self.tags.tagged_files(),
            "words": self.words.summary(), "reembedding": stored.reembedding(self.pending_model),
            "index_type": self.meta("index_built_as"),
            "index_type_setting": self.pinned_index_type(),
            "index_type_note": self.index_type_note(),
            "generation": self.generation,
            "format_version": self.format_version,
            "last_run": self.last_run(),
        }

    # -- vectors (``clipsearch.store.stored_vectors``) ---------------------------------
    @property
    def stored_vectors(self) -> StoredVectors:
        return StoredVectors(self._conn, self._segments, self.model.dim if self.model else 0, self.format_version)

    def iter_vectors(self, ids: Sequence[int] | None = None, chunk: int = 4096,
                     between: tuple[int, int] = (0, 1 << 62), moments: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (ids, float32 matrix) blocks of stored embeddings: all files (ids ``between`` the two, both included)
        or the given ids, and unless not ``moments`` their videos' moments (FAISS ids: ``moments.moment_id``)."""
        import numpy as np

        stored = self.stored_vectors
        select = f"SELECT files.id, {stored.columns} FROM files JOIN vectors ON vectors.hash = files.hash"
        file_ids, wanted = (None, None) if ids is None else split_ids(ids)
        if file_ids is None:
            cursor = self._conn.execute(f"{select} WHERE files.id BETWEEN ? AND ? ORDER BY files.id", between)
            blocks: Iterator[list[Any]] = iter(lambda: cursor.fetchmany(chunk), [])
        else:
            parts = (file_ids[start : start + _IN_CHUNK] for start in range(0, len(file_ids), _IN_CHUNK))
            blocks = (self._conn.execute(f"{select} WHERE files.id IN ({','.join('?' * len(p))})", p).fetchall()
                      for p in parts)
        for rows in blocks:
            if rows:
                yield np.fromiter((r[0] for r in rows), dtype="int64", count=len(rows)), stored.matrix(rows, 1)
        yield from moment_blocks(self.moments, stored, wanted if moments else {}, between, chunk)

    def base_changes(self, base_max: int) -> tuple[list[int], np.ndarray]:
        """The large index's delta against a base of the ids up to ``base_max``: (ids it holds, base ids to skip)."""
        return index_changes.since(self._conn, base_max)

    def _embedding_where(self, column: str, value: object, param: str) -> np.ndarray | None:
        stored = self.stored_vectors
        row = self._conn.execute(f"SELECT {stored.columns} FROM files JOIN vectors ON vectors.hash = files.hash "
                                 f"WHERE files.{column} = {param}", (value,)).fetchone()
        return None if row is None else stored.matrix([row])[0]

    def embedding_of(self, path: str) -> np.ndarray | None:
        return self._embedding_where("path", path_param(path), PATH)

    def embedding_of_id(self, file_id: int) -> np.ndarray | None:
        return self._embedding_where("id", file_id, "?")

    def vectors_by_path(self) -> dict[str, np.ndarray]:
        """Every indexed file's stored vector, by path."""
        paths = dict(self._conn.execute("SELECT id, path FROM files"))
        return {paths[int(i)]: row for ids, matrix in self.iter_vectors(moments=False) for i, row in zip(ids, matrix)}

    # -- the FAISS index -----------------------------------------------------------
    def index_factory(self) -> str:
        """The FAISS index type for the collection as it is now: the --index-type override, else by size."""
        dim = self.model.dim if self.model else 0
        n = self.count() + self.moments.count()  # vectors: a file's, and a video's moments
        wanted = self.pinned_index_type()
        return vector_index.fitted(vector_index.choose(n, dim) if wanted == "auto" else wanted, n)

    def pinned_index_type(self) -> str:
        """The --index-type setting: "auto" unless pinned (a setting this code does not build counts as auto)."""
        try:
            return vector_index.canonical(self.meta("index_type") or "auto", self.model.dim if self.model else None)
        except UserError:
            return "auto"

    def index_type_note(self) -> str | None:
        """Why the index is not of the pinned type, when it is not: too few photos to train it yet."""
        wanted, built = self.pinned_index_type(), self.index_factory()
        if wanted in ("auto", built):
            return None
        return (f"--index-type {wanted} needs at least {vector_index.min_training(wanted):,} photos to train; until "
                f"then the index is exact ({built})")

    def build_vector_index(self, factory: str | None = None) -> faiss.Index:
        """A fresh in-memory FAISS index of type ``factory`` (default: what the collection needs) holding every vector."""
        factory = factory or self.index_factory()
        return vector_index.build(factory, self.stored_vectors.dim, self.training_sample(factory), self.iter_vectors())

    def training_sample(self, factory: str) -> np.ndarray | None:
        """Stored vectors drawn at random, as many as ``factory`` trains on (None: it needs no training)."""
        size = vector_index.training_size(factory, self.count() + self.moments.count())
        if not size:
            return None
        stored = self.stored_vectors
        return stored.matrix(self._conn.execute(
            f"SELECT {stored.columns} FROM vectors WHERE hash IN (SELECT hash FROM files) ORDER BY random() LIMIT ?",
            (size,)).fetchall())


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
