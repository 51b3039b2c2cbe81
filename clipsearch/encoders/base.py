"""The one interface every model backend implements."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import torch
    from PIL import Image

    from clipsearch.encoders.tensor_preprocess import Split


def _unit_rows(features: torch.Tensor) -> torch.Tensor:
    """Rows scaled to length 1 in float32, safely, where ``features`` are: rescaled by their largest entry first,
    so that tiny activations (whose squares underflow float32) still give a unit vector."""
    import torch

    f = features.float()
    f = f / f.abs().amax(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    return torch.nn.functional.normalize(f, dim=-1)


def unit(features: torch.Tensor) -> np.ndarray:
    """``features`` as unit-length float32 rows on the CPU."""
    return _unit_rows(features).cpu().numpy()


class Pending:
    """A batch's unit vectors that the device may still be computing; ``result()`` waits for them.

    On a GPU the model's kernels run asynchronously: the indexing thread can store the previous batch's vectors
    and assemble the next batch while this one computes, instead of leaving the GPU idle for that time. The
    vectors come back through a page-locked buffer copied without blocking, an event marking the copy's end.
    ``seconds`` is the time the device spent on the batch (CUDA events on a GPU, the wall clock on a CPU): the
    run adds them up, so a report tells whether the model or the decoding set its pace.
    """

    def __init__(self, forward: Callable[[], torch.Tensor], device: str) -> None:
        import torch

        started = time.perf_counter()
        self._start: torch.cuda.Event | None = None
        self._end: torch.cuda.Event | None = None
        if device.startswith("cuda"):
            self._start = torch.cuda.Event(enable_timing=True)
            self._start.record(torch.cuda.current_stream(torch.device(device)))
        rows = _unit_rows(forward())
        if rows.is_cuda:
            self._host = torch.empty(rows.shape, dtype=rows.dtype, pin_memory=True)
            self._host.copy_(rows, non_blocking=True)  # on the current stream of rows' device, as the event below
            self._end = torch.cuda.Event(enable_timing=True)
            self._end.record(torch.cuda.current_stream(rows.device))
            self._seconds: float | None = None
        else:
            self._host = rows
            self._seconds = time.perf_counter() - started

    def ready(self) -> bool:
        """Whether ``result()`` would return without waiting."""
        return self._end is None or self._end.query()

    def result(self) -> np.ndarray:
        if self._end is not None:
            self._end.synchronize()
        return self._host.numpy()

    @property
    def seconds(self) -> float:
        """What the device spent on this batch, from the model's input to the vectors' copy; waits for it."""
        if self._seconds is None:
            assert self._start is not None and self._end is not None
            self._end.synchronize()
            self._seconds = self._start.elapsed_time(self._end) / 1000
        return self._seconds


def cpu_has_bf16() -> bool:
    """Native bf16 matmuls (AVX512-BF16 or AMX): there torch's bf16 is several times faster than fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def to_model(batch: torch.Tensor, device: str, dtype: torch.dtype) -> torch.Tensor:
    """A batch on the model's device and dtype; a CPU batch headed for a GPU is page-locked first so the copy
    runs asynchronously, a batch already there (decoded by nvJPEG) stays where it is."""
    if device.startswith("cuda") and not batch.is_cuda and not batch.is_pinned():
        batch = batch.pin_memory()
    return batch.to(device, non_blocking=True).to(dtype)


class Encoder(ABC):
    """A loaded CLIP-family model: images and texts in, unit-length float32 vectors out.

    ``image_transform`` turns an upright RGB PIL image into the model's input
    tensor (it runs in decode workers); ``device_transform``, where a backend has
    one, does the same to a decoded uint8 (3, H, W) tensor on the GPU (nvJPEG's
    output); ``staged_transform``, where there is one, is ``image_transform`` in two
    halves: decode workers stop at uint8 and a whole batch is normalised at once.
    ``encode_images`` takes a stacked batch of model inputs, on either device;
    ``start_images`` does the same without waiting for the device (``Pending``).
    ``fingerprint`` identifies weights and preprocessing so an index never mixes
    vectors of two models.
    """

    spec: str
    dim: int
    image_size: int
    fingerprint: str
    device: str
    precision: str
    # What the model multiplies image-text cosines by before a softmax (CLIP's learned temperature): zero-shot
    # probabilities use it (clipsearch.zeroshot). 100 is OpenAI CLIP's trained value.
    logit_scale: float = 100.0
    batch_size: int = 32  # images per encode_images call that keep the device busy (indexing default)
    image_transform: Callable[[Image.Image], torch.Tensor]
    device_transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    staged_transform: Split | None = None
    # What ``encode_images`` takes and the decoders hand over: torch tensors, or numpy arrays for a backend that runs
    # without torch (``onnx_image``).
    array_kind: str = "torch"

    def encode_images(self, batch: torch.Tensor) -> np.ndarray:
        """(N, 3, H, W) preprocessed pixels -> (N, dim) L2-normalised float32."""
        return self.start_images(batch).result()

    @abstractmethod
    def start_images(self, batch: torch.Tensor) -> Pending:
        """``encode_images`` that returns once the work is queued on the device (at once on a GPU, after it on a CPU)."""

    @abstractmethod
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (N, dim) L2-normalised float32."""

    def export_text_tower(self, quiet: bool = False) -> Path | None:
        """Export the text side for torch-free searches (``encoders.onnx_text``); None where a backend has none."""
        return None

    def export_image_tower(self, quiet: bool = False) -> Path | None:
        """Export the image tower for torch-free runs (``encoders.onnx_image``); None where a backend has none."""
        return None
