"""The plan stage: what each file found needs, decided against the catalog in one place.

A file reached by several paths (a symlink to it, a linked folder, a hard link) is indexed once, at the
first path the walk finds it by without a link (a path through a link only when no other reaches it); the
others are counted as aliases. By its stamp (size, mtime) before it
is opened: *unchanged* (same stamp as its row: only marked
seen), *failed before* (same stamp as a remembered failure: skipped), or a ``Task`` (new, or
changed). What a task's content needs once read and hashed is the engine's to tell (``indexer.engine.Contents``);
which reused new paths were renames, the writer's after the sweep (``indexer.write.count_renames``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
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
