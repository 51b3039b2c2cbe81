"""A model's image tower on onnxruntime: indexing a few new photos without importing torch, and int8 on the CPU.

A run that embeds ten new photos paid seconds for importing torch and open_clip and
building the model before the first photo was looked at. The image tower is exported
once (``onnx_image_export``, torch side) into the cache, keyed by the model's
fingerprint like the text tower (``onnx_text``), with what its preprocessing needs as
plain data (the ``geometry.Plan`` and the normalisation); ``OnnxImageEncoder`` runs it
with numpy, Pillow and onnxruntime only, behind the ``Encoder`` interface, on numpy
batches (``array_kind``). ``--precision int8`` runs a quantized copy of it
(``onnx_image_export.quantize``). Which runtime embeds is decided in one place, the
factory (``clipsearch.encoders.load_encoder``); figures in docs/benchmarks.md
(bench/onnx_image.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipsearch.encoders import geometry
from clipsearch.encoders.base import Encoder
from clipsearch.location import default_cache_dir

if TYPE_CHECKING:
    import numpy as np

FORMAT = 1
MIN_COSINE = 0.999  # an fp32 export must reproduce the model's own fp32 image vectors this closely
FILES = {"fp32": "image.onnx", "int8": "image-int8.onnx"}
_STEPS = {cls.__name__: cls for cls in (geometry.Resize, geometry.KeepRatio, geometry.CenterCrop, geometry.Convert)}


def export_enabled() -> bool:
    """CLIPSEARCH_IMAGE_EXPORT=0 neither exports image towers nor embeds with them (disk space, tests, benches):
    runs load the model with torch, as before (``--precision int8`` still needs one)."""
    return os.environ.get("CLIPSEARCH_IMAGE_EXPORT", "1").lower() not in ("0", "no", "off", "false")


def cache_dir(fingerprint: str) -> Path:
    key = hashlib.sha256(fingerprint.encode()).hexdigest()[:24]
    return default_cache_dir() / "image" / key


def weights_stamp(spec: str) -> list[int] | None:
    """(size, mtime) of a model's checkpoint file, for a spec that names one: an export of a file that has changed
    since is not used (the torch path then sees the new weights, and says the index's model changed)."""
    from clipsearch.encoders.spec import parse_spec

    path = parse_spec(spec).weights_path
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return [-1, -1]
    return [stat.st_size, stat.st_mtime_ns]


def exported(fingerprint: str, precision: str = "fp32") -> Path | None:
    """The export directory of this model, if it holds a usable tower in ``precision`` (fp32 or int8)."""
    directory = cache_dir(fingerprint)
    if not (directory / "config.json").is_file() or not (directory / FILES[precision]).is_file():
        return None
    try:
        config = json.loads((directory / "config.json").read_text())
        current = config.get("format") == FORMAT and config.get("fingerprint") == fingerprint \
            and config.get("weights_stamp") == weights_stamp(config["spec"])
    except (OSError, ValueError, KeyError):
        return None
    return directory if current else None


def plan_to_json(plan: geometry.Plan) -> list[dict[str, Any]]:
    return [{"step": type(step).__name__, **dataclasses.asdict(step)} for step in plan.steps]  # type: ignore[call-overload]


def plan_from_json(steps: list[dict[str, Any]]) -> geometry.Plan:
    out = []
    for step in steps:
        fields = dict(step)
        cls = _STEPS[fields.pop("step")]
        out.append(cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}))
    return geometry.Plan(tuple(out))


def unit_rows(features: np.ndarray) -> np.ndarray:
    """``base.unit`` in numpy: rows rescaled by their largest entry first (no underflow), then to length 1."""
    import numpy as np

    f = features.astype("float64")
    f /= np.maximum(np.abs(f).max(axis=1, keepdims=True), 1e-300)
    return (f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-300)).astype("float32")


class Done:
    """``base.Pending`` for a batch computed on the CPU before it is returned."""

    def __init__(self, vectors: np.ndarray, seconds: float) -> None:
        self._vectors, self.seconds = vectors, seconds

    def ready(self) -> bool:
        return True

    def result(self) -> np.ndarray:
        return self._vectors


@dataclasses.dataclass
class NumpySplit:
    """``tensor_preprocess.Split`` on numpy: ``plan`` (decode workers: PIL -> uint8 (H, W, 3)), then ``finish`` of a
    stacked uint8 (N, H, W, 3) batch -> float32 (N, 3, H, W), the same division by 255 and normalisation."""

    plan: geometry.Plan
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_uint8(self, image: Any) -> np.ndarray:
        return self.plan(image)

    def finish(self, pixels: np.ndarray) -> np.ndarray:
        import numpy as np

        mean = np.asarray(self.mean, dtype="float32").reshape(1, -1, 1, 1)
        std = np.asarray(self.std, dtype="float32").reshape(1, -1, 1, 1)
        x = pixels.transpose(0, 3, 1, 2).astype("float32") / np.float32(255.0)
        return np.ascontiguousarray((x - mean) / std, dtype="float32")


class OnnxImageEncoder(Encoder):
    """An exported image tower on onnxruntime's CPU provider, in fp32 or int8.

    Texts go to the exported text tower where there is one, else to the torch model (``fallback``, loaded then).
    """

    array_kind = "numpy"

    def __init__(self, directory: Path, precision: str = "fp32",
                 fallback: Callable[[], Encoder] | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort

        config = json.loads((directory / "config.json").read_text())
        if config.get("format") != FORMAT:
            raise ValueError("an older export format")
        self.directory = directory
        self.spec: str = config["spec"]
        self.fingerprint: str = config["fingerprint"]
        self.dim = int(config["dim"])
        self.image_size = int(config["image_size"])
        self.logit_scale = float(config["logit_scale"])
        self.device, self.precision = "cpu", precision
        self.batch_size = 32
        self.staged_transform = NumpySplit(plan_from_json(config["plan"]), tuple(config["mean"]), tuple(config["std"]))  # type: ignore[assignment]
        self.image_transform = lambda image: self.staged_transform.finish(self.staged_transform.to_uint8(image)[None])[0]  # type: ignore[union-attr]
        self._fallback = fallback
        self._text: Any = None
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(str(directory / FILES[precision]), options,
                                             providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._compare = precision == "int8" and "int8_agreement" not in config  # measured once, on the first batch

    def start_images(self, batch: Any) -> Done:  # type: ignore[override]
        import numpy as np

        started = time.perf_counter()
        if not isinstance(batch, np.ndarray):  # a torch tensor (search --image): its numpy view
            batch = batch.detach().cpu().float().numpy()
        batch = np.ascontiguousarray(batch, dtype="float32")
        vectors = unit_rows(self._session.run(None, {self._input: batch})[0])
        if self._compare:
            self._compare = False
            self._record_agreement(batch, vectors)
        return Done(vectors, time.perf_counter() - started)

    def _record_agreement(self, batch: np.ndarray, vectors: np.ndarray) -> None:
        """int8 against fp32 on the user's own first photos (one batch, once per model): what `clipsearch models`
        shows beside the figures of docs/benchmarks.md."""
        import numpy as np
        import onnxruntime as ort

        try:
            fp32 = ort.InferenceSession(str(self.directory / FILES["fp32"]), providers=["CPUExecutionProvider"])
            cosines = np.sum(vectors * unit_rows(fp32.run(None, {self._input: batch})[0]), axis=1)
            config = json.loads((self.directory / "config.json").read_text())
            config["int8_agreement"] = {"photos": len(batch), "mean_cosine": round(float(cosines.mean()), 5),
                                        "min_cosine": round(float(cosines.min()), 5)}
            temporary = self.directory / f".config.{os.getpid()}.json"
            temporary.write_text(json.dumps(config))
            os.replace(temporary, self.directory / "config.json")
        except (OSError, ValueError, RuntimeError):
            pass  # a read-only cache, a removed export: nothing measured, nothing lost

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if self._text is None:
            from clipsearch.encoders import onnx_text

            self._text = onnx_text.load(self.fingerprint)
            if self._text is None:
                if self._fallback is None:
                    raise ValueError("no text tower for this image tower")
                self._text = self._fallback()
        return self._text.encode_texts(texts)

    def export_text_tower(self, quiet: bool = False) -> Path | None:
        torch_encoder = self._text if isinstance(self._text, Encoder) else None
        return torch_encoder.export_text_tower(quiet) if torch_encoder is not None else None


class Handoff(Encoder):
    """The exported tower for the first ``limit`` images of a run, the torch model (``later``) for the rest.

    For a few new photos, importing torch and building the model cost more than embedding them (bench/onnx_image.py);
    a run with more than ``limit`` photos to embed loads the model once it has embedded them and goes on with it, as
    runs did before the export (torch's rate against onnxruntime's depends on the CPU and its load: measured both
    ways). Decoders made for the start keep handing numpy arrays.
    """

    array_kind = "numpy"

    def __init__(self, first: OnnxImageEncoder, later: Callable[[], Encoder], limit: int) -> None:
        self._first, self._later, self._limit = first, later, limit
        self._then: Encoder | None = None
        self.embedded = 0
        for name in ("spec", "fingerprint", "dim", "image_size", "logit_scale", "device", "precision", "batch_size",
                     "staged_transform", "image_transform"):
            setattr(self, name, getattr(first, name))

    def start_images(self, batch: Any) -> Any:
        self.embedded += len(batch)
        if self.embedded <= self._limit:
            return self._first.start_images(batch)
        if self._then is None:
            self._then = self._later()
            self.precision = self._then.precision
        import torch

        return self._then.start_images(torch.from_numpy(batch))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return (self._then or self._first).encode_texts(texts)

    def export_text_tower(self, quiet: bool = False) -> Path | None:
        return self._then.export_text_tower(quiet) if self._then is not None else None


def int8_agreements() -> dict[str, dict[str, float]]:
    """Model spec -> int8's agreement with fp32 measured on this machine's photos, for `clipsearch models`."""
    out = {}
    for path in (default_cache_dir() / "image").glob("*/config.json"):
        try:
            config = json.loads(path.read_text())
            if "int8_agreement" in config:
                out[str(config["spec"])] = dict(config["int8_agreement"])
        except (OSError, ValueError, KeyError):
            continue
    return out


def load(fingerprint: str, precision: str = "fp32", fallback: Callable[[], Encoder] | None = None
         ) -> OnnxImageEncoder | None:
    """The exported image tower of this model in ``precision``, if there is a usable one (else the caller loads
    the model with torch). A damaged or foreign export is removed: the next run that loads the model exports it again."""
    directory = exported(fingerprint, precision)
    if directory is None:
        return None
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    try:
        return OnnxImageEncoder(directory, precision, fallback)
    except Exception:  # noqa: BLE001 - whatever onnxruntime makes of a damaged file
        import shutil

        shutil.rmtree(directory, ignore_errors=True)
        return None
