"""The files of an index directory, by name: the only place that knows them.

    catalog.sqlite        files, model record, roots, runs, where each vector lies (the source of truth)
    catalog.schema.json   a copy of the catalog's schema and model record, for the salvage (``schema_copy``)
    segments/<id>.seg     the vectors: append-only float32 (float16 when large) rows the catalog points at
    vectors-<gen>.faiss   FAISS index over file ids, derived from the catalog at generation <gen>
    write.lock            held (flock) by the one process that writes
    ivf-<t>.trained       the large index (``large_index``): trained, empty; ivf-<b>.base + .ivfdata: a base;
    ivf-<b>-<g>.delta     what changed since base <b> at generation <g> (+ .skip.npy: the base ids to skip)
    runs.log              one JSON line per finished run (time, counts, seconds, failures)
    thumbs/ab/<hash>.jpg  thumbnails for the web page, keyed by content hash (a cache: deleting it loses nothing)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CATALOG_NAME = "catalog.sqlite"
SCHEMA_COPY_NAME = "catalog.schema.json"
LOCK_NAME = "write.lock"
RUN_LOG_NAME = "runs.log"
THUMBS_NAME = "thumbs"
SEGMENTS_NAME = "segments"
_FAISS_PREFIX = "vectors-"
_FAISS_SUFFIX = ".faiss"


@dataclass(frozen=True)
class Layout:
    directory: Path

    @property
    def catalog(self) -> Path:
        return self.directory / CATALOG_NAME

    @property
    def schema_copy(self) -> Path:
        return self.directory / SCHEMA_COPY_NAME

    @property
    def lock(self) -> Path:
        return self.directory / LOCK_NAME

    @property
    def run_log(self) -> Path:
        return self.directory / RUN_LOG_NAME

    @property
    def thumbs(self) -> Path:
        return self.directory / THUMBS_NAME

    @property
    def segments(self) -> Path:
        return self.directory / SEGMENTS_NAME

    def faiss(self, generation: int) -> Path:
        """The FAISS file built from the catalog at ``generation``."""
        return self.directory / f"{_FAISS_PREFIX}{generation}{_FAISS_SUFFIX}"

    def ivf_trained(self, number: int) -> Path:
        return self.directory / f"ivf-{number}.trained"

    def ivf_base(self, number: int) -> Path:
        return self.directory / f"ivf-{number}.base"

    def ivf_lists(self, number: int) -> Path:
        return self.directory / f"ivf-{number}.ivfdata"

    def ivf_delta(self, base: int, generation: int) -> Path:
        return self.directory / f"ivf-{base}-{generation}.delta"

    def ivf_files(self) -> Iterator[Path]:
        return self.directory.glob("ivf-*")

    def faiss_files(self) -> Iterator[Path]:
        return self.directory.glob(f"{_FAISS_PREFIX}*{_FAISS_SUFFIX}")

    def exists(self) -> bool:
        """Whether an index has been written here (a catalog exists)."""
        return self.catalog.is_file()


def index_exists(directory: Path) -> bool:
    return Layout(directory).exists()
