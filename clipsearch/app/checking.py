"""``check``: whether catalog, stored vectors and the FAISS index agree, and with ``repair`` mending what can be.

The order matters: a damaged catalog database is salvaged first (what SQLite can still read is copied into a
new file), then the index is checked through a writer, so that no run changes it halfway through the check.
Where nothing may write (a read-only mount), a reader is enough to check, never to repair.
"""

from __future__ import annotations

from pathlib import Path

from clipsearch.app.results import CheckResult
from clipsearch.errors import ReadOnlyIndex, UserError


def check(directory: Path, repair: bool = False) -> CheckResult:
    from clipsearch.store import StoreReader, StoreWriter, check_index, index_exists, salvage

    if not index_exists(directory):
        raise UserError(f"no index at {directory}")
    lost = None
    if (damaged := salvage.damage(directory)) is not None:
        found = salvage.repair(directory) if repair else salvage.inspect(directory)
        if not repair:
            problems = [f"catalog database: {damaged}", f"'check --repair' would save what can be read: "
                        f"{found.summary()}"]
            return CheckResult(problems, problems, repaired=False)
        lost = f"catalog database was damaged ({damaged}); {found.summary()}" if found.lost_anything else None
    try:
        store: StoreReader | StoreWriter = StoreWriter.open(directory)  # no run halfway through meanwhile
    except ReadOnlyIndex:
        if repair:
            raise
        store = StoreReader.open(directory)  # nothing can write to it: reading is enough to check it
    with store:
        problems = check_index(store, repair=repair)
        remaining = check_index(store) if repair and problems else problems
    if damaged is not None:
        problems.insert(0, f"catalog database: {damaged}")
    return CheckResult(problems, remaining, repaired=bool(repair and problems), lost=lost)
