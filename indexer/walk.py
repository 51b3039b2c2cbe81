"""Find the image files under a folder, safely: symlink loops, broken links and unreadable folders never stop it."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from clipsearch.errors import UserError


@dataclass(frozen=True)
class Found:
    path: str  # absolute, as reached from the root (symlinks not resolved)
    size: int
    mtime_ns: int
    file: tuple[int, int] = (0, 0)  # (device, inode) of the file itself: the same file reached by two paths shares it
    linked: bool = False  # reached through a symlink (the file's own, or a linked folder on the way from the root)


EXCLUDE_RULES = """Exclusions are glob patterns as in a .gitignore, relative to the indexed folder: a name alone
(Trash, *.tmp.jpg) matches a file or folder of that name at any depth; a pattern with a / in it is anchored to the
folder (2019/private; a leading / anchors a name: /cache is only the top-level one); a trailing / matches folders
only (cache/); * and ? never match a /, ** matches any number of folders (**/cache, raw/**/*.tif); [abc] a set;
a backslash makes the next character literal. An excluded folder leaves out everything in it; ! is not
supported."""


@dataclass(frozen=True)
class Pattern:
    """One exclusion pattern (``EXCLUDE_RULES``), compiled: which entries it leaves out."""

    text: str
    regex: re.Pattern[str]
    anchored: bool  # matched against the path from the root; else against each entry's name
    folders_only: bool

    @classmethod
    def parse(cls, text: str) -> Pattern:
        body = text
        if body.startswith("!"):
            raise UserError(f"--exclude {text}: re-including with ! is not supported (\\! is a name starting with !)")
        folders_only = body.endswith("/") and not body.endswith("\\/")
        body = body.rstrip("/") if folders_only else body
        if not body or body == "/":
            raise UserError(f"--exclude {text!r} matches nothing: give a name or a path (Trash, 2019/private)")
        anchored = "/" in body
        return cls(text, re.compile(_translate(body.lstrip("/") if anchored else body)), anchored, folders_only)

    def matches(self, relative: str, is_folder: bool) -> bool:
        """Whether the entry at ``relative`` ("/"-separated, under the root) is left out by this pattern itself
        (not by a folder above it: ``Rules.skips`` looks at those)."""
        if self.folders_only and not is_folder:
            return False
        return self.regex.fullmatch(relative if self.anchored else relative.rsplit("/", 1)[-1]) is not None


def _translate(glob: str) -> str:
    """A gitignore glob as a regular expression over a "/"-separated path."""
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if c == "*" and glob.startswith("**", i) and (i == 0 or glob[i - 1] == "/") and (i + 2 == n or glob[i + 2] == "/"):
            if i + 2 == n:
                out.append(".*")  # a/** : everything inside a
                i += 2
            else:
                out.append("(?:.*/)?")  # **/ : any number of folders, none included
                i += 3
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and (end := _class_end(glob, i)) > 0:
            inner = glob[i + 1 : end]
            negated = inner[:1] in ("!", "^")
            inner = inner[1:] if negated else inner
            out.append("[" + ("^/" if negated else "") + inner.replace("\\", "\\\\") + "]")
            i = end + 1
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(glob[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def _class_end(glob: str, start: int) -> int:
    """Where the set opened at ``start`` closes (-1: it does not, and the [ is literal)."""
    j = start + 1
    if j < len(glob) and glob[j] in ("!", "^"):
        j += 1
    if j < len(glob) and glob[j] == "]":
        j += 1
    end = glob.find("]", j)
    return end if end > 0 and "/" not in glob[start:end] else -1


@dataclass(frozen=True)
class Rules:
    """What the walk of one indexed folder (a root) skips, kept in the index with the root so that every later run
    and ``watch`` follow it: hidden entries (dot-names, macOS ``._*`` files) unless ``include_hidden``, and paths
    matching one of the ``exclude`` patterns (``EXCLUDE_RULES``: a .gitignore's)."""

    include_hidden: bool = False
    exclude: tuple[str, ...] = ()
    patterns: tuple[Pattern, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "patterns", tuple(Pattern.parse(p) for p in self.exclude))

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

    def skips(self, relative: str, is_folder: bool | None = None) -> bool:
        """Whether the walk skips the entry at ``relative`` (a path under the root, "/"-separated on POSIX): it is
        hidden or excluded, or a folder on the way to it is (what ``watch`` asks of a changed path). ``is_folder``
        None: a name without an image extension counts as a folder (a path that is gone cannot be asked)."""
        parts = [part for part in relative.split(os.sep) if part not in ("", ".")]
        if not self.include_hidden and any(part.startswith(".") for part in parts):
            return True
        for i in range(len(parts) if self.patterns else 0):
            last = i == len(parts) - 1
            folder = not last or (is_folder if is_folder is not None else not os.path.splitext(parts[i])[1])
            if self.leaves_out("/".join(parts[: i + 1]), folder):
                return True
        return False

    def leaves_out(self, relative: str, is_folder: bool) -> bool:
        """Whether an exclusion matches the entry at ``relative`` itself ("/"-separated), whatever is above it: what
        the walk asks of each entry, the folders above it having passed already."""
        return any(pattern.matches(relative, is_folder) for pattern in self.patterns)


def escape(path: str) -> str:
    """``path`` ("/"-separated) as a pattern that matches it alone: every character special to a pattern made
    literal."""
    return re.sub(r"([*?\[\\!])", r"\\\1", path)


def walk(
    root: str,
    extensions: Collection[str],
    rules: Rules = Rules(),
    exclude: Collection[str] = (),
    on_error: Callable[[str, str], None] | None = None,
    base: str | None = None,
    index_mark: str | None = None,
) -> Iterator[Found]:
    """Yield image files under ``root`` in a stable (sorted, depth-first) order.

    Symlinked folders are followed once: each directory is entered at most once
    (by device and inode), so loops and links back into the tree cannot repeat
    or hang the walk. ``rules`` say what to skip, with paths relative to ``base``
    (the indexed folder ``root`` lies in; ``root`` itself by default). Folders in
    ``exclude`` (the index directory itself) are never entered, nor is any folder that holds a file named
    ``index_mark`` (another clipsearch index: its thumbnails are no one's photos).
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
        if index_mark is not None and any(entry.name == index_mark for entry in entries):
            continue
        subfolders = []
        for entry in entries:
            if not rules.include_hidden and entry.name.startswith("."):
                continue
            try:
                if patterns and rules.leaves_out(os.path.relpath(entry.path, base).replace(os.sep, "/"), entry.is_dir()):
                    continue
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
