"""One file's bytes and picture on the CPU: what a decode thread or a decode worker process does per photo.

A leaf with no torch and no store: the worker processes import it (``indexer.decode_pool``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from clipsearch import images, signature
from clipsearch.photo_meta import PhotoMeta

MAX_FILE_BYTES = 1 << 30  # a single "image" over 1 GiB is refused rather than read into memory

R = TypeVar("R")


def read_file(path: str, size: int | None = None) -> bytes:
    """The file's bytes, or its first ``MAX_FILE_BYTES + 1`` (so a caller sees it is too big).

    One unbuffered read() of ``size`` (the walk's, else fstat's) + 1 bytes: each call that releases the GIL
    costs a wait to get it back while other threads run Python (up to the switch interval), and a buffered
    ``read(huge)`` makes two calls and a 1 GiB allocation per photo. A file whose size is not ``size`` any
    more is read on to its end.
    """
    with open(path, "rb", buffering=0) as f:
        if size is None:
            size = os.fstat(f.fileno()).st_size
        data = f.read(min(size, MAX_FILE_BYTES) + 1)
        if len(data) == size or len(data) > MAX_FILE_BYTES:
            return data
        parts, total = [data], len(data)
        while total <= MAX_FILE_BYTES and (chunk := f.read(min(1 << 24, MAX_FILE_BYTES + 1 - total))):
            parts.append(chunk)
            total += len(chunk)
    return b"".join(parts)


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
