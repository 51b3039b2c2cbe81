"""The backfill stages: photos indexed before their metadata or signature was kept get them, without the model.

``MetadataBackfill``: from their headers. ``SignatureBackfill``: from their pictures (a perceptual
signature, ``clipsearch.signature``), decoded at a small draft scale in threads; nothing is embedded.

New and changed photos get their metadata from the decoder, which reads the EXIF block for the
orientation anyway. Photos indexed by an older clipsearch (a catalog upgraded to format 5) have none:
this stage reads the header of one file of each such content (Pillow parses the markers up to the
picture data and decodes nothing), checks the file still has the stamp it was indexed with, and stores
what it says. Nothing is decoded or embedded; a block of rows is committed at a time, so a killed run
keeps what it read. A file that changed since is left to the next run, which re-indexes it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from clipsearch import images, photo_meta, signature
from clipsearch.hashing import content_hash
from indexer.concurrency import bounded_map, chunked
from indexer.file_bytes import read_file

if TYPE_CHECKING:
    from clipsearch.store import StoreWriter
    from indexer.report import Report

BLOCK = 1000  # headers per commit


class MetadataBackfill:
    def __init__(self, store: StoreWriter, report: Report) -> None:
        self.store = store
        self.report = report

    def run(self) -> None:
        pending = 0
        for digest, path, size, mtime_ns in self.store.without_metadata():
            try:
                st = os.stat(path)
            except OSError:
                continue  # gone: the sweep of its folder drops it
            if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
                continue  # changed since it was indexed: not this content's header any more
            self.store.put_metadata(digest, photo_meta.read(path))
            self.report.headers_read += 1
            pending += 1
            if pending >= BLOCK:
                self.store.commit()
                pending = 0
        self.store.commit()


SIGNATURE_SIDE = 224  # decoded at the smallest JPEG DCT scale covering this, about as a run decodes for a model


class SignatureBackfill:
    """Decodes one file of each content without a signature or its grid (indexed before format 6 or 8, or decoded
    by nvJPEG) and stores it; a file whose content is not the one indexed any more is left to the next run, one
    that does not decode now is left without (``duplicates`` then judges it by its vector alone)."""

    def __init__(self, store: StoreWriter, report: Report, workers: int) -> None:
        self.store = store
        self.report = report
        self.workers = max(1, workers)

    def run(self) -> None:
        pending = 0
        todo = self.store.without_signature()
        for found in bounded_map(self._signature_of, chunked(todo, 16), self.workers, 2 * self.workers):
            for digest, value in found:
                self.store.put_signature(digest, value)
                self.report.signed += 1
                pending += 1
            if pending >= BLOCK:
                self.store.commit()
                pending = 0
        self.store.commit()

    @staticmethod
    def _signature_of(rows: list[tuple[bytes, str, int, int]]) -> list[tuple[bytes, signature.Signature]]:
        out = []
        for digest, path, size, _ in rows:
            try:
                data = read_file(path, size)
                if content_hash(data) != digest:
                    continue  # changed since it was indexed
                out.append((digest, signature.of(images.decode(data, SIGNATURE_SIDE).image)))
            except (OSError, images.ImageError):
                continue
        return out
