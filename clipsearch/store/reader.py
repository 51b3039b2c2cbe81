"""Read-only access for searches: sees only committed states, never writes (a read-only mount works).

A reader holds the index's parts, each the owner of its files: ``catalog`` (the rows), ``vectors`` (the stored
vectors, of the current model) and ``index_files`` (the FAISS or large index for queries).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipsearch.errors import UserError
from clipsearch.store import migrations
from clipsearch.store.catalog import Catalog, connect
from clipsearch.store.index_files import IndexFiles
from clipsearch.store.layout import Layout
from clipsearch.store.segments import Segments
from clipsearch.store.stored_vectors import StoredVectors
from clipsearch.store.thumbnails import Thumbnails

if TYPE_CHECKING:
    import faiss

    from clipsearch.store.large_index import LargeIndex


_HINT = " ('clipsearch check' says what can be saved)"


class StoreReader:
    """Read-only view used by search, ``info`` and ``check``."""

    def __init__(self, directory: Path, conn: sqlite3.Connection) -> None:
        self.directory = directory
        self.layout = Layout(directory)
        self.thumbnails = Thumbnails(self.layout.thumbs)
        self.catalog = Catalog(conn, self.layout.catalog)
        self._segments = Segments(self.layout.segments)
        self.index_files = IndexFiles(self.layout, self.catalog, lambda: self.vectors)

    @property
    def vectors(self) -> StoredVectors:
        """The stored vectors of the model searches use."""
        return StoredVectors.of(self.catalog, self._segments)

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def open(cls, directory: Path) -> StoreReader:
        catalog = Layout(directory).catalog
        if not catalog.is_file():
            raise UserError(f"no index at {directory}: run 'clipsearch index FOLDER' first (or pass --index DIR)")
        try:
            conn = connect(catalog, readonly=True)
            conn.execute("SELECT count(*) FROM files").fetchone()
        except sqlite3.OperationalError:
            # A directory we may not write to (a read-only mount, another user's index): SQLite cannot
            # take its WAL locks there. Writers checkpoint the WAL at the end of every run, so the
            # main file alone holds every finished run.
            try:
                conn = connect(catalog, readonly=True, immutable=True)
                conn.execute("SELECT count(*) FROM files").fetchone()
            except sqlite3.DatabaseError as exc:
                raise UserError(f"cannot read the index at {directory}: {exc}{_HINT}") from None
        except sqlite3.DatabaseError as exc:
            raise UserError(f"cannot read the index at {directory}: {exc}{_HINT}") from None
        version = migrations.version_of(conn)
        if version is not None:
            try:
                migrations.refuse_newer(version, directory)
            except UserError:
                conn.close()
                raise
        return cls(directory, conn)

    @contextmanager
    def snapshot(self) -> Iterator[StoreReader]:
        """Hold one committed state for several reads (index, then paths): a commit landing meanwhile is not seen."""
        self.catalog.conn.execute("BEGIN")
        try:
            yield self
        finally:
            self.catalog.conn.execute("COMMIT")

    def vector_index(self) -> faiss.Index | LargeIndex:
        """The index of the committed generation (``IndexFiles.for_queries``). Call inside ``snapshot()`` so that
        the generation and the vectors come from one state."""
        return self.index_files.for_queries()

    def info(self) -> dict[str, Any]:
        """What ``clipsearch info`` shows: the catalog's records, the vectors' upkeep and the index files' type."""
        catalog, model, stored = self.catalog, self.catalog.model, self.vectors
        count = catalog.conn.execute("SELECT (SELECT count(*) FROM vectors), (SELECT count(*) FROM failures)")
        vectors, failing = count.fetchone()
        return {
            "index": str(self.directory),
            "images": catalog.count(),
            "vectors": vectors,
            "vector_rows_to_reclaim": stored.unreferenced_rows(),
            "model": model.spec if model else None,
            "dim": model.dim if model else None,
            "fingerprint": json.loads(model.fingerprint) if model and model.fingerprint else None,
            "roots": catalog.roots(),
            "root_settings": catalog.root_settings(),
            "failing_files": failing,
            "vocabulary": catalog.meta("vocabulary") or ("builtin" if catalog.tags.available else None),
            "tags": len(catalog.tags.counts()),
            "tagged_images": catalog.tags.tagged_files(),
            "words": catalog.words.summary(), "reembedding": stored.reembedding(catalog.pending_model),
            "faces": {"setting": catalog.faces.setting(), **catalog.faces.counts(),
                      "not_faces": catalog.faces.not_faces()},
            "index_type": catalog.meta("index_built_as"),
            "index_type_setting": self.index_files.pinned_type(),
            "index_type_note": self.index_files.type_note(),
            "generation": catalog.generation,
            "format_version": catalog.format_version,
            "last_run": catalog.last_run(),
        }
