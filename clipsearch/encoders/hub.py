"""Whether weights can be fetched now, and where fetched weights are kept."""

from __future__ import annotations

import os
import socket


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
