"""clipsearch: private, local search over photos by what is in them.

The Python API (docs/api.md)::

    import clipsearch

    with clipsearch.open_index() as index:
        hits = index.search("dog on a beach", k=10)

Importing this package must stay cheap: no torch, no faiss, no numpy at import time, so that ``clipsearch
--help`` is instant and a script pays only for what it calls (bench/startup.py). The API's names are found
on first use, from ``clipsearch.app``; the shared core (store, encoders, images) never imports its users.
"""

from __future__ import annotations

from typing import Any

from clipsearch.errors import UserError

__version__ = "0.1.0"

# name -> the module that defines it; each imported on first use (PEP 562)
_API = {**{name: "clipsearch.app" for name in ("CheckResult", "DuplicateGroup", "Duplicates", "Failure",
                                                "GroupMember", "Index", "Info", "TagCount", "open_index")},
        "Hit": "search.query", "Term": "search.query", "Classified": "search.classify", "Report": "indexer.report"}

__all__ = ["UserError", "__version__", *_API]  # noqa: PLE0604


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'clipsearch' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_API[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
