"""What travels through an index run, one state per class: a file is planned, then read, then decoded (or
handed to the GPU), then embedded; or it fails, or its content turns out to be stored already.

    Task ──read──> Failed                      (cannot read, empty, too big, not an image)
                └> Reused                      (its content has a stored vector: nothing to decode or embed)
                └> Read ──decode──> Decoded ──embed──> Embedded
                             └> DecodedVideo ──embed──> Embedded (with its moments)
                └> OnDevice ──GPU──> Decoded   (a JPEG nvJPEG decodes; it comes back as OnDevice if refused)

A leaf: the decoders, the plan, the run and the Ray workers all speak these.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

from clipsearch.photo_meta import PhotoMeta
from clipsearch.signature import Signature
from indexer.walk import Found

if TYPE_CHECKING:
    import numpy as np
    import torch

    from clipsearch.store import IndexedFile
    from clipsearch.video import Facts


@dataclass(frozen=True)
class Task:
    """A file the plan wants read: new, or changed since its catalog row (``previous``) was written."""

    found: Found
    previous: IndexedFile | None = None

    @classmethod
    def for_path(cls, path: str) -> Task:
        """A task for a file outside any catalog (``pipeline.DecodeEmbed`` on a list of files)."""
        st = os.stat(path)
        return cls(Found(os.path.abspath(path), st.st_size, st.st_mtime_ns, (st.st_dev, st.st_ino)))

    @property
    def path(self) -> str:
        return self.found.path


@dataclass(frozen=True)
class Failed:
    task: Task
    error: str


@dataclass(frozen=True)
class Reused:
    """Content with a vector stored already: this file's own, unchanged under a new stamp (``same_file``), or
    another file's (a copy, a rename)."""

    task: Task
    digest: bytes
    width: int
    height: int

    @property
    def same_file(self) -> bool:
        return self.task.previous is not None and self.task.previous.hash == self.digest


@dataclass(frozen=True)
class Read:
    """Bytes hashed and waiting for a CPU decoder; a video's are not read here (``data`` empty, ``video`` True):
    its decoder reads what it needs."""

    task: Task
    digest: bytes
    data: bytes
    video: bool = False


@dataclass(frozen=True)
class OnDevice:
    """A baseline JPEG claimed by the GPU decoder: its displayed size is known from the header."""

    task: Task
    digest: bytes
    width: int
    height: int
    jpeg: bytes
    orientation: int  # EXIF orientation the GPU decoder applies
    meta: PhotoMeta = field(default_factory=PhotoMeta)


@dataclass(frozen=True)
class Decoded:
    """The model's input for one photo: uint8 (H, W, 3) from a CPU decoder until its batch is normalised, or a
    finished input already on the GPU (nvJPEG's)."""

    task: Task
    digest: bytes
    width: int
    height: int
    pixels: torch.Tensor
    meta: PhotoMeta = field(default_factory=PhotoMeta)  # what the header says (date taken, camera, place)
    signature: Signature | None = None  # what the picture looks like (None: nvJPEG decoded it)
    note: str | None = None  # what the decoder had to say (``clipsearch.images.Decoded.note``): for the report


@dataclass(frozen=True)
class DecodedVideo:
    """A video's moments as the model's inputs: (t seconds, uint8 picture) each, in time order
    (``clipsearch.video``), and what its container says."""

    task: Task
    digest: bytes
    width: int
    height: int
    moments: list[tuple[float, torch.Tensor]]
    facts: Facts
    meta: PhotoMeta = field(default_factory=PhotoMeta)
    signature: Signature | None = None  # of its first moment: what ``duplicates`` compares
    note: str | None = None


@dataclass(frozen=True)
class Embedded:
    task: Task
    digest: bytes
    width: int
    height: int
    vector: np.ndarray  # unit length, float32
    meta: PhotoMeta = field(default_factory=PhotoMeta)
    signature: Signature | None = None
    note: str | None = None  # as ``Decoded.note``
    moments: tuple[tuple[float, np.ndarray], ...] = ()  # a video's: (t, unit vector); ``vector`` is their mean
    facts: Facts | None = None  # a video's container facts


Outcome = Union[Failed, Reused, Embedded]  # what the decode + embed part hands on, one per task
