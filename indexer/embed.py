"""The embed stage: gathers decoded photos into batches, queues each on the model before storing the one before it,
and backs off when a GPU runs out of memory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from clipsearch.errors import UserError
from indexer.items import Decoded, DecodedVideo, Embedded

if TYPE_CHECKING:
    import torch

    from clipsearch.encoders import Encoder
    from clipsearch.encoders.base import Pending


def model_batch(pixels: list[torch.Tensor], encoder: Encoder) -> torch.Tensor:
    """One batch for ``encoder`` from what the decoders left: uint8 pictures from the CPU workers (normalised
    here, together, after one pinned copy to the GPU when the model runs there) and finished inputs, some of
    them already on the GPU (nvJPEG's). An encoder that runs without torch (``array_kind`` numpy) gets a numpy batch."""
    if encoder.array_kind == "numpy":
        return _numpy_batch(pixels, encoder)
    import torch

    on_gpu = torch.device(encoder.device) if encoder.device.startswith("cuda") else None
    staged = encoder.staged_transform
    pixels = list(pixels)
    for want_uint8 in (True, False):
        at = [i for i, p in enumerate(pixels) if (p.dtype == torch.uint8) == want_uint8 and not p.is_cuda]
        if not at:
            continue
        moved = torch.stack([pixels[i] for i in at])
        if on_gpu is not None:
            moved = moved.pin_memory().to(on_gpu, non_blocking=True)
        if want_uint8:
            assert staged is not None, "uint8 pixels come only from an encoder with a staged transform"
            moved = staged.finish(moved)
        for j, i in enumerate(at):
            pixels[i] = moved[j]
    return torch.stack(pixels)


def _numpy_batch(pixels: list[Any], encoder: Encoder) -> Any:
    """``model_batch`` for an encoder on numpy: the CPU decoders handed it uint8 (H, W, 3) arrays."""
    import numpy as np

    staged = encoder.staged_transform
    assert staged is not None, "a numpy encoder stages its preprocessing"
    return staged.finish(np.stack(pixels))


@dataclass(frozen=True)
class _Moment:
    """One moment of a video in a batch: a video's moments share batches with photos."""

    video: DecodedVideo
    n: int
    pixels: Any


_Entry = Union[Decoded, _Moment]


def _video_embedded(item: DecodedVideo, vectors: list[Any]) -> Embedded:
    """A video whose every moment has its vector: the file's own vector is their mean (what duplicates, tags and
    "more like this" use), the moments are searched each by itself."""
    import numpy as np

    matrix = np.stack(vectors).astype("float32")
    mean = matrix.mean(axis=0)
    mean /= max(float(np.linalg.norm(mean)), 1e-12)
    return Embedded(item.task, item.digest, item.width, item.height, mean, item.meta, item.signature, item.note,
                    tuple((t, matrix[n]) for n, (t, _) in enumerate(item.moments)), item.facts)


class BatchEmbedder:
    """``add`` decoded photos; their vectors come back, oldest batch first, as batches settle.

    A batch is queued on the model (``Encoder.start_images``) before the one before it is handed on: on a GPU
    the model computes batch N while the indexing thread stores N-1 and gathers N+1 (``Pending``), instead of
    waiting for both; on a CPU the model has computed it by the time ``start_images`` returns.
    """

    def __init__(self, encoder: Callable[[], Encoder], batch_size: int | None = None) -> None:
        self._encoder = encoder
        self.batch_limit = batch_size or 0  # images per model call; 0: the encoder's, once it is loaded
        self.out_of_memory_at = 0  # the batch size at which the GPU first ran out of memory, if it did
        self.model_seconds = 0.0  # what the model spent on the batches handed on
        self._batch: list[_Entry] = []
        self._in_flight: list[tuple[list[_Entry], Pending]] = []  # queued on the model, not handed on yet
        self._videos: dict[int, list[Any]] = {}  # id(video) -> its moments' vectors so far (None: not yet)

    def add(self, item: Decoded | DecodedVideo) -> list[Embedded]:
        """Add one decoded photo (a video: each of its moments); the vectors of the batches that settled meanwhile."""
        if isinstance(item, DecodedVideo):
            self._videos[id(item)] = [None] * len(item.moments)
            entries: list[_Entry] = [_Moment(item, n, pixels) for n, (_, pixels) in enumerate(item.moments)]
        else:
            entries = [item]
        if not self.batch_limit:
            self.batch_limit = self._encoder().batch_size
        out: list[Embedded] = []
        for entry in entries:
            self._batch.append(entry)
            if len(self._batch) >= self.batch_limit:
                out += self._flush(keep=1)
        return out

    def finish(self) -> list[Embedded]:
        """Everything added, embedded."""
        return self._flush(keep=0)

    def drop(self) -> None:
        """Forget what is not handed on yet (Ctrl-C: the next run does those files)."""
        self._batch.clear()
        self._in_flight.clear()
        self._videos.clear()

    def note(self) -> str | None:
        """What the run changed on its own, for the user."""
        if not self.out_of_memory_at:
            return None
        return (f"the GPU ran out of memory with {self.out_of_memory_at} images per batch; the run went on "
                f"with {self.batch_limit} (--batch-size {self.batch_limit} starts there)")

    def _flush(self, keep: int) -> list[Embedded]:
        """Queue the batch being gathered; the vectors of the batches in flight but the last ``keep``."""
        out: list[Embedded] = []
        if self._batch:
            items, self._batch = self._batch, []
            out += self._launch(items)
        return out + self._settle(keep)

    def _settle(self, keep: int) -> list[Embedded]:
        """Hand on the vectors of the batches in flight but the last ``keep``, oldest first."""
        out: list[Embedded] = []
        while len(self._in_flight) > keep:
            items, done = self._in_flight.pop(0)
            for item, vector in zip(items, done.result()):
                if isinstance(item, _Moment):
                    vectors = self._videos[id(item.video)]
                    vectors[item.n] = vector
                    if all(v is not None for v in vectors):
                        del self._videos[id(item.video)]
                        out.append(_video_embedded(item.video, vectors))
                    continue
                out.append(Embedded(item.task, item.digest, item.width, item.height, vector, item.meta, item.signature,
                                    item.note))
            self.model_seconds += done.seconds
        return out

    def _launch(self, items: list[_Entry]) -> list[Embedded]:
        """Queue ``items`` on the model; the vectors that had to be handed on first. A GPU out of memory (a large
        model, a small GPU, nvJPEG's pictures beside it) hands on what is in flight, frees the cache and tries again
        in halves, and later batches stay as small: the run goes on at the size that fits instead of failing."""
        encoder = self._encoder()
        if encoder.array_kind == "numpy":  # the CPU: no out-of-memory retries (and no torch to import)
            self._in_flight.append((items, encoder.start_images(model_batch([i.pixels for i in items], encoder))))
            return []
        import torch

        try:
            self._in_flight.append((items, encoder.start_images(model_batch([i.pixels for i in items], encoder))))
            return []
        except torch.cuda.OutOfMemoryError:
            pass  # out of the except block first: its traceback holds the failed call's tensors
        out = self._settle(0)
        torch.cuda.empty_cache()
        if len(items) == 1:
            raise UserError("the GPU ran out of memory with this model even one image at a time: try --device cpu "
                            "or a smaller model (everything indexed so far is kept)")
        self.out_of_memory_at = self.out_of_memory_at or self.batch_limit
        self.batch_limit = min(self.batch_limit, (len(items) + 1) // 2)
        done = 0
        while done < len(items):  # at the size that fits now, which a chunk's own retry may lower again
            chunk = items[done : done + self.batch_limit]
            out += self._launch(chunk)
            done += len(chunk)
        return out
