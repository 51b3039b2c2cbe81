"""Read, hash and decode files in parallel workers, one file's failure costing only that file."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from clipsearch import images
from clipsearch.store import FileRow, content_hash
from indexer.walk import Found

if TYPE_CHECKING:
    import torch

    from clipsearch.encoders import Encoder
    from indexer.decode_pool import DecodePool
    from indexer.device_decode import DeviceDecoder

MAX_FILE_BYTES = 1 << 30  # a single "image" over 1 GiB is refused rather than read into memory

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Task:
    found: Found
    previous: FileRow | None  # the catalog row of this path, if it had one


@dataclass
class Loaded:
    task: Task
    digest: bytes = b""
    width: int = 0
    height: int = 0
    pixels: torch.Tensor | None = None  # model input, uint8 (H, W, 3) until its batch is normalised; None: reused/failed
    reused: bool = False  # the content's vector is already stored: nothing to decode or embed
    error: str | None = None
    jpeg: bytes | None = None  # set instead of pixels when the GPU decodes this file (``DeviceDecoder``)
    on_gpu: bool = False  # handed to the DeviceDecoder by the reader: it comes back from there, not from the reader
    orientation: int = 1  # EXIF orientation the GPU decoder applies


def read_file(path: str, size: int | None = None) -> bytes:
    """The file's bytes, or its first ``MAX_FILE_BYTES + 1`` (so a caller sees it is too big).

    One unbuffered read() of ``size`` (the walk's, else fstat's) + 1 bytes: each call that releases the GIL
    costs a wait to get it back while other threads run Python (up to the switch interval), and a buffered
    ``read(huge)`` makes two calls and a 1 GiB allocation per photo. A file whose size is not ``size`` any
    more is read on to its end.
    """
    with open(path, "rb", buffering=0) as f:
        if size is None:
            size = os.fstat(f.fileno()).st_size
        data = f.read(min(size, MAX_FILE_BYTES) + 1)
        if len(data) == size or len(data) > MAX_FILE_BYTES:
            return data
        parts, total = [data], len(data)
        while total <= MAX_FILE_BYTES and (chunk := f.read(min(1 << 24, MAX_FILE_BYTES + 1 - total))):
            parts.append(chunk)
            total += len(chunk)
    return b"".join(parts)


def decode_pixels(data: bytes, min_side: int | None, max_pixels: int,
                  transform: Callable[[Any], R]) -> tuple[int, int, R]:
    """(displayed width, height, ``transform`` of the upright picture), or ``images.ImageError``: what a decode
    worker makes of a file, in a thread or in a worker process."""
    decoded = images.decode(data, min_side, max_pixels)
    try:
        return decoded.width, decoded.height, transform(decoded.image)
    except Exception as exc:  # noqa: BLE001 - a transform failure is still only this file's problem
        raise images.ImageError(f"{type(exc).__name__}: {exc}") from None


def reader_threads(workers: int) -> int:
    """Threads that run a Reader for ``workers`` decode workers: twice as many, so that while a worker process
    decodes one photo the next is already read, hashed and queued for it. With one thread per process, each
    process waited for its thread's hand-off and next file: two threads each decode 8-21% more photos per second
    beside a busy indexing thread (bench/read_ahead.py, 1 and 2 processes). Decoding in the threads themselves
    stays at ``workers`` at a time (``Reader(cpu_decoders=...)``)."""
    return 2 * workers


class Reader:
    """Turns a Task into a Loaded: the worker-side half of the pipeline."""

    def __init__(self, encoder: Callable[[], Encoder], known: Callable[[bytes], bool],
                 max_pixels: int = images.DEFAULT_MAX_PIXELS,
                 device_decoder: Callable[[], DeviceDecoder | None] | None = None,
                 decode_pool: Callable[[], DecodePool | None] | None = None,
                 cpu_decoders: int | None = None) -> None:
        self.encoder = encoder
        self.known = known
        self.max_pixels = max_pixels
        self.device_decoder = device_decoder or (lambda: None)
        self.decode_pool = decode_pool or (lambda: None)
        # At most this many threads decode at once (more threads than cores only read ahead); None: no limit.
        self._cpu_slots = threading.BoundedSemaphore(cpu_decoders) if cpu_decoders else contextlib.nullcontext()

    def __call__(self, task: Task) -> Loaded:
        """One file: ``read_many`` of one."""
        return self.read_many([task])[0]

    def read_many(self, tasks: Sequence[Task]) -> list[Loaded]:
        """Each task's Loaded, in order. Files to decode in worker processes go to one child together
        (``DecodePool.decode_many``: one call's overhead for several photos); in threads, each is decoded as
        it comes; a JPEG the GPU claims is on its way there already (``on_gpu``) and comes back from it."""
        loaded: list[Loaded] = []
        for_pool: list[tuple[Loaded, int]] = []
        for task in tasks:
            out, data = self.route(task)
            loaded.append(out)
            if data is None:
                continue
            if self.decode_pool() is not None:
                for_pool.append((out, len(data)))  # the child reads the file again: nothing to hold here
            else:
                self.decode(out, data)
        if for_pool:
            self.decode_in_process(for_pool)
        return loaded

    def route(self, task: Task) -> tuple[Loaded, bytes | None]:
        """Read and hash the file; decide what it needs. The bytes come back only when the CPU must decode them:
        a failure, stored content (only the size is read from the header) and a JPEG handed to the GPU are done."""
        out = Loaded(task)
        try:
            data = read_file(task.found.path, task.found.size)
        except OSError as exc:
            out.error = f"cannot read: {exc.strerror or exc}"
            return out, None
        if not data:
            out.error = "empty file"
            return out, None
        if len(data) > MAX_FILE_BYTES:
            out.error = "file is over 1 GiB"
            return out, None
        out.digest = content_hash(data)
        unchanged_content = task.previous is not None and task.previous.hash == out.digest
        out.reused = unchanged_content or self.known(out.digest)
        if out.reused:
            try:
                out.width, out.height = images.probe(data)
            except images.ImageError as exc:
                out.error = str(exc)
            return out, None
        # Outside the per-file guard: a model that cannot load stops the run instead of failing every file.
        self.encoder()
        gpu = self.device_decoder()
        header = images.gpu_decodable_jpeg(data, self.max_pixels) if gpu is not None and gpu.has_room() else None
        if header is not None and gpu is not None and gpu.claim():
            out.jpeg, out.orientation, out.on_gpu = data, header.orientation, True
            swap = header.orientation >= 5
            out.width, out.height = (header.height, header.width) if swap else (header.width, header.height)
            gpu.submit(out)  # now, not once the rest of its chunk is decoded on the CPU: the GPU would wait for it
            return out, None
        return out, data

    def decode(self, out: Loaded, data: bytes) -> None:
        """Fill ``out.pixels`` (and the displayed size) from ``data``, or ``out.error``: in a worker process where
        the run has them, else here, at most ``cpu_decoders`` at a time. Also what a JPEG that nvJPEG refused gets."""
        if self.decode_pool() is not None:
            self.decode_in_process([(out, len(data))])
        else:
            with self._cpu_slots:
                self.decode_on_cpu(out, data, self.encoder())

    def decode_in_process(self, files: Sequence[tuple[Loaded, int]]) -> None:
        """``decode_on_cpu`` for each (Loaded, its size as read) in one call to one of the pool's processes, which
        reads the files again (each ``digest`` checks it is the content hashed here)."""
        import torch

        pool = self.decode_pool()
        assert pool is not None
        results = pool.decode_many([(out.task.found.path, size, out.digest) for out, size in files])
        for (out, _), result in zip(files, results):
            if isinstance(result, images.ImageError):
                out.error = str(result)
            else:
                out.width, out.height, picture = result
                out.pixels = torch.from_numpy(picture)

    def decode_on_cpu(self, out: Loaded, data: bytes, encoder: Encoder) -> None:
        """Fill ``out.pixels`` (and the displayed size) from ``data``, or ``out.error``."""
        staged = encoder.staged_transform
        try:
            out.width, out.height, out.pixels = decode_pixels(
                data, encoder.image_size, self.max_pixels, staged.to_uint8 if staged else encoder.image_transform)
        except images.ImageError as exc:
            out.error = str(exc)


READ_CHUNK = 8  # files per reader call: one call to a worker process for several (``Reader.read_many``)


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last may be shorter)."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def bounded_map(fn: Callable[[T], R], items: Iterable[T], workers: int, window: int) -> Iterator[R]:
    """``map`` over threads, yielding results as they finish, never more than ``window`` in flight.

    Pillow and torch release the GIL while decoding and resizing, so threads
    overlap with inference without copying pixels between processes. Each call's
    future puts itself on a queue when done, which this thread blocks on:
    ``concurrent.futures.wait`` would instead lock every pending future and hang
    a waiter on each, per result, all under the GIL the readers need.
    """
    if workers <= 0:
        yield from map(fn, items)
        return
    pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
    finished: queue.SimpleQueue[cf.Future[R]] = queue.SimpleQueue()
    in_flight = 0
    try:
        for item in items:
            pool.submit(fn, item).add_done_callback(finished.put)
            in_flight += 1
            if in_flight >= window:
                in_flight -= 1
                yield finished.get().result()
        while in_flight:
            in_flight -= 1
            yield finished.get().result()
    finally:
        # Stopped early (Ctrl-C, an error): the files not started yet are left for the next run, not decoded now.
        pool.shutdown(wait=True, cancel_futures=True)
