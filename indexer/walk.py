"""Find the image files under a folder, safely: symlink loops, broken links and unreadable folders never stop it."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Found:
    path: str  # absolute, as reached from the root (symlinks not resolved)
    size: int
    mtime_ns: int
    file: tuple[int, int] = (0, 0)  # (device, inode) of the file itself: the same file reached by two paths shares it


def walk(
    root: str,
    extensions: Collection[str],
    include_hidden: bool = False,
    exclude: Collection[str] = (),
    on_error: Callable[[str, str], None] | None = None,
) -> Iterator[Found]:
    """Yield image files under ``root`` in a stable (sorted, depth-first) order.

    Symlinked folders are followed once: each directory is entered at most once
    (by device and inode), so loops and links back into the tree cannot repeat
    or hang the walk. Hidden entries (dot-names, which includes macOS ``._*``
    AppleDouble files) are skipped unless ``include_hidden``. Folders in
    ``exclude`` (the index directory itself) are never entered.
    """
    excluded = {os.path.abspath(p) for p in exclude}
    try:
        st = os.stat(root)
    except OSError as exc:
        if on_error:
            on_error(root, exc.strerror or str(exc))
        return
    visited = {(st.st_dev, st.st_ino)}
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if on_error:
                on_error(folder, f"cannot read folder: {exc.strerror or exc}")
            continue
        subfolders = []
        for entry in entries:
            if not include_hidden and entry.name.startswith("."):
                continue
            try:
                if entry.is_dir():
                    st = entry.stat()
                    key = (st.st_dev, st.st_ino)
                    if key in visited or entry.path in excluded:
                        continue
                    visited.add(key)
                    subfolders.append(entry.path)
                elif entry.is_file() and os.path.splitext(entry.name)[1].lower() in extensions:
                    st = entry.stat()
                    yield Found(entry.path, st.st_size, st.st_mtime_ns, (st.st_dev, st.st_ino))
            except OSError:
                continue  # broken link, vanished or unreadable entry: not an image we can index
        stack.extend(reversed(subfolders))
