"""The write stage: store each outcome, commit in chunks, sweep what is gone, and count it all for the report."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from clipsearch.store import FileRecord
from indexer.items import Embedded, Failed, Outcome, Reused
from indexer.report import Progress, Report

if TYPE_CHECKING:
    from clipsearch.store import StoreWriter
    from clipsearch.store.large_index import ShardRunner
    from indexer.engine import Contents


class RunWriter:
    """Puts, touches and failures go into the open transaction; a commit every ``commit_every`` files or
    ``commit_seconds`` makes them durable, so a killed run loses at most that much."""

    def __init__(self, store: StoreWriter, contents: Contents, report: Report, progress: Progress,
                 commit_every: int, commit_seconds: float) -> None:
        self.store = store
        self.contents = contents
        self.report = report
        self.progress = progress
        self.commit_every = commit_every
        self.commit_seconds = commit_seconds
        self._since_commit = 0
        self._last_commit = time.monotonic()
        self._reused_new: dict[bytes, int] = {}  # digest -> new paths that reused it (rename or copy candidates)

    def take(self, outcome: Outcome) -> None:
        task = outcome.task
        found = task.found
        if isinstance(outcome, Failed):
            self.store.fail(found.path, found.size, found.mtime_ns, outcome.error)
            self.report.fail(found.path, outcome.error)
        elif isinstance(outcome, Reused) and outcome.same_file:
            assert task.previous is not None
            self.store.touch(task.previous.id, found.size, found.mtime_ns)
            self.report.unchanged += 1
        else:
            record = FileRecord(found.path, found.size, found.mtime_ns, outcome.digest, outcome.width, outcome.height)
            if isinstance(outcome, Embedded):
                video = (outcome.facts, outcome.moments) if outcome.facts is not None else None
                self.store.put(record, outcome.vector, outcome.meta, outcome.signature, note=outcome.note, video=video)
                if outcome.note:
                    self.report.noted.append({"path": found.path, "note": outcome.note})
            else:
                self.store.put(record, None)
            if task.previous is not None:
                self.report.updated += 1
            elif isinstance(outcome, Reused):
                self._reused_new[outcome.digest] = self._reused_new.get(outcome.digest, 0) + 1
            else:
                self.report.added += 1
        self._since_commit += 1
        self.progress.done()
        if self._since_commit >= self.commit_every or time.monotonic() - self._last_commit > self.commit_seconds:
            self.commit()

    def commit(self) -> None:
        self.store.commit()
        self.contents.committed()
        self._since_commit = 0
        self._last_commit = time.monotonic()

    def sweep(self, roots: Sequence[str]) -> None:
        """Drop the files under ``roots`` that this run did not see, and settle renames against them."""
        gone: dict[bytes, int] = {}
        removed = 0
        for root in roots:
            for _, _, digest in self.store.sweep(root):
                gone[digest] = gone.get(digest, 0) + 1
                removed += 1
        self._settle_counts(gone, removed)

    def _settle_counts(self, gone: dict[bytes, int], removed: int) -> None:
        renamed = count_renames(self._reused_new, gone)
        self.report.renamed += renamed
        self.report.added += sum(self._reused_new.values()) - renamed
        self.report.removed += removed - renamed

    def finish(self, started: float, shard_runner: ShardRunner | None = None) -> None:
        """Log the run in the catalog and runs.log, and bring the FAISS file up to date."""
        self.report.seconds = time.monotonic() - started
        summary = self.report.as_dict()
        summary["failed"] = len(self.report.failed)
        if self.report.noted:
            summary["noted"] = len(self.report.noted)
        self.store.finish(summary, shard_runner)
        self.report.notes.extend(self.store.notes)  # what building the index files had to say


def count_renames(reused_new: dict[bytes, int], gone: dict[bytes, int]) -> int:
    """How many new paths that reused a stored vector took the place of a path gone in the same run: renames.

    ``reused_new`` and ``gone`` count paths by content hash."""
    return sum(min(count, gone.get(digest, 0)) for digest, count in reused_new.items())
