"""Videos in an answer: the FAISS index holds each video's moments beside its own (mean) vector
(``clipsearch.store.moments``); an answer shows the video once, with ``t``, the time of its best moment for the
query, and its other matching moments."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from clipsearch.store.moments import FLAG, moment_id, split

if TYPE_CHECKING:
    import numpy as np

    from clipsearch.store import StoreReader
    from search.query import Hit

LISTED = 5  # matching moments listed per video hit, at most
# A shot held for a while gives several moments that score nearly alike: ``t`` is the first moment of the run of
# moments around the best that score within this share of the best's lead over the median (the shot's start).
RUN = 0.05


def collapse(found: Iterable[tuple[int, float]]) -> list[tuple[int, float]]:
    """(FAISS id, score) pairs as (file id, its best score), each file once, best first (ties by id)."""
    best: dict[int, float] = {}
    for faiss_id, score in found:
        file_id = split(faiss_id)[0] if faiss_id & FLAG else faiss_id
        if file_id not in best or score > best[file_id]:
            best[file_id] = score
    return sorted(best.items(), key=lambda hit: (-hit[1], hit[0]))


def with_moments(store: StoreReader, allowed: Sequence[int] | None) -> list[int] | None:
    """The ids a filter allows, with the moments of the videos among them."""
    if allowed is None:
        return None
    return [*allowed, *store.catalog.moments.ids_of(allowed)] if store.catalog.moments.count() else list(allowed)


def attach(store: StoreReader, hits: list[Hit], vector: np.ndarray | None) -> list[Hit]:
    """Each video hit with ``t`` (its best moment for ``vector``; the first one when browsing), its matching moments
    (scoring at least halfway from the video's median moment to its best, up to ``LISTED``) and its facts."""
    import numpy as np

    from search.query import Hit

    times = store.catalog.moments.times(h.id for h in hits)
    if not times:
        return hits
    facts = store.catalog.moments.facts(times)
    scores: dict[int, float] = {}
    if vector is not None:
        wanted = [moment_id(f, n) for f, by_n in times.items() for n in by_n]
        for ids, matrix in store.vectors.iter_vectors(wanted):
            scores.update(zip(ids.tolist(), (matrix @ np.asarray(vector, dtype="float32")).tolist()))
    out = []
    for hit in hits:
        by_n = times.get(hit.id)
        if not by_n:
            out.append(hit)
            continue
        scored = sorted(((scores.get(moment_id(hit.id, n), 0.0), t) for n, t in by_n.items()),
                        key=lambda st: (-st[0], st[1]))
        if vector is None:
            best_t, listed = min(by_n.values()), []
        else:
            middle = float(np.median([s for s, _ in scored]))
            floor = scored[0][0] - (scored[0][0] - middle) / 2
            best_t = _start_of_run(by_n, scores, hit.id, scored[0][1], scored[0][0] - (scored[0][0] - middle) * RUN)
            listed = [{"t": t, "score": round(s, 4)} for s, t in scored[:LISTED] if s >= floor]
        video: dict[str, Any] = {"t": best_t, "moments": listed, "video": facts.get(hit.id, {})}
        out.append(Hit(hit.rank, hit.path, hit.score, hit.id, {**hit.meta, **video}))
    return out


def _start_of_run(by_n: dict[int, float], scores: dict[int, float], file_id: int, best_t: float, floor: float) -> float:
    """The earliest time of the run of consecutive moments, around the best one, that score at least ``floor``."""
    ordered = sorted((t, scores.get(moment_id(file_id, n), 0.0)) for n, t in by_n.items())
    at = next(i for i, (t, _) in enumerate(ordered) if t == best_t)
    while at > 0 and ordered[at - 1][1] >= floor:
        at -= 1
    return ordered[at][0]
