"""The owner of the derived index files: the FAISS file of each generation, and the large index (training, base,
lists, delta). Every one is a cache of the catalog and the segments: deleting any of them loses nothing, the next
``sync`` (or a reader, in memory) builds it again from the stored vectors.

Invariants:
- a FAISS file is named after the generation it was built from and answers for that generation only;
- ``meta.index_built_as`` is the type of the files on disk (hysteresis: kept until the collection grows
  ``vector_index.RETRAIN_GROWTH`` times past ``index_built_at``, so a trained index is not retrained at every run);
- a writer's ``sync`` patches the previous generation's file with the run's changes (``RunChanges``) only when that
  file holds exactly the catalog's vector count after patching; otherwise it rebuilds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from clipsearch.errors import UserError
from clipsearch.store import file_sums, index_changes, large_index, migrations, moments, vector_index
from clipsearch.store.catalog import Catalog
from clipsearch.store.layout import Layout
from clipsearch.store.stored_vectors import StoredVectors

if TYPE_CHECKING:
    import faiss
    import numpy as np


@dataclass
class RunChanges:
    """The FAISS ids a writer removed and added since the index files were last brought up to date (at
    ``start_generation``): what a patch applies to the previous generation's files."""

    start_generation: int
    removed: set[int] = field(default_factory=set)
    added: set[int] = field(default_factory=set)

    def drop(self, ids: Sequence[int]) -> None:
        self.removed.update(ids)
        self.added.difference_update(ids)

    def settled(self, generation: int) -> None:
        """The index files now hold ``generation``: nothing left to patch."""
        self.start_generation = generation
        self.removed.clear()
        self.added.clear()


class IndexFiles:
    """Which index type the collection wants, and its files: read for queries, brought up to date by the writer."""

    def __init__(self, layout: Layout, catalog: Catalog, vectors: Callable[[], StoredVectors]) -> None:
        self.layout = layout
        self._catalog = catalog
        self._vectors = vectors  # the stored vectors of the current model (their size changes with a swap)

    # -- the type ---------------------------------------------------------------------
    def vector_count(self) -> int:
        """How many vectors the index holds: one per file, and one per video moment."""
        return self._catalog.count() + self._catalog.moments.count()

    def factory(self) -> str:
        """The FAISS index type for the collection as it is now: the --index-type setting, else by size."""
        dim = self._catalog.model.dim if self._catalog.model else 0
        n = self.vector_count()
        wanted = self.pinned_type()
        return vector_index.fitted(vector_index.choose(n, dim) if wanted == "auto" else wanted, n)

    def pinned_type(self) -> str:
        """The --index-type setting: "auto" unless pinned (a setting this code does not build counts as auto)."""
        model = self._catalog.model
        try:
            return vector_index.canonical(self._catalog.meta("index_type") or "auto", model.dim if model else None)
        except UserError:
            return "auto"

    def type_note(self) -> str | None:
        """Why the index is not of the pinned type, when it is not: too few photos to train it yet."""
        wanted, built = self.pinned_type(), self.factory()
        if wanted in ("auto", built):
            return None
        return (f"--index-type {wanted} needs at least {vector_index.min_training(wanted):,} photos to train; until "
                f"then the index is exact ({built})")

    def is_large(self) -> bool:
        """Whether the collection takes (or is pinned to) the large index: its vectors are then stored as float16."""
        return large_index.is_large(self.factory()) or large_index.is_large(self.pinned_type())

    # -- in memory ----------------------------------------------------------------------
    def build(self, factory: str | None = None) -> faiss.Index:
        """A fresh in-memory FAISS index of type ``factory`` (default: what the collection needs) holding every vector."""
        factory = factory or self.factory()
        vectors = self._vectors()
        return vector_index.build(factory, vectors.dim, self.training_sample(factory), vectors.iter_vectors())

    def training_sample(self, factory: str) -> np.ndarray | None:
        """Stored vectors drawn at random, as many as ``factory`` trains on (None: it needs no training)."""
        size = vector_index.training_size(factory, self.vector_count())
        return self._vectors().sample(size) if size else None

    def for_queries(self) -> faiss.Index | large_index.LargeIndex:
        """The index of the committed generation; rebuilt in memory if its file is missing or unreadable. The caller
        holds one committed state (``StoreReader.snapshot``) so that the generation and the vectors agree."""
        catalog = self._catalog
        if large_index.is_large(catalog.meta("index_built_as") or ""):
            return self._large_for_queries()
        verify = catalog.format_version >= migrations.SUMS_FROM  # older files have no checksums (a read-only mount)
        index = vector_index.read_for_queries(self.layout.faiss(catalog.generation), verify)
        return index if index is not None else vector_index.prepare_for_queries(self.build())

    def _large_for_queries(self) -> large_index.LargeIndex:
        """The large index: its base memory-mapped, and the delta of this generation (computed from the catalog if a
        killed run left none: seconds, where rebuilding the base would take hours)."""
        catalog, layout = self._catalog, self.layout
        base_no, trained_no = int(catalog.meta("index_base") or 0), int(catalog.meta("index_trained") or 0)
        try:
            base = large_index.read_base(layout.ivf_base(base_no))
        except RuntimeError:
            raise UserError(f"the on-disk index of {layout.directory} is missing or damaged: 'clipsearch check "
                            "--repair' rebuilds it from the stored vectors") from None
        found = large_index.read_delta(base, layout.ivf_delta(base_no, catalog.generation))
        if found is None:
            found = self._delta_from_catalog(trained_no, int(catalog.meta("index_base_max_id") or 0))
        return large_index.LargeIndex(base, *found, self._vectors().exact)

    def _delta_from_catalog(self, trained_no: int, base_max: int) -> tuple[faiss.Index, np.ndarray]:
        """The delta of the committed catalog against a base of every id up to ``base_max``: the photos added since
        (ids past it) and those re-embedded, and the base ids to skip (removed or re-embedded since)."""
        ids, skipped = index_changes.since(self._catalog.conn, base_max)
        delta = large_index.make_delta(self.layout.ivf_trained(trained_no),
                                       self._vectors().iter_vectors(ids, moments=False))
        return delta, skipped

    # -- the writer's upkeep ------------------------------------------------------------
    def set_type(self, index_type: str, commit: Callable[[], None]) -> None:
        """Pin the index type ("auto", "Flat", or "IVF<lists>,<codes>" such as "IVF4096,SQ8"); the next sync builds it."""
        catalog = self._catalog
        index_type = vector_index.canonical(index_type, catalog.model.dim if catalog.model else None)
        if (catalog.meta("index_type") or "auto") != index_type:
            catalog.set_meta("index_type", index_type)
            commit()
            self.layout.faiss(catalog.generation).unlink(missing_ok=True)  # rebuilt by the next sync

    def sync(self, changes: RunChanges, commit: Callable[[], None],
             shard_runner: large_index.ShardRunner | None = None) -> list[str]:
        """Write the files of the current generation: patch the previous ones with ``changes``, or rebuild. ``commit``
        is the writer's (settings of the files are committed, not a new generation). Returns what a run's report
        should say of them."""
        catalog = self._catalog
        factory = self.factory()
        built_as = catalog.meta("index_built_as") or ""
        grown = self.vector_count() > vector_index.RETRAIN_GROWTH * int(catalog.meta("index_built_at") or 0)
        if vector_index.same_family(built_as, factory) and not grown and self.pinned_type() == "auto":
            factory = built_as  # hysteresis: keep the trained lists until the collection has really grown
        if large_index.is_large(factory):
            return self._sync_large(factory, factory != built_as or grown, changes, commit, shard_runner)
        target = self.layout.faiss(catalog.generation)
        if target.is_file():
            return []
        index = None
        # patch the previous file while the collection still wants that type and has not outgrown its training
        if factory == built_as and not (factory.startswith("IVF") and grown):
            index = self._patched(changes)
        if index is None:
            index = self.build(factory)
            catalog.set_meta("index_built_as", factory)
            catalog.set_meta("index_built_at", str(self.vector_count()))
            index_changes.clear(catalog.conn)  # only the large index's delta needs them
            commit()
        vector_index.write_atomically(index, target)
        self.drop_stale()
        changes.settled(catalog.generation)
        return []

    def _patched(self, changes: RunChanges) -> faiss.Index | None:
        base = vector_index.read(self.layout.faiss(changes.start_generation))  # None unless it passes its checksum
        if base is None:
            return None
        index = vector_index.patch(base, changes.removed, self._vectors().iter_vectors(sorted(changes.added)))
        return index if index.ntotal == self.vector_count() else None  # changed outside this run: rebuild instead

    def drop_stale(self, keep: set[Path] | None = None) -> None:
        """Remove every index file but ``keep`` (default: the current generation's FAISS file)."""
        keep = {self.layout.faiss(self._catalog.generation)} if keep is None else keep
        keep = keep | {file_sums.sidecar(path) for path in keep}
        for stale in (*self.layout.faiss_files(), *self.layout.ivf_files()):
            if stale not in keep:
                file_sums.sidecar(stale).unlink(missing_ok=True)
                stale.unlink(missing_ok=True)

    def drop_for_rebuild(self) -> None:
        """Remove every file that holds vectors (``check --repair``): the next sync builds them from what is stored.
        The large index's training holds no vector and is kept unless it fails its checksum."""
        for derived in (*self.layout.faiss_files(), *self.layout.ivf_files()):
            if not derived.name.endswith((".trained", ".trained.crc")):
                derived.unlink(missing_ok=True)
        trained = self.layout.ivf_trained(int(self._catalog.meta("index_trained") or 0))
        if trained.is_file() and file_sums.verify(trained) is not None:
            trained.unlink()

    def _sync_large(self, factory: str, retrain: bool, changes: RunChanges, commit: Callable[[], None],
                    shard_runner: large_index.ShardRunner | None) -> list[str]:
        """The large index (``large_index``) for this generation: its delta, from the run's changes or the catalog's;
        a new base first when there is none or the delta has outgrown ``REBUILD_SHARE`` of it; a new training first
        when the type changed or the collection outgrew the last one."""
        import numpy as np

        catalog, layout, notes = self._catalog, self.layout, []
        dim = catalog.model.dim if catalog.model else 0
        trained_no, base_no = int(catalog.meta("index_trained") or 0), int(catalog.meta("index_base") or 0)
        base_max = int(catalog.meta("index_base_max_id") or 0)
        delta = layout.ivf_delta(base_no, catalog.generation)
        have_base = (layout.ivf_base(base_no).is_file() and layout.ivf_lists(base_no).is_file()
                     and file_sums.verify_if_small(layout.ivf_base(base_no)))
        if not retrain and have_base and delta.is_file():
            return notes
        if retrain or not layout.ivf_trained(trained_no).is_file():
            trained_no = self._next_file_number(commit)
            vector_index.write_atomically(large_index.train(factory, dim, self.training_sample(factory)),
                                          layout.ivf_trained(trained_no))
            catalog.set_meta("index_trained", str(trained_no))
            catalog.set_meta("index_built_at", str(self.vector_count()))
            have_base = False
        if have_base:
            changed = max(index_changes.counts(catalog.conn, base_max))
            have_base = changed <= large_index.REBUILD_SHARE * int(catalog.meta("index_base_count") or 0)
        if not have_base:  # built beside the old base, which searches go on using until the commit below
            base_no = self._next_file_number(commit)
            ids = np.fromiter((r[0] for r in catalog.conn.execute("SELECT id FROM files ORDER BY id")), dtype="int64")
            count = large_index.build_base(layout.ivf_trained(trained_no), layout.directory, ids,
                                           layout.ivf_base(base_no), layout.ivf_lists(base_no), os.cpu_count() or 1,
                                           shard_runner)
            if shard_runner is not None:
                notes.append(f"the large index was built from {count} photos in shards run as Ray tasks")
            base_max = int(ids[-1]) if len(ids) else 0
            for key, value in (("index_base", base_no), ("index_base_max_id", base_max), ("index_base_count", count),
                               ("index_built_as", factory)):
                catalog.set_meta(key, str(value))
            index_changes.clear(catalog.conn)
            commit()  # not a new generation: the vectors did not change
        delta = layout.ivf_delta(base_no, catalog.generation)
        found = self._patched_delta(layout.ivf_delta(base_no, changes.start_generation), base_no, base_max, changes)
        if found is None:  # no delta of this run's start (a killed run, a new base): from the catalog's changes
            found = self._delta_from_catalog(trained_no, base_max)
        large_index.write_delta(*found, delta)
        self.drop_stale({layout.ivf_trained(trained_no), layout.ivf_base(base_no), layout.ivf_lists(base_no), delta,
                         large_index.skip_file(delta)})
        changes.settled(catalog.generation)
        return notes

    def _patched_delta(self, previous: Path, base_no: int, base_max: int,
                       changes: RunChanges) -> tuple[faiss.Index, np.ndarray] | None:
        """The delta this run started from with the run's changes: work in proportion to them, where the delta from
        the catalog re-encodes every photo added since the base (up to ``REBUILD_SHARE`` of it)."""
        import numpy as np

        try:
            base = large_index.read_base(self.layout.ivf_base(base_no)) if previous.is_file() else None
        except RuntimeError:
            return None
        found = large_index.read_delta(base, previous) if base is not None else None
        if base is None or found is None:
            return None
        delta, skipped = found
        touched = np.fromiter(sorted(i for i in changes.removed | changes.added if not i & moments.FLAG),
                              dtype="int64")
        delta.remove_ids(touched)
        for ids, matrix in self._vectors().iter_vectors(sorted(changes.added), moments=False):
            delta.add_with_ids(matrix, ids)
        skipped = np.union1d(skipped, touched[touched <= base_max])
        if base.ntotal - len(skipped) + delta.ntotal != self._catalog.count():
            return None  # changed outside this run's account: from the catalog instead
        return delta, skipped

    def _next_file_number(self, commit: Callable[[], None]) -> int:
        number = int(self._catalog.meta("index_files") or 0) + 1
        self._catalog.set_meta("index_files", str(number))
        commit()
        return number
