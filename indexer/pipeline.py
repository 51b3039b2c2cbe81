"""The local engine (``indexer.engine.Engine``): decode + embed in this process and its workers, tasks in, one outcome
per task out (``Failed``, ``Reused`` or ``Embedded``), away from the catalog and its lock.

An index run feeds it the plan's tasks and stores what comes out; anything else (a Ray worker, a
bench, ``search.classify``) can run it on a list of files with no index at all::

    with DecodeEmbed(lambda: encoder, Options()) as engine:
        for outcome in engine.run(Task.for_path(p) for p in paths):
            ...

What happens to a photo is ``DecodeEmbed.run``, read top to bottom: route and decode in the reader threads, a chunk
of files at a time (``indexer.route``: read, hash, the stored content reused, a baseline JPEG to nvJPEG
(``indexer.device_decode``), the rest of the chunk to a CPU worker process in one call (``indexer.decoders``)); then
embed in the indexing thread (the caller's), with what nvJPEG finished meanwhile (``indexer.embed``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from indexer.concurrency import Once, bounded_map, chunked, short_gil_turns
from indexer.decoders import CpuDecoder, cpu_decoder_for
from indexer.embed import BatchEmbedder
from indexer.engine import Contents
from indexer.items import Decoded, Embedded, Failed, OnDevice, Outcome, Reused, Task
from indexer.options import Options
from indexer.route import Loaded, Router, reader_threads

if TYPE_CHECKING:
    from clipsearch.encoders import Encoder
    from clipsearch.store.large_index import ShardRunner
    from indexer.device_decode import DeviceDecoder
    from indexer.faces import Runner as FacesRunner


class DecodeEmbed:
    """The model is loaded (``get_encoder``) only once a file needs it: a run that finds nothing new never pays
    for it. ``contents`` says which contents have vectors already (default: none)."""

    def __init__(self, get_encoder: Callable[[], Encoder], options: Options | None = None,
                 contents: Contents | None = None) -> None:
        self.options = options or Options()
        self.contents = contents or Contents()
        self._notes: list[str] = []  # what the run changed on its own, for the user
        # Made when the first file needs them, by whichever reader thread gets there first.
        self._encoder: Once[Encoder] = Once(lambda: _on_device(get_encoder()))
        self._cpu: Once[CpuDecoder] = Once(lambda: cpu_decoder_for(self.options, self._encoder(), self._notes))
        self._gpu: Once[DeviceDecoder | None] = Once(self._make_gpu_decoder)
        self.router = Router(self._encoder, self.contents, self._cpu, self._gpu, self.options.max_pixels)
        self.embedder = BatchEmbedder(self._encoder, self.options.batch_size)

    def run(self, tasks: Iterable[Task]) -> Iterator[Outcome]:
        """One outcome per task, as they are ready (not in order). Stopping early (Ctrl-C) leaves batches not
        handed on: ``close`` drops them."""
        threads = reader_threads(self.options.decode_workers())
        chunk = max(1, self.options.read_chunk)
        window = max((self.options.batch_size or 128) * 2 // chunk, threads)  # chunks in flight: two batches' worth
        with short_gil_turns():
            # route -> decode, in the reader threads: each chunk's files read, hashed, routed, the CPU's share decoded
            for decoded in bounded_map(self.router.route_and_decode, chunked(tasks, chunk), threads, window):
                # -> embed, here: with what nvJPEG decoded meanwhile; each batch's vectors once it settles
                yield from self._embed(decoded + self._from_gpu())
            yield from self._embed(self._from_gpu(wait=True), last=True)

    def _embed(self, items: list[Loaded], last: bool = False) -> list[Outcome]:
        """The outcomes ready now: a failure or a reused content as it is; a decoded file joins the model's batch,
        and the vectors of the batches that settled come back (``last``: of every batch). A content is marked
        embedded as its vector comes back, so that its copies later in the run reuse it."""
        out: list[Outcome] = []
        for item in items:
            if isinstance(item, (Failed, Reused)):
                out.append(item)
            elif self.contents.stored_since_read(item.digest):  # a copy of content embedded since it was read
                out.append(Reused(item.task, item.digest, item.width, item.height))
            else:
                out += self._marked(self.embedder.add(item))
        if last:
            out += self._marked(self.embedder.finish())
        return out

    def _marked(self, embedded: list[Embedded]) -> list[Embedded]:
        for outcome in embedded:
            self.contents.embedded(outcome.digest)
        return embedded

    def _from_gpu(self, wait: bool = False) -> list[Decoded | Failed]:
        """What nvJPEG decoded since it was asked last (``wait``: all it has left); a JPEG it refused is decoded on
        the CPU, which decides whether it is usable."""
        if (gpu := self._gpu.if_made()) is None:
            return []
        done = list(gpu.finish()) if wait else gpu.ready()
        return [self.router.decode_refused(d) if isinstance(d, OnDevice) else d for d in done]

    def _make_gpu_decoder(self) -> DeviceDecoder | None:
        if self.options.decode == "cpu" or self._encoder().array_kind == "numpy":  # numpy: the CPU, and no torch
            return None
        from indexer.device_decode import DeviceDecoder

        return DeviceDecoder.for_encoder(self._encoder(), self.options.decode)

    def encoder(self) -> Encoder:
        return self._encoder()

    def encoder_if_made(self) -> Encoder | None:
        return self._encoder.if_made()

    @property
    def gpu_decoded(self) -> int | None:
        """JPEGs nvJPEG decoded; None where the GPU decoded none by design."""
        gpu = self._gpu.if_made()
        return None if gpu is None else gpu.decoded

    @property
    def model_seconds(self) -> float:
        return self.embedder.model_seconds

    @property
    def notes(self) -> list[str]:
        note = self.embedder.note()
        return self._notes + ([note] if note else [])

    def shard_runner(self) -> ShardRunner | None:
        return None  # the store builds the shards here

    def faces_runner(self) -> FacesRunner | None:
        return None  # the faces stage's own threads

    def close(self) -> None:
        """Drop what is not handed on, stop the GPU decoder, end the worker processes. Always call it: workers left
        running break the interpreter's exit."""
        self.embedder.drop()
        try:
            if (gpu := self._gpu.if_made()) is not None:
                gpu.close()
        finally:
            if (cpu := self._cpu.if_made()) is not None:
                cpu.close()

    def release(self) -> None:
        pass  # lends nothing

    def __enter__(self) -> DecodeEmbed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _on_device(encoder: Encoder) -> Encoder:
    if encoder.device.startswith("cuda"):
        import torch

        # With the model on the GPU, the CPU ops left are the workers' small per-photo ones, where torch's
        # intra-op threads only take cores from the other workers: with one thread each, more photos per second
        # are decoded on a many-core box (bench/decode_profile.py).
        torch.set_num_threads(1)
    return encoder
