"""The one interface every model backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import torch
    from PIL import Image

    from clipsearch.encoders.tensor_preprocess import Split


def unit(features: torch.Tensor) -> np.ndarray:
    """Rows scaled to length 1 in float32, safely: rescaled by their largest entry first, so that
    tiny activations (whose squares underflow float32) still give a unit vector."""
    import torch

    f = features.float()
    f = f / f.abs().amax(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    return torch.nn.functional.normalize(f, dim=-1).cpu().numpy()


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
    ``encode_images`` takes a stacked batch of model inputs, on either device.
    ``fingerprint`` identifies weights and preprocessing so an index never mixes
    vectors of two models.
    """

    spec: str
    dim: int
    image_size: int
    fingerprint: str
    device: str
    precision: str
    batch_size: int = 32  # images per encode_images call that keep the device busy (indexing default)
    image_transform: Callable[[Image.Image], torch.Tensor]
    device_transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    staged_transform: Split | None = None

    @abstractmethod
    def encode_images(self, batch: torch.Tensor) -> np.ndarray:
        """(N, 3, H, W) preprocessed pixels -> (N, dim) L2-normalised float32."""

    @abstractmethod
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (N, dim) L2-normalised float32."""

    def export_text_tower(self, quiet: bool = False) -> Path | None:
        """Export the text side for torch-free searches (``encoders.onnx_text``); None where a backend has none."""
        return None
