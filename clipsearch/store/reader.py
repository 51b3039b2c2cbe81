"""Read-only access for searches: sees only committed states, never writes (a read-only mount works)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from clipsearch.errors import UserError
from clipsearch.store import large_index, migrations, vector_index
from clipsearch.store.catalog import Catalog, connect
from clipsearch.store.large_index import LargeIndex
from clipsearch.store.layout import Layout
from clipsearch.store.path_check import PathCheck

if TYPE_CHECKING:
    import faiss
    import numpy as np


_HINT = " ('clipsearch check' says what can be saved)"


class StoreReader(Catalog):
    """Read-only view used by search."""

    path_check = property(lambda self: PathCheck(self._conn), doc="Hits' paths against the paths' index.")

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
        self._conn.execute("BEGIN")
        try:
            yield self
        finally:
            self._conn.execute("COMMIT")

    def vector_index(self) -> faiss.Index | LargeIndex:
        """The FAISS index of the committed generation; rebuilt in memory if its file is missing or unreadable.

        Call inside ``snapshot()`` so the generation and the vectors come from one state.
        """
        if large_index.is_large(self.meta("index_built_as") or ""):
            return self._large_index()
        verify = self.format_version >= migrations.SUMS_FROM  # older files have no checksums (a read-only mount)
        index = vector_index.read_for_queries(self.layout.faiss(self.generation), verify)
        return index if index is not None else vector_index.prepare_for_queries(self.build_vector_index())

    def _large_index(self) -> LargeIndex:
        """The large index: its base memory-mapped, and the delta of this generation (computed from the catalog
        if a killed run left none: seconds, where rebuilding the base would take hours)."""
        base_no, trained_no = int(self.meta("index_base") or 0), int(self.meta("index_trained") or 0)
        try:
            base = large_index.read_base(self.layout.ivf_base(base_no))
        except RuntimeError:
            raise UserError(f"the on-disk index of {self.directory} is missing or damaged: 'clipsearch check "
                            "--repair' rebuilds it from the stored vectors") from None
        found = large_index.read_delta(base, self.layout.ivf_delta(base_no, self.generation))
        if found is None:
            found = large_index.delta_from_catalog(self, self.layout.ivf_trained(trained_no),
                                                   int(self.meta("index_base_max_id") or 0))
        return LargeIndex(base, *found, self.exact_vectors)

    def exact_vectors(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, float32 matrix) of the stored vectors of ``ids`` (re-ranking)."""
        import numpy as np

        blocks = list(self.iter_vectors(ids))
        if not blocks:
            return np.empty(0, dtype="int64"), np.empty((0, self.stored_vectors.dim), dtype="float32")
        return np.concatenate([b[0] for b in blocks]), np.vstack([b[1] for b in blocks])
