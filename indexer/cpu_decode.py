"""One file's picture on the CPU, from its bytes (a video: from its path): what a decode thread or a decode worker
process does per photo.

A leaf with no torch and no store: the worker processes import it (``indexer.decode_pool``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from clipsearch import images, signature
from clipsearch.photo_meta import PhotoMeta

R = TypeVar("R")


def decode_pixels(data: bytes, min_side: int | None, max_pixels: int,
                  transform: Callable[[Any], R]) -> tuple[int, int, R, PhotoMeta, signature.Signature, str | None]:
    """(displayed width, height, ``transform`` of the upright picture, what its header says, its perceptual
    signature, a note: ``images.Decoded.note``), or ``images.ImageError``: what a decode worker makes of a file, in
    a thread or in a worker process."""
    decoded = images.decode(data, min_side, max_pixels)
    try:
        return (decoded.width, decoded.height, transform(decoded.image), decoded.meta,
                signature.of(decoded.image), decoded.note)
    except Exception as exc:  # noqa: BLE001 - a transform failure is still only this file's problem
        raise images.ImageError(f"{type(exc).__name__}: {exc}") from None


Film = tuple[Any, list[tuple[float, Any]], PhotoMeta, signature.Signature, "str | None"]  # facts, moments, meta, sign, note


def decode_video(path: str, min_side: int | None, transform: Callable[[Any], R]) -> Film:
    """(facts, [(t, ``transform`` of the frame)], what its container says, the first moment's signature, a note), or
    ``images.ImageError``: what a decode worker makes of a video (``clipsearch.video.sample``), by path."""
    from clipsearch import video

    try:
        clip = video.sample(path, transform, min_side)
        return clip.facts, clip.moments, clip.meta, signature.of(clip.poster), clip.note
    except video.VideoError as exc:
        raise images.ImageError(str(exc)) from None
    except images.ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever FFmpeg or a transform raises is still only this file's problem
        raise images.ImageError(f"cannot decode this video: {type(exc).__name__}: {exc}") from None
