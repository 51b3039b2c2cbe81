"""Stand-ins for hostile files that crash a decoder library, for the decode worker processes to survive.

A plan (``geometry.Plan``) is what a decode worker process receives of the model, pickled: this one kills its
process as a segfault would, on the one picture size that only the "hostile" test file has. It lives in a
module of its own so that a worker unpickling it imports nothing heavy.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass
from typing import Any

POISON_SIZE = (97, 71)  # width, height: small enough that no decode shrinks it before the plan sees it


@dataclass(frozen=True)
class CrashOnPoison:
    plan: Any

    def __call__(self, image: Any) -> Any:
        if image.size == POISON_SIZE:
            os.kill(os.getpid(), signal.SIGSEGV)  # only ever in a worker process
        return self.plan(image)


HELD = threading.Lock()  # held by a thread of the test's own process while worker processes start


@dataclass(frozen=True)
class TakesLock:
    """A plan that takes ``HELD`` as library code takes its own locks (SQLite's allocator mutex, a stream's
    buffer lock): in a child forked from the test's process while another thread held it, that waits forever."""

    plan: Any

    def __call__(self, image: Any) -> Any:
        with HELD:
            return self.plan(image)


@dataclass(frozen=True)
class NoStart:
    """``plan`` in this process; in a worker process it ends the worker before it starts (unpickling it exits):
    as when no worker can start at all (a process limit, a main script that starts a run again when a child
    imports it)."""

    plan: Any

    def __reduce__(self) -> tuple[Any, tuple[int]]:
        return os._exit, (3,)

    def __call__(self, image: Any) -> Any:
        return self.plan(image)
