"""Find the image files under a folder, safely: symlink loops, broken links and unreadable folders never stop it."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Found:
    path: str  # absolute, as reached from the root (symlinks not resolved)
    size: int
    mtime_ns: int
    file: tuple[int, int] = (0, 0)  # (device, inode) of the file itself: the same file reached by two paths shares it
    linked: bool = False  # reached through a symlink (the file's own, or a linked folder on the way from the root)


@dataclass(frozen=True)
class Rules:
    """What the walk of one indexed folder (a root) skips, kept in the index with the root so that every later run
    and ``watch`` follow it: hidden entries (dot-names, macOS ``._*`` files) unless ``include_hidden``, and paths
    matching one of the ``exclude`` glob patterns, relative to the root ("Trash", "2019/private", "*/tmp*")."""

    include_hidden: bool = False
    exclude: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Rules:
        return cls(bool(settings.get("include_hidden", False)), tuple(settings.get("exclude", ())))

    def settings(self) -> dict[str, Any]:
        return {"include_hidden": self.include_hidden, "exclude": list(self.exclude)}

    def changed(self, include_hidden: bool | None = None, exclude: Collection[str] = (), clear: bool = False) -> Rules:
        """These rules with what the user changed: hidden files on or off (None: as they were), patterns added, or
        every pattern dropped first (``clear``)."""
        kept = () if clear else self.exclude
        return Rules(self.include_hidden if include_hidden is None else include_hidden,
                     (*kept, *(p for p in exclude if p not in kept)))

    def skips(self, relative: str) -> bool:
        """Whether the walk skips the entry at ``relative`` (a path under the root, "/"-separated on POSIX)."""
        parts = relative.split(os.sep)
        if not self.include_hidden and any(part.startswith(".") for part in parts if part not in ("", ".")):
            return True
        return any(fnmatch.fnmatchcase(relative, pattern) for pattern in self.exclude)


def walk(
    root: str,
    extensions: Collection[str],
    rules: Rules = Rules(),
    exclude: Collection[str] = (),
    on_error: Callable[[str, str], None] | None = None,
    base: str | None = None,
) -> Iterator[Found]:
    """Yield image files under ``root`` in a stable (sorted, depth-first) order.

    Symlinked folders are followed once: each directory is entered at most once
    (by device and inode), so loops and links back into the tree cannot repeat
    or hang the walk. ``rules`` say what to skip, with paths relative to ``base``
    (the indexed folder ``root`` lies in; ``root`` itself by default). Folders in
    ``exclude`` (the index directory itself) are never entered.
    """
    excluded = {os.path.abspath(p) for p in exclude}
    base = root if base is None else base
    patterns = bool(rules.exclude)
    try:
        st = os.stat(root)
    except OSError as exc:
        if on_error:
            on_error(root, exc.strerror or str(exc))
        return
    visited = {(st.st_dev, st.st_ino)}
    stack = [(root, False)]
    while stack:
        folder, folder_linked = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if on_error:
                on_error(folder, f"cannot read folder: {exc.strerror or exc}")
            continue
        subfolders = []
        for entry in entries:
            if not rules.include_hidden and entry.name.startswith("."):
                continue
            if patterns and rules.skips(os.path.relpath(entry.path, base)):
                continue
            try:
                if entry.is_dir():
                    st = entry.stat()
                    key = (st.st_dev, st.st_ino)
                    if key in visited or entry.path in excluded:
                        continue
                    visited.add(key)
                    subfolders.append((entry.path, folder_linked or entry.is_symlink()))
                elif entry.is_file() and os.path.splitext(entry.name)[1].lower() in extensions:
                    st = entry.stat()
                    yield Found(entry.path, st.st_size, st.st_mtime_ns, (st.st_dev, st.st_ino),
                                folder_linked or entry.is_symlink())
            except OSError:
                continue  # broken link, vanished or unreadable entry: not an image we can index
        stack.extend(reversed(subfolders))
