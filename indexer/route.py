"""The route step, in the reader threads: read and hash each file, ask ``Contents`` whether its content needs the
model, and send it to the GPU decoder (a baseline JPEG it has room for) or to the CPU decoder, which decodes a
chunk's share in one call. One file's failure costs only that file. The only module that knows both decoders."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from clipsearch import images, video
from clipsearch.hashing import content_hash, file_content_hash
from indexer.file_bytes import MAX_FILE_BYTES, read_file
from indexer.items import Decoded, DecodedVideo, Failed, OnDevice, Read, Reused, Task

if TYPE_CHECKING:
    from clipsearch.encoders import Encoder
    from indexer.decoders import CpuDecoder
    from indexer.device_decode import DeviceDecoder
    from indexer.engine import Contents

Loaded = Failed | Reused | Decoded | DecodedVideo  # what a chunk routed hands back: a claimed JPEG comes back from the GPU


def reader_threads(workers: int) -> int:
    """Threads that run a Router for ``workers`` decode workers: twice as many, so that while a worker process
    decodes one photo the next is already read, hashed and queued for it. With one thread per process, each
    process waited for its thread's hand-off and next file: with two threads each decodes more photos per second
    beside a busy indexing thread (bench/read_ahead.py; docs/benchmarks.md). Decoding in the threads themselves
    stays at ``workers`` at a time (``ThreadDecoder``'s slots)."""
    return 2 * workers


def load(task: Task, stored: Callable[[bytes], bool]) -> Failed | Reused | Read:
    """Read and hash one file: its failure, its content already ``stored`` (only the size is read from its
    header), or its bytes for a decoder. What the local engine's reader threads and the Ray engine's decode tasks
    (``indexer.ray_workers``) both do first. A video is not read whole: it is hashed as every file is (its size,
    head and tail) and its decoder reads what it samples, so a film or a huge file costs no memory here."""
    if video.is_video(task.path):
        return _load_video(task, stored)
    try:
        data = read_file(task.path, task.found.size)
    except OSError as exc:
        return Failed(task, f"cannot read: {exc.strerror or exc}")
    if not data:
        return Failed(task, "empty file")
    if len(data) > MAX_FILE_BYTES:
        return Failed(task, "file is over 1 GiB")
    digest = content_hash(data)
    if stored(digest):
        try:
            width, height = images.probe(data)  # only the size, from the header
        except images.ImageError as exc:
            return Failed(task, str(exc))
        return Reused(task, digest, width, height)
    return Read(task, digest, data)


def _load_video(task: Task, stored: Callable[[bytes], bool]) -> Failed | Reused | Read:
    try:
        if task.found.size == 0 and os.path.getsize(task.path) == 0:
            return Failed(task, "empty file")
        digest = file_content_hash(task.path)
    except OSError as exc:
        return Failed(task, f"cannot read: {exc.strerror or exc}")
    if stored(digest):
        try:
            facts = video.probe(task.path)  # only the size, from the container
        except video.VideoError as exc:
            return Failed(task, str(exc))
        return Reused(task, digest, facts.width, facts.height)
    return Read(task, digest, b"", video=True)


class Router:
    """Turns a chunk of tasks into Loaded items, in a reader thread (``route_and_decode``)."""

    def __init__(self, encoder: Callable[[], Encoder], contents: Contents, cpu: Callable[[], CpuDecoder],
                 device: Callable[[], DeviceDecoder | None] | None = None,
                 max_pixels: int = images.DEFAULT_MAX_PIXELS) -> None:
        self.encoder = encoder
        self.contents = contents
        self.cpu = cpu
        self.device = device or (lambda: None)
        self.max_pixels = max_pixels

    def route_and_decode(self, tasks: Sequence[Task]) -> list[Loaded]:
        """Each task's outcome so far, in order, less the JPEGs the GPU claimed (on their way there already, so that
        it does not wait for the rest of the chunk). The files to decode on the CPU go to it in one call
        (``ProcessDecoder``: one call to a worker process for several photos)."""
        routed = [self.route(task) for task in tasks]
        reads = [r for r in routed if isinstance(r, Read)]
        decoded = iter(self.cpu().decode_many(reads) if reads else [])
        out: list[Loaded] = []
        for r in routed:
            if isinstance(r, Read):
                out.append(next(decoded))
            elif not isinstance(r, OnDevice):
                out.append(r)
        return out

    def route(self, task: Task) -> Failed | Reused | Read | OnDevice:
        """Read and hash the file, and decide what it needs. A JPEG the GPU claims is submitted to it here."""
        loaded = load(task, self.contents.stored)
        if not isinstance(loaded, Read):
            return loaded
        data, digest = loaded.data, loaded.digest
        # Outside the per-file guard: a model that cannot load stops the run instead of failing every file.
        self.encoder()
        if loaded.video:
            return loaded
        gpu = self.device()
        header = images.gpu_decodable_jpeg(data, self.max_pixels) if gpu is not None and gpu.has_room() else None
        if header is not None and gpu is not None and gpu.claim():
            swap = header.orientation >= 5
            width, height = (header.height, header.width) if swap else (header.width, header.height)
            claimed = OnDevice(task, digest, width, height, data, header.orientation, header.meta)
            gpu.submit(claimed)
            return claimed
        return loaded

    def decode_refused(self, item: OnDevice) -> Decoded | Failed:
        """A JPEG nvJPEG refused: the CPU decoder decides whether it is usable."""
        (out,) = self.cpu().decode_many([Read(item.task, item.digest, item.jpeg)])
        return out
