"""Where the index lives when the user does not say."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "CLIPSEARCH_INDEX"


def default_index_dir() -> Path:
    """``$CLIPSEARCH_INDEX``, else ``$XDG_DATA_HOME/clipsearch``, else ``~/.local/share/clipsearch``."""
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "clipsearch"


def resolve_index_dir(option: str | os.PathLike[str] | None) -> Path:
    """The ``--index`` option wins over the environment and the XDG default."""
    path = Path(option).expanduser() if option else default_index_dir()
    return path.absolute()


def default_cache_dir() -> Path:
    """Derived, re-creatable files (the ONNX text towers): ``$CLIPSEARCH_CACHE``, else
    ``$XDG_CACHE_HOME/clipsearch``, else ``~/.cache/clipsearch``."""
    explicit = os.environ.get("CLIPSEARCH_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "clipsearch"
