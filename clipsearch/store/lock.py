"""The index's write lock: one writer at a time, and a lock that dies with its holder."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from clipsearch.errors import IndexLocked, ReadOnlyIndex, UserError

_HELD: set[int] = set()  # write.lock descriptors this process holds


def _drop_locks_in_child() -> None:
    """A forked child lets go of the index's write lock.

    The flock belongs to the open file, which a child shares: a child that outlived a killed run
    would keep the index locked. Closing the child's copy leaves the parent's lock as it was.
    """
    for fd in _HELD:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_locks_in_child)


class WriteLock:
    """An exclusive flock on ``write.lock``. The kernel drops it when its holder dies, so a lock left by a killed
    run is simply free; the PID written inside is only for messages."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        _HELD.add(fd)

    @classmethod
    def take(cls, path: Path, on_wait: Callable[[str], None] | None = None) -> WriteLock:
        """Take the lock, or fail at once; with ``on_wait``, tell it who holds the lock and wait."""
        import fcntl

        existed = path.parent.is_dir()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if existed:
                raise ReadOnlyIndex(f"cannot write to the index at {path.parent}: {exc.strerror} (a read-only index can "
                                "be searched and checked, not changed)") from None
            raise UserError(f"cannot create the index at {path.parent}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            if on_wait is None:
                os.close(fd)
                raise IndexLocked(
                    f"the index at {path.parent} is locked by PID {holder} (another 'clipsearch index' is running; "
                    "--wait waits for it)"
                ) from None
            on_wait(holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(fd)

    def release(self) -> None:
        _HELD.discard(self._fd)
        os.close(self._fd)
