"""Decode photos in worker processes: each has a GIL of its own, and a decoder that crashes costs one file, not the run.

Threads share one GIL: every photo also holds it for a couple of milliseconds of
Python (Pillow's header parsing, torchvision's wrappers), which caps a many-core box
at a few hundred photos per second whatever its cores (bench/decode_scaling.py).
A forked child inherits the loaded modules and the model's preprocessing, re-reads
the file by path (the page cache has it: the thread that routed it has just read
it) rather than receiving its bytes through a pipe, checks it is the content that
was hashed, and sends back the small uint8 picture.

Photos go to a child several at a time (``decode_many``): each call through a process
pool costs the indexing process about a millisecond of Python (pickling, the pool's
feeder and result threads, a future and its wake-up), as much as decoding a small
photo and all of it under the GIL that every thread of the run shares. One call per
8 photos cuts that 3x (bench/pipeline_ceiling.py).

A child killed by a hostile file (a segfault in a decoder library) breaks the
pool: every call in flight is tried again in a new pool, and each photo of a call
that was in flight in two broken pools is decoded alone in a process of its own,
which tells whether it is the culprit (an error for that file) or a bystander.
"""

from __future__ import annotations

import concurrent.futures as cf
import faulthandler
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from clipsearch import images
from clipsearch.store import content_hash
from indexer.reader import decode_pixels, read_file

Picture = tuple[int, int, Any]  # displayed width, height, uint8 (H, W, 3) numpy array

_child_to_uint8: Callable[[Any], Any] | None = None
_child_limits: tuple[int | None, int] = (None, images.DEFAULT_MAX_PIXELS)


def available() -> bool:
    """Worker processes need fork (Linux): a child starts with the parent's modules and preprocessing, in
    milliseconds; spawned children would import torch again, seconds each."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def _start_child(to_uint8: Callable[[Any], Any], min_side: int | None, max_pixels: int) -> None:
    global _child_to_uint8, _child_limits
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it commits and stops us
    faulthandler.disable()  # a crash is reported as that file's error, not as a dump of a copied thread's stack
    _child_to_uint8, _child_limits = to_uint8, (min_side, max_pixels)
    threading.Thread(target=_exit_with, args=(os.getppid(),), name="parent-watch", daemon=True).start()


def _exit_with(parent: int) -> None:
    """End this child once its parent is gone (a killed run): the pool's pipes, which every child shares, never
    tell it, and an orphan would decode nothing and hold the run's memory and files."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


Request = tuple[str, int, bytes]  # path, size, the content hash the parent read


def _decode_in_child(path: str, size: int, digest: bytes) -> Picture:
    try:
        data = read_file(path, size)
    except OSError as exc:
        raise images.ImageError(f"cannot read: {exc.strerror or exc}") from None
    if content_hash(data) != digest:
        raise images.ImageError("the file changed while it was being indexed (the next run takes it)")
    assert _child_to_uint8 is not None
    width, height, pixels = decode_pixels(data, *_child_limits, _child_to_uint8)
    return width, height, pixels.numpy()


def _decode_all_in_child(requests: list[Request]) -> list[Picture | str]:
    """Each request's picture, or the message of its ``ImageError``: one bad file fails alone."""
    out: list[Picture | str] = []
    for request in requests:
        try:
            out.append(_decode_in_child(*request))
        except images.ImageError as exc:
            out.append(str(exc))
    return out


class DecodePool:
    """``decode_many([(path, size, digest), ...])`` in one of ``workers`` forked processes; thread-safe, blocking."""

    def __init__(self, to_uint8: Callable[[Any], Any], min_side: int | None, max_pixels: int, workers: int) -> None:
        self._args = (to_uint8, min_side, max_pixels)
        self._workers = max(1, workers)
        self._lock = threading.Lock()
        self._pool = self._new_pool(self._workers)
        self.crashes = 0  # pools broken by a dying child, for the curious

    def _new_pool(self, workers: int) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                      initializer=_start_child, initargs=self._args)

    def decode(self, path: str, size: int, digest: bytes) -> Picture:
        """(width, height, uint8 picture) of the file, or ``images.ImageError``."""
        (result,) = self.decode_many([(path, size, digest)])
        if isinstance(result, images.ImageError):
            raise result
        return result

    def decode_many(self, requests: list[Request]) -> list[Picture | images.ImageError]:
        """Each file's (width, height, uint8 picture) or ``images.ImageError``, in order, from one child."""
        if not requests:
            return []
        for _ in range(2):
            pool = self._pool
            try:
                return [_result(r) for r in pool.submit(_decode_all_in_child, requests).result()]
            except BrokenProcessPool:
                self._replace(pool)
        return [self._decode_alone(request) for request in requests]  # in flight in two broken pools

    def _decode_alone(self, request: Request) -> Picture | images.ImageError:
        """One file in a process of its own: does it crash the decoder, or was it a bystander?"""
        with self._new_pool(1) as alone:
            try:
                return _result(alone.submit(_decode_all_in_child, [request]).result()[0])
            except BrokenProcessPool:
                return images.ImageError("the image decoder crashed on this file")

    def _replace(self, broken: cf.ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is broken:  # the first thread to see it breaks replaces it, once
                self.crashes += 1
                self._pool = self._new_pool(self._workers)
        broken.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _result(sent: Picture | str) -> Picture | images.ImageError:
    return images.ImageError(sent) if isinstance(sent, str) else sent
