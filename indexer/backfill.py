"""The backfill stage: photos indexed before their metadata was kept get it from their headers.

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

from clipsearch import photo_meta

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
