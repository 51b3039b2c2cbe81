"""One indexing run, read top to bottom in ``IndexRun.run``: plan -> route -> decode -> embed -> write, the sweep,
then the stages after it.

    plan     (indexer.plan)      walk the roots; sort each file against the catalog by its stamp
    route    (indexer.route)     read and hash in reader threads; send each file to the CPU or the GPU decoder
    decode   (indexer.decoders, indexer.device_decode)   CPU worker processes; nvJPEG for baseline JPEGs
    embed    (indexer.embed)     batch the decoded photos on the model
    write    (indexer.write)     store, commit in chunks, sweep what is gone
    after the sweep, each a module, none needing the model's image tower:
    backfill (indexer.backfill)  headers and signatures of photos indexed before they were kept
    tag      (indexer.tag)       tag every stored content that has no current tags (from its vector)
    words    (indexer.words)     names and carried words of new files; text in pictures not read yet
    faces    (indexer.faces)     find the faces of every stored content not looked at yet; group them into people

Route, decode and embed are the engine's (``indexer.engine.Engine``: the local one, ``indexer.pipeline``, or Ray's,
``indexer.ray_engine``), which needs neither the catalog nor the lock: this run gives it the plan's tasks and the
catalog's answer to "is this content stored?" (``Contents``), and stores what it hands back. Ctrl-C commits what
is done.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from clipsearch.display import counted
from clipsearch.errors import Terminated, UserError
from indexer.backfill import MetadataBackfill, SignatureBackfill
from indexer.engine import Contents, Engine
from indexer.faces import FaceStage
from indexer.options import Options
from indexer.pipeline import DecodeEmbed
from indexer.plan import Planner
from indexer.report import Progress, Report
from indexer.tag import TagStage
from indexer.words import WordsStage
from indexer.write import RunWriter

if TYPE_CHECKING:
    from clipsearch.encoders import Encoder
    from clipsearch.store import StoreWriter


class Stage(Protocol):
    """A stage after the sweep: works from what is stored, commits as it goes (a killed run keeps what it did)."""

    def run(self) -> None: ...


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
        self.engine = engine_for(self.options, get_encoder, contents, store, self.roots)
        self.writer = RunWriter(store, contents, self.report, self.progress, self.options.commit_every,
                                self.options.commit_seconds)

    def run(self) -> Report:
        """plan -> route -> decode -> embed -> write, file by file as the engine hands them on; the sweep; the stages
        after it. Ctrl-C or SIGTERM: what was done is committed, the next run does the rest."""
        started = time.monotonic()
        self.store.begin_run(self.roots if self.record_roots else [])
        recorded = self.store.catalog.roots()
        try:
            try:
                for outcome in self.engine.run(self.plan.tasks()):  # plan -> route -> decode -> embed
                    self.writer.take(outcome)  # -> write: a commit every commit_every files or commit_seconds
            except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (``Terminated``) where the CLI turned it into one
                self._stopped(stop)  # decoded but not stored: the next run does those files
            finally:
                try:
                    self.writer.commit()
                finally:  # even when the commit fails (a full disk): workers left running break the interpreter's exit
                    self.engine.close()
            if not self.report.interrupted:
                self.writer.sweep(self.plan.roots_to_sweep(recorded))
                self._swap_reembedding()
                try:  # Ctrl-C or SIGTERM in these: what was done is committed, the next run does the rest
                    for stage in self.after_sweep():
                        stage.run()
                except KeyboardInterrupt as stop:
                    self._stopped(stop)
            self._take_engine_notes()
            self.writer.finish(started, self.engine.shard_runner())  # the run logged, the index files brought up to date
        finally:  # what the engine lent for the index build and the faces stage (a Ray cluster)
            self.engine.release()
        self.progress.close()
        return self.report

    def after_sweep(self) -> list[Stage]:
        """The stages after the sweep, in order: a new stage is a module of its own and a line here."""
        workers = self.options.decode_workers()
        return [MetadataBackfill(self.store, self.report),
                SignatureBackfill(self.store, self.report, workers),
                TagStage(self.store, self.engine.encoder_if_made, self.engine.encoder, self.report),
                WordsStage(self.store, self.report),
                FaceStage(self.store, self.report, workers, self.engine.faces_runner())]  # index --faces on

    def _stopped(self, stop: KeyboardInterrupt) -> None:
        self.report.interrupted = True
        self.report.terminated = isinstance(stop, Terminated)

    def _swap_reembedding(self) -> None:
        """A re-embedding whose every file has its new vector takes the place of the old vectors; else it goes on."""
        if self.store.swap_pending():
            self.report.notes.append(f"re-embedded with {self.store.catalog.model.spec if self.store.catalog.model else '?'}: "
                                     "searches use the new vectors from now on")
        elif self.store.catalog.pending_model is not None:
            self.report.notes.append(f"the re-embedding with {self.store.catalog.pending_model.spec} is not finished: "
                                     "searches use the old vectors until a run finishes it")

    def _take_engine_notes(self) -> None:
        """What the engine, the index type and the walk have to tell the user."""
        self.report.model_seconds = self.engine.model_seconds
        self.report.gpu_decoded = self.engine.gpu_decoded
        self.report.notes.extend(self.engine.notes)
        if (note := self.store.index_files.type_note()) is not None:
            self.report.notes.append(note)
        if self.plan.aliases:
            files = counted(self.plan.aliases, "file") + (" was" if self.plan.aliases == 1 else " were")
            self.report.notes.append(f"{files} reached again through a link or another folder and indexed once, "
                                     "under the first path found without a link")


def engine_for(options: Options, get_encoder: Callable[[], Encoder], contents: Contents, store: StoreWriter,
               roots: Sequence[str]) -> Engine:
    """The engine ``options`` asks for: the local one, or Ray's (imported only then)."""
    if options.engine == "ray":
        from indexer.ray_engine import RayDecodeEmbed

        return RayDecodeEmbed(get_encoder, options, contents, store.catalog.content_prefixes, roots)
    return DecodeEmbed(get_encoder, options, contents)


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
