"""The one writer of an index directory: it holds the write lock for its lifetime.

Work is committed in chunks by ``commit``; ``finish`` garbage-collects vectors, writes the FAISS
file for the final generation and logs the run. A reader that finds no FAISS file for the current
generation (a run was killed before it wrote one) rebuilds it in memory from the stored vectors, so
a search never sees a half-written state and never loses committed work.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipsearch.errors import UserError
from clipsearch.store import (
    embedding_model,
    faces,
    index_changes,
    large_index,
    metadata,
    migrations,
    moments,
    notes,
    schema_copy,
    segments,
    signatures,
    tags,
    words,
)
from clipsearch.store.catalog import Catalog, FileRecord, ModelRecord, connect
from clipsearch.store.index_files import IndexFiles, RunChanges
from clipsearch.store.layout import Layout
from clipsearch.store.lock import WriteLock
from clipsearch.store.paths import PATH, path_param, under
from clipsearch.store.segments import Segments, SegmentWriter
from clipsearch.store.stored_vectors import SEGMENTS_FROM, StoredVectors
from clipsearch.store.thumbnails import Thumbnails

if TYPE_CHECKING:
    import numpy as np

    from clipsearch.photo_meta import PhotoMeta
    from clipsearch.signature import Signature

# A point tests hold a run at, instead of racing it ("N:PATH"): after the first commit by which this writer has stored
# N vectors, it creates PATH.reached and waits until PATH exists (a test kills or signals it there, or creates PATH to
# let it go on); it holds once, so a run stopped there ends with its last commit.
HOLD_AFTER_COMMIT = "CLIPSEARCH_HOLD_AFTER_COMMIT"
WRITER_CACHE_KB = 262_144  # SQLite's page cache for the writer: the catalog's random-keyed indexes (path, hash) stay
# in it to ~10M files, where the 2 MB default made each insert a read (bench/store_scale.py's insert rate)


class StoreWriter:
    """The index's parts as a reader holds them (``catalog``, ``vectors``, ``index_files``), written under the lock:
    a run's rows and vectors go in by ``put``/``fail``/``sweep``, ``commit`` makes them durable, ``finish`` brings
    the index files up to date with the run's changes."""

    def __init__(self, directory: Path, conn: sqlite3.Connection, lock: WriteLock, upgraded_from: int | None) -> None:
        self.directory = directory
        self.layout = Layout(directory)
        self.thumbnails = Thumbnails(self.layout.thumbs)
        self.catalog = Catalog(conn, self.layout.catalog)
        self._segments = Segments(self.layout.segments)
        self.index_files = IndexFiles(self.layout, self.catalog, lambda: self.vectors)
        self._lock = lock
        self.upgraded_from = upgraded_from  # the format this catalog had before this open upgraded it, if it did
        self._run_id = 0
        self._changes = RunChanges(self.catalog.generation)  # what the index files have not taken in yet
        self._dirty = False  # files or vectors changed in the open transaction
        self._vectors: SegmentWriter | None = None  # made once the model (the vectors' size) is known
        self.notes: list[str] = []  # what a run's report should say about its index files
        self._retired: list[int] = []  # segments dropped in the open transaction: their files go after the commit
        self._compact_due = False
        self._vectors_put = 0  # vectors stored by this writer (``HOLD_AFTER_COMMIT`` counts them)
        self._held = False  # ``HOLD_AFTER_COMMIT`` has held this writer (it holds once)
        self._schema_copy = schema_copy.keep(conn, self.layout.schema_copy, None)  # what the salvage reads

    @classmethod
    def open(cls, directory: Path, on_wait: Callable[[str], None] | None = None) -> StoreWriter:
        """Take the index's write lock (or fail at once; with ``on_wait``, wait for it), then create the catalog or
        upgrade it to this code's format (``migrations``)."""
        layout = Layout(directory)
        lock = WriteLock.take(layout.lock, on_wait)
        if layout.exists() and layout.catalog.stat().st_size == 0 and (layout.run_log.exists() or any(layout.faiss_files())):
            lock.release()  # not a new index: an emptied catalog, which a fresh schema would pass off as one
            raise UserError(f"the catalog of the index at {directory} is empty (0 bytes) though the index has run "
                            "before: nothing can be saved from it; restore it from a backup, or move the directory "
                            "away to index again")
        conn = None
        try:
            conn = connect(layout.catalog, readonly=False)
            conn.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KB}")
            found = migrations.create_or_upgrade(conn, directory)
        except BaseException as exc:
            if conn is not None:
                conn.close()
            lock.release()
            if isinstance(exc, sqlite3.DatabaseError):
                raise UserError(f"cannot open the index at {directory}: {exc} ('clipsearch check' says what can "
                                "be saved)") from None
            raise
        upgraded_from = found if found is not None and found != migrations.CURRENT else None
        segments.cut_to_committed(conn, Segments(layout.segments))  # what a killed run wrote past its last commit
        if upgraded_from is not None and upgraded_from < SEGMENTS_FROM:
            try:  # the vectors left the catalog: give their pages back to the disk, once
                conn.execute("VACUUM")
            except sqlite3.OperationalError:
                pass  # a reader holds the catalog open: the space is reused by later runs instead
        return cls(directory, conn, lock, upgraded_from)

    def close(self) -> None:
        if self.catalog.conn.in_transaction:  # SQLite may already have rolled back (disk full)
            self.catalog.conn.execute("ROLLBACK")
        self.catalog.close()
        self._lock.release()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def vectors(self) -> StoredVectors:
        """The stored vectors of the model searches use (not a re-embedding's under way)."""
        return StoredVectors.of(self.catalog, self._segments)

    def set_index_type(self, index_type: str) -> None:
        """Pin the index type (``IndexFiles.set_type``); the next sync builds it."""
        self.index_files.set_type(index_type, self.commit)

    def _sync_index_files(self, shard_runner: large_index.ShardRunner | None = None) -> None:
        self.notes.extend(self.index_files.sync(self._changes, self.commit, shard_runner))

    def _drop_files(self, ids: Sequence[int]) -> None:
        conn = self.catalog.txn()
        index_changes.record(conn, ids)
        gone = [*map(int, ids), *self.catalog.moments.ids_of(ids)]  # a video's moments go from the FAISS index with it
        conn.executemany("DELETE FROM files WHERE id = ?", [(i,) for i in ids])
        self._changes.drop(gone)
        self._dirty = self._dirty or bool(ids)

    # -- the model (``embedding_model``: its rule and the re-embedding) -----------------
    def bind_model(self, record: ModelRecord, reindex: bool = False) -> None:
        """Record the model of an empty index; with ``reindex``, start a re-embedding beside the vectors searches use
        (``embedding_model.bind``): until ``swap_pending`` every search is answered in full by the old vectors, and
        a killed run leaves them answering."""
        if embedding_model.bind(self.catalog, record, reindex):
            self._vectors = None  # new vectors go to vectors_next, maybe of another size
        self.commit()

    def swap_pending(self) -> bool:
        """Put a finished re-embedding in place of the old vectors by one commit (a new generation; the index files
        are rebuilt, not patched; the old rows are reclaimed by compaction). True if it swapped."""
        if not embedding_model.swap(self.catalog):
            return False
        self._changes.removed.clear()  # nothing to patch: the index files are built again
        self._changes.added.clear()
        self._vectors = None
        self._dirty = True
        self._compact_due = True  # every old row is dead now
        self.commit()
        return True

    def remember(self, key: str, value: str) -> None:
        """Keep a setting that is not the vectors' business: the vocabulary tags come from, the model's logit scale."""
        assert key in ("vocabulary", "logit_scale"), key
        self.catalog.set_meta(embedding_model.logit_scale_key(self.catalog) if key == "logit_scale" else key, value)
        self.commit()

    # -- tags (``clipsearch.store.tags``) -------------------------------------
    def retag_unless(self, key: str) -> bool:
        """Keep the stored tags if they were computed with ``key``, else drop them all; True if dropped."""
        changed = tags.reset(self.catalog.txn(), key)
        self.commit()
        return changed

    def without_metadata(self) -> list[tuple[bytes, str, int, int]]:
        """(hash, path, size, mtime_ns) of a file of each content with no metadata yet (indexed before format 5)."""
        return metadata.missing(self.catalog.conn)

    def put_metadata(self, digest: bytes, meta: PhotoMeta) -> None:
        metadata.put(self.catalog.txn(), digest, meta)

    def without_signature(self) -> list[tuple[bytes, str, int, int]]:
        """(hash, path, size, mtime_ns) of a file of each content with no signature yet."""
        return signatures.missing(self.catalog.conn)

    def put_signature(self, digest: bytes, value: Signature) -> None:
        signatures.put(self.catalog.txn(), digest, value)

    def untagged(self, chunk: int = 8192) -> Iterator[tuple[list[bytes], np.ndarray]]:
        """The stored vectors whose tags are not computed yet, in blocks: (content hashes, matrix)."""
        return tags.untagged(self.catalog.conn, self.vectors, chunk)

    def put_tags(self, found: Sequence[tuple[bytes, Sequence[tuple[str, float]]]]) -> None:
        """(content hash, its tags) for a block of contents; no new generation: the vectors did not change."""
        tags.put(self.catalog.txn(), found)

    def words_writer(self) -> words.WordsWriter:  # the words of photos (``clipsearch.store.words``), in this txn
        return words.WordsWriter(self.catalog.txn)

    # -- a run ---------------------------------------------------------------
    def begin_run(self, roots: Sequence[str]) -> int:
        conn = self.catalog.txn()
        for root in roots:
            conn.execute(f"INSERT OR IGNORE INTO roots (path, added) VALUES ({PATH}, ?)", (path_param(root), time.time()))
        cur = conn.execute("INSERT INTO runs (started, roots) VALUES (?, ?)", (time.time(), json.dumps(list(roots))))
        self._run_id = int(cur.lastrowid or 0)
        self.commit()
        return self._run_id

    def set_root_settings(self, root: str, settings: dict[str, Any]) -> None:
        """Record an indexed folder with its settings (``indexer.walk.Rules``), or change those of one recorded."""
        self.catalog.txn().execute(f"INSERT INTO roots (path, added, settings) VALUES ({PATH}, ?, ?) "
                            "ON CONFLICT (path) DO UPDATE SET settings = excluded.settings",
                            (path_param(root), time.time(), json.dumps(settings, sort_keys=True)))
        self.commit()

    def known_failure(self, path: str, size: int, mtime_ns: int) -> bool:
        """True (and marks it seen) if the file failed before and has not changed since."""
        row = self.catalog.conn.execute(f"SELECT size, mtime_ns FROM failures WHERE path = {PATH}",
                                        (path_param(path),)).fetchone()
        if row is None or row != (size, mtime_ns):
            return False
        self.catalog.txn().execute(f"UPDATE failures SET seen = ? WHERE path = {PATH}", (self._run_id, path_param(path)))
        return True

    def mark_seen(self, file_id: int) -> None:
        self.catalog.txn().execute("UPDATE files SET seen = ? WHERE id = ?", (self._run_id, file_id))

    def touch(self, file_id: int, size: int, mtime_ns: int) -> None:
        """Same content under a new size/mtime stamp: remember the stamp, keep the vector."""
        self.catalog.txn().execute(
            "UPDATE files SET size = ?, mtime_ns = ?, seen = ? WHERE id = ?", (size, mtime_ns, self._run_id, file_id)
        )

    def put(self, record: FileRecord, embedding: np.ndarray | None, meta: PhotoMeta | None = None,
            signature: Signature | None = None, note: str | None = None, video: moments.Video | None = None) -> int:
        """Insert or replace a file's row; ``embedding`` None means the vector for ``record.hash`` is already stored.
        ``meta``: what the content's header says, read by the decoder; ``signature``: its picture's; ``note``: what
        the decoder had to say of a content it decoded anyway (``clipsearch.store.notes``); ``video``: a video's
        (``moments``)."""
        conn = self.catalog.txn()
        if note is not None:
            notes.put(conn, record.hash, note)
        if embedding is not None:
            self._segment_writer().put(record.hash, embedding)
            self._vectors_put += 1
        if video is not None and embedding is not None:
            moments.put(conn, record.hash, video, self._segment_writer().put)
        if meta is not None:
            metadata.put(conn, record.hash, meta)
        if signature is not None:
            signatures.put(conn, record.hash, signature)
        path = path_param(record.path)
        conn.execute(f"DELETE FROM failures WHERE path = {PATH}", (path,))
        old = conn.execute(f"SELECT id, size, mtime_ns, hash, width, height FROM files WHERE path = {PATH}",
                           (path,)).fetchone()
        values = (record.size, record.mtime_ns, record.hash, record.width, record.height, self._run_id)
        if old is not None and tuple(old[1:]) == values[:5]:  # the same file, given its vector by a re-embedding
            conn.execute("UPDATE files SET seen = ? WHERE id = ?", (self._run_id, old[0]))
            return int(old[0])
        if old is not None:
            file_id = int(old[0])
            self._changes.removed.update((file_id, *moments.ids_for(conn, file_id, bytes(old[3]))))
            conn.execute("UPDATE files SET size=?, mtime_ns=?, hash=?, width=?, height=?, seen=? WHERE id=?", (*values, old[0]))
            index_changes.record(conn, [file_id])
        else:
            cur = conn.execute(f"INSERT INTO files (path, size, mtime_ns, hash, width, height, seen) VALUES ({PATH},?,?,?,?,?,?)",
                               (path, *values))
            file_id = int(cur.lastrowid or 0)
        self._changes.added.update((file_id, *moments.ids_for(conn, file_id, record.hash)))
        self._dirty = True
        return file_id

    def fail(self, path: str, size: int, mtime_ns: int, error: str) -> None:
        """Remember a file that could not be read (not retried until it changes); drop any stale vector."""
        old = self.catalog.conn.execute(f"SELECT id FROM files WHERE path = {PATH}", (path_param(path),)).fetchone()
        self._drop_files([old[0]] if old else [])
        self.catalog.txn().execute(f"INSERT OR REPLACE INTO failures VALUES ({PATH}, ?, ?, ?, ?)",
                            (path_param(path), size, mtime_ns, error, self._run_id))

    def commit(self) -> None:
        """Make everything so far durable and visible to readers; a new generation if any vector changed."""
        if not self.catalog.conn.in_transaction:
            return
        if self._vectors is not None:
            self._vectors.before_commit()  # the rows are on disk before any catalog row points at them
            if self._vectors.appender.itemsize == 4 and self._dirty and large_index.is_large(self.index_files.factory()):
                self._vectors.appender.half_from_now()  # the collection became large during this run
        if self._dirty:
            self.catalog.conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
        self.catalog.conn.execute("COMMIT")
        self._dirty = False
        self._schema_copy = schema_copy.keep(self.catalog.conn, self.layout.schema_copy, self._schema_copy)
        segments.remove(self._segments, self._retired)
        self._retired.clear()
        if (hold := os.environ.get(HOLD_AFTER_COMMIT)) and not self._held:
            count, _, path = hold.partition(":")
            if self._vectors_put >= int(count):
                self._held = True
                Path(f"{path}.reached").touch()
                while not os.path.exists(path):
                    time.sleep(0.01)

    def _segment_writer(self, dim: int | None = None) -> SegmentWriter:
        """Float16 rows once the collection takes the large index (``segments``), float32 before."""
        if self._vectors is None:
            itemsize = 2 if self.index_files.is_large() else 4
            embedding = self.catalog.pending_model or self.catalog.model
            self._vectors = SegmentWriter(self._segments, self.catalog.conn, dim or (embedding.dim if embedding else 0),
                                          itemsize, self.catalog.target_table)
        return self._vectors

    def compact(self) -> None:
        """Copy the live rows of mostly-dead segments into new ones, and delete the old files once committed."""
        self.catalog.txn()
        self._retired.extend(self._segment_writer().compact())
        self.commit()

    def sweep(self, root: str) -> list[tuple[int, str, bytes]]:
        """Delete files under ``root`` not seen in this run (mark-and-sweep); returns (id, path, hash) of each."""
        bounds = tuple(path_param(b) for b in under(root))
        gone = self.catalog.txn().execute(
            f"SELECT id, path, hash FROM files WHERE path >= {PATH} AND path < {PATH} AND seen != ?", (*bounds, self._run_id)
        ).fetchall()
        self._drop_files([file_id for file_id, _, _ in gone])
        self.catalog.txn().execute(f"DELETE FROM failures WHERE path >= {PATH} AND path < {PATH} AND seen != ?",
                            (*bounds, self._run_id))
        return [(int(i), p, bytes(h)) for i, p, h in gone]

    def forget(self, root: str) -> int:
        """Drop a folder and everything indexed under it; returns how many files were dropped."""
        self._run_id = -1  # nothing is "seen": everything under root goes
        self.catalog.txn().execute(f"DELETE FROM roots WHERE path = {PATH}", (path_param(root),))
        return len(self.sweep(root))

    def repair(self, damaged: Sequence[bytes]) -> None:
        """Drop the ``damaged`` vectors and the files left without one (the next run embeds them again), forget the
        segments whose file is gone or no segment any more (new vectors go to a new one), and rebuild the derived
        index files from what is stored. Nothing is re-embedded here."""
        txn = self.catalog.txn()
        for digest in damaged:
            txn.execute("DELETE FROM vectors WHERE hash = ?", (digest,))
        damaged_next = set(self.vectors.damaged(table="vectors_next")) if self.catalog.pending_model else set()
        for digest in damaged_next:  # a re-embedding's damaged rows: that run embeds them again
            txn.execute("DELETE FROM vectors_next WHERE hash = ?", (digest,))
        for segment, dim, itemsize in txn.execute("SELECT id, dim, itemsize FROM segments").fetchall():
            try:
                whole = self._segments.shape_of(segment) == (dim, itemsize)
            except segments.SegmentError:
                whole = False
            if not whole:
                txn.execute("DELETE FROM vectors WHERE segment = ?", (segment,))
                txn.execute("DELETE FROM vectors_next WHERE segment = ?", (segment,))
                txn.execute("DELETE FROM segments WHERE id = ?", (segment,))
                self._retired.append(segment)
        lost = [r[0] for r in txn.execute("SELECT id FROM files WHERE hash NOT IN (SELECT hash FROM vectors)")]
        self._drop_files(lost)
        tags.drop_orphans(txn)
        self._vectors = None  # the segment to append to is chosen again
        self._dirty = True
        self.commit()
        self.index_files.drop_for_rebuild()  # built again from the stored vectors
        self._segments.forget_maps()
        self._sync_index_files()

    def finish(self, report: dict[str, Any], shard_runner: large_index.ShardRunner | None = None) -> None:
        """Drop unreferenced vectors, commit, bring the FAISS file up to date and log the run.

        ``shard_runner``: where a new large base's shards are built (the Ray engine's cluster; None: processes here)."""
        conn = self.catalog.txn()
        moments.drop_orphans(conn)
        orphans = [bytes(r[0]) for r in conn.execute(f"SELECT hash FROM vectors WHERE hash NOT IN ({moments.LIVE})")]
        if orphans:
            conn.execute(f"DELETE FROM vectors WHERE hash NOT IN ({moments.LIVE})")
            tags.drop_orphans(conn)
            self._dirty = True
        conn.execute(f"DELETE FROM vectors_next WHERE hash NOT IN ({moments.LIVE})")
        for table in (metadata, signatures, words, faces):  # faces after their photos (forget, a sweep): no model needed
            table.drop_orphans(conn)
        finished = time.time()
        conn.execute("UPDATE runs SET finished = ?, report = ? WHERE id = ?", (finished, json.dumps(report), self._run_id))
        self.commit()
        if orphans or self._compact_due or self.catalog.conn.execute("SELECT 1 FROM segments WHERE itemsize != ? LIMIT 1",
                                         (self._segment_writer().appender.itemsize,)).fetchone():
            self.compact()
        for digest in orphans:  # after the commit, so a killed run leaves at worst a stale cache file
            self.thumbnails.drop(digest)
        self._sync_index_files(shard_runner)
        try:
            self.catalog.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # keep the WAL small; the main file whole
        except sqlite3.OperationalError:
            pass  # readers hold it open: the next run checkpoints
        line = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(finished)), "roots": self.catalog.roots(), **report}
        try:
            with open(self.layout.run_log, "a", encoding="utf-8") as log:
                log.write(json.dumps(line) + "\n")
        except OSError:
            pass  # the run is committed; a log line that cannot be written loses nothing
