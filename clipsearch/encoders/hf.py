"""Hugging Face transformers backend: CLIPModel (OpenAI CLIP, MetaCLIP), AlignModel (ALIGN), SiglipModel.

transformers is an optional extra (``pip install 'clipsearch[hf]'``), imported only here.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from clipsearch.encoders import hub
from clipsearch.encoders.base import Encoder, Pending, to_model, unit
from clipsearch.encoders.openclip import _DTYPES, pick_device, pick_precision
from clipsearch.encoders.spec import ModelSpec
from clipsearch.errors import UserError
from clipsearch.hashing import file_content_hash

# model_type -> how its tokenizer must pad (SigLIP was trained on max_length padding)
SUPPORTED = {"clip": True, "metaclip_2": True, "align": True, "siglip": "max_length", "siglip2": "max_length"}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")


def _image_size(image_processor: Any) -> int:
    """The side the processor feeds the model (the crop when it crops, else the resize target)."""
    config = image_processor.to_dict()
    size = (config.get("crop_size") if config.get("do_center_crop") else None) or config.get("size") or {}
    if isinstance(size, int):
        return size
    sides = [v for k, v in size.items() if k in ("height", "width", "shortest_edge") and v]
    return int(max(sides)) if sides else 224


def _missing_offline(source: str) -> UserError:
    return UserError(
        f"the weights of hf:{source} are not on this machine (Hugging Face cache: "
        f"{os.environ.get('HF_HOME', '~/.cache/huggingface')}) and there is no network to download them; "
        f"fetch them once where there is ('hf download {source}') or save the model and pass hf:/path/to/dir"
    )


class HFEncoder(Encoder):
    def __init__(self, spec: ModelSpec, model: Any, processor: Any, device: str, precision: str, weights_id: str) -> None:
        self.spec = spec.text
        self._model = model
        self._processor = processor
        self._padding = SUPPORTED.get(model.config.model_type, True)
        self.device = device
        self.batch_size = 128 if device.startswith("cuda") else 32
        self.precision = precision
        self._dtype = _DTYPES[precision]
        image_processor = processor.image_processor
        self.image_size = _image_size(image_processor)
        self.dim = int(self.encode_texts(["a"]).shape[-1])
        if getattr(model, "logit_scale", None) is not None:  # CLIP, MetaCLIP, SigLIP
            self.logit_scale = float(model.logit_scale.detach().float().exp())
        elif getattr(model, "temperature", None) is not None:  # ALIGN divides by a temperature
            self.logit_scale = float(1 / model.temperature.detach().float())
        keep = ("size", "crop_size", "do_center_crop", "image_mean", "image_std", "resample", "rescale_factor",
                "do_normalize", "include_top", "rescale_offset")
        preprocess = {k: v for k, v in image_processor.to_dict().items() if k in keep}
        self.fingerprint = json.dumps(
            {"backend": "hf", "model_type": model.config.model_type, "weights": weights_id, "dim": self.dim,
             "preprocess": preprocess},
            sort_keys=True, default=str,
        )

    def image_transform(self, image: Any) -> torch.Tensor:  # type: ignore[override]
        return self._processor.image_processor(images=image, return_tensors="pt")["pixel_values"][0]

    @classmethod
    def load(cls, spec: ModelSpec, device: str = "auto", precision: str = "auto") -> HFEncoder:
        try:
            import transformers
        except ImportError:
            raise UserError("Hugging Face models need transformers: pip install 'clipsearch[hf]'") from None
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()  # loading bars; downloads keep huggingface_hub's
        device = pick_device(device)
        precision = pick_precision(precision, device)
        source = spec.arch
        local_dir = os.path.isdir(source)
        if source.startswith(os.sep) and not local_dir:
            raise UserError(f"no saved model at {source}")
        offline = local_dir or hub.offline()
        kwargs: dict[str, Any] = {"local_files_only": offline}
        if spec.weights:
            kwargs["revision"] = spec.weights
        try:
            config = transformers.AutoConfig.from_pretrained(source, **kwargs)
        except (OSError, ValueError) as exc:
            if offline and not local_dir:
                raise _missing_offline(source) from None
            raise UserError(f"cannot load hf:{source}: {str(exc).splitlines()[0][:300]}") from None
        if config.model_type not in SUPPORTED:
            raise UserError(f"hf:{source} is a '{config.model_type}' model; clipsearch embeds with CLIP-style "
                            f"models ({', '.join(sorted(SUPPORTED))})")
        if not offline:
            print(f"loading hf:{source} (downloaded once, then read from the cache)...", file=sys.stderr)
        try:
            model = transformers.AutoModel.from_pretrained(source, dtype=_DTYPES[precision], **kwargs)
            processor = transformers.AutoProcessor.from_pretrained(source, **kwargs)
        except (OSError, ValueError) as exc:
            if offline and not local_dir:
                raise _missing_offline(source) from None
            raise UserError(f"cannot load hf:{source}: {str(exc).splitlines()[0][:300]}") from None
        model.eval().to(device)
        if local_dir:
            weights = next((os.path.join(source, f) for f in WEIGHT_FILES if os.path.isfile(os.path.join(source, f))), None)
            weights_id = "file:" + file_content_hash(weights).hex() if weights else "dir:" + source
        else:
            cached = hub.hf_cached(source, "config.json", revision=spec.weights or None)  # .../snapshots/<commit>/
            weights_id = f"{source}@{os.path.basename(os.path.dirname(cached)) if cached else spec.weights or 'main'}"
        return cls(spec, model, processor, device, precision, weights_id)

    @staticmethod
    def _features(output: Any) -> torch.Tensor:
        """transformers 4 returns the embedding, 5 an output object carrying it as pooler_output."""
        return output if isinstance(output, torch.Tensor) else output.pooler_output

    def start_images(self, batch: torch.Tensor) -> Pending:
        with torch.inference_mode():
            return Pending(lambda: self._features(self._model.get_image_features(
                pixel_values=to_model(batch, self.device, self._dtype))), self.device)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        out = []
        tokenizer = self._processor.tokenizer
        with torch.inference_mode():
            for start in range(0, len(texts), 256):
                tokens = tokenizer(list(texts[start : start + 256]), padding=self._padding, truncation=True,
                                   return_tensors="pt").to(self.device)
                if self._model.config.model_type != "align":  # only ALIGN's BERT takes token types
                    tokens.pop("token_type_ids", None)
                out.append(unit(self._features(self._model.get_text_features(**tokens))))
        return np.concatenate(out) if out else np.zeros((0, 0), dtype="float32")
