"""Decode baseline JPEGs with nvJPEG on the GPU, in a thread of its own, while the CPU workers decode the rest.

Where it pays (``bench/decode_rates.py``; the H100 figures are in docs/benchmarks.md):
baseline JPEGs of every size decode and preprocess faster there than with Pillow's
draft decode on all 16 cores, progressive ones ten times slower (nvJPEG decodes those
on the host, one by one, so ``images.gpu_decodable_jpeg`` keeps them on the CPU).

The GPU takes JPEGs only while its backlog is short (``claim``); past that the
workers decode on the CPU. So both decoders stay busy whichever is faster for
the photos at hand: the GPU alone where it is ahead, the two together where
neither keeps up with the model. A file nvJPEG rejects is decoded again on the
CPU, which decides whether it is usable.
"""

from __future__ import annotations

import contextlib
import io
import queue
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import torch

from clipsearch.errors import UserError
from indexer.items import Decoded, OnDevice

if TYPE_CHECKING:
    from clipsearch.encoders import Encoder

def upright(t: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply an EXIF orientation to a (C, H, W) tensor, as ``PIL.Image.transpose`` does in ``images.decode``."""
    if orientation == 2:
        return t.flip(-1)
    if orientation == 3:
        return t.flip(-1, -2)
    if orientation == 4:
        return t.flip(-2)
    if orientation == 5:
        return t.transpose(-1, -2)
    if orientation == 6:
        return torch.rot90(t, -1, (-2, -1))
    if orientation == 7:
        return t.transpose(-1, -2).flip(-1, -2)
    if orientation == 8:
        return torch.rot90(t, 1, (-2, -1))
    return t


def _as_tensor(data: bytes) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # read-only buffer: nvJPEG only reads it
        return torch.frombuffer(data, dtype=torch.uint8)


def decode_jpegs(datas: list[bytes], device: torch.device) -> list[torch.Tensor]:
    """torchvision's batched JPEG decoder, to RGB uint8 (3, H, W): nvJPEG on a CUDA device, libjpeg on the CPU."""
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision >= 0.29 marks its decoders deprecated in favour of TorchCodec
        out = decode_jpeg([_as_tensor(d) for d in datas], mode=ImageReadMode.RGB, device=device)
    return list(out)


def _probe_jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buf, "JPEG")
    return buf.getvalue()


class DeviceDecoder:
    """nvJPEG decoding plus the model's preprocessing on the GPU, fed by the decode workers."""

    MAX_IMAGES = 32  # per nvJPEG call: 12 MP photos decode faster in 32s than in 128s (bench/decode_rates.py)
    MAX_PIXELS = 256_000_000  # per nvJPEG call, bounding the GPU memory it takes (768 MB of RGB)
    PREPROCESS_PIXELS = 64_000_000  # per preprocessing call: its float copy takes 768 MB

    def __init__(self, preprocess: Callable[[torch.Tensor], torch.Tensor], device: str, backlog: int = 96) -> None:
        self._preprocess = preprocess
        self._device = torch.device(device)
        if self._device.type == "cuda" and self._device.index is None:
            self._device = torch.device("cuda", torch.cuda.current_device())
        self._backlog = backlog
        self._claimed = 0  # JPEGs handed to the GPU and not yet decoded
        self._lock = threading.Lock()
        self._inbox: queue.SimpleQueue[OnDevice | None] = queue.SimpleQueue()
        self._outbox: queue.SimpleQueue[Decoded | OnDevice] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # Its own stream, so decoding overlaps the model's kernels; on the CPU (tests) libjpeg stands in for nvJPEG.
        self._stream = torch.cuda.Stream(self._device) if self._device.type == "cuda" else None
        self.decoded = 0  # how many the GPU decoded, for the run's summary
        self.rejected = 0  # how many nvJPEG refused (decoded on the CPU instead)

    @classmethod
    def for_encoder(cls, encoder: Encoder, mode: str = "auto") -> DeviceDecoder | None:
        """The decoder for ``encoder``'s GPU, or None where the CPU decodes everything."""
        if mode == "cpu":
            return None
        unexpected = False  # a GPU and a model that could use it, but nvJPEG would not start: worth a note
        if not encoder.device.startswith("cuda"):
            why = "the model runs on the CPU"
        elif encoder.device_transform is None:
            why = f"{encoder.spec}'s preprocessing has no tensor version (Hugging Face models keep theirs)"
        else:
            try:
                decoder = cls(encoder.device_transform, encoder.device)
                decode_jpegs([_probe_jpeg()], decoder._device)
                return decoder
            except (RuntimeError, ImportError) as exc:
                why, unexpected = f"nvJPEG is not available ({str(exc).splitlines()[0][:200]})", True
        if mode == "gpu":
            raise UserError(f"--decode gpu: {why}")
        if unexpected:
            print(f"note: JPEGs are decoded on the CPU: {why}", file=sys.stderr)
        return None

    def has_room(self) -> bool:
        """Whether a claim would likely succeed: checked before parsing a header (Python, under the GIL) that a
        full backlog would waste."""
        return self._claimed < self._backlog

    def claim(self) -> bool:
        """Reserve a place for one more JPEG; False when the GPU already has enough waiting."""
        with self._lock:
            if self._claimed >= self._backlog:
                return False
            self._claimed += 1
            return True

    def submit(self, item: OnDevice) -> None:
        """Queue a claimed JPEG; it comes back from ``ready``/``finish`` as ``Decoded`` with its pixels on the GPU,
        or as the same ``OnDevice`` when nvJPEG refused it. Thread-safe: the reader threads call it."""
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="nvjpeg", daemon=True)
                    self._thread.start()
        self._inbox.put(item)

    def ready(self) -> list[Decoded | OnDevice]:
        """The JPEGs decoded so far, without waiting."""
        out = []
        while True:
            try:
                out.append(self._outbox.get_nowait())
            except queue.Empty:
                return out

    def finish(self) -> Iterator[Decoded | OnDevice]:
        """Every JPEG still queued, once decoded; the decoder is finished after this."""
        if self._thread is not None:
            self._inbox.put(None)
            self._thread.join()
            self._thread = None
        yield from self.ready()

    def close(self) -> None:
        """Stop without waiting for queued work (Ctrl-C)."""
        if self._thread is not None:
            self._inbox.put(None)
            self._thread = None

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._inbox.get()
            if first is None:
                return
            items, area = [first], first.width * first.height
            while len(items) < self.MAX_IMAGES and area < self.MAX_PIXELS:
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                items.append(item)
                area += item.width * item.height
            try:
                pixels = self._decode(items)
            except Exception:  # noqa: BLE001 - whatever went wrong, the CPU path gets these files
                pixels = [None] * len(items)
            for item, picture in zip(items, pixels):
                if picture is None:
                    self.rejected += 1  # it keeps its bytes for the CPU decoder
                    self._outbox.put(item)
                else:
                    self.decoded += 1
                    self._outbox.put(Decoded(item.task, item.digest, item.width, item.height, picture, item.meta))
            with self._lock:
                self._claimed -= len(items)

    def _decode(self, items: list[OnDevice]) -> list[torch.Tensor | None]:
        """Each JPEG's model input on the GPU, or None where nvJPEG refused it."""
        datas = [item.jpeg for item in items]
        with torch.inference_mode(), torch.cuda.stream(self._stream) if self._stream else contextlib.nullcontext():
            try:
                images: list[torch.Tensor | None] = list(decode_jpegs(datas, self._device))
            except RuntimeError:  # one bad file fails the whole call: find it by decoding one at a time
                images = []
                for data in datas:
                    try:
                        images.append(decode_jpegs([data], self._device)[0])
                    except RuntimeError:
                        images.append(None)
            pixels = self._prepare(items, images)
        if self._stream is not None:
            self._stream.synchronize()
        return pixels

    def _prepare(self, items: list[OnDevice], images: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
        """Orientation and the model's preprocessing, one call per group of same-sized photos (a camera's
        photos share a size): a few kernels per group instead of a dozen per photo."""
        pixels: list[torch.Tensor | None] = [None] * len(items)
        groups: dict[tuple[tuple[int, ...], int], list[int]] = {}
        for at, (item, image) in enumerate(zip(items, images)):
            if image is not None:
                groups.setdefault((tuple(image.shape), item.orientation), []).append(at)
        for (shape, orientation), members in groups.items():
            per_call = max(1, self.PREPROCESS_PIXELS // (shape[-1] * shape[-2]))
            for start in range(0, len(members), per_call):
                part = members[start : start + per_call]
                try:
                    stacked = torch.stack([images[at] for at in part])  # type: ignore[misc]
                    prepared = self._preprocess(upright(stacked, orientation))
                except RuntimeError:  # e.g. out of GPU memory for huge photos: the CPU path draft-decodes them
                    continue
                if self._stream is not None:
                    prepared.record_stream(torch.cuda.default_stream(self._device))  # where the model will read it
                for at, one in zip(part, prepared):
                    pixels[at] = one
        return pixels
