"""One indexing run, stage by stage: plan -> decode + embed -> write.

    plan     (indexer.plan)      walk the roots; sort each file against the catalog by its stamp
    decode   (indexer.reader)    read and hash in reader threads; route to the CPU or GPU decoder
    embed    (indexer.embed)     batch the decoded photos on the model
    write    (indexer.write)     store, commit in chunks, sweep what is gone
    backfill (indexer.backfill)  headers and signatures of photos indexed before they were kept (no model)
    tag      (indexer.tag)       tag every stored content that has no current tags (from its vector)
    words    (indexer.words)     names and carried words of new files; text in pictures not read yet (no model)
    faces    (indexer.faces)     find the faces of every stored content not looked at yet; group them into people

Decode + embed (``indexer.pipeline.DecodeEmbed``) needs neither the catalog nor the lock: this run
gives it the plan's tasks and the catalog's answer to "is this content stored?", and stores what it
hands back. Ctrl-C commits what is done.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from clipsearch.display import counted
from clipsearch.errors import Terminated, UserError
from clipsearch.store.words import default_mode as words_default_mode
from indexer.backfill import MetadataBackfill, SignatureBackfill
from indexer.faces import FaceStage
from indexer.options import Options
from indexer.pipeline import DecodeEmbed
from indexer.plan import Contents, Planner
from indexer.report import Progress, Report
from indexer.tag import TagStage
from indexer.words import WordsStage
from indexer.write import RunWriter

if TYPE_CHECKING:
    from clipsearch.encoders import Encoder
    from clipsearch.store import StoreWriter
    from indexer.ray_engine import RayDecodeEmbed


class IndexRun:
    """Bring the index up to date with ``roots`` (absolute folder paths).

    ``get_encoder`` is called only once there is something to embed, so a run that finds nothing new never pays
    for loading the model. With ``record_roots`` False the folders are scanned (walked and swept) without becoming
    indexed folders of their own: how ``watch`` rescans one album.
    """

    def __init__(self, store: StoreWriter, roots: Sequence[str], get_encoder: Callable[[], Encoder],
                 options: Options | None = None, progress: Progress | None = None, record_roots: bool = True) -> None:
        self.store = store
        self.roots = list(roots)
        self.options = options or Options()
        self.progress = progress or Progress()
        self.record_roots = record_roots
        self.report = Report()
        contents = Contents(store.catalog.vector_lookup())
        self.plan = Planner(store, self.roots, self.report, self.progress)
        self.ray: RayDecodeEmbed | None = None  # the Ray engine, whose cluster also builds the index's shards
        if self.options.engine == "ray":
            from indexer.ray_engine import RayDecodeEmbed

            self.stages: DecodeEmbed | RayDecodeEmbed = RayDecodeEmbed(get_encoder, self.options, contents,
                                                                       store.catalog.content_prefixes, self.roots)
            self.ray = self.stages
        else:
            self.stages = DecodeEmbed(get_encoder, self.options, contents)
        self.writer = RunWriter(store, contents, self.report, self.progress, self.options.commit_every,
                                self.options.commit_seconds)

    def run(self) -> Report:
        try:
            return self._run()
        finally:  # the Ray engine keeps its cluster through the index build, for the shards
            if self.ray is not None:
                self.ray.close_cluster()

    def _run(self) -> Report:
        started = time.monotonic()
        self.store.begin_run(self.roots if self.record_roots else [])
        recorded = self.store.catalog.roots()
        try:
            for outcome in self.stages.run(self.plan.tasks()):
                self.writer.take(outcome)
        except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (``Terminated``) where the CLI turned it into one
            self.report.interrupted = True  # decoded but not stored: the next run does those files
            self.report.terminated = isinstance(stop, Terminated)
        finally:
            try:
                self.writer.commit()
            finally:  # even when the commit fails (a full disk): workers left running break the interpreter's exit
                self.stages.close()
        if not self.report.interrupted:
            self.writer.sweep(self.plan.roots_to_sweep(recorded))
            if self.store.swap_pending():  # every file has its new vector: the re-embedding takes their place
                model = self.store.catalog.model
                self.report.notes.append(f"re-embedded with {model.spec if model else '?'}: "
                                         "searches use the new vectors from now on")
            elif self.store.catalog.pending_model is not None:
                self.report.notes.append(f"the re-embedding with {self.store.catalog.pending_model.spec} is not finished: "
                                         "searches use the old vectors until a run finishes it")
            try:  # Ctrl-C or SIGTERM in these: what was done is committed, the next run does the rest
                MetadataBackfill(self.store, self.report).run()
                SignatureBackfill(self.store, self.report, self.options.decode_workers()).run()
                if self.store.catalog.pending_model is None:  # tags come from the vectors searches use, with their model
                    TagStage(self.store, self.stages.encoder.if_made, self.stages.encoder, self.report).run()
                WordsStage(self.store, self.report, self.store.catalog.meta("words") or words_default_mode()).run()
                FaceStage(self.store, self.report, self.options.decode_workers(),  # index --faces on
                          self.ray.faces_runner() if self.ray is not None else None).run()
            except KeyboardInterrupt as stop:
                self.report.interrupted = True
                self.report.terminated = isinstance(stop, Terminated)
        self.report.model_seconds = self.stages.model_seconds
        self.report.gpu_decoded = self.stages.gpu_decoded
        self.report.notes.extend(self.stages.all_notes())
        if (note := self.store.index_files.type_note()) is not None:
            self.report.notes.append(note)
        if self.plan.aliases:
            files = counted(self.plan.aliases, "file") + (" was" if self.plan.aliases == 1 else " were")
            self.report.notes.append(f"{files} reached again through a link or another folder and indexed once, "
                                     "under the first path found without a link")
        self.writer.finish(started, self.ray.shard_runner() if self.ray is not None else None)
        self.progress.close()
        return self.report


def resolve_roots(folders: Sequence[str], recorded: Sequence[str]) -> list[str]:
    """Absolute, existing folders to index: the ones given, or else every folder the index already has."""
    if not folders:
        if not recorded:
            raise UserError("no folder given and the index has none yet: clipsearch index FOLDER")
        present = [r for r in recorded if os.path.isdir(r)]
        if not present:
            raise UserError(f"none of the indexed folders exists now: {', '.join(recorded)}")
        return present
    roots = []
    for folder in folders:
        path = os.path.abspath(os.path.expanduser(folder))
        if not os.path.exists(path):
            raise UserError(f"folder not found: {folder}")
        if not os.path.isdir(path):
            raise UserError(f"not a folder: {folder}")
        roots.append(_as_recorded(path, recorded))
    return roots


def _as_recorded(path: str, recorded: Sequence[str]) -> str:
    """A folder given through a link to an indexed folder (or to a folder inside one) as the index spells it: the
    same files under the same paths, never indexed a second time through the link nor swapped with it run by run."""
    if path in recorded:
        return path
    real = os.path.realpath(path)
    for root in sorted(recorded, key=len, reverse=True):
        real_root = os.path.realpath(root)
        if real == real_root:
            return root
        if real.startswith(real_root.rstrip(os.sep) + os.sep) and os.path.realpath(path) != path:
            return os.path.join(root, os.path.relpath(real, real_root))
    return path
