"""The run's small concurrency tools: a bounded thread map, chunks, a value made once, shorter GIL turns."""

from __future__ import annotations

import concurrent.futures as cf
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

GIL_TURN_SECONDS = 0.0005


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last may be shorter)."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def bounded_map(fn: Callable[[T], R], items: Iterable[T], workers: int, window: int) -> Iterator[R]:
    """``map`` over threads, yielding results as they finish, never more than ``window`` in flight.

    Pillow and torch release the GIL while decoding and resizing, so threads
    overlap with inference without copying pixels between processes. Each call's
    future puts itself on a queue when done, which this thread blocks on:
    ``concurrent.futures.wait`` would instead lock every pending future and hang
    a waiter on each, per result, all under the GIL the readers need.
    """
    if workers <= 0:
        yield from map(fn, items)
        return
    pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
    finished: queue.SimpleQueue[cf.Future[R]] = queue.SimpleQueue()
    in_flight = 0
    try:
        for item in items:
            pool.submit(fn, item).add_done_callback(finished.put)
            in_flight += 1
            if in_flight >= window:
                in_flight -= 1
                yield finished.get().result()
        while in_flight:
            in_flight -= 1
            yield finished.get().result()
    finally:
        # Stopped early (Ctrl-C, an error): the files not started yet are left for the next run, not decoded now.
        pool.shutdown(wait=True, cancel_futures=True)


class Once(Generic[T]):
    """Makes a value (the model, the GPU decoder) the first time any thread needs it, once;
    a failure is re-raised to every caller."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._made = False
        self._value: T | None = None
        self._error: BaseException | None = None

    def if_made(self) -> T | None:
        """The value if some thread has made it already, else None (without making it)."""
        return self._value if self._made else None

    def __call__(self) -> T:
        if not self._made:
            with self._lock:
                if self._error is not None:
                    raise self._error
                if not self._made:
                    try:
                        self._value = self._make()
                    except BaseException as exc:
                        self._error = exc
                        raise
                    self._made = True
        return self._value  # type: ignore[return-value]


@contextmanager
def short_gil_turns(seconds: float = GIL_TURN_SECONDS) -> Iterator[None]:
    """A shorter GIL switch interval while the run lasts (CPython's default is 5 ms).

    A decode worker back from C code (file read, libjpeg, a resize) waits for the GIL until its holder
    releases it, or for the whole interval while the holder runs Python: the indexing thread (catalog, the
    model's kernel launches) nearly always does. A photo crosses a dozen such calls, so at 5 ms a worker
    beside one busy Python thread took several times as long per photo, at 0.5 ms barely longer
    (bench/gil_contention.py; figures in docs/benchmarks.md).
    """
    old = sys.getswitchinterval()
    sys.setswitchinterval(min(old, seconds))
    try:
        yield
    finally:
        sys.setswitchinterval(old)
