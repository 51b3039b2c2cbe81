"""The CPU decoders behind one small interface: ``decode_many(reads) -> [Decoded | Failed]``, in order.

Two kinds: ``ThreadDecoder`` decodes in the calling (reader) thread, ``ProcessDecoder`` sends a chunk
of files to one of the decode worker processes (``indexer.decode_pool``). ``cpu_decoder_for`` picks
one for a run. The GPU decoder (``indexer.device_decode``) works asynchronously and is not one of
these; only the router (``indexer.route``) knows both.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from clipsearch import images
from clipsearch.errors import UserError
from indexer.cpu_decode import Film, decode_pixels, decode_video
from indexer.items import Decoded, DecodedVideo, Failed, Read
from indexer.options import Options

if TYPE_CHECKING:
    from clipsearch.encoders import Encoder
    from indexer.decode_pool import DecodePool


class CpuDecoder(Protocol):
    def decode_many(self, reads: Sequence[Read]) -> list[Decoded | DecodedVideo | Failed]:
        """Each file's model input (uint8 where the model's preprocessing is staged), a video's moments, or its
        failure, in order."""

    def close(self) -> None: ...


class ThreadDecoder:
    """Decodes in the calling thread with the model's own transform, at most ``slots`` at a time (more reader
    threads than that only read ahead); None: no limit."""

    def __init__(self, transform: Callable[[Any], Any], min_side: int | None, max_pixels: int,
                 slots: int | None = None) -> None:
        self._transform = transform
        self._limits = (min_side, max_pixels)
        self._slots = threading.BoundedSemaphore(slots) if slots else contextlib.nullcontext()

    @classmethod
    def for_encoder(cls, encoder: Encoder, max_pixels: int, slots: int | None = None) -> ThreadDecoder:
        staged = encoder.staged_transform
        return cls(staged.to_uint8 if staged else encoder.image_transform, encoder.image_size, max_pixels, slots)

    def decode_many(self, reads: Sequence[Read]) -> list[Decoded | DecodedVideo | Failed]:
        return [self._decode(read) for read in reads]

    def _decode(self, read: Read) -> Decoded | DecodedVideo | Failed:
        try:
            with self._slots:
                if read.video:
                    return video_item(read, decode_video(read.task.path, self._limits[0], self._transform), lambda p: p)
                width, height, pixels, meta, sign, note = decode_pixels(read.data, *self._limits, self._transform)
        except images.ImageError as exc:
            return Failed(read.task, str(exc))
        return Decoded(read.task, read.digest, width, height, pixels, meta, sign, note)

    def close(self) -> None:
        pass


class ProcessDecoder:
    """Sends the files of a call to one worker process together (one call's overhead for several photos); the
    child reads each file again (the page cache has it) and checks it is the content hashed here."""

    def __init__(self, pool: DecodePool, array_kind: str = "torch") -> None:
        self.pool = pool
        self.array_kind = array_kind  # what the encoder takes: torch tensors, or the workers' numpy arrays as they are

    def decode_many(self, reads: Sequence[Read]) -> list[Decoded | DecodedVideo | Failed]:
        if self.array_kind == "numpy":
            def as_tensor(array: Any) -> Any:
                return array
        else:
            from torch import from_numpy as as_tensor

        results = self.pool.decode_many([(read.task.path, len(read.data), read.digest) for read in reads])
        out: list[Decoded | DecodedVideo | Failed] = []
        for read, result in zip(reads, results):
            if isinstance(result, images.ImageError):
                out.append(Failed(read.task, str(result)))
            elif read.video:
                out.append(video_item(read, result, as_tensor))  # type: ignore[arg-type]
            else:
                width, height, picture, meta, sign, note = result
                out.append(Decoded(read.task, read.digest, width, height, as_tensor(picture), meta, sign, note))
        return out

    def close(self) -> None:
        self.pool.close()


def video_item(read: Read, film: Film, tensor: Callable[[Any], Any]) -> DecodedVideo:
    """A video decoded (``cpu_decode.decode_video``) as the embed stage takes it."""
    facts, moments, meta, sign, note = film
    return DecodedVideo(read.task, read.digest, facts.width, facts.height, [(t, tensor(p)) for t, p in moments],
                        facts, meta, sign, note)


def in_processes(options: Options, encoder: Encoder, workers: int) -> bool:
    """Whether a run decodes on the CPU in worker processes (``indexer.decode_pool``) rather than threads.

    auto: processes on Linux. Each has its own GIL, which threads share with the indexing thread
    (bench/decode_scaling.py), a crash in a decoder library costs one file instead of the run, and a child
    (Pillow and numpy, no torch) holds little memory of its own. They need a model whose preprocessing stops at uint8
    pictures (``staged_transform``: every open_clip model); Hugging Face processors stay in threads.
    """
    from indexer import decode_pool

    if options.worker_kind == "threads" or workers <= 0 or encoder.staged_transform is None:
        return False
    return options.worker_kind == "processes" or decode_pool.available()


def decode_pool_for(options: Options, encoder: Encoder, workers: int) -> DecodePool | None:
    """The worker processes for a run, or None where it decodes in threads (``in_processes``)."""
    from indexer.decode_pool import DecodePool

    if not in_processes(options, encoder, workers) or encoder.staged_transform is None:
        return None
    return DecodePool(encoder.staged_transform.plan, encoder.image_size, options.max_pixels, workers)


def cpu_decoder_for(options: Options, encoder: Encoder, notes: list[str]) -> CpuDecoder:
    """The run's CPU decoder: worker processes where they can run (a note in ``notes`` if they could not start,
    unless the user asked for them: then an error), else threads."""
    from indexer.decode_pool import WorkersDidNotStart

    workers = options.decode_workers()
    try:
        pool = decode_pool_for(options, encoder, workers)
    except WorkersDidNotStart as exc:
        if options.worker_kind == "processes":
            raise UserError(f"decode worker processes could not start ({exc}); use --worker-kind threads") from None
        notes.append(f"decode worker processes could not start ({exc}): this run decoded in threads")
        pool = None
    if pool is not None:
        return ProcessDecoder(pool, encoder.array_kind)
    return ThreadDecoder.for_encoder(encoder, options.max_pixels, slots=workers)
