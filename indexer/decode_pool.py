"""Decode photos in worker processes: each has a GIL of its own, and a decoder that crashes costs one file, not the run.

Threads share one GIL: every photo also holds it for a couple of milliseconds of
Python (Pillow's header parsing, torchvision's wrappers), which caps a many-core box
at a few hundred photos per second whatever its cores (bench/decode_scaling.py).
A child re-reads the file by path (the page cache has it: the thread that routed it
has just read it) rather than receiving its bytes through a pipe, checks it is the
content that was hashed, and sends back the small uint8 picture.

The children are forked from a small server process (multiprocessing's forkserver)
that has imported Pillow, numpy and this module, never from the run itself: the run
has threads (the walk and catalog, readers, a progress bar), and a child forked while
one of them held a lock inherits it locked. A forked child that collected an inherited
SQLite connection then waited forever for SQLite's allocator mutex, and the run with
it (bench/pipeline_ceiling.py under a profiler). What a child needs of the model is
its resize and crop, a picklable ``geometry.Plan``: it never imports torch, so it
starts in a fraction of a second and holds little memory of its own.

Photos go to a child several at a time (``decode_many``): each call through a process
pool costs the indexing process Python (pickling, the pool's feeder and result threads,
a future and its wake-up) about as costly as decoding a small photo, and all of it under
the GIL that every thread of the run shares. One call per
8 photos cuts that several-fold (bench/pipeline_ceiling.py; docs/benchmarks.md).

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
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from clipsearch import images, video
from clipsearch.hashing import content_hash, file_content_hash
from indexer.cpu_decode import Film, decode_pixels, decode_video
from indexer.file_bytes import read_file

Picture = tuple[int, int, Any, Any, Any, Any]  # displayed width, height, uint8 (H, W, 3) array, PhotoMeta, Signature, note
Plan = Callable[[Any], Any]  # upright RGB PIL image -> uint8 (H, W, 3) numpy array; picklable (``geometry.Plan``)

# What the server imports once, so that each child it forks starts with them: no torch among them.
PRELOAD = ["indexer.decode_pool", "clipsearch.encoders.geometry", "numpy"]

_child_plan: Plan | None = None
_child_limits: tuple[int | None, int] = (None, images.DEFAULT_MAX_PIXELS)


def available() -> bool:
    """Worker processes run where they are forked from a server process (Linux: the only platform they are tested
    on); elsewhere the run decodes in threads."""
    return sys.platform.startswith("linux") and "forkserver" in multiprocessing.get_all_start_methods()


def _context() -> Any:
    from indexer.worker_context import WithoutMain  # forkserver exists only where fds can be sent (not Windows)

    context = WithoutMain()
    context.set_forkserver_preload(PRELOAD)  # heeded when the server starts: the first pool of this process
    return context


def _start_child(plan: Plan, min_side: int | None, max_pixels: int) -> None:
    global _child_plan, _child_limits
    # Ctrl-C (the terminal's process group) and SIGTERM (systemd's whole cgroup) are the run's to handle: it commits
    # and stops us
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    faulthandler.disable()  # a crash is reported as that file's error, not as a stack dump
    _child_plan, _child_limits = plan, (min_side, max_pixels)
    images.register_plugins()  # the formats the run walks for (HEIC, AVIF): nothing is inherited from it
    threading.Thread(target=_exit_with_the_run, name="run-watch", daemon=True).start()


def _exit_with_the_run() -> None:
    """End this child once the run is gone (killed): the pool's pipes, which every child shares, never tell it,
    and an orphan would decode nothing and hold memory and files. Its parent is the fork server, which lives as
    long as its children do; ``parent_process()`` is the run, whose end closes the pipe it waits on."""
    run = multiprocessing.parent_process()
    if run is None:
        return
    run.join()
    os._exit(0)


Request = tuple[str, int, bytes]  # path, size, the content hash the parent read


# A video that takes this long (``video.Rule.seconds`` bounds its decoding; this is for a call into FFmpeg that
# never returns) ends its worker: the pool's crash handling then lists the file as failed, and the run goes on.
VIDEO_HANG_SECONDS = 300


def _decode_in_child(path: str, size: int, digest: bytes) -> Picture | Film:
    if video.is_video(path):
        return _video_in_child(path, digest)
    try:
        data = read_file(path, size)
    except OSError as exc:
        raise images.ImageError(f"cannot read: {exc.strerror or exc}") from None
    if content_hash(data) != digest:
        raise images.ImageError("the file changed while it was being indexed (the next run takes it)")
    assert _child_plan is not None
    return decode_pixels(data, *_child_limits, _child_plan)


def _video_in_child(path: str, digest: bytes) -> Film:
    try:
        if file_content_hash(path) != digest:
            raise images.ImageError("the file changed while it was being indexed (the next run takes it)")
    except OSError as exc:
        raise images.ImageError(f"cannot read: {exc.strerror or exc}") from None
    assert _child_plan is not None
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(VIDEO_HANG_SECONDS)
    try:
        return decode_video(path, _child_limits[0], _child_plan)
    finally:
        signal.alarm(0)


def _decode_all_in_child(requests: list[Request]) -> list[Picture | Film | str]:
    """Each request's picture, or the message of its ``ImageError``: one bad file fails alone."""
    out: list[Picture | str] = []
    for request in requests:
        try:
            out.append(_decode_in_child(*request))
        except images.ImageError as exc:
            out.append(str(exc))
    return out


def _started() -> bool:
    return True


STARTUP_SECONDS = 120.0


class WorkersDidNotStart(Exception):
    """Not even one decode worker process could start."""


class DecodePool:
    """``decode_many([(path, size, digest), ...])`` in one of ``workers`` processes, each picture made by ``plan``
    (sent to them pickled); thread-safe, blocking. ``WorkersDidNotStart`` when none can start."""

    def __init__(self, plan: Plan, min_side: int | None, max_pixels: int, workers: int) -> None:
        self._args = (plan, min_side, max_pixels)
        self._workers = max(1, workers)
        self._lock = threading.Lock()
        self._pool = self._new_pool(self._workers)
        self.crashes = 0  # pools broken by a dying child, for the curious
        self._check_started()

    def _check_started(self) -> None:
        """One worker must start before any file goes to one. Were none able to (a process limit; a main script
        that a child's start-up runs again, without the ``if __name__ == "__main__"`` guard), every file would
        fail as a crash of its decoder, and be remembered as failed until it changes."""
        try:
            self._pool.submit(_started).result(timeout=STARTUP_SECONDS)
        except (BrokenProcessPool, cf.TimeoutError, OSError) as exc:
            self._pool.shutdown(wait=False, cancel_futures=True)
            raise WorkersDidNotStart(str(exc) if isinstance(exc, OSError) else "see the messages above") from None

    def _new_pool(self, workers: int) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(workers, mp_context=_context(),
                                      initializer=_start_child, initargs=self._args)

    def decode(self, path: str, size: int, digest: bytes) -> Picture:
        """(width, height, uint8 picture) of the file, or ``images.ImageError``."""
        (result,) = self.decode_many([(path, size, digest)])
        if isinstance(result, images.ImageError):
            raise result
        return result

    def decode_many(self, requests: list[Request]) -> list[Picture | Film | images.ImageError]:
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

    def _decode_alone(self, request: Request) -> Picture | Film | images.ImageError:
        """One file in a process of its own: does it crash the decoder, or was it a bystander?"""
        with self._new_pool(1) as alone:
            try:
                return _result(alone.submit(_decode_all_in_child, [request]).result()[0])
            except BrokenProcessPool:
                if video.is_video(request[0]):
                    return images.ImageError(f"the video decoder crashed on this file (or hung past {VIDEO_HANG_SECONDS} s)")
                return images.ImageError("the image decoder crashed on this file")

    def _replace(self, broken: cf.ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is broken:  # the first thread to see it breaks replaces it, once
                self.crashes += 1
                self._pool = self._new_pool(self._workers)
        broken.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _result(sent: Picture | Film | str) -> Picture | Film | images.ImageError:
    return images.ImageError(sent) if isinstance(sent, str) else sent
