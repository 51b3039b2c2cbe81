"""``clipsearch forget``: drop folders from the index; a folder inside an indexed one stays out of later runs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clipsearch.errors import UserError
from indexer.walk import Rules, escape


def forget_folders(directory: Path, folders: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Drop each folder and every photo under it. An indexed folder (a root) leaves the index; a sub-folder of one
    is also added to that root's exclusions, or the next scheduled run would index it again. Returns, by folder,
    how many photos were dropped and the root it is now excluded from (None for a root inside no other)."""
    from clipsearch.store import StoreWriter, index_exists

    if not index_exists(directory):
        raise UserError(f"no index at {directory}")
    dropped: dict[str, dict[str, Any]] = {}
    with StoreWriter.open(directory) as store:
        roots = store.catalog.roots()
        settings = store.catalog.root_settings()
        for folder in folders:
            path = os.path.abspath(os.path.expanduser(folder))
            outer = max((r for r in roots if path.startswith(r.rstrip(os.sep) + os.sep)), key=len, default=None)
            if path not in roots and outer is None and not store.catalog.ids_under(path):
                raise UserError(f"{folder} is not in the index (folders: {', '.join(roots) or 'none'})")
            count = store.forget(path)
            if outer is not None:  # inside another indexed folder (a root of its own too, or not): stays out of it
                rules = Rules.from_settings(settings.get(outer, {}))
                rules = rules.changed(exclude=["/" + escape(os.path.relpath(path, outer))])
                store.set_root_settings(outer, rules.settings())
                settings[outer] = rules.settings()
            dropped[path] = {"removed": count, "excluded_from": outer}
        store.finish({"forgotten": {path: d["removed"] for path, d in dropped.items()}})
    return dropped
