"""``check``: whether catalog, stored vectors and the derived index files agree and are whole, and with ``repair``
mending what can be.

The order matters: a damaged catalog database is salvaged first (what SQLite can still read is copied into a
new file), then the index is diagnosed through a writer, so that no run changes it halfway through the check.
Where nothing may write (a read-only mount), a reader is enough to check, never to repair. What a check says a
repair would drop is what the repair drops: both take one diagnosis (``clipsearch.store.check``), and the salvage's
preview makes the salvage's own choice.
"""

from __future__ import annotations

from pathlib import Path

from clipsearch.app.results import CheckResult
from clipsearch.errors import ReadOnlyIndex, UserError


def check(directory: Path, repair: bool = False) -> CheckResult:
    from clipsearch.store import StoreReader, StoreWriter, index_exists, remains, salvage
    from clipsearch.store import check as diagnosis

    if not index_exists(directory):
        raise UserError(f"no index at {directory}")
    lost, salvaged = None, None
    salvaged_away: list[str] = []  # the files a salvage left out, as the user knows them
    reembeds = 0  # how many of the files left out the next run embeds again (their vectors lost)
    if (damaged := remains.damage(directory)) is not None:
        found = salvage.repair(directory) if repair else salvage.inspect(directory)
        if not repair:
            problems = [f"catalog database: {damaged}", f"'check --repair' would save what can be read: {found.story()}"]
            return CheckResult(problems, problems, repaired=False, lost_paths=found.left_out,
                               reembeds=len(found.without_vector))
        salvaged_away, reembeds = found.left_out, len(found.without_vector)
        told = f"catalog database was damaged ({damaged}); {found.story()}"
        lost, salvaged = (told, None) if found.lost_anything else (None, told)
    try:
        store: StoreReader | StoreWriter = StoreWriter.open(directory)  # no run halfway through meanwhile
    except ReadOnlyIndex:
        if repair:
            raise
        store = StoreReader.open(directory)  # nothing can write to it: reading is enough to check it
    with store:
        found_now = diagnosis.diagnose(store)
        remaining = found_now.problems
        found_now.rebuild = found_now.rebuild or (repair and damaged is not None)  # the salvage left no FAISS file
        if repair and (found_now.problems or found_now.rebuild):
            assert isinstance(store, StoreWriter)
            diagnosis.repair(store, found_now)
            after = diagnosis.diagnose(store)
            remaining, found_now.notes = after.problems, after.notes
    problems = ([f"catalog database: {damaged}"] if damaged is not None else []) + found_now.problems
    lost_paths = found_now.lost_paths + salvaged_away
    return CheckResult(problems, remaining, repaired=bool(repair and problems), lost=lost, lost_paths=lost_paths,
                       notes=([salvaged] if salvaged else []) + found_now.notes,
                       reembeds=reembeds + len(found_now.lost_paths))
