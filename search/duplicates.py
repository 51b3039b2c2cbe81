"""Copies and similar shots: groups of indexed photos, found from their vectors and perceptual signatures.

Three kinds of sameness, strongest first:

- **identical**: the same bytes (one content in the catalog, several paths);
- **copy**: the same picture resized, re-encoded, converted, framed, trimmed by a few percent or lightly
  recoloured: vectors that are near neighbours, DCT hashes (``clipsearch.signature``) not far apart, edges
  turned by at most ``MAX_COPY_TURN`` degrees, *and* colour grids (``clipsearch.picture_grid``) that match once
  aligned, with nothing beyond a frame shown by the lesser one: an added object or a moved camera is a similar
  shot. Where either photo has no grid yet (indexed before format 8 and not decoded since), hashes within
  ``COPY_BITS`` decide instead;
- **similar**: another shot of the same moment (a burst, a small camera move, something added): vectors
  within ``SIMILAR_SPREAD`` of the collection's own neighbour distance, or signatures within
  ``SIMILAR_BITS`` with vectors near.

Thresholds on vectors are relative to the collection: the median distance from a photo to its
``K``-th neighbour (an unrelated photo nearby, whatever the model's score scale), so the rules carry from
one model to another; thresholds on signatures are in bits and do not depend on the model at all. The
collection is always the whole index: a folder filter (``within``) changes what is listed, never the yardstick
or which pairs are judged (a folder of three pictures once made its own yardstick and called a flat blue
picture, a transparent one and a red pixel copies).

Copies are of one medium: photos among photos, videos among videos (``copy_rules.one_medium``). A video is judged
by its first moment's signature and grid, and one that opens on a photo of the folder was that photo's keeper
(issue 35); a photo and a video may at most be similar shots.

A featureless picture (a flat colour, a transparent picture shown on black, fewer pixels than a grid has cells)
carries no evidence of being a copy: it is never a copy or a similar shot of another; identical bytes still are.

Candidates: each content's ``K`` nearest neighbours by vector, exact for small collections and through a
temporary IVF index for large ones (IVF-Flat, so the scores it returns are exact), in batches; and its
``HASH_K`` nearest by signature (a white frame moved a random-weight model's vector 13 yardsticks away).

Groups never chain: the pairs that pass join candidates, and each connected set is split around the photo that
passed against the most others: every member of a group passes the rule against that centre (any two are at
most two passing pairs apart), and two members of the same width and height pass against each other too (a
burst or a turned shot reached a group through a framed copy). Similar groups join the keepers of copy groups
and photos that are no one's copy in the same way. bench/duplicates.py measures all of it on a generated
ground truth and, with ``--sources``, on photos the rules were never tuned on; docs/benchmarks.md has the figures.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from search.copy_rules import (  # noqa: F401 - the rules' names, as callers and tests have always read them here
    BATCH,
    COPY_BITS,
    COPY_SPREAD,
    FLAT_CONTRAST,
    FLAT_SCAN_MAX,
    GRID_BITS,
    GRID_NEW,
    GRID_RESIDUAL,
    GRID_SPREAD,
    HASH_K,
    MAX_COPY_TURN,
    MIN_PIXELS,
    MIN_STRENGTH,
    NEAR_BITS,
    NPROBE,
    SAME_SCALE,
    SAME_SCALE_RESIDUAL,
    SIMILAR_BITS,
    SIMILAR_SPREAD,
    TURN_SCALE,
    Collection,
    K,
    Pairs,
    candidate_pairs,
    dims_of,
    featureless,
    judge,
    levels,
    neighbours,
    pairs_of,
    signature_neighbours,
)

if TYPE_CHECKING:
    from collections.abc import Callable

STAR_MAX = 2_000  # a connected set larger than this is split by the pairs already judged (no new judgements)

def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The connected component of each of ``n`` items joined by the pairs (a[i], b[i]): a label per item."""
    parent = np.arange(n)

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in zip(a.tolist(), b.tolist()):
        rx, ry = root(x), root(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    while True:  # every item straight to its root, a whole array at a time
        up = parent[parent]
        if np.array_equal(up, parent):
            return parent
        parent = up


@dataclass
class ContentGroup:
    level: str  # "identical", "copy" or "similar"
    contents: list[int]  # the keeper's content first


def default_rank(collection: Collection) -> Callable[[list[int]], list[int]]:
    """Contents best first without the catalog's dates: most pixels, then the one indexed first
    (``search.keeper.ranking`` is the keeper's whole rule, which the application passes)."""
    def key(c: int) -> tuple[int, int]:
        f = collection.files[c][0]
        return (-(f.width * f.height), f.id) if f is not None else (0, c)

    return lambda contents: sorted(contents, key=key)


def _stars(members: list[int], rank: Callable[[list[int]], list[int]],
           passes: Callable[[int, list[int]], np.ndarray], degree: dict[int, int],
           veto: Callable[[int, int], bool] | None = None) -> list[list[int]]:
    """``members`` (joined by pairs that pass a rule) split into groups of bounded diameter: the one left that
    passed against the most others (``degree``; the best-ranked among equals: usually the original, not a framed
    or trimmed copy of it) gathers all the others left that pass against it, and so on. Any two members of a
    group are at most two passing pairs apart; of two that ``veto`` says cannot both be copies, one is left for
    the next group. Each group comes best-ranked first (the keeper)."""
    left = rank(members)
    out = []
    while left:
        centre = max(left, key=lambda c: (degree.get(c, 0), -left.index(c)))
        rest = [m for m in left if m != centre]
        ok = passes(centre, rest) if rest else np.zeros(0, dtype=bool)
        group = [centre] + [m for m, y in zip(rest, ok.tolist()) if y]
        if veto is not None:  # of two in conflict, the centre stays, else the one more joined, else the better
            order = {m: i for i, m in enumerate(left)}
            standing = {m: (m == centre, degree.get(m, 0), -order[m]) for m in group}
            for m, x in [(m, x) for i, m in enumerate(group) for x in group[i + 1:]]:
                if m in group and x in group and veto(m, x):
                    group.remove(min((m, x), key=standing.__getitem__))
        out.append(rank(group))
        left = [m for m in rest if m not in group]
    return out


def find(collection: Collection, similar: bool = False, rank: Callable[[list[int]], list[int]] | None = None,
         within: Callable[[str], bool] | None = None) -> list[ContentGroup]:
    """The groups of contents: copies (identical bytes included), and with ``similar`` the similar shots, largest
    first, the keeper's content first in each.

    Every member of a copy group passes the copy rule against its keeper (``_stars``): pairs never chain. A
    similar group joins the keepers of copy groups and photos that are no one's copy, each passing the similar
    rule against the group's keeper: a copy group is never listed again among the similar ones. ``rank`` orders
    contents best first (the keeper's rule: ``search.keeper``). ``within`` (a path -> bool) narrows what is
    listed, never what is judged: the groups are the whole collection's, less the files outside; where a group's
    keeper is outside, the best one inside keeps the others inside that pass against it."""
    n = len(collection.files)
    rank = rank or default_rank(collection)
    pairs = candidate_pairs(collection)
    copy, close = levels(pairs, collection.edges, collection.grids, None, dims_of(collection), collection.videos)
    either = copy | close  # only these pictures' grids are read for flatness (not a million of them)
    flat = featureless(collection, sorted({int(i) for i in pairs.a[either]} | {int(i) for i in pairs.b[either]}))
    unfit = flat[pairs.a] | flat[pairs.b]
    copy &= ~unfit
    close &= ~unfit

    def passes(level: int) -> Callable[[int, list[int]], np.ndarray]:
        def test(keeper: int, others: list[int]) -> np.ndarray:
            c, s = judge(collection, np.full(len(others), keeper), np.array(others), pairs.yardstick, flat)
            return c if level == 0 else s
        return test

    def known(level: np.ndarray) -> Callable[[int, list[int]], np.ndarray]:
        joined: dict[int, set[int]] = {}
        for x, y in zip(pairs.a[level].tolist(), pairs.b[level].tolist()):
            joined.setdefault(x, set()).add(y)
            joined.setdefault(y, set()).add(x)
        return lambda centre, others: np.array([o in joined.get(centre, ()) for o in others], dtype=bool)

    copy_degree = Counter(pairs.a[copy].tolist()) + Counter(pairs.b[copy].tolist())
    close_degree = Counter(pairs.a[close].tolist()) + Counter(pairs.b[close].tolist())
    dims = dims_of(collection)
    same_size_verdicts: dict[tuple[int, int], bool] = {}

    def apart(m: int, x: int) -> bool:
        """Two of the same width and height that fail the copy rule against each other: where sizes are equal
        there is no frame or trim between them to hide a turned camera or a moved subject, and a copy aligns at
        scale 1, so the rule is at its surest (a burst or a turned shot reaches a group through a framed copy)."""
        if not (dims[m] == dims[x]).all() or not dims[m].all():
            return False
        key = (min(m, x), max(m, x))
        if key not in same_size_verdicts:
            c, _ = judge(collection, np.array([key[0]]), np.array([key[1]]), pairs.yardstick, flat)
            same_size_verdicts[key] = not bool(c[0])
        return same_size_verdicts[key]

    copy_of = components(n, pairs.a[copy], pairs.b[copy])
    copy_groups: list[list[int]] = []
    for members in _members(copy_of, at_least=2):
        too_many = len(members) > STAR_MAX  # then only the pairs already judged: the same bound, less checked
        copy_groups += _stars(members, rank, known(copy), copy_degree) if too_many else \
            _stars(members, rank, passes(0), copy_degree, apart)
    out: list[ContentGroup] = []
    keeper_of = np.arange(n)
    for group in copy_groups:
        keeper_of[group] = group[0]
        listed = _inside(collection, group, within, rank, passes(0))
        if listed is not None:
            out.append(listed)
    grouped = np.zeros(n, dtype=bool)
    for group in copy_groups:
        grouped[group] = True
    for i in range(n):
        if len(collection.files[i]) > 1 and not grouped[i]:
            listed = _inside(collection, [i], within, rank, passes(0))
            if listed is not None:
                out.append(listed)
    if similar:
        a, b = keeper_of[pairs.a[close]], keeper_of[pairs.b[close]]
        differ = a != b
        shot_of = components(n, a[differ], b[differ])
        for members in _members(shot_of, at_least=2):
            split = _stars(members, rank, known(close), close_degree) if len(members) > STAR_MAX else \
                _stars(members, rank, passes(1), close_degree)
            for group in split:
                if len(group) > 1:
                    listed = _inside(collection, group, within, rank, passes(1), level="similar")
                    if listed is not None:
                        out.append(listed)
    out.sort(key=lambda g: (-sum(len(collection.files[c]) for c in g.contents), g.level != "identical"))
    return out


def _inside(collection: Collection, group: list[int], within: Callable[[str], bool] | None,
            rank: Callable[[list[int]], list[int]], passes: Callable[[int, list[int]], np.ndarray],
            level: str = "copy") -> ContentGroup | None:
    """The group as listed under ``within``: its files there, two at least; None if fewer."""
    def listed_files(c: int) -> int:
        files = collection.files[c]
        return len(files) if within is None else sum(1 for f in files if within(f.path))

    inside = [c for c in group if listed_files(c) > 0]
    if sum(listed_files(c) for c in inside) < 2:
        return None
    if inside and inside[0] != group[0]:  # the keeper is outside: the best inside keeps those that pass against it
        best, rest = rank(inside)[0], [c for c in inside if c != rank(inside)[0]]
        ok = passes(best, rest) if rest else np.zeros(0, dtype=bool)
        inside = [best] + [c for c, y in zip(rest, ok.tolist()) if y]
        if sum(listed_files(c) for c in inside) < 2:
            return None
    if len(inside) == 1:
        return ContentGroup("identical", inside)
    return ContentGroup(level, inside)


def _members(labels: np.ndarray, at_least: int = 1) -> list[list[int]]:
    """The items of each label with at least ``at_least`` of them, in one sort (a million singletons included)."""
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    return [part.tolist() for part in np.split(order, bounds) if len(part) >= at_least]
