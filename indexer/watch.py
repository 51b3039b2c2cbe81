"""Follow file-system events under the indexed folders and hand the changed folders on, debounced."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence

from clipsearch import images, video
from indexer.walk import Rules


def _minimal(folders: set[str]) -> list[str]:
    """Drop folders that lie inside another one of the set (scanning the outer one covers them)."""
    out: list[str] = []
    for folder in sorted(folders):
        if not any(folder == kept or folder.startswith(kept.rstrip(os.sep) + os.sep) for kept in out):
            out.append(folder)
    return out


def watch_folders(
    roots: Sequence[str],
    on_change: Callable[[list[str]], None],
    debounce: float = 2.0,
    ready: Callable[[list[str]], None] | None = None,
    stop: threading.Event | None = None,
    exclude: Collection[str] = (),
    rules: Mapping[str, Rules] | None = None,
) -> None:
    """Call ``on_change(folders)`` once things have been quiet for ``debounce`` seconds after a change.

    A changed image file reports its folder; a created, moved or deleted folder
    reports its parent, so a whole album copied in or removed is one rescan.
    What the walk skips never counts: what each root's ``rules`` leave out (hidden
    files and folders by default, exclusions), and the folders in ``exclude`` (the
    index directory, which every run writes to: inside a watched folder it would
    start a run after each run). Runs until ``stop`` is set or Ctrl-C.
    """
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    extensions = images.supported_extensions() | video.EXTENSIONS
    roots = [os.path.abspath(r) for r in roots]
    excluded = [os.path.abspath(e) for e in exclude]
    pending: set[str] = set()
    last_event = [0.0]
    lock = threading.Lock()

    def inside(folder: str, top: str) -> bool:
        return folder == top or folder.startswith(top.rstrip(os.sep) + os.sep)

    def walked(path: str) -> bool:
        """Whether the walk would reach ``path``: under a root, not in an excluded folder, nothing hidden on the way."""
        root = next((r for r in roots if inside(path, r)), None)
        if root is None or any(inside(path, e) for e in excluded):
            return False
        is_folder = os.path.isdir(path) if os.path.lexists(path) else None  # None: gone, told by its name
        return path == root or not (rules or {}).get(root, Rules()).skips(os.path.relpath(path, root), is_folder)

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.event_type in ("opened", "closed_no_write"):
                return
            if event.is_directory and event.event_type == "modified":
                return  # a file in it changed: the file's own event names the folder to rescan
            paths = [os.fsdecode(event.src_path)]
            if getattr(event, "dest_path", ""):
                paths.append(os.fsdecode(event.dest_path))
            for path in paths:
                if not walked(path):
                    continue
                if event.is_directory:
                    folder = os.path.dirname(path.rstrip(os.sep))
                elif os.path.splitext(path)[1].lower() in extensions:
                    folder = os.path.dirname(path)
                else:
                    continue
                if not walked(folder):
                    continue
                with lock:
                    pending.add(folder)
                    last_event[0] = time.monotonic()

    observer = Observer()
    for root in roots:
        observer.schedule(Handler(), root, recursive=True)
    observer.start()
    try:
        if ready:
            ready(list(roots))
        while stop is None or not stop.is_set():
            time.sleep(0.1)
            with lock:
                due = bool(pending) and time.monotonic() - last_event[0] >= debounce
                batch = _minimal(pending) if due else []
                if due:
                    pending.clear()
            if batch:
                on_change(batch)
    finally:
        observer.stop()
        observer.join(timeout=5)
