"""open_clip backend: every architecture and pretrained tag open_clip knows, or a local checkpoint."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipsearch import assets
from clipsearch.encoders import hub, tensor_preprocess
from clipsearch.encoders.base import Encoder, Pending, cpu_has_bf16, to_model, unit
from clipsearch.encoders.spec import ModelSpec
from clipsearch.errors import UserError
from clipsearch.hashing import file_content_hash

RANDOM_SEED = 0
_INIT_FILLS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
               "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_")


@contextmanager
def no_random_init() -> Iterator[None]:
    """Build a model without ``torch.nn.init``'s random fills, for weights that a checkpoint then sets.

    open_clip fills every weight at random and then loads the checkpoint over them, strictly (a
    missing key fails the load), so the fills are wasted: most of a model's load time (bench/model_load.py).
    transformers' ``no_init_weights`` does the same. Buffers
    computed in constructors (the causal mask) do not use these functions and are kept.
    """
    import torch.nn.init as init

    saved = {name: getattr(init, name) for name in _INIT_FILLS if hasattr(init, name)}
    for name in saved:
        setattr(init, name, _keep)
    try:
        yield
    finally:
        for name, fill in saved.items():
            setattr(init, name, fill)


def _keep(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    return tensor


def pick_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is available")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise UserError(f"unknown --device '{device}' (auto, cpu, cuda, cuda:N)")
    return device


def pick_precision(precision: str, device: str) -> str:
    if precision == "auto":
        if device.startswith("cuda"):
            return "fp16"
        return "bf16" if cpu_has_bf16() else "fp32"
    if precision not in ("fp32", "bf16", "fp16"):
        raise UserError(f"unknown --precision '{precision}' (auto, fp32, bf16, fp16, int8)")
    if precision == "fp16" and not device.startswith("cuda"):
        raise UserError("--precision fp16 needs a CUDA GPU; on the CPU use bf16 or fp32")
    return precision


_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _pretrained_file(arch: str, tag: str, cfg: dict[str, Any]) -> str:
    """Path of the weights for ``arch:tag``: from the local cache, else downloaded once."""
    import open_clip

    cached = hub.cached_pretrained_file(cfg)
    if cached:
        return cached
    if hub.offline():
        raise UserError(
            f"the weights of {arch}:{tag} are not on this machine and there is no network to download them; "
            f"run once where there is, or pass --model {arch}:/path/to/checkpoint.pt"
        )
    print(f"downloading the weights of {arch}:{tag} (once)...", file=sys.stderr)
    try:
        return open_clip.download_pretrained(cfg)
    except Exception as exc:  # noqa: BLE001 - network/hub failures become one line
        raise UserError(f"could not download the weights of {arch}:{tag}: {exc}") from None


MODEL_CONFIGS = assets.path("model_configs")


def _arch_config(arch: str) -> dict[str, Any] | None:
    """An architecture's open_clip config, read from the JSON files without importing open_clip."""
    import importlib.util

    spec = importlib.util.find_spec("open_clip")
    folders = [MODEL_CONFIGS]
    if spec is not None and spec.submodule_search_locations:
        folders += [Path(p) / "model_configs" for p in spec.submodule_search_locations]
    for folder in folders:
        path = folder / f"{arch}.json"
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except (OSError, ValueError):
                return None
    return None


def import_open_clip_for(arch: str) -> Any:
    """``import open_clip``, without the optional libraries this architecture does not use.

    open_clip imports transformers and timm (seconds, bench/startup.py) whenever they are installed,
    although only architectures with a Hugging Face text tower or a timm image tower need them.
    For the others they are hidden while open_clip is first imported, then made importable again.
    """
    if "open_clip" in sys.modules:
        return sys.modules["open_clip"]
    cfg = _arch_config(arch)
    hidden = []
    if cfg is not None:
        text, vision = cfg.get("text_cfg", {}), cfg.get("vision_cfg", {})
        if not any(k in text for k in ("hf_model_name", "hf_tokenizer_name")) and "transformers" not in sys.modules:
            hidden.append("transformers")
        if "timm_model_name" not in vision and "timm" not in sys.modules:
            hidden.append("timm")
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` raise ImportError
    try:
        import open_clip
    finally:
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
    return open_clip


def register_model_configs() -> None:
    """Make the architectures this package ships (the demo model) known to open_clip."""
    import open_clip

    if "clipsearch-demo" not in open_clip.list_models():
        open_clip.add_model_config(MODEL_CONFIGS)


def open_clip_embed_dim(arch: str) -> int:
    import open_clip

    return int((open_clip.get_model_config(arch) or {}).get("embed_dim", 0))


class _ImageTower(torch.nn.Module):
    """``model.encode_image`` as a module's forward, so DataParallel can split batches across GPUs."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)


def _spread_over_gpus(model: torch.nn.Module, device: str) -> tuple[torch.nn.Module, int]:
    """The image tower over every visible GPU when ``--device cuda``/auto found several (CUDA_VISIBLE_DEVICES
    narrows them); a named ``cuda:N`` or the CPU keeps one device."""
    tower = _ImageTower(model)
    if device != "cuda" or torch.cuda.device_count() < 2:
        return tower, 1
    return torch.nn.DataParallel(tower), torch.cuda.device_count()


def _short_text(tower: Any, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's ``encode_text`` for a causal CLIP tower (argmax pooling), over the tokens up to the last
    end-of-text token of the batch only."""
    eot = tokens.argmax(dim=-1)
    length = int(eot.max()) + 1
    cast = tower.transformer.get_cast_dtype()
    x = tower.token_embedding(tokens[:, :length]).to(cast) + tower.positional_embedding[:length].to(cast)
    x = tower.ln_final(tower.transformer(x, attn_mask=tower.attn_mask[:length, :length]))
    x = x[torch.arange(x.shape[0], device=x.device), eot]
    projection = tower.text_projection
    if projection is None:
        return x
    return projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection


class OpenClipEncoder(Encoder):
    def __init__(self, spec: ModelSpec, model: torch.nn.Module, preprocess: Any, tokenizer: Callable[[], Any], device: str,
                 precision: str, weights_id: str) -> None:
        self.spec = spec.text
        self._model = model
        self._make_tokenizer = tokenizer  # made on first use: indexing images never needs it (bench/startup.py)
        self._tokenizer_value: Any = None
        self._image_tower, self.gpus = _spread_over_gpus(model, device)
        # Batches sized for the device: 128 images per GPU keep a GPU busy; 32 on a CPU keep memory small.
        self.batch_size = 128 * self.gpus if device.startswith("cuda") else 32
        self.image_transform = preprocess
        self.device_transform = tensor_preprocess.from_compose(preprocess)
        self.staged_transform = tensor_preprocess.split_compose(preprocess)
        self.device = device
        self.precision = precision
        self._dtype = _DTYPES[precision]
        cfg = dict(getattr(model.visual, "preprocess_cfg", {}))
        size = cfg.get("size", getattr(model.visual, "image_size", 224))
        self.image_size = int(max(size) if isinstance(size, (tuple, list)) else size)
        self.dim = int(getattr(model.visual, "output_dim", 0) or open_clip_embed_dim(spec.arch))
        if isinstance(getattr(model, "logit_scale", None), torch.Tensor):
            self.logit_scale = float(model.logit_scale.detach().float().exp())
        self.fingerprint = json.dumps(
            {
                "backend": "open_clip",
                "arch": spec.arch,
                "weights": weights_id,
                "dim": self.dim,
                "preprocess": {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(cfg.items())},
            },
            sort_keys=True,
        )

    @classmethod
    def load(cls, spec: ModelSpec, device: str = "auto", precision: str = "auto") -> OpenClipEncoder:
        open_clip = import_open_clip_for(spec.arch)
        register_model_configs()
        device = pick_device(device)
        precision = pick_precision(precision, device)
        if spec.arch not in open_clip.list_models():
            raise UserError(f"unknown model architecture '{spec.arch}' (open_clip knows {len(open_clip.list_models())}; "
                            "e.g. ViT-B-32-quickgelu, ViT-L-14, ViT-H-14-quickgelu)")
        kwargs: dict[str, Any] = {}
        path = spec.weights_path
        if spec.weights == "none":
            print(f"WARNING: {spec.arch} has RANDOM weights (seed {RANDOM_SEED}): results are meaningless; "
                  "use this only for tests and benchmarks", file=sys.stderr)
            torch.manual_seed(RANDOM_SEED)
            pretrained, weights_id = None, f"random:seed{RANDOM_SEED}"
        elif path is not None:
            if not os.path.isfile(path):
                raise UserError(f"model checkpoint not found: {path}")
            pretrained, weights_id = path, "file:" + file_content_hash(path).hex()
        else:
            cfg = open_clip.get_pretrained_cfg(spec.arch, spec.weights)
            if not cfg:
                tags = [t for a, t in open_clip.list_pretrained() if a == spec.arch]
                raise UserError(f"'{spec.weights}' is not a pretrained tag of {spec.arch}"
                                + (f" (known: {', '.join(tags)})" if tags else " (it has no pretrained tags)"))
            pretrained, weights_id = _pretrained_file(spec.arch, spec.weights, cfg), spec.weights
            kwargs = {"force_quick_gelu": bool(cfg.get("quick_gelu", False))}
            for key in ("mean", "std", "interpolation", "resize_mode"):
                if key in cfg:
                    kwargs[f"image_{key}"] = cfg[key]
        logging.getLogger("root").setLevel(logging.ERROR)  # open_clip logs "no pretrained weights" at WARNING
        # Every weight comes from a full checkpoint, strictly loaded (big_vision .npz files are converted
        # tensor by tensor instead: those keep open_clip's random fills under them).
        whole_checkpoint = pretrained is not None and not str(pretrained).endswith((".npz", ".npy"))
        try:
            with no_random_init() if whole_checkpoint else nullcontext():
                model, _, preprocess = open_clip.create_model_and_transforms(
                    spec.arch, pretrained=pretrained, device=device, **kwargs
                )
        except UserError:
            raise
        except (RuntimeError, KeyError, ValueError, OSError) as exc:
            raise UserError(f"cannot load {spec.text}: {str(exc).splitlines()[0][:300]}") from None
        model.eval().to(dtype=_DTYPES[precision])
        return cls(spec, model, preprocess, lambda: open_clip.get_tokenizer(spec.arch), device, precision, weights_id)

    @property
    def _tokenizer(self) -> Any:
        if self._tokenizer_value is None:
            self._tokenizer_value = self._make_tokenizer()
        return self._tokenizer_value

    def start_images(self, batch: torch.Tensor) -> Pending:
        with torch.inference_mode():
            return Pending(lambda: self._image_tower(to_model(batch, self.device, self._dtype)), self.device)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts in batches of 256, shortest first: a causal CLIP tower runs each batch over its longest text's
        tokens instead of all 77 (the end-of-text token sees only what comes before it, so the vectors are the
        same), which makes a vocabulary of short labels several times cheaper to embed (bench/zeroshot.py)."""
        from clipsearch.encoders.onnx_text import causal_text_tower

        tower = causal_text_tower(self._model)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.dim), dtype="float32")
        with torch.inference_mode():
            for start in range(0, len(texts), 256):
                at = order[start : start + 256]
                tokens = self._tokenizer([texts[i] for i in at]).to(self.device)
                out[at] = unit(self._model.encode_text(tokens) if tower is None else _short_text(tower, tokens))
        return out

    def export_text_tower(self, quiet: bool = False) -> Path | None:
        """Export the text tower for torch-free searches (see ``onnx_text``); None where this model has no such path."""
        from clipsearch.encoders import onnx_text

        return onnx_text.export(self.fingerprint, self.dim, self._model, self._tokenizer, quiet=quiet)

    def export_image_tower(self, quiet: bool = False) -> Path | None:
        """Export the image tower for torch-free runs and ``--precision int8`` (``onnx_image``); None where it cannot."""
        from clipsearch.encoders import onnx_image_export

        return onnx_image_export.export(self, self._model, self.image_transform, quiet=quiet)
