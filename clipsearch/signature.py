"""A photo's perceptual signature: a 64-bit DCT hash of its upright picture, for telling copies from similar shots.

Computed by the decoders from the picture they already made (``indexer.cpu_decode``), so it costs one small
resize and an 8x8 corner of a 32x32 DCT (a fraction of a photo's decode), and stored per content (``clipsearch.store``).
Resizing, re-encoding at any quality or format, EXIF-only edits, the orientation tag (the decoders apply it)
and light colour changes leave it within a few bits; uniform borders are trimmed first, so a framed copy
hashes like its original. Unrelated pictures differ in about half of the 63 bits that carry information.
``search.duplicates`` has the rules built on it, and bench/duplicates.py their measured precision.

A leaf: numpy and Pillow only (the decode worker processes compute it).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image, ImageChops

from clipsearch import picture_grid

SIDE = 32  # the picture is reduced to SIDE x SIDE luminance before its DCT
KEEP = 8  # the KEEP x KEEP lowest frequencies carry the hash
TRIM_SIDE = 256  # borders are found on a copy this size
TRIM_TOLERANCE = 8  # luminance levels a frame may vary by: a flat frame, not a smooth patch of the picture
MAX_TRIM = 0.25  # a "border" wider than this share of a side is the picture's own, not a frame
ANGLE_SIDE = 256  # edge orientations are measured on a copy this size
HARMONICS = 12  # of the orientation histogram kept: a turn of 1-2 degrees is found from these (bench/duplicates.py)
MAX_TURN = 10.0  # degrees searched either way: a photo's own edges at 90 degrees must not pass for a turn


class Signature(NamedTuple):
    """What a picture looks like, in ~1.3 KB: ``dct`` (a 64-bit DCT hash: what is where), ``edges`` (the low
    harmonics of its edge orientations: a copy keeps them, a shot turned by a degree shifts them all) and ``grid``
    (``clipsearch.picture_grid``: a 32x32 colour grid, which sees an added object or a moved camera; b"": none)."""

    dct: int
    edges: bytes
    grid: bytes = b""


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


_DCT = _dct_matrix(SIDE)


def trimmed(gray: Image.Image) -> Image.Image:
    """``gray`` less a uniform frame around it (the colour of its top-left corner), if it has one."""
    small = gray.copy()
    small.thumbnail((TRIM_SIDE, TRIM_SIDE))
    corner = small.getpixel((0, 0))
    diff = ImageChops.difference(small, Image.new("L", small.size, corner))
    box = diff.point(lambda v: 255 if v > TRIM_TOLERANCE else 0).getbbox()
    if box is None:
        return gray  # one colour all over: nothing to trim
    w, h = small.size
    left, top, right, bottom = box
    if max(left, w - right) > MAX_TRIM * w or max(top, h - bottom) > MAX_TRIM * h:
        return gray
    if (left, top, right, bottom) == (0, 0, w, h):
        return gray
    sx, sy = gray.width / w, gray.height / h
    return gray.crop((round(left * sx), round(top * sy), round(right * sx), round(bottom * sy)))


def of(image: Image.Image) -> Signature:
    """The signature of an upright picture (the grid of all of it: ``picture_grid.compare`` aligns frames away)."""
    gray = trimmed(image.convert("L"))
    return Signature(dct_hash(gray), edge_harmonics(gray), picture_grid.encode(image))


def dct_hash(gray: Image.Image) -> int:
    """An unsigned 64-bit int (bit 63 is always 0: the DC term is left out, it says only how bright it is)."""
    pixels = np.asarray(gray.resize((SIDE, SIDE), Image.Resampling.BOX), dtype=np.float64)
    low = (_DCT @ pixels @ _DCT.T)[:KEEP, :KEEP].ravel()[1:]
    bits = low > np.median(low)
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


def edge_harmonics(gray: Image.Image) -> bytes:
    """The first ``HARMONICS`` Fourier coefficients of the histogram of edge orientations (0-180 degrees, 1-degree
    bins, the strongest tenth of the Sobel gradients weighted by their magnitude), as float16 pairs."""
    small = gray.copy()
    small.thumbnail((ANGLE_SIDE, ANGLE_SIDE))
    a = np.asarray(small, dtype=np.float64)
    if a.shape[0] < 3 or a.shape[1] < 3:
        return b""
    gx = 2 * (a[1:-1, 2:] - a[1:-1, :-2]) + (a[:-2, 2:] - a[:-2, :-2]) + (a[2:, 2:] - a[2:, :-2])
    gy = 2 * (a[2:, 1:-1] - a[:-2, 1:-1]) + (a[2:, :-2] - a[:-2, :-2]) + (a[2:, 2:] - a[:-2, 2:])
    magnitude = np.hypot(gx, gy)
    strong = magnitude > np.percentile(magnitude, 90)
    if not strong.any():
        return b""
    angles = np.degrees(np.arctan2(gy[strong], gx[strong])) % 180
    histogram, _ = np.histogram(angles, bins=180, range=(0, 180), weights=magnitude[strong])
    low = np.fft.rfft(histogram / histogram.sum())[1 : HARMONICS + 1]
    return np.stack([low.real, low.imag], axis=1).astype("<f2").tobytes()


_TURNS = np.arange(-MAX_TURN, MAX_TURN + 1e-9, 0.05)
_PHASES = np.exp(2j * np.pi * np.arange(1, HARMONICS + 1)[None, :] * _TURNS[:, None] / 180)


def turn(a: bytes, b: bytes) -> float | None:
    """The angle in degrees (within ``MAX_TURN``) by which ``b``'s edges are turned from ``a``'s: the peak of the
    two orientation histograms' cross-correlation. None where either picture has no edges to tell."""
    if len(a) != 4 * HARMONICS or len(b) != 4 * HARMONICS:
        return None
    x = np.frombuffer(a, dtype="<f2").astype(np.float64).reshape(-1, 2) @ [1, 1j]
    y = np.frombuffer(b, dtype="<f2").astype(np.float64).reshape(-1, 2) @ [1, 1j]
    return float(_TURNS[int(np.argmax((_PHASES * (x * np.conj(y))[None, :]).real.sum(axis=1)))])


def strength(edges: bytes) -> float:
    """How far a picture's edge orientations are from even (the norm of their harmonics): a star field, gravel or
    grass are near 0.05 and their ``turn`` is noise; a street, a face or a page are above 0.15. 0: no edges."""
    if len(edges) != 4 * HARMONICS:
        return 0.0
    return float(np.sqrt((np.frombuffer(edges, dtype="<f2").astype(np.float64) ** 2).sum()))


def hamming(a: int, b: int) -> int:
    """Bits that differ between two signatures (0 to 63)."""
    return (a ^ b).bit_count()

