"""Tiny random transformers CLIP and ALIGN models with working tokenizers and processors, saved to disk."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import torch

WORDS = ["a", "an", "the", "photo", "of", "dog", "cat", "on", "beach", "red", "blue", "circle", "star", "picture"]


def _clip_tokenizer(folder: Path):  # noqa: ANN202
    """The real CLIP BPE (vocab.json + merges.txt) rebuilt from the vocabulary open_clip ships."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    pairs = [tuple(m.split()) for m in merges]
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab] + ["".join(p) for p in pairs] + ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({v: i for i, v in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(p) for p in pairs) + "\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token="<|endoftext|>")


def tiny_clip(folder: Path, seed: int = 0) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    torch.manual_seed(seed)
    tokenizer = _clip_tokenizer(folder / "_tok")
    config = CLIPConfig(
        text_config={"vocab_size": 49408, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "max_position_embeddings": 77, "projection_dim": 24},
        vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 64,
                       "num_hidden_layers": 2, "num_attention_heads": 2, "projection_dim": 24},
        projection_dim=24,
    )
    model = CLIPModel(config).eval()
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


def tiny_align(folder: Path, seed: int = 0) -> Path:
    from transformers import AlignConfig, AlignModel, AlignProcessor, BertTokenizer, EfficientNetImageProcessor

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (folder / "_vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(str(folder / "_vocab.txt"))
    config = AlignConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "intermediate_size": 37, "max_position_embeddings": 64},
        vision_config={"image_size": 32, "width_coefficient": 0.1, "depth_coefficient": 0.1, "hidden_dim": 64,
                       "num_channels": 3},
        projection_dim=32,  # ALIGN's image embedding is the last block's width: 320 x width_coefficient
    )
    model = AlignModel(config).eval()
    with torch.no_grad():  # default init shrinks activations ~1e-29 through the tiny EfficientNet: keep them sane
        for module in model.vision_model.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight)
    image_processor = EfficientNetImageProcessor(size={"height": 32, "width": 32}, crop_size={"height": 32, "width": 32},
                                                 do_center_crop=False)
    AlignProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    model.save_pretrained(folder)
    return folder
