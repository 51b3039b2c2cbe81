"""What runs inside the Ray workers of ``index --engine ray``: decode tasks and model actors.

The Ray Data batch-inference pattern: stateless CPU tasks read, hash and decode files
(``decode_files``), a pool of actors holds the model and embeds what they decoded (``EmbedPhotos``).
Each runs the local engine's own code for its part: ``route.load`` (read, hash, is the content
stored?), ``cpu_decode.decode_pixels`` with the model's staged transform (as the decode worker
processes do: orientation, colour, the pixel cap, draft JPEG decoding), ``embed.model_batch`` and the
encoder. Nothing here touches the store: the driver (``indexer.ray_engine``) turns the rows that come
back into the run's outcomes and stores them.

Rows travel as plain columns (Arrow): a task row is ``i`` (its place in the driver's window), ``path``
and ``size``; a result row adds ``kind``, ``error``, ``digest``, ``width``, ``height``, ``meta`` (JSON),
``signature``, ``edges`` and ``grid`` (``clipsearch.signature``), and either ``pixels`` (uint8 bytes of ``side`` x
``side`` x 3) or, after the model, ``vector`` (float32 bytes). Imported by the workers, so: no Ray, no store
and no torch at import.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from clipsearch import images
from indexer.cpu_decode import decode_pixels
from indexer.items import Failed, Read, Reused, Task
from indexer.route import load
from indexer.walk import Found

if TYPE_CHECKING:
    from clipsearch.encoders import Encoder
    from clipsearch.encoders.geometry import Plan

FAILED, REUSED, DECODED, EMBEDDED = 0, 1, 2, 3
Batch = dict[str, Any]  # a Ray Data batch in "numpy" format: column -> array


class KnownContents:
    """Which contents the catalog holds vectors for, as sorted 8-byte prefixes of their hashes: 8 bytes a content
    (80 MB at 10 million), put in Ray's object store once and read there without a copy by every decode task.

    A prefix can match a content that is not stored (about one chance in 2^64 / contents): such a file comes back
    as reused with no vector, and the driver, which checks full hashes, decodes and embeds it itself."""

    def __init__(self, prefixes: np.ndarray) -> None:
        self.prefixes = prefixes

    @classmethod
    def of(cls, prefixes: bytes) -> KnownContents:
        """From ``Catalog.content_prefixes``: 8 bytes a content."""
        array = np.frombuffer(prefixes, dtype=">u8").astype(np.uint64)
        array.sort()
        return cls(array)

    def might_hold(self, digest: bytes) -> bool:
        key = np.uint64(int.from_bytes(digest[:8], "big"))
        at = int(np.searchsorted(self.prefixes, key))
        return at < len(self.prefixes) and self.prefixes[at] == key


_roots_checked: set[str] = set()
_plugins_registered = False


def prepare_worker(roots: Sequence[str]) -> None:
    """Once per worker process: the image formats of plugins (HEIC, AVIF), as the run registered them; and fail the
    task, and so the run, with one line where this node does not see the folders being indexed (every file would
    otherwise be recorded as unreadable)."""
    global _plugins_registered
    if not _plugins_registered:
        images.register_plugins()
        _plugins_registered = True
    for root in roots:
        if root in _roots_checked:
            continue
        if not os.path.isdir(root):
            import socket

            raise FileNotFoundError(f"the folder {root} is not visible on the Ray node {socket.gethostname()}: "
                                    "mount it at the same path on every node")
        _roots_checked.add(root)


def decode_files(batch: Batch, *, known: list[Any], plan: Plan, side: int | None, max_pixels: int,
                 roots: Sequence[str]) -> Batch:
    """A decode task: read, hash and decode each file of ``batch``. ``known`` holds a reference to the
    ``KnownContents`` in the object store (in a list, so that Ray hands the reference on rather than the array)."""
    import ray

    prepare_worker(roots)
    stored = KnownContents(ray.get(known[0]))
    out = _columns(len(batch["i"]))
    for row, (path, size) in enumerate(zip(batch["path"], batch["size"])):
        task = Task(Found(str(path), int(size), 0))
        loaded = load(task, stored.might_hold)
        if isinstance(loaded, Failed):
            _put(out, row, FAILED, error=loaded.error)
            continue
        if isinstance(loaded, Reused):
            _put(out, row, REUSED, digest=loaded.digest, width=loaded.width, height=loaded.height)
            continue
        assert isinstance(loaded, Read)
        if loaded.video:  # one row per file here, where a video is many moments: the local engine indexes them
            _put(out, row, FAILED, digest=loaded.digest, error="videos are indexed by the local engine only, not under "
                 "--engine ray yet (touch the file and run index without --engine ray)")
            continue
        try:
            width, height, picture, meta, sign, note = decode_pixels(loaded.data, side, max_pixels, plan)
        except images.ImageError as exc:
            _put(out, row, FAILED, digest=loaded.digest, error=str(exc))
            continue
        _put(out, row, DECODED, digest=loaded.digest, width=width, height=height, meta=json.dumps(asdict(meta)),
             error=note or "")  # a decoded row's error column carries its note
        out["pixels"][row] = np.ascontiguousarray(picture, dtype=np.uint8).tobytes()
        out["side"][row] = picture.shape[0]
        out["signature"][row], out["edges"][row], out["grid"][row] = sign
    out["i"] = np.asarray(batch["i"], dtype=np.int64)
    return out


class EmbedPhotos:
    """A model actor: loads the index's model once, embeds the decoded rows of each batch it is handed and passes
    the others on. It refuses to run with weights other than the driver's (a node with another checkpoint at the
    same path would otherwise mix two models' vectors in one index)."""

    def __init__(self, spec: str, fingerprint: str, device: str = "auto", precision: str = "auto",
                 threads: int | None = None) -> None:
        import torch

        from clipsearch.encoders import load_encoder

        if threads:
            torch.set_num_threads(threads)
        self.encoder: Encoder = load_encoder(spec, device=device, precision=precision)
        if self.encoder.fingerprint != fingerprint:
            raise RuntimeError(f"the model {spec} on this Ray node is not the one the index was built with "
                               "(other weights or preprocessing): give every node the same files")

    @classmethod
    def configured(cls, **settings: Any) -> type[EmbedPhotos]:
        """This class with its settings built in: Ray then ships the settings with the class instead of keeping
        constructor arguments in its object store, which an actor restarted after a crash could find gone."""

        class Configured(cls):  # type: ignore[valid-type, misc]
            def __init__(self) -> None:
                super().__init__(**settings)

        Configured.__name__ = Configured.__qualname__ = cls.__name__
        return Configured

    def __call__(self, batch: Batch) -> Batch:
        import torch

        from indexer.embed import model_batch

        kinds = np.asarray(batch["kind"])
        rows = np.flatnonzero(kinds == DECODED)
        vectors = [b""] * len(kinds)
        if len(rows):
            pixels = [torch.from_numpy(np.frombuffer(batch["pixels"][r], dtype=np.uint8)
                                       .reshape(int(batch["side"][r]), -1, 3).copy()) for r in rows]
            embedded = self.encoder.encode_images(model_batch(pixels, self.encoder))
            for r, vector in zip(rows, embedded):
                vectors[r] = np.asarray(vector, dtype=np.float32).tobytes()
            kinds = kinds.copy()
            kinds[rows] = EMBEDDED
        out = {key: batch[key] for key in ("i", "error", "digest", "width", "height", "meta", "signature", "edges",
                                           "grid")}
        out["kind"] = kinds
        out["vector"] = np.array(vectors, dtype=object)
        return out


def _columns(n: int) -> Batch:
    return {
        "kind": np.zeros(n, dtype=np.int8), "error": np.array([""] * n, dtype=object),
        "digest": np.array([b""] * n, dtype=object), "width": np.zeros(n, dtype=np.int64),
        "height": np.zeros(n, dtype=np.int64), "meta": np.array([""] * n, dtype=object),
        "pixels": np.array([b""] * n, dtype=object), "side": np.zeros(n, dtype=np.int64),
        "signature": np.full(n, -1, dtype=np.int64),  # -1: none (63 bits: a DCT hash is never negative)
        "edges": np.array([b""] * n, dtype=object), "grid": np.array([b""] * n, dtype=object),
    }


def _put(out: Batch, row: int, kind: int, *, digest: bytes = b"", width: int = 0, height: int = 0, error: str = "",
         meta: str = "") -> None:
    out["kind"][row] = kind
    out["digest"][row] = digest
    out["width"][row], out["height"][row] = width, height
    out["error"][row] = error
    out["meta"][row] = meta
