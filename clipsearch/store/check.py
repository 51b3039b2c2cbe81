"""``clipsearch check``: do the catalog, its stored vectors and the FAISS file agree? ``--repair`` mends what it can."""

from __future__ import annotations

from clipsearch.display import counted
from clipsearch.store import large_index, vector_index
from clipsearch.store.catalog import Catalog
from clipsearch.store.writer import StoreWriter


def check(store: Catalog, repair: bool = False) -> list[str]:
    """Problems found between catalog, vectors and FAISS file (empty: consistent); ``repair`` mends them.

    Repair never re-embeds: files whose vector is missing or damaged are dropped from the catalog
    (the next ``index`` run embeds them again) and the FAISS index is rebuilt from the stored vectors.
    Checking only reads (a reader will do, on a read-only index too); repairing needs the writer.
    """
    import faiss

    problems: list[str] = []
    quick = store.quick_check()
    if quick != "ok":
        problems.append(f"catalog database: {quick}")
    bad = store.damaged_vectors()
    if bad:
        problems.append(f"{len(bad)} stored vectors cannot be read (the wrong size, or lost from their segment file)")
    orphans = store.files_without_vector()
    if orphans:
        problems.append(counted(orphans, "file") + (" has" if orphans == 1 else " have") + " no stored vector")
    if large_index.is_large(store.meta("index_built_as") or ""):
        problems += large_index.check(store)
        if repair and problems:
            assert isinstance(store, StoreWriter), "repairing needs the writer"
            store.repair(bad)
        return problems
    path = store.layout.faiss(store.generation)
    index = None
    if not path.is_file():
        problems.append(f"no FAISS index for generation {store.generation} (a run was interrupted)")
    else:
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            problems.append(f"FAISS index unreadable: {str(exc).splitlines()[0]}")
    if index is not None:
        ids = vector_index.ids_of(index)
        catalog_ids = store.file_ids()
        if ids is not None and ids != catalog_ids:
            problems.append(f"FAISS index and catalog disagree on {len(ids ^ catalog_ids)} ids")
        elif index.ntotal != len(catalog_ids):
            problems.append(f"FAISS index holds {index.ntotal} vectors, the catalog {len(catalog_ids)} files")
    if repair and problems:
        assert isinstance(store, StoreWriter), "repairing needs the writer"
        store.repair(bad)
    return problems
