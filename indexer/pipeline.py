"""Decode + embed: tasks in, one outcome per task out (``Failed``, ``Reused`` or ``Embedded``), away from the
catalog and its lock.

An index run feeds it the plan's tasks and stores what comes out; anything else (a Ray worker, a
bench) can run it on a list of files with no index at all::

    with DecodeEmbed(lambda: encoder, Options()) as stages:
        for outcome in stages.run(Task.for_path(p) for p in paths):
            ...

Inside: reader threads read and hash each file and route it (``indexer.reader``) to the CPU decoder
(worker processes or threads, ``indexer.decoders``) or to nvJPEG (``indexer.device_decode``); the
indexing thread (the caller's) batches what is decoded on the model (``indexer.embed``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from indexer.concurrency import Once, short_gil_turns
from indexer.decoders import CpuDecoder, cpu_decoder_for
from indexer.embed import BatchEmbedder
from indexer.items import Decoded, DecodedVideo, Embedded, Failed, OnDevice, Outcome, Reused, Task
from indexer.options import Options
from indexer.plan import Contents
from indexer.reader import Reader, reader_threads

if TYPE_CHECKING:
    from clipsearch.encoders import Encoder
    from indexer.device_decode import DeviceDecoder


class DecodeEmbed:
    """The model is loaded (``get_encoder``) only once a file needs it: a run that finds nothing new never pays
    for it. ``contents`` says which contents have vectors already (default: none)."""

    def __init__(self, get_encoder: Callable[[], Encoder], options: Options | None = None,
                 contents: Contents | None = None) -> None:
        self.options = options or Options()
        self.contents = contents or Contents()
        self.notes: list[str] = []  # what the run changed on its own, for the user
        self.encoder: Once[Encoder] = Once(lambda: _on_device(get_encoder()))
        self.device: Once[DeviceDecoder | None] = Once(self._make_device_decoder)
        self.cpu: Once[CpuDecoder] = Once(lambda: cpu_decoder_for(self.options, self.encoder(), self.notes))
        self.reader = Reader(self.encoder, self.contents, self.cpu, self.device, self.options.max_pixels)
        self.embedder = BatchEmbedder(self.encoder, self.options.batch_size)

    def _make_device_decoder(self) -> DeviceDecoder | None:
        if self.options.decode == "cpu" or self.encoder().array_kind == "numpy":  # numpy: the CPU, and no torch
            return None
        from indexer.device_decode import DeviceDecoder

        return DeviceDecoder.for_encoder(self.encoder(), self.options.decode)

    def run(self, tasks: Iterable[Task]) -> Iterator[Outcome]:
        """One outcome per task, as they are ready (not in order). Stopping early (Ctrl-C) leaves batches not
        handed on: ``close`` drops them. A content is marked embedded as its vector is handed on, so that its
        copies later in the run reuse it."""
        for outcome in self._outcomes(tasks):
            if isinstance(outcome, Embedded):
                self.contents.embedded(outcome.digest)
            yield outcome

    def _outcomes(self, tasks: Iterable[Task]) -> Iterator[Outcome]:
        workers = self.options.decode_workers()
        threads = reader_threads(workers)
        window = max((self.options.batch_size or 128) * 2 // max(1, self.options.read_chunk), threads)  # calls
        with short_gil_turns():
            for item in self.reader.stream(tasks, self.options.read_chunk, threads, window):
                yield from self._take(item)
                if (gpu := self.device.if_made()) is not None:
                    yield from self._from_device(gpu.ready())
            if (gpu := self.device.if_made()) is not None:
                yield from self._from_device(gpu.finish())
            yield from self.embedder.finish()

    @property
    def gpu_decoded(self) -> int | None:
        """JPEGs nvJPEG decoded; None where the GPU decoded none by design."""
        gpu = self.device.if_made()
        return None if gpu is None else gpu.decoded

    @property
    def model_seconds(self) -> float:
        return self.embedder.model_seconds

    def all_notes(self) -> list[str]:
        note = self.embedder.note()
        return self.notes + ([note] if note else [])

    def _take(self, item: Failed | Reused | Decoded | DecodedVideo) -> Iterator[Outcome]:
        if not isinstance(item, (Decoded, DecodedVideo)):
            yield item
        elif self.contents.stored_since_read(item.digest):  # a copy of content embedded since it was read
            yield Reused(item.task, item.digest, item.width, item.height)
        else:
            yield from self.embedder.add(item)

    def _from_device(self, items: Iterable[Decoded | OnDevice]) -> Iterator[Outcome]:
        for item in items:
            yield from self._take(self.reader.decode_refused(item) if isinstance(item, OnDevice) else item)

    def close(self) -> None:
        """Drop what is not handed on, stop the GPU decoder, end the worker processes. Always call it: workers left
        running break the interpreter's exit."""
        self.embedder.drop()
        try:
            if (gpu := self.device.if_made()) is not None:
                gpu.close()
        finally:
            if (cpu := self.cpu.if_made()) is not None:
                cpu.close()

    def __enter__(self) -> DecodeEmbed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _on_device(encoder: Encoder) -> Encoder:
    if encoder.device.startswith("cuda"):
        import torch

        # With the model on the GPU, the CPU ops left are the workers' small per-photo ones, where torch's
        # intra-op threads only take cores from the other workers: with one thread each, more photos per second
        # are decoded on a 16-core box (bench/decode_profile.py).
        torch.set_num_threads(1)
    return encoder
