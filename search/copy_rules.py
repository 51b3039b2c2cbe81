"""The rules of ``search.duplicates``, pair by pair: candidates (vector and signature neighbours), whether a pair
is a copy or a similar shot, featureless pictures. ``search.duplicates`` makes groups of them; the thresholds'
reasons name the bench (bench/duplicates.py) and docs/benchmarks.md has the figures.
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
HASH_K = 8  # neighbours per content by signature as well: a frame moves a model's vector past its K nearest
COPY_BITS = 8  # signature bits two copies may differ by, where there are no grids (bench/duplicates.py)
COPY_SPREAD = 1.0  # and their vectors' distance, in units of the collection's yardstick
GRID_BITS = 24  # with grids, the hash and vectors only pass pairs on to them: crops measured up to 24 bits apart,
GRID_SPREAD = 3.0  # up to 2.9 yardsticks (random-weight ViT-B-32, real photos); unrelated photos differ by ~32 bits
NEAR_BITS = 10  # hashes this near pass a pair on to the grids whatever its vectors (frames: 13 yardsticks apart)
GRID_RESIDUAL = 0.3  # copies measured at most 0.25 apart, added objects above 0.3 for 98% (bench/duplicates.py);
# real photos' frames and crops up to 0.3 as well (--sources)
GRID_NEW = 0.05  # copies measured 0.00, moved cameras above 0.05 for 95%
MAX_COPY_TURN = 1.0  # degrees: copies of real photos (JPEG quality 30-50) measured up to 0.75 apart, generated ones
# 0.36; shots turned 1-2 degrees measured above 1.0 where their edges tell at all (bench/duplicates.py --sources)
TURN_SCALE = 0.025  # the turn is only asked where the grids align near scale 1: a frame's or a crop's own straight
# edges turn the histogram of a copy by up to 10 degrees (real photos, bench/duplicates.py --sources); a shot turned
# by 1-2 degrees aligns at 0.98-1.01
SAME_SCALE = 0.015  # aligned at scale 1 (no frame, no trim), a copy is nearer than one resampled to another scale;
SAME_SCALE_RESIDUAL = 0.18  # and two photos of the same width and height (a re-encode, a recolouring, or a shot
# from the same camera) must align at scale 1 within this: re-encodes and recolourings measured up to 0.16 (the demo
# model's small decodes), turned shots 0.1-0.33, bursts whose subject moved 0.04-0.2 (bench/duplicates.py --sources)
MIN_STRENGTH = 0.15  # edges more even than this (``signature.strength``: textures, star fields) tell no turn: copies
# of them measured "turned" by up to 9 degrees (bench/duplicates.py --sources)
FLAT_CONTRAST = 4.0  # levels: a grid less varied than this is a flat picture (one colour, transparent, blank)
MIN_PIXELS = 32 * 32  # a picture of fewer pixels than its grid has cells: nothing to tell a copy by
SIMILAR_BITS = 20
SIMILAR_SPREAD = 0.25
FLAT_SCAN_MAX = 50_000  # contents up to which neighbours are found exactly (a flat scan); above, IVF
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
    dims: np.ndarray | None = None  # (n, 2) widths and heights, made from ``files`` when first asked (dims_of)
    videos: np.ndarray | None = None  # (n,) bool: a video (its signature and grid are its first moment's)

    @classmethod
    def of(cls, store: StoreReader, within: str | None = None) -> Collection:
        by_hash: dict[bytes, list[IndexedFile]] = {}
        for row in store.catalog.file_rows(within):
            by_hash.setdefault(row.hash, []).append(row)
        files = list(by_hash.values())
        first = {group[0].id: i for i, group in enumerate(files)}
        dim = store.catalog.model.dim if store.catalog.model else 0
        vectors = np.zeros((len(files), dim), dtype=np.float32)
        for ids, block in store.vectors.iter_vectors(list(first)):
            vectors[[first[int(i)] for i in ids]] = block
        known = store.catalog.signatures.all()
        signs = np.array([known[g[0].hash].dct if g[0].hash in known else -1 for g in files], dtype=np.int64)
        edges = [known[g[0].hash].edges if g[0].hash in known else b"" for g in files]
        hashes = [g[0].hash for g in files]
        video_hashes = store.catalog.moments.video_hashes()
        videos = np.array([h in video_hashes for h in hashes], dtype=bool)

        def grids(indices: list[int]) -> dict[int, bytes]:
            found = store.catalog.signatures.grids([hashes[i] for i in indices])
            return {i: found[hashes[i]] for i in indices if hashes[i] in found}

        return cls(files, vectors, signs, edges, grids, videos=videos)


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
    if n <= FLAT_SCAN_MAX:
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


def signature_neighbours(signs: np.ndarray, k: int = HASH_K) -> tuple[np.ndarray, np.ndarray]:
    """(bits, indices) of each signature's ``k`` nearest others by Hamming distance (-1 where none): exact up to
    ``FLAT_SCAN_MAX`` contents, above through 16-bit buckets (pairs within 3 bits always found, farther ones by chance)."""
    import faiss

    n = len(signs)
    k = min(k + 1, n)
    codes = np.ascontiguousarray(signs.astype("<i8").view(np.uint8).reshape(n, 8))
    index = faiss.IndexBinaryFlat(64) if n <= FLAT_SCAN_MAX else faiss.IndexBinaryMultiHash(64, 4, 16)
    index.add(codes)
    bits = np.empty((n, k), dtype=np.int64)
    found = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, BATCH):
        d, i = index.search(codes[start : start + BATCH], k)
        bits[start : start + BATCH], found[start : start + BATCH] = d, i
    return bits, found


def candidate_pairs(collection: Collection, k: int = K) -> Pairs:
    """Each content's ``k`` nearest by vector and its ``HASH_K`` nearest by signature within ``NEAR_BITS`` (those
    go to the grids whatever their vectors; farther ones would send most of a large collection there)."""
    n = len(collection.files)
    if n < 2:
        empty = np.zeros(0, dtype=np.int64)
        return Pairs(empty, empty, np.zeros(0, dtype=np.float32), empty, 1.0)
    scores, found = neighbours(collection.vectors, k)
    last = np.where(found[:, -1] >= 0, scores[:, -1], np.nan)
    yardstick = float(np.nanmedian(1.0 - last)) if np.isfinite(last).any() else 1.0
    rows = np.repeat(np.arange(n), found.shape[1])
    cols = found.ravel()
    signs = collection.signatures
    signed = np.flatnonzero(signs >= 0)
    if len(signed) > 1:
        bits, near = signature_neighbours(signs[signed])
        ok = (near >= 0) & (bits <= NEAR_BITS)  # the nearest of a million random hashes are ~15 bits apart
        rows = np.concatenate([rows, np.repeat(signed, near.shape[1])[ok.ravel()]])
        cols = np.concatenate([cols, signed[near[ok]]])
    return pairs_of(collection, rows, cols, yardstick)


def pairs_of(collection: Collection, rows: np.ndarray, cols: np.ndarray, yardstick: float) -> Pairs:
    """The distinct pairs among (rows[i], cols[i]) with their cosine and signature distance."""
    n = len(collection.files)
    keep = (cols >= 0) & (cols != rows)
    a, b = np.minimum(rows[keep], cols[keep]), np.maximum(rows[keep], cols[keep])
    _, first = np.unique(a * n + b, return_index=True)
    a, b = a[first], b[first]
    v = collection.vectors
    sims = np.zeros(len(a), dtype=np.float32)
    for start in range(0, len(a), BATCH):  # in batches: a million contents' pairs at once would be tens of GB
        at = slice(start, start + BATCH)
        sims[at] = np.einsum("ij,ij->i", v[a[at]], v[b[at]])
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
           grids: Callable[[list[int]], dict[int, bytes]] | None = None,
           featureless: np.ndarray | None = None, dims: np.ndarray | None = None,
           videos: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Which candidate pairs are copies, and which are similar shots (or copies). ``featureless``: per content,
    a flat or tiny picture, which is never a copy or a similar shot of another (only identical bytes are).
    ``dims``: per content, its width and height (0: unknown). ``videos``: per content, a video; copies are of one
    medium (``one_medium``)."""
    spread = (1.0 - pairs.score) / pairs.yardstick
    copy = (pairs.bits <= COPY_BITS) & (spread <= COPY_SPREAD)
    similar = (spread <= SIMILAR_SPREAD) | ((pairs.bits <= SIMILAR_BITS) & (spread <= COPY_SPREAD))
    scale = np.ones(len(copy))
    if grids is not None:
        same = (dims[pairs.a] == dims[pairs.b]).all(axis=1) & (dims[pairs.a] > 0).all(axis=1) if dims is not None \
            else np.zeros(len(copy), dtype=bool)
        _judge_by_grids(pairs, spread, copy, scale, grids, same)
    similar |= copy
    if edges is not None:  # a shot turned by a degree or two hashes like a copy; its edges tell it apart
        for at in np.flatnonzero(copy & (np.abs(scale - 1.0) <= TURN_SCALE)):
            angle = _turn(edges[pairs.a[at]], edges[pairs.b[at]])
            if angle is not None and abs(angle) > MAX_COPY_TURN + 1e-6:  # the angles are a grid of 0.05 degrees
                copy[at] = False
    if videos is not None:
        copy &= one_medium(videos, pairs.a, pairs.b)
    if featureless is not None:
        flat = featureless[pairs.a] | featureless[pairs.b]
        copy &= ~flat
        similar &= ~flat
    return copy, similar


def one_medium(videos: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pair: both photos, or both videos. A photo and a video are never copies of each other, however alike:
    a video's signature and grid are its first moment's, and a video that opens on a photo of the folder (letterboxed,
    30 s long) passed every rule against it and was made its keeper, so ``duplicates --paths-only`` listed the
    photo to be deleted (issue 35). They may still be similar shots, which nothing lists for deletion."""
    return videos[a] == videos[b]


def _turn(a: bytes, b: bytes) -> float | None:
    """``signature.turn``, where both pictures' edges are uneven enough to tell one (``MIN_STRENGTH``)."""
    if min(signature.strength(a), signature.strength(b)) < MIN_STRENGTH:
        return None
    return signature.turn(a, b)


def _judge_by_grids(pairs: Pairs, spread: np.ndarray, copy: np.ndarray, scale: np.ndarray,
                    grids: Callable[[list[int]], dict[int, bytes]], same: np.ndarray) -> None:
    """Where both photos of a candidate pair have grids, they decide whether it is a copy (``copy``, in place),
    and at what scale they align (``scale``)."""
    at = np.flatnonzero(((pairs.bits <= GRID_BITS) & (spread <= GRID_SPREAD)) | (pairs.bits <= NEAR_BITS))
    held = grids(sorted({int(i) for i in pairs.a[at]} | {int(i) for i in pairs.b[at]}))
    for i in at.tolist():
        a, b = held.get(int(pairs.a[i])), held.get(int(pairs.b[i]))
        match = picture_grid.compare(a, b) if a is not None and b is not None else None
        if match is None:
            continue
        if match.residual > GRID_RESIDUAL and match.residual < 2 * GRID_RESIDUAL:  # the other way round: a frame
            other = picture_grid.compare(b, a)  # mapped into its picture leaves less of a resampled edge behind
            if other is not None and other.residual < match.residual:
                match = other
        at_one = abs(match.scale - 1.0) <= SAME_SCALE
        limit = SAME_SCALE_RESIDUAL if at_one or same[i] else GRID_RESIDUAL
        copy[i] = match.residual <= limit and match.new <= GRID_NEW and (at_one or not same[i])
        scale[i] = match.scale


def dims_of(collection: Collection) -> np.ndarray:
    """(n, 2): each content's width and height as indexed (0, 0 where unknown)."""
    if collection.dims is None:
        collection.dims = np.array([(f.width, f.height) if f is not None else (0, 0)
                                    for f in (files[0] for files in collection.files)], dtype=np.int64).reshape(-1, 2)
    return collection.dims


def featureless(collection: Collection, indices: list[int] | None = None) -> np.ndarray:
    """Per content: a picture with nothing to tell a copy by (fewer pixels than ``MIN_PIXELS``, or a grid flatter
    than ``FLAT_CONTRAST``: one colour, a transparent picture shown on black). Only ``indices`` are looked at (the
    others False); where the grid is missing, only the size counts."""
    n = len(collection.files)
    out = np.zeros(n, dtype=bool)
    look = list(range(n)) if indices is None else sorted(set(indices))
    for i in look:
        f = collection.files[i][0]
        if f is not None and 0 < getattr(f, "width", 0) * getattr(f, "height", 0) < MIN_PIXELS:
            out[i] = True
    if collection.grids is not None and look:
        held = collection.grids([i for i in look if not out[i]])
        for i, grid in held.items():
            c = picture_grid.contrast(grid)
            out[i] = c is not None and c < FLAT_CONTRAST
    return out


def judge(collection: Collection, a: np.ndarray, b: np.ndarray, yardstick: float,
          flat: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(copy, similar) for arbitrary pairs of contents (a[i], b[i]), in that order, by the same rules."""
    if len(a) == 0:
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)
    pairs = pairs_of(collection, np.asarray(a), np.asarray(b), yardstick)
    copy, similar = levels(pairs, collection.edges, collection.grids, flat, dims_of(collection), collection.videos)
    out_copy, out_similar = {}, {}
    for x, y, c, s in zip(pairs.a.tolist(), pairs.b.tolist(), copy.tolist(), similar.tolist()):
        out_copy[(x, y)], out_similar[(x, y)] = c, s
    keys = [(min(x, y), max(x, y)) for x, y in zip(np.asarray(a).tolist(), np.asarray(b).tolist())]
    return (np.array([out_copy.get(k, False) for k in keys], dtype=bool),
            np.array([out_similar.get(k, False) for k in keys], dtype=bool))
