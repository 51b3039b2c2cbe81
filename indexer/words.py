"""The words stage: after the tag stage, each file gets its words, and each content the text in its picture.

    names and carried words   per file whose row is new or whose content changed: its name and folders' names,
                              and the keywords and captions its header carries (``clipsearch.carried_words``);
                              a header read, no decode: milliseconds a file
    text in the picture       per stored content not read yet, while the index's words mode is ``on``: one file of
                              it decoded at a bounded size, checked to still be that content, and read
                              (``clipsearch.ocr``: a small detection pass first, the whole reading only where it
                              finds text)

Like the tag stage it needs no model and re-embeds nothing, so an index made before words existed is filled in
by its next run (the backfill), and a run with ``--words later`` leaves the pictures to a later one. Work is
committed in blocks (and at least every ``COMMIT_SECONDS``): a killed or interrupted run keeps what it read, and
the next run reads the rest. A picture the models choke on is marked ``failed`` and costs only its own words; a
file that changed since it was indexed is left to the next run.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from clipsearch import carried_words, images
from clipsearch.hashing import content_hash
from clipsearch.ocr import Seen
from indexer.concurrency import bounded_map, chunked
from indexer.cpu_decode import read_file

if TYPE_CHECKING:
    from PIL import Image

    from clipsearch.ocr import Reader
    from clipsearch.store import StoreWriter
    from indexer.report import Report

NAMES_BLOCK = 500  # files named per commit
PICTURES_BLOCK = 64  # pictures read per commit, at most
COMMIT_SECONDS = 20.0  # and a commit at least this often: a killed run loses at most this much reading
_READER: Reader | None = None  # the models, loaded once per process (about 3 s) and kept for later runs


def reader() -> Reader:
    global _READER
    if _READER is None:
        from clipsearch.ocr import Reader

        _READER = Reader()
    return _READER


class WordsStage:
    def __init__(self, store: StoreWriter, report: Report, mode: str) -> None:
        self.store = store
        self.report = report
        self.mode = mode  # the index's words mode (``clipsearch.store.words.MODES``)

    def run(self) -> None:
        words = self.store.words_writer()
        roots = self.store.roots()
        for block in chunked(words.files_unnamed(), NAMES_BLOCK):
            words.put_named([(file_id, digest, carried_words.names_of(path, roots), carried_words.read(path))
                             for file_id, digest, path in block])
            self.store.commit()
            self.report.words_named += len(block)
        if self.mode != "on":
            return
        todo = words.pictures_unread()
        try:
            if todo:
                reader()
        except ImportError as exc:  # an install without rapidocr: the run is done, its words wait for it
            self.report.notes.append(f"the text in photos was not read: {exc} (pip install rapidocr)")
            return
        pending: list[tuple[bytes, str, list, str]] = []
        last = time.monotonic()
        for digest, image in bounded_map(self._decoded, todo, 1, 2):
            if image is None:
                continue  # changed since it was indexed, or gone: the next run
            seen = Seen("", [], image) if isinstance(image, str) else reader().read(image)
            pending.append((digest, seen.text, seen.boxes, seen.how))
            self.report.words_read += 1
            self.report.words_with_text += bool(seen.text)
            if seen.how.startswith("failed"):
                self.report.words_failed += 1
            if len(pending) >= PICTURES_BLOCK or time.monotonic() - last >= COMMIT_SECONDS:
                words.put_seen(pending)
                self.store.commit()
                pending, last = [], time.monotonic()
        words.put_seen(pending)
        self.store.commit()

    @staticmethod
    def _decoded(row: tuple[bytes, str, int, int]) -> tuple[bytes, Image.Image | str | None]:
        """One file of the content, decoded at about the size it is read at; None if it is not that content now (or
        is gone), and why where it no longer decodes."""
        from clipsearch.ocr import READ_SIDE

        digest, path, size, _ = row
        try:
            if os.stat(path).st_size != size:
                return digest, None
            data = read_file(path, size)
            if content_hash(data) != digest:
                return digest, None
            return digest, images.decode(data, READ_SIDE // 2).image
        except images.ImageError as exc:
            return digest, f"failed: {exc}"[:200]
        except OSError:
            return digest, None
