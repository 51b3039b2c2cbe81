"""The faces stage: after the tag stage, every stored content whose faces were not looked for gets them, and the faces
that belong to nobody are placed with people (``clipsearch.faces.grouping``).

It runs while the index's setting is on (``index --faces on``, remembered; ``later`` keeps what was found and looks
for no more; ``off`` drops it all: ``clipsearch.store.faces``). New photos are looked at by the run that embedded
them, and the photos indexed before by the first run with the setting on: nothing is re-embedded. One file of
each content is read (and checked to be that content still) at a bounded size (``clipsearch.faces.detect``),
in threads (dlib lets go of the GIL), and a block of photos is committed at a time, so a killed run keeps what
it found and the next one does the rest. A photo that cannot be read or that the detector fails on costs only its
faces: it stays indexed, marked with why, and is not tried again until it changes. Under ``--engine ray`` the
photos are looked at by Ray tasks (``indexer.ray_engine.RayFaces``), where a worker that dies costs its photos'
faces only; here, in threads, a crash inside dlib would end the run (what was committed stays). Detection costs about as much
as embedding on a CPU (bench/faces.py), hence a stage of its own that a run can put off.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from clipsearch import images
from clipsearch.hashing import content_hash
from indexer.concurrency import bounded_map, chunked
from indexer.file_bytes import read_file

if TYPE_CHECKING:
    from clipsearch.store import StoreWriter
    from clipsearch.store.faces import Face, FaceTable
    from indexer.report import Report

BLOCK = 64  # photos per commit
BLOCK_SECONDS = 30.0  # and at least this often
_CHUNK = 2  # photos per thread call


# How the photos' chunks are looked at: threads here (``bounded_map``), or Ray tasks (``indexer.ray_engine.RayFaces``).
Runner = Callable[[Callable[[list[Any]], list[Any]], Iterable[list[Any]]], Iterator[list[Any]]]


class FaceStage:
    """``runner``: where the photos are looked at (None: ``workers`` threads here)."""

    def __init__(self, store: StoreWriter, report: Report, workers: int, runner: Runner | None = None) -> None:
        self.store = store
        self.report = report
        self.workers = max(1, workers)
        self.runner: Runner = runner or (lambda fn, chunks: bounded_map(fn, chunks, self.workers, 2 * self.workers))
        self.on_ray = runner is not None

    def run(self) -> None:
        table = self.store.catalog.faces
        if not table.available or table.setting() != "on":
            return
        from clipsearch.faces import detect

        self.report.faces_on = True
        todo = table.unfaced()
        if todo and (why := detect.missing()) is not None:
            self.report.notes.append(f"faces were not looked for: {why}")
            return
        if todo:
            self._detect(table, todo)
            if self.on_ray:
                self.report.notes.append(f"faces were looked for in {len(todo)} photos by Ray tasks")
        self._group(table)

    def _detect(self, table: FaceTable, todo: list[tuple[bytes, str, int, int]]) -> None:
        pending, since = 0, time.monotonic()
        try:
            for found in self.runner(self._faces_of, chunked(todo, _CHUNK)):
                for digest, faces, error in found:
                    table.put(digest, faces, error)
                    self.report.faced += 1
                    self.report.faces_found += len(faces)
                    if error is not None:
                        self.report.faces_failed += 1
                    pending += 1
                if pending >= BLOCK or time.monotonic() - since > BLOCK_SECONDS:
                    self.store.commit()
                    pending, since = 0, time.monotonic()
        finally:  # Ctrl-C too: what was found is kept
            self.store.commit()
        if self.report.faces_failed:
            self.report.notes.append(f"faces could not be looked for in {self.report.faces_failed} photos (they stay "
                                     "indexed; tried again once they change)")

    @staticmethod
    def _faces_of(rows: list[tuple[bytes, str, int, int]]) -> list[tuple[bytes, list[Face], str | None]]:
        from clipsearch.faces.detect import FaceModel, read

        out: list[tuple[bytes, list[Face], str | None]] = []
        for digest, path, size, _ in rows:
            try:
                data = read_file(path, size)
            except OSError:
                continue  # gone or unreadable now: the next run's sweep or re-index decides
            if content_hash(data) != digest:
                continue  # changed since it was indexed: the next run indexes it again
            try:
                picture, scale = read(data)
                out.append((digest, FaceModel.for_this_thread().faces(picture, scale), None))
            except (images.ImageError, RuntimeError, ValueError, MemoryError) as exc:
                out.append((digest, [], (str(exc) or type(exc).__name__)[:200]))
        return out

    def _group(self, table: FaceTable) -> None:
        from clipsearch.faces import grouping

        new_faces, _, new = table.descriptors(assigned=False)
        if not len(new_faces):
            return
        known_faces, known_people, known = table.descriptors(assigned=True)
        placed = grouping.place(known_faces, known_people, known, new_faces, new, table.rejected())
        people = table.people
        table.assign(placed.joined)
        for group in placed.groups:
            person = people.create()
            table.assign((face, person) for face in group)
        self.store.commit()
        self.report.faces_grouped += len(placed.joined) + sum(len(g) for g in placed.groups)
