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
one model to another; thresholds on signatures are in bits and do not depend on the model at all.
bench/duplicates.py measures both levels on a generated ground truth; docs/benchmarks.md has the figures.

Candidates: each content's ``K`` nearest neighbours, exact for small collections and through a temporary
IVF index for large ones (IVF-Flat, so the scores it returns are exact), in batches. Connected pairs form
one group: groups, not pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from clipsearch import picture_grid, signature

if TYPE_CHECKING:
    from collections.abc import Callable

    from clipsearch.store import IndexedFile, StoreReader

K = 8  # neighbours per content; the K-th is the collection's yardstick
COPY_BITS = 8  # signature bits two copies may differ by, where there are no grids (bench/duplicates.py)
COPY_SPREAD = 1.0  # and their vectors' distance, in units of the collection's yardstick
GRID_BITS = 24  # with grids, the hash and vectors only pass pairs on to them: copies measured up to 24 bits and
GRID_SPREAD = 2.0  # (framed, demo model) 1.7 yardsticks apart; unrelated photos differ by ~32 bits
GRID_RESIDUAL = 0.3  # copies measured at most 0.25 apart, added objects above 0.3 for 98% (bench/duplicates.py)
GRID_NEW = 0.05  # copies measured 0.00, moved cameras above 0.05 for 95%
MAX_COPY_TURN = 0.5  # degrees: copies measured at most 0.36 apart, shots turned 1-2 degrees above 0.5 (95%)
SIMILAR_BITS = 20
SIMILAR_SPREAD = 0.25
EXACT_MAX = 50_000  # contents up to which neighbours are found exactly (a flat scan); above, IVF
NPROBE = 6  # IVF lists searched per content: copies sit in their original's list or the next (bench/duplicates.py)
BATCH = 8192


@dataclass
class Collection:
    """What the rules read, per content: its files, its vector, its signature (-1: none yet)."""

    files: list[list[IndexedFile]]
    vectors: np.ndarray  # (n, dim) float32, unit length
    signatures: np.ndarray  # (n,) int64: the DCT hashes
    edges: list[bytes] | None = None  # each one's edge harmonics (b"": none)
    grids: Callable[[list[int]], dict[int, bytes]] | None = None  # content indices -> their grids, read on demand

    @classmethod
    def of(cls, store: StoreReader, within: str | None = None) -> Collection:
        by_hash: dict[bytes, list[IndexedFile]] = {}
        for row in store.file_rows(within):
            by_hash.setdefault(row.hash, []).append(row)
        files = list(by_hash.values())
        first = {group[0].id: i for i, group in enumerate(files)}
        dim = store.model.dim if store.model else 0
        vectors = np.zeros((len(files), dim), dtype=np.float32)
        for ids, block in store.iter_vectors(list(first)):
            vectors[[first[int(i)] for i in ids]] = block
        known = store.signatures.all()
        signs = np.array([known[g[0].hash].dct if g[0].hash in known else -1 for g in files], dtype=np.int64)
        edges = [known[g[0].hash].edges if g[0].hash in known else b"" for g in files]
        hashes = [g[0].hash for g in files]

        def grids(indices: list[int]) -> dict[int, bytes]:
            found = store.signatures.grids([hashes[i] for i in indices])
            return {i: found[hashes[i]] for i in indices if hashes[i] in found}

        return cls(files, vectors, signs, edges, grids)


@dataclass
class Pairs:
    """Candidate pairs (``a`` < ``b``, content indices) with their cosine and signature distance (64: unknown)."""

    a: np.ndarray
    b: np.ndarray
    score: np.ndarray
    bits: np.ndarray
    yardstick: float  # the median distance (1 - cosine) to the K-th neighbour


def neighbours(vectors: np.ndarray, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """(scores, indices) of each vector's ``k`` nearest others (-1 where there are fewer)."""
    import faiss

    n, dim = vectors.shape
    k = min(k + 1, n)  # each finds itself first
    if n <= EXACT_MAX:
        index = faiss.IndexFlatIP(dim)
    else:
        lists = int(4 * np.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        sample = vectors[np.random.default_rng(0).choice(n, min(n, 64 * lists), replace=False)]
        index.train(sample)
        index.nprobe = NPROBE
    index.add(vectors)
    scores = np.empty((n, k), dtype=np.float32)
    found = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, BATCH):
        scores[start : start + BATCH], found[start : start + BATCH] = index.search(vectors[start : start + BATCH], k)
    return scores, found


def candidate_pairs(collection: Collection, k: int = K) -> Pairs:
    n = len(collection.files)
    if n < 2:
        empty = np.zeros(0, dtype=np.int64)
        return Pairs(empty, empty, np.zeros(0, dtype=np.float32), empty, 1.0)
    scores, found = neighbours(collection.vectors, k)
    last = np.where(found[:, -1] >= 0, scores[:, -1], np.nan)
    yardstick = float(np.nanmedian(1.0 - last)) if np.isfinite(last).any() else 1.0
    rows = np.repeat(np.arange(n), found.shape[1])
    cols, sims = found.ravel(), scores.ravel()
    keep = (cols >= 0) & (cols != rows)
    a, b = np.minimum(rows[keep], cols[keep]), np.maximum(rows[keep], cols[keep])
    _, first = np.unique(a * n + b, return_index=True)
    a, b, sims = a[first], b[first], sims[keep][first]
    signs = collection.signatures
    known = (signs[a] >= 0) & (signs[b] >= 0)
    xor = np.bitwise_xor(signs[a], signs[b]).astype(np.uint64)
    bits = np.where(known, _popcount(xor), 64)
    return Pairs(a, b, sims, bits, max(yardstick, 1e-6))


def _popcount(values: np.ndarray) -> np.ndarray:
    out = np.zeros(values.shape, dtype=np.int64)
    v = values.copy()
    while v.any():
        out += (v & np.uint64(1)).astype(np.int64)
        v >>= np.uint64(1)
    return out


def levels(pairs: Pairs, edges: list[bytes] | None = None,
           grids: Callable[[list[int]], dict[int, bytes]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Which candidate pairs are copies, and which are similar shots (or copies)."""
    spread = (1.0 - pairs.score) / pairs.yardstick
    copy = (pairs.bits <= COPY_BITS) & (spread <= COPY_SPREAD)
    if grids is not None:
        _judge_by_grids(pairs, spread, copy, grids)
    similar = copy | (spread <= SIMILAR_SPREAD) | ((pairs.bits <= SIMILAR_BITS) & (spread <= COPY_SPREAD))
    if edges is not None:  # a shot turned by a degree or two hashes like a copy; its edges tell it apart
        for at in np.flatnonzero(copy):
            angle = signature.turn(edges[pairs.a[at]], edges[pairs.b[at]])
            if angle is not None and abs(angle) > MAX_COPY_TURN + 1e-6:  # the angles are a grid of 0.05 degrees
                copy[at] = False
    return copy, similar


def _judge_by_grids(pairs: Pairs, spread: np.ndarray, copy: np.ndarray,
                    grids: Callable[[list[int]], dict[int, bytes]]) -> None:
    """Where both photos of a candidate pair have grids, they decide whether it is a copy (``copy``, in place)."""
    at = np.flatnonzero((pairs.bits <= GRID_BITS) & (spread <= GRID_SPREAD))
    held = grids(sorted({int(i) for i in pairs.a[at]} | {int(i) for i in pairs.b[at]}))
    for i in at.tolist():
        a, b = held.get(int(pairs.a[i])), held.get(int(pairs.b[i]))
        match = picture_grid.compare(a, b) if a is not None and b is not None else None
        if match is not None:
            copy[i] = match.residual <= GRID_RESIDUAL and match.new <= GRID_NEW


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
    contents: list[int]


def find(collection: Collection, similar: bool = False) -> list[ContentGroup]:
    """The groups of contents: copies (identical bytes included), and with ``similar`` the similar shots (groups
    that join two or more copy groups or single photos), largest first."""
    n = len(collection.files)
    pairs = candidate_pairs(collection)
    copy, close = levels(pairs, collection.edges, collection.grids)
    copy_of = components(n, pairs.a[copy], pairs.b[copy])
    out: list[ContentGroup] = []
    for members in _members(copy_of):
        if len(members) > 1:
            out.append(ContentGroup("copy", members))
        elif len(collection.files[members[0]]) > 1:
            out.append(ContentGroup("identical", members))
    if similar:
        shot_of = components(n, pairs.a[close], pairs.b[close])
        for members in _members(shot_of, at_least=2):
            if len({int(copy_of[m]) for m in members}) > 1:
                out.append(ContentGroup("similar", members))
    out.sort(key=lambda g: (-sum(len(collection.files[c]) for c in g.contents), g.level != "identical"))
    return out


def _members(labels: np.ndarray, at_least: int = 1) -> list[list[int]]:
    """The items of each label with at least ``at_least`` of them, in one sort (a million singletons included)."""
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    return [part.tolist() for part in np.split(order, bounds) if len(part) >= at_least]

