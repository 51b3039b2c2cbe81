"""Whether weights can be fetched now, and where fetched weights are kept."""

from __future__ import annotations

import os
import socket
from typing import Any


def offline() -> bool:
    """True when downloads are off (HF_HUB_OFFLINE) or impossible (the hub's name does not resolve)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return True
    try:
        socket.getaddrinfo("huggingface.co", 443)
    except OSError:
        return True
    return False


def hf_cached(repo: str, filename: str, revision: str | None = None) -> str | None:
    """Path of ``filename`` of ``repo`` in the local Hugging Face cache, without touching the network."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo, filename, revision=revision)
    return found if isinstance(found, str) else None


def cached_pretrained_file(cfg: dict[str, Any]) -> str | None:
    """The local copy of an open_clip pretrained tag's weights, if one is on this machine."""
    repo_file = cfg.get("hf_hub", "")
    if repo_file:
        repo, filename = os.path.split(repo_file)
        for name in [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]:
            found = hf_cached(repo, name)
            if found:
                return found
    url = cfg.get("url", "")
    if url:
        cached = os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(url))
        if os.path.isfile(cached):
            return cached
    return None
