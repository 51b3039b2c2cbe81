"""The words stage: after the tag stage, each file gets its words, and each content the text in its picture.

    names and carried words   per file whose row is new or whose content changed: its name and folders' names,
                              and the keywords and captions its header carries (``clipsearch.carried_words``);
                              a header read, no decode: milliseconds a file
    text in the picture       per stored content not read yet, while the index's words mode is ``on``: one file of
                              it decoded at a bounded size, checked to still be that content, and read
                              (``clipsearch.ocr``: a small detection pass first, the whole reading only where it
                              finds text)
    text in a video           per video content not read yet: the frames at up to ``MOMENTS_READ`` of its moments
                              (``clipsearch.store.moments``, decoded by ``clipsearch.video.frames_at``), each read
                              like a picture unless it shows what the frame read before it did; each line is kept
                              once, with the box it had and the time ``t`` of the first moment that showed it (a
                              ``search --text`` hit is placed there: ``search.words.placed``)

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

from clipsearch import carried_words, images, video
from clipsearch.hashing import content_hash, file_content_hash
from clipsearch.ocr import Seen
from clipsearch.store.words import default_mode
from indexer.concurrency import bounded_map, chunked
from indexer.file_bytes import read_file

if TYPE_CHECKING:
    from PIL import Image

    from clipsearch.ocr import Reader
    from clipsearch.store import StoreWriter
    from indexer.report import Report

    Picture = Image.Image | list[tuple[float, Image.Image]]  # a photo, or a video's frames at their moments' times

NAMES_BLOCK = 500  # files named per commit
PICTURES_BLOCK = 64  # pictures read per commit, at most
COMMIT_SECONDS = 20.0  # and a commit at least this often: a killed run loses at most this much reading
# A video's text is read from at most this many of its moments, spread evenly over them (the first and last among
# them): with a moment every 2 s (``clipsearch.video.Rule``) a video up to ~24 s is read at each, a 1-minute one about
# every 5 s, a 2-minute one every 10 s, and its cost stays bounded whatever its length: at most 12 readings, each what
# a picture's costs (docs/benchmarks.md, bench/video_words.py). Text shown for less than the spacing may be missed.
MOMENTS_READ = 12
VIDEO_SIDE = 1280  # the longest side a video's frame is read at (a 4K frame is scaled down by FFmpeg)
# A frame shows what the last one read did when no cell of a 64x36 grid of their block means (grey, 0-1) differs by
# more than this: between what new words on the same board change in a cell and a codec's noise (bench/video_words.py;
# docs/benchmarks.md).
SAME_FRAME = 0.1
_READER: Reader | None = None  # the models, loaded once per process (seconds: docs/benchmarks.md) and kept for later runs


def reader() -> Reader:
    global _READER
    if _READER is None:
        from clipsearch.ocr import Reader

        _READER = Reader()
    return _READER


class WordsStage:
    """``mode``: on, later or off (``clipsearch.store.words.MODES``); None: the index's."""

    def __init__(self, store: StoreWriter, report: Report, mode: str | None = None) -> None:
        self.store = store
        self.report = report
        self.mode = mode

    def run(self) -> None:
        mode = self.mode or self.store.catalog.meta("words") or default_mode()
        words = self.store.words_writer()
        roots = self.store.catalog.roots()
        for block in chunked(words.files_unnamed(), NAMES_BLOCK):
            words.put_named([(file_id, digest, carried_words.names_of(path, roots), carried_words.read(path))
                             for file_id, digest, path in block])
            self.store.commit()
            self.report.words_named += len(block)
        if mode != "on":
            return
        words.videos_read_again()
        todo = [(row, spread(self.store.catalog.moments.times_of(row[0]))) for row in words.pictures_unread()]
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
            if isinstance(image, str):
                seen = Seen("", [], image)
            else:
                seen = read_moments(image) if isinstance(image, list) else reader().read(image)
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
    def _decoded(item: tuple[tuple[bytes, str, int, int], list[float]]) -> tuple[bytes, Picture | str | None]:
        """One file of the content, decoded at about the size it is read at (a video: its frames at ``times``); None
        if it is not that content now (or is gone), and why where it no longer decodes."""
        from clipsearch.ocr import READ_SIDE

        (digest, path, size, _), times = item
        try:
            if os.stat(path).st_size != size:
                return digest, None
            if times:
                if file_content_hash(path) != digest:
                    return digest, None
                return digest, list(video.frames_at(path, times, VIDEO_SIDE)) or "failed: no frame could be decoded"
            data = read_file(path, size)
            if content_hash(data) != digest:
                return digest, None
            return digest, images.decode(data, READ_SIDE // 2).image
        except (images.ImageError, video.VideoError) as exc:
            return digest, f"failed: {exc}"[:200]
        except OSError:
            return digest, None


def spread(times: list[float], most: int = MOMENTS_READ) -> list[float]:
    """At most ``most`` of a video's moment times, evenly spread, the first and the last kept (none: a photo)."""
    if len(times) <= most:
        return times
    return sorted({times[round(i * (len(times) - 1) / (most - 1))] for i in range(most)})


def read_moments(frames: list[tuple[float, Image.Image]]) -> Seen:
    """A video's text from its frames: each line once, with its box in the first frame that showed it and that
    moment's ``t``; a frame like the last one read is not read again (a held shot costs one reading). ``how``:
    ``read`` where any frame was, else ``none``, else the first frame's failure."""
    import numpy as np
    from PIL import Image

    lines: dict[str, dict] = {}
    hows: list[str] = []
    last = None
    for t, image in frames:
        small = np.asarray(image.convert("L").resize((64, 36), Image.Resampling.BOX), dtype="float32") / 255.0
        if last is not None and float(np.abs(small - last).max()) < SAME_FRAME:
            continue
        last = small
        seen = reader().read(image)
        hows.append(seen.how)
        for box in seen.boxes:
            lines.setdefault(box["text"], {**box, "t": t})
    how = "read" if "read" in hows else "none" if "none" in hows else (hows or ["failed: no frame"])[0]
    return Seen("\n".join(lines), list(lines.values()), how)
