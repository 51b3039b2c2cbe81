"""The plan stage: what each file found needs, decided against the catalog in one place.

A file reached by several paths (a symlink to it, a linked folder, a hard link) is indexed once, at the
first path the walk finds it by without a link (a path through a link only when no other reaches it); the
others are counted as aliases. By its stamp (size, mtime) before it
is opened: *unchanged* (same stamp as its row: only marked
seen), *failed before* (same stamp as a remembered failure: skipped), or a ``Task`` (new, or
changed). By its content once read and hashed (``Contents``): the same content as its own row (a
touched file: *unchanged*), content whose vector is stored (a copy, a rename: *reused*), or new
content for the model. After the sweep (``count_renames``): a reused new path whose content left
the same run at another path was *renamed*, not added and removed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from clipsearch import images, video
from clipsearch.store.layout import CATALOG_NAME
from indexer.items import Task
from indexer.report import Progress, Report
from indexer.walk import Found, Rules, walk

if TYPE_CHECKING:
    from clipsearch.store import StoreWriter


class Planner:
    """Walks the roots and turns what is found into tasks, marking what is unchanged as seen on the way."""

    def __init__(self, store: StoreWriter, roots: Sequence[str], report: Report, progress: Progress) -> None:
        self.store = store
        self.roots = list(roots)
        self.settings = store.catalog.root_settings()
        self.report = report
        self.progress = progress
        self.walked_fully: dict[str, int] = {}  # root -> image files found, set only once its walk finished
        self.aliases = 0  # files found again under another path (a symlink, a linked folder added as a root)
        # During a re-embedding an unchanged file whose content has no new vector yet is read again for it
        self.reembedding = store.catalog.pending_model is not None

    def tasks(self) -> Iterator[Task]:
        extensions = images.supported_extensions() | video.EXTENSIONS
        # Every file found so far, as one int per (device, inode): ~60 bytes a file (60 MB at a million photos, for
        # the length of the walk) where a tuple or the path would take three times that.
        seen: set[int] = set()
        # Files reached through a link wait for the end of the walk: the same file may yet be found by its own path,
        # the one a person expects to see (and that stays when the link goes). Usually a handful.
        linked: dict[int, Found] = {}
        for root in self.roots:
            found_here = 0
            base, rules = self.rules_for(root)
            for found in walk(root, extensions, rules, exclude=[str(self.store.directory)], on_error=self.report.fail,
                              base=base, index_mark=CATALOG_NAME):
                found_here += 1
                key = found.file[0] << 64 | found.file[1]
                if key in seen or (found.linked and key in linked):
                    self.aliases += 1  # the same file again, through a link or a second root: indexed once
                    continue
                if found.linked:
                    linked[key] = found
                    continue
                if linked.pop(key, None) is not None:
                    self.aliases += 1  # found through a link first: its own path is kept instead
                seen.add(key)
                task = self.plan(found)
                if task is not None:
                    yield task
            self.walked_fully[root] = found_here
        for found in linked.values():  # reached only through links
            task = self.plan(found)
            if task is not None:
                yield task

    def plan(self, found: Found) -> Task | None:
        """The task for one file found, or None when it is unchanged (marked seen) or failed before."""
        self.progress.found()
        previous = self.store.catalog.file_row(found.path)
        if previous is not None and (previous.size, previous.mtime_ns) == (found.size, found.mtime_ns) and not (
                self.reembedding and not self.store.catalog.has_target_vector(previous.hash)):
            self.store.mark_seen(previous.id)
            self.report.unchanged += 1
            self.progress.done()
            return None
        if previous is None and self.store.known_failure(found.path, found.size, found.mtime_ns):
            self.progress.done()
            return None
        return Task(found, previous)

    def rules_for(self, folder: str) -> tuple[str, Rules]:
        """The indexed folder that ``folder`` lies in (itself, or the one ``watch`` rescans part of) and its rules."""
        inside = [r for r in self.settings if folder == r or folder.startswith(r.rstrip(os.sep) + os.sep)]
        base = max(inside, key=len, default=folder)
        return base, Rules.from_settings(self.settings.get(base, {}))

    def roots_to_sweep(self, recorded: Sequence[str]) -> list[str]:
        """The roots whose files not seen in this run are gone: those walked to the end, except an indexed root that
        now holds no image at all while the catalog has some there (an unmounted drive?), which is kept."""
        out = []
        for root in self.roots:
            if root not in self.walked_fully:
                continue
            if self.walked_fully[root] == 0 and root in recorded and self.store.catalog.ids_under(root):
                self.report.fail(root, "no images found any more, so the indexed ones were kept (an unmounted drive?); "
                                 "'clipsearch forget FOLDER' drops them")
                continue
            out.append(root)
        return out


class Contents:
    """Whether a hashed file's content needs the model: the one rule, asked by the reader threads before decoding
    and by the indexing thread before embedding.

    ``committed`` answers for the catalog (a thread-safe lookup; for files away from any catalog, nothing is
    stored). Contents embedded since the last commit are kept here in a set: the catalog does not see them yet, and
    a set costs the indexing thread no query (each query hands the GIL to the reader threads and waits to get it
    back)."""

    def __init__(self, committed: Callable[[bytes], bool] | None = None) -> None:
        self._committed = committed or (lambda digest: False)
        self._since_commit: set[bytes] = set()

    def stored(self, digest: bytes) -> bool:
        """The content has a vector stored already (committed, or embedded in this run): this file's own, unchanged
        under a new stamp (``Reused.same_file``), or another file's. Asked of the catalog even for a file's own
        content: after ``--reindex`` its row stays but its vector is gone."""
        return digest in self._since_commit or self._committed(digest)

    def stored_since_read(self, digest: bytes) -> bool:
        """For a file that needed the model when it was read: was its content embedded since, in this run?"""
        return digest in self._since_commit

    def embedded(self, digest: bytes) -> None:
        self._since_commit.add(digest)

    def committed(self) -> None:
        """The catalog now answers for everything embedded so far."""
        self._since_commit.clear()


def count_renames(reused_new: dict[bytes, int], gone: dict[bytes, int]) -> int:
    """How many new paths that reused a stored vector took the place of a path gone in the same run: renames.

    ``reused_new`` and ``gone`` count paths by content hash."""
    return sum(min(count, gone.get(digest, 0)) for digest, count in reused_new.items())
