"""The writer's upkeep of the FAISS file: one per generation, patched with a run's changes where the trained index
still suits the collection, rebuilt from the stored vectors where it does not (``vector_index`` chooses the type)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from clipsearch.store import file_sums, index_changes, large_index, moments, vector_index
from clipsearch.store.catalog import Catalog

if TYPE_CHECKING:
    import faiss
    import numpy as np


class IndexFileUpkeep(Catalog):
    """What ``StoreWriter`` does to its FAISS file; the writer records the ids a run removes and adds."""

    _conn: sqlite3.Connection
    _start_generation: int
    _removed_ids: set[int]
    _added_ids: set[int]
    shard_runner: large_index.ShardRunner | None = None  # where a base's shards are built (None: processes here)
    notes: list[str]  # what a run's report should say about its index files

    def _set_meta(self, key: str, value: str) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def vector_count(self) -> int:
        """How many vectors the FAISS index holds: one per file, and one per video moment."""
        return self.count() + self.moments.count()

    def set_index_type(self, index_type: str) -> None:
        """Pin the FAISS index type ("auto", "Flat", or "IVF<lists>,<codes>" such as "IVF4096,SQ8")."""
        index_type = vector_index.canonical(index_type, self.model.dim if self.model else None)
        if (self.meta("index_type") or "auto") != index_type:
            self._set_meta("index_type", index_type)
            self.commit()
            self.layout.faiss(self.generation).unlink(missing_ok=True)  # rebuilt by the next sync

    def sync_vector_index(self) -> None:
        """Write the FAISS file for the current generation: patch the previous one, or rebuild."""
        generation = self.generation
        factory = self.index_factory()
        built_as = self.meta("index_built_as") or ""
        grown = self.vector_count() > vector_index.RETRAIN_GROWTH * int(self.meta("index_built_at") or 0)
        if vector_index.same_family(built_as, factory) and not grown and self.pinned_index_type() == "auto":
            factory = built_as  # hysteresis: keep the trained lists until the collection has really grown
        if large_index.is_large(factory):
            self._sync_large(factory, retrain=factory != built_as or grown)
            return
        target = self.layout.faiss(generation)
        if target.is_file():
            return
        index = None
        # patch the previous file while the collection still wants that type and has not outgrown its training
        if factory == built_as and not (factory.startswith("IVF") and grown):
            index = self._patched_index()
        if index is None:
            index = self.build_vector_index(factory)
            self._set_meta("index_built_as", factory)
            self._set_meta("index_built_at", str(self.vector_count()))
            index_changes.clear(self._conn)  # only the large index's delta needs them
            self.commit()  # not a new generation: the vectors did not change
        vector_index.write_atomically(index, target)
        self._drop_stale_indexes()
        self._start_generation = generation
        self._removed_ids.clear()
        self._added_ids.clear()

    def _patched_index(self) -> faiss.Index | None:
        base = vector_index.read(self.layout.faiss(self._start_generation))  # None unless it passes its checksum
        if base is None:
            return None
        index = vector_index.patch(base, self._removed_ids, self.iter_vectors(sorted(self._added_ids)))
        return index if index.ntotal == self.vector_count() else None  # changed outside this run: rebuild instead

    def _drop_stale_indexes(self, keep: set[Path] | None = None) -> None:
        """Remove every FAISS file but ``keep`` (default: the current generation's of an in-memory index)."""
        keep = {self.layout.faiss(self.generation)} if keep is None else keep
        keep = keep | {file_sums.sidecar(path) for path in keep}
        for stale in (*self.layout.faiss_files(), *self.layout.ivf_files()):
            if stale not in keep:
                file_sums.sidecar(stale).unlink(missing_ok=True)
                stale.unlink(missing_ok=True)

    def _sync_large(self, factory: str, retrain: bool) -> None:
        """The large index (``large_index``) for this generation: its delta, computed from the catalog; a new base
        first when there is none or the delta has outgrown ``REBUILD_SHARE`` of it; a new training first when the
        type changed or the collection outgrew the last one."""
        import numpy as np

        layout, dim = self.layout, self.model.dim if self.model else 0
        trained_no, base_no = int(self.meta("index_trained") or 0), int(self.meta("index_base") or 0)
        base_max = int(self.meta("index_base_max_id") or 0)
        delta = layout.ivf_delta(base_no, self.generation)
        have_base = (layout.ivf_base(base_no).is_file() and layout.ivf_lists(base_no).is_file()
                     and file_sums.verify_if_small(layout.ivf_base(base_no)))
        if not retrain and have_base and delta.is_file():
            return
        if retrain or not layout.ivf_trained(trained_no).is_file():
            trained_no = self._next_index_file()
            vector_index.write_atomically(large_index.train(factory, dim, self.training_sample(factory)),
                                    layout.ivf_trained(trained_no))
            self._set_meta("index_trained", str(trained_no))
            self._set_meta("index_built_at", str(self.vector_count()))
            have_base = False
        if have_base:
            changed = max(index_changes.counts(self._conn, base_max))
            have_base = changed <= large_index.REBUILD_SHARE * int(self.meta("index_base_count") or 0)
        if not have_base:  # built beside the old base, which searches go on using until the commit below
            base_no = self._next_index_file()
            ids = np.fromiter((r[0] for r in self._conn.execute("SELECT id FROM files ORDER BY id")), dtype="int64")
            count = large_index.build_base(layout.ivf_trained(trained_no), self.directory, ids, layout.ivf_base(base_no),
                                           layout.ivf_lists(base_no), os.cpu_count() or 1, self.shard_runner)
            if self.shard_runner is not None:
                self.notes.append(f"the large index was built from {count} photos in shards run as Ray tasks")
            for key, value in (("index_base", base_no), ("index_base_max_id", int(ids[-1]) if len(ids) else 0),
                               ("index_base_count", count), ("index_built_as", factory)):
                self._set_meta(key, str(value))
            index_changes.clear(self._conn)
            self.commit()  # not a new generation: the vectors did not change
            base_max = int(ids[-1]) if len(ids) else 0
        delta = layout.ivf_delta(base_no, self.generation)
        found = self._patched_delta(layout.ivf_delta(base_no, self._start_generation), base_no, base_max)
        if found is None:  # no delta of this run's start (a killed run, a new base): from the catalog's changes
            found = large_index.delta_from_catalog(self, layout.ivf_trained(trained_no), base_max)
        large_index.write_delta(*found, delta)
        self._drop_stale_indexes({layout.ivf_trained(trained_no), layout.ivf_base(base_no), layout.ivf_lists(base_no),
                                  delta, large_index.skip_file(delta)})
        self._start_generation = self.generation
        self._removed_ids.clear()
        self._added_ids.clear()

    def _patched_delta(self, previous: Path, base_no: int, base_max: int) -> tuple[faiss.Index, np.ndarray] | None:
        """The delta this run started from with the run's changes: work in proportion to them, where the delta
        from the catalog re-encodes every photo added since the base (up to a tenth of it)."""
        import numpy as np

        try:
            base = large_index.read_base(self.layout.ivf_base(base_no)) if previous.is_file() else None
        except RuntimeError:
            return None
        found = large_index.read_delta(base, previous) if base is not None else None
        if base is None or found is None:
            return None
        delta, skipped = found
        touched = np.fromiter(sorted(i for i in self._removed_ids | self._added_ids if not i & moments.FLAG),
                              dtype="int64")
        delta.remove_ids(touched)
        for ids, matrix in self.iter_vectors(sorted(self._added_ids), moments=False):
            delta.add_with_ids(matrix, ids)
        skipped = np.union1d(skipped, touched[touched <= base_max])
        if base.ntotal - len(skipped) + delta.ntotal != self.count():
            return None  # changed outside this run's account: from the catalog instead
        return delta, skipped

    def _next_index_file(self) -> int:
        number = int(self.meta("index_files") or 0) + 1
        self._set_meta("index_files", str(number))
        self.commit()
        return number
