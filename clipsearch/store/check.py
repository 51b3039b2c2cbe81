"""``clipsearch check``: do the catalog, its stored vectors and the derived index files agree, and are they whole?

One diagnosis serves both the check and the repair, so what a check says a repair would do is what it does:
``diagnose`` reads everything (SQLite's ``integrity_check``, every stored vector against its checksum, every derived
file against its own) and ``repair`` carries the diagnosis out. A state that searches serve correctly is not a
problem: a FAISS file missing after an interrupted run is a note (searches build it in memory, the next run writes
it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from clipsearch.display import counted
from clipsearch.store import file_sums, large_index, vector_index

if TYPE_CHECKING:
    from clipsearch.store.reader import StoreReader
    from clipsearch.store.writer import StoreWriter


@dataclass
class Diagnosis:
    problems: list[str] = field(default_factory=list)  # what is wrong
    notes: list[str] = field(default_factory=list)  # what is so but is not wrong
    damaged: list[bytes] = field(default_factory=list)  # content hashes whose stored vector is lost or damaged
    lost_paths: list[str] = field(default_factory=list)  # files a repair drops (the next run embeds them again)
    rebuild: bool = False  # the derived index files are to be built again from the stored vectors


def diagnose(store: StoreReader | StoreWriter) -> Diagnosis:
    """Everything wrong with the index, read from the disk; changes nothing."""
    found = Diagnosis()
    catalog, layout = store.catalog, store.layout
    verdict = catalog.integrity_check()
    if verdict != "ok":
        found.problems.append(f"catalog database: {verdict}")
    found.damaged = store.vectors.damaged()
    found.lost_paths = catalog.paths_without_vector(found.damaged)
    if found.damaged:
        found.problems.append(f"{counted(len(found.damaged), 'stored vector')} lost or damaged on disk (checksums differ, "
                              f"or the segment file is cut short or gone): {counted(len(found.lost_paths), 'photo')} "
                              "to embed again")
    elif found.lost_paths:
        found.problems.append(f"{counted(len(found.lost_paths), 'photo')} without a stored vector")
    if large_index.is_large(catalog.meta("index_built_as") or ""):
        derived = large_index.check(layout, catalog)
        if not layout.ivf_delta(int(catalog.meta("index_base") or 0), catalog.generation).is_file():
            found.notes.append(f"no delta for generation {catalog.generation} yet (an interrupted run): searches "
                               "compute it from the catalog meanwhile, and the next run writes it")
    else:
        derived = _check_faiss_file(store, found)
    found.problems += derived
    found.rebuild = bool(derived or found.damaged or found.lost_paths)
    return found


def _check_faiss_file(store: StoreReader | StoreWriter, found: Diagnosis) -> list[str]:
    import faiss

    catalog = store.catalog
    path = store.layout.faiss(catalog.generation)
    if not path.is_file():
        found.notes.append(f"no FAISS file for generation {catalog.generation} yet (an interrupted run): searches build "
                           "the index in memory meanwhile, and the next run writes it")
        return []
    if (damage := file_sums.verify(path)) is not None:
        return [damage]
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        return [f"FAISS index unreadable: {str(exc).splitlines()[0]}"]
    ids = vector_index.ids_of(index)
    catalog_ids = catalog.file_ids() | catalog.moments.all_ids()  # a video's moments have ids of their own
    if ids is not None and ids != catalog_ids:
        return [f"FAISS index and catalog disagree on {len(ids ^ catalog_ids)} ids"]
    if index.ntotal != len(catalog_ids):
        return [f"FAISS index holds {index.ntotal} vectors, the catalog {len(catalog_ids)} (files and video moments)"]
    return []


def repair(store: StoreWriter, found: Diagnosis) -> None:
    """Carry out ``found``: drop exactly the damaged vectors and the files left without one (the next ``index`` run
    embeds them again), and rebuild the derived index files from the stored vectors. Nothing is re-embedded here."""
    if found.damaged or found.lost_paths or found.rebuild:
        store.repair(found.damaged)


def check(store: StoreReader | StoreWriter, mend: bool = False) -> list[str]:
    """The problems found (empty: whole and consistent); with ``mend`` (a writer), repaired after being found."""
    found = diagnose(store)
    if mend and (found.problems or found.rebuild):
        repair(store, found)  # type: ignore[arg-type]
    return found.problems
