"""A picture's coarse colour grid, and how two grids differ once aligned: what tells a copy from a similar shot.

A copy (resized, re-encoded, framed, trimmed by a few percent, lightly recoloured) shows the same picture at a
slightly different scale and place; a shot with something added differs in one place, and a shot from a moved
camera shows a strip the other does not. A 64-bit hash cannot see either (an added object moves it fewer bits than
a 3% crop); a 32x32 grid of colour can, once the two are aligned:

1. ``encode``: the upright picture box-reduced to ``SIDE`` x ``SIDE`` in YCbCr, kept as a JPEG (quality 90, no
   chroma subsampling: ~1.2 KB; chroma at half size let saturated edges pass for changes).
2. ``compare``: the scale and offset of each axis (0.86-1.14, +-10%) that best map one grid onto the other,
   found on the row and column profiles and then checked in 2-D; per channel a gain and offset fitted over the
   overlap (brightness, light colour changes); the residual blurred by ``BLUR`` cells, so that the thin lines a
   resampled edge leaves cancel and a changed patch stays. ``Match.residual`` is its largest value, in units of
   the picture's own contrast; ``Match.new`` says how much of what one picture shows beyond the other is more than
   a flat frame, for the picture that shows less (a crop shows nothing new, a moved camera does on both sides).

``search.duplicates`` holds the thresholds; bench/duplicates.py measured them on its generated ground truth
(docs/benchmarks.md). A leaf: numpy and Pillow only (the decode workers make the grids).
"""

from __future__ import annotations

import io
from typing import NamedTuple

import numpy as np
from PIL import Image

SIDE = 32
QUALITY = 90
BLUR = 1.5  # cells: the residual's blur (1.0 let crops' edges through; 2.0 dimmed the smaller added objects)
SCALES = np.arange(0.86, 1.1401, 0.01)
OFFSETS = np.arange(-0.10, 0.1001, 0.005)
MIN_OVERLAP = 0.75  # of a side, for an alignment to count
TOP = 3  # alignments per axis checked in 2-D
COARSE = 8  # cells a side of the first, unaligned look
COARSE_LIMIT = 0.5  # past this, no alignment is tried: copies measured at most 0.34, unrelated scenes from 0.63


class Match(NamedTuple):
    """Both inf where the pictures differ too much at 8x8 (``COARSE_LIMIT``) to be worth aligning."""

    residual: float  # the largest blurred difference over the overlap, in units of the picture's contrast
    new: float  # the contrast of what the lesser picture shows beyond the other (0: nothing, or a flat frame)
    scale: float = 1.0  # the alignment's scale furthest from 1 (a frame or a crop: below or above 1)


def encode(image: Image.Image) -> bytes:
    grid = image.convert("RGB").resize((SIDE, SIDE), Image.Resampling.BOX).convert("YCbCr")
    buf = io.BytesIO()
    grid.save(buf, "JPEG", quality=QUALITY, subsampling=0)
    return buf.getvalue()


def contrast(data: bytes) -> float | None:
    """The grid's own contrast in levels of 0-255 (the RMS of its channels about their means): a flat colour, a
    transparent picture shown on black and a picture of a pixel or two are near 0. None if unreadable."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            a = np.asarray(im.convert("YCbCr"), dtype=np.float64)
    except (OSError, ValueError, SyntaxError):
        return None
    return float(np.sqrt(((a - a.mean(axis=(0, 1))) ** 2).mean(axis=(0, 1)).sum()))


def decode(data: bytes) -> np.ndarray | None:
    """(3, SIDE, SIDE) float: the channels, centred and scaled together to unit contrast; None if unreadable."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            a = np.asarray(im.convert("YCbCr"), dtype=np.float64)
    except (OSError, ValueError, SyntaxError):
        return None
    if a.shape != (SIDE, SIDE, 3):
        return None
    a = a.transpose(2, 0, 1) - a.mean(axis=(0, 1))[:, None, None]
    return a / (np.sqrt((a**2).mean(axis=(1, 2)).sum()) + 1e-6)


def _maps() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every (scale, offset): the matrix resampling one grid's axis at the other's cells, which cells fall
    wholly inside it, and the (scale, offset)."""
    u = (np.arange(SIDE) + 0.5) / SIDE
    params = np.array([(s, t) for s in SCALES for t in OFFSETS])
    x = (params[:, :1] * u[None, :] + params[:, 1:]) * SIDE - 0.5
    inside = (x >= 0.5) & (x <= SIDE - 1.5)
    x = np.clip(x, 0, SIDE - 1)
    lo = np.floor(x).astype(int)
    hi = np.minimum(lo + 1, SIDE - 1)
    w = x - lo
    m = np.zeros((len(params), SIDE, SIDE))
    rows = np.arange(SIDE)[None, :].repeat(len(params), 0)
    at = np.arange(len(params))[:, None].repeat(SIDE, 1)
    np.add.at(m, (at, rows, lo), 1 - w)
    np.add.at(m, (at, rows, hi), w)
    return m, inside, params


_M, _INSIDE, _PARAMS = _maps()
_M_ROWS = _M.reshape(-1, SIDE).astype(np.float32)  # one matrix product resamples a profile at every alignment
_INSIDE_F = _INSIDE.astype(np.float32)
_INSIDE_N = np.maximum(_INSIDE.sum(axis=1), 1)
_USABLE = _INSIDE.sum(axis=1) >= MIN_OVERLAP * SIDE
_cells = np.arange(SIDE)
_BLUR = np.exp(-0.5 * ((_cells[:, None] - _cells[None, :]) / BLUR) ** 2)
_BLUR /= _BLUR.sum(axis=1, keepdims=True)


def _best_axes(pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    """Indices of the ``TOP`` (scale, offset) that best map profile ``pa`` (channels, SIDE) onto ``pb``."""
    predicted = (_M_ROWS @ pa.T.astype(np.float32)).reshape(len(_M), SIDE, -1)  # (alignments, SIDE, channels)
    predicted -= pb.T[None].astype(np.float32)
    err = np.einsum("nic,nic,ni->n", predicted, predicted, _INSIDE_F) / _INSIDE_N
    err[~_USABLE] = np.inf
    return np.argsort(err)[:TOP]


def _eroded(inside: np.ndarray) -> np.ndarray:
    out = inside.copy()
    at = np.flatnonzero(out)
    if len(at) > 4:
        out[at[0]] = out[at[-1]] = False
    return out


def _beyond(p: int, inverse: bool) -> np.ndarray:
    """Cells of the picture that lie wholly beyond the other under alignment ``p`` (``inverse``: of the other)."""
    s, t = _PARAMS[p]
    u = (np.arange(SIDE) + 0.5) / SIDE
    x = (((u - t) / s) if inverse else (s * u + t)) * SIDE - 0.5
    return (x < -1.0) | (x > SIDE)


def _shows(z: np.ndarray, beyond_x: np.ndarray, beyond_y: np.ndarray) -> float:
    region = beyond_y[:, None] | beyond_x[None, :]
    if region.sum() < 2:
        return 0.0
    return float(np.sqrt(sum(z[c][region].var() for c in range(len(z)))))


def _coarse_difference(za: np.ndarray, zb: np.ndarray) -> float:
    """The RMS difference of the two at ``COARSE`` x ``COARSE``, unaligned, less the outer ring (where frames and
    crops are): a 2-5% crop moves a cell by half its side at most, so copies stay low; it costs an eighth of an
    alignment."""
    f = SIDE // COARSE

    def inner(z: np.ndarray) -> np.ndarray:  # scaled to its own contrast: a white frame round a dark picture
        p = z.reshape(3, COARSE, f, COARSE, f).mean(axis=(2, 4))[:, 1:-1, 1:-1]  # inflates the whole grid's
        p = p - p.mean(axis=(1, 2), keepdims=True)
        return p / (np.sqrt((p**2).mean(axis=(1, 2)).sum()) + 1e-6)

    return float(np.sqrt(((inner(za) - inner(zb)) ** 2).sum(axis=0).mean()))


def compare(a: bytes, b: bytes) -> Match | None:
    """How grid ``b`` differs from grid ``a``; None if either is unreadable."""
    za, zb = decode(a), decode(b)
    if za is None or zb is None:
        return None
    if _coarse_difference(za, zb) > COARSE_LIMIT:
        return Match(float("inf"), float("inf"))
    best: tuple[float, np.ndarray, int, int] | None = None
    across, down = _best_axes(za.mean(axis=1), zb.mean(axis=1)), _best_axes(za.mean(axis=2), zb.mean(axis=2))
    for px in across:
        for py in down:
            mapped = _M[py] @ za @ _M[px].T
            overlap = np.ix_(_INSIDE[py], _INSIDE[px])
            err = float(np.mean([((mapped[c] - zb[c])[overlap] ** 2).mean() for c in range(3)]))
            if best is None or err < best[0]:
                best = (err, mapped, int(px), int(py))
    assert best is not None  # the middle alignment is always usable
    _, mapped, px, py = best
    ix, iy = _eroded(_INSIDE[px]), _eroded(_INSIDE[py])
    overlap = np.ix_(iy, ix)
    contrast = np.sqrt(sum(mapped[c][overlap].var() for c in range(3))) + 1e-6
    residual = 0.0
    for c in range(3):
        x, y = mapped[c][overlap].ravel(), zb[c][overlap].ravel()
        gain, offset = np.linalg.lstsq(np.stack([x, np.ones_like(x)], axis=1), y, rcond=None)[0]
        diff = np.where(np.outer(iy, ix), zb[c] - (gain * mapped[c] + offset), 0.0)
        residual = max(residual, float(np.abs(_BLUR @ diff @ _BLUR.T)[overlap].max()) / contrast)
    new = min(_shows(zb, _beyond(px, False), _beyond(py, False)), _shows(za, _beyond(px, True), _beyond(py, True)))
    scale = max((float(_PARAMS[p][0]) for p in (px, py)), key=lambda v: abs(v - 1.0))
    return Match(residual, new, scale)
