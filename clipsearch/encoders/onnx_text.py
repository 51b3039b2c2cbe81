"""A model's text tower on onnxruntime, so that a cold `clipsearch search "words"` never imports torch.

Importing torch and open_clip costs seconds before the first query is even read;
rclip and immich avoid that by running an exported text tower on onnxruntime.
We do the same, exported once from the loaded model (``export``, torch side) into
the cache directory, keyed by the model's fingerprint, and loaded by ``load``
(numpy and onnxruntime only).

The export is the transformer part of open_clip's causal CLIP text tower
(CLIP, MetaCLIP, the demo model), with a dynamic sequence length: a causal mask
means the end-of-text token only sees the tokens before it, so a query runs over
its own few tokens instead of all 77. Token and position embeddings are plain
arrays read through a memory map, and CLIP's BPE tokenizer runs from tables
that load in milliseconds. An export is kept only if it reproduces the model's own
token ids and embeddings on probe texts; otherwise (other tower types, other
tokenizers) search simply loads the model with torch, as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipsearch.encoders.clip_bpe import ClipBpe
from clipsearch.location import default_cache_dir

if TYPE_CHECKING:
    import numpy as np

FORMAT = 2
MIN_COSINE = 0.999  # an export must reproduce the model's own text embeddings this closely
PROBES = [
    "a photo of a dog",
    "Dog on a BEACH at sunset!!",
    "x",
    "",
    "receipts   from 2024 &amp; invoices",
    "café naïve résumé, Ünïcödé",
    "the 3 red cars (parked) near Müller's shop... ok?",
    " ".join(["a very long query that keeps going"] * 20),  # past the context length: truncated
]


def export_enabled() -> bool:
    """CLIPSEARCH_TEXT_EXPORT=0 skips preparing the torch-free text search (disk space, or tests)."""
    return os.environ.get("CLIPSEARCH_TEXT_EXPORT", "1").lower() not in ("0", "no", "off", "false")


def cache_dir(fingerprint: str) -> Path:
    key = hashlib.sha256(fingerprint.encode()).hexdigest()[:24]
    return default_cache_dir() / "text" / key


# ---- torch side: export -------------------------------------------------------------------------


def causal_text_tower(model: Any) -> Any | None:
    """The object holding open_clip's causal CLIP text tower (the model itself, or its ``text``), if that is what it has."""
    for owner in (model, getattr(model, "text", None)):
        if owner is None:
            continue
        needed = ("token_embedding", "positional_embedding", "transformer", "ln_final", "attn_mask")
        if not all(getattr(owner, name, None) is not None for name in needed):
            continue
        pool = getattr(owner, "text_pool_type", getattr(owner, "pool_type", "argmax"))
        if pool != "argmax" or getattr(owner, "cls_emb", None) is not None:
            return None
        return owner
    return None


def _clip_bpe_tables(simple: Any) -> dict[str, Any] | None:
    """What ``ClipBpe`` needs from open_clip's SimpleTokenizer (the CLIP BPE); None for any other tokenizer."""
    if type(simple).__name__ != "SimpleTokenizer" or getattr(simple, "reduction_fn", None) is not None:
        return None
    if getattr(simple.clean_fn, "__name__", "") != "_clean_lower":
        return None
    return {
        "vocab": dict(simple.encoder),
        "ranks": {f"{a} {b}": rank for (a, b), rank in simple.bpe_ranks.items()},
        "sot": int(simple.sot_token_id),
        "eot": int(simple.eot_token_id),
        "context_length": int(simple.context_length),
    }


def _text_tail(tower: Any) -> Any:
    """The exported module (defined here so that importing this file needs no torch)."""
    import torch

    class TextTail(torch.nn.Module):
        """Embedded tokens (B, L, W) + causal mask (L, L) + end-of-text positions (B,) -> features (B, D)."""

        def __init__(self) -> None:
            super().__init__()
            self.transformer, self.ln_final = tower.transformer, tower.ln_final
            self.text_projection = tower.text_projection

        def forward(self, x: torch.Tensor, mask: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
            x = self.ln_final(self.transformer(x, attn_mask=mask))
            x = x[torch.arange(x.shape[0]), eot]
            if self.text_projection is None:
                return x
            if isinstance(self.text_projection, torch.nn.Linear):
                return self.text_projection(x)
            return x @ self.text_projection

    return TextTail().eval()


def export(fingerprint: str, dim: int, model: Any, torch_tokenizer: Any, quiet: bool = False) -> Path | None:
    """Write the ONNX text tower of a loaded open_clip model to the cache; None if this model's tower cannot be.

    Verified before it is kept: token ids equal to the model's own tokenizer and
    embeddings within ``MIN_COSINE`` of the model's own fp32 text path on ``PROBES``.
    """
    import copy

    import numpy as np
    import torch

    target = cache_dir(fingerprint)
    if (target / "config.json").is_file():
        return target
    tower = causal_text_tower(model)
    if tower is None:
        return None
    tables = _clip_bpe_tables(torch_tokenizer)
    if tables is None:
        return None
    if not quiet:
        print("clipsearch: preparing fast text search for this model (once; later searches start without torch)",
              file=sys.stderr)
    tower = copy.deepcopy(tower, memo={id(getattr(model, "visual", None)): None}).float().eval()
    context = int(tower.positional_embedding.shape[0])
    mask = tower.attn_mask.float() if tower.attn_mask.dtype != torch.bool else tower.attn_mask
    tail = _text_tail(tower)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
    try:
        x = torch.zeros(2, 5, tower.positional_embedding.shape[1])
        seq, batch = torch.export.Dim("seq", min=2, max=context), torch.export.Dim("batch")
        with torch.inference_mode(False), torch.no_grad():
            _quietly(lambda: torch.onnx.export(
                tail, (x, mask[:5, :5].contiguous(), torch.tensor([4, 4])), str(work / "text.onnx"),
                input_names=["x", "mask", "eot"], output_names=["features"], dynamo=True, external_data=True,
                dynamic_shapes={"x": {0: batch, 1: seq}, "mask": {0: seq, 1: seq}, "eot": {0: batch}},
                verbose=False))
        np.save(work / "token_embedding.npy", tower.token_embedding.weight.detach().float().numpy())
        np.save(work / "positional_embedding.npy", tower.positional_embedding.detach().float().numpy())
        np.save(work / "attn_mask.npy", mask.detach().float().numpy())
        ClipBpe.write(work / "bpe.sqlite", tables)
        config = {"format": FORMAT, "fingerprint": fingerprint, "context_length": context, "dim": dim}
        (work / "config.json").write_text(json.dumps(config))
        exported = OnnxTextEncoder(work)
        expected_ids = torch_tokenizer(PROBES).numpy()
        for text, ids in zip(PROBES, expected_ids):
            mine = exported.token_ids(text)
            if list(ids[: len(mine)]) != mine or any(ids[len(mine):]):
                return None
        with torch.no_grad():  # the reference: the model's own text path, in fp32 like the export
            reference = (tower.encode_text if hasattr(tower, "encode_text") else tower)(torch.from_numpy(expected_ids))
            reference = torch.nn.functional.normalize(reference.float(), dim=-1).numpy()
        if float(np.min(np.sum(exported.encode_texts(PROBES) * reference, axis=1))) < MIN_COSINE:
            return None
        exported.close()
        try:
            os.replace(work, target)
        except OSError:  # another process exported it meanwhile
            return target if (target / "config.json").is_file() else None
        return target
    except (RuntimeError, ValueError, OSError, ImportError, AssertionError):
        return None  # no fast path for this model: search keeps loading it with torch
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _quietly(fn: Any) -> Any:
    """torch.onnx's dynamo exporter prints progress lines and warnings: keep them off the user's terminal."""
    import contextlib
    import io
    import logging
    import warnings

    quiet_loggers = [logging.getLogger(name) for name in ("torch", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in quiet_loggers]
    try:
        for logger in quiet_loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            return fn()
    finally:
        for logger, level in zip(quiet_loggers, levels):
            logger.setLevel(level)


# ---- runtime side: numpy + onnxruntime ------------------------------------------------------------


class OnnxTextEncoder:
    """Texts -> unit-length float32 vectors with no torch: the counterpart of ``Encoder.encode_texts``."""

    def __init__(self, directory: Path, resident: bool = False) -> None:
        import numpy as np
        import onnxruntime as ort

        self.directory = directory
        config = json.loads((directory / "config.json").read_text())
        if config.get("format") != FORMAT:
            raise ValueError("an older export format")
        self.fingerprint: str = config["fingerprint"]
        self.dim: int = config["dim"]
        self._tokenizer = ClipBpe(directory / "bpe.sqlite")
        self._token_embedding = np.load(directory / "token_embedding.npy", mmap_mode="r")
        self._positional = np.load(directory / "positional_embedding.npy", mmap_mode="r")
        self._mask = np.load(directory / "attn_mask.npy", mmap_mode="r")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if not resident:
            # One short query per process: graph rewriting and weight repacking at start-up cost more
            # (bench/startup.py) than they save on a single run of a few tokens. A server keeps them.
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            options.add_session_config_entry("session.disable_prepacking", "1")
        self._session = ort.InferenceSession(str(directory / "text.onnx"), options, providers=["CPUExecutionProvider"])

    def close(self) -> None:
        self._session = None
        self._tokenizer.close()

    def token_ids(self, text: str) -> list[int]:
        return self._tokenizer.encode(text)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        out = np.zeros((len(texts), self.dim), dtype="float32")
        for row, text in enumerate(texts):  # one at a time: each runs over its own length, no padding
            ids = self.token_ids(text)
            n = len(ids)
            x = (self._token_embedding[ids] + self._positional[:n])[None].astype("float32")
            mask = np.ascontiguousarray(self._mask[:n, :n], dtype="float32")
            features = self._session.run(None, {"x": x, "mask": mask, "eot": np.array([n - 1], dtype="int64")})[0][0]
            features = features.astype("float64")
            features /= max(float(np.abs(features).max()), 1e-300)  # as Encoder's unit(): no underflow
            out[row] = features / max(float(np.linalg.norm(features)), 1e-300)
        return out


def load(fingerprint: str, resident: bool = False) -> OnnxTextEncoder | None:
    """The exported text tower for this model, if there is a usable one (else the caller loads the model).

    ``resident``: for a long-lived process (the server), optimise the graph once for many queries.
    """
    directory = cache_dir(fingerprint)
    if not (directory / "config.json").is_file():
        return None
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    try:
        encoder = OnnxTextEncoder(directory, resident)
    except Exception:  # noqa: BLE001 - a damaged or foreign cache entry: the model answers, and re-exports
        shutil.rmtree(directory, ignore_errors=True)
        return None
    return encoder if encoder.fingerprint == fingerprint else None
