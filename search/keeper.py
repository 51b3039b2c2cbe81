"""Which photo of a group of copies to keep, and why, and the group as the CLI, the API and the page show it.

The suggestion, in order: the most pixels; then an original format (what cameras write: JPEG, HEIC,
TIFF, raw) over a conversion (PNG, WebP, GIF, BMP: screenshots, chat apps, exports); then the largest file (the
least compressed); then the earliest date taken; then the file indexed first. clipsearch never deletes or moves
anything: the user acts on it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from clipsearch.store import IndexedFile, StoreReader
    from search.duplicates import Collection, ContentGroup

ORIGINAL_FORMATS = {".jpg", ".jpeg", ".heic", ".heif", ".tif", ".tiff", ".dng", ".cr2", ".cr3", ".nef", ".arw",
                    ".orf", ".rw2", ".raf", ".avif"}


def _is_original(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in ORIGINAL_FORMATS


def rank_key(f: IndexedFile, taken: dict[int, str | None]) -> tuple[int, bool, int, str, int]:
    """Best first: the most pixels, an original format, the largest file (the least compressed: an original over
    its re-save at quality 30), taken first, indexed first."""
    return (-(f.width * f.height), not _is_original(f.path), -f.size, taken.get(f.id) or "9999", f.id)


def choose(files: list[IndexedFile], taken: dict[int, str | None]) -> tuple[IndexedFile, str]:
    """The file to keep among ``files``, and the reason in a few words."""
    ordered = sorted(files, key=lambda f: rank_key(f, taken))
    best, runner = ordered[0], ordered[1] if len(ordered) > 1 else None
    if runner is None:
        return best, "the only one"
    if best.width * best.height > runner.width * runner.height:
        return best, f"the most pixels ({best.width}x{best.height})"
    if _is_original(best.path) and not _is_original(runner.path):
        return best, f"as many pixels, in an original format ({os.path.splitext(best.path)[1].lstrip('.').upper()})"
    if best.size > runner.size:
        return best, f"as many pixels and as original, the largest file ({best.size:,} bytes)"
    if (taken.get(best.id) or "9999") < (taken.get(runner.id) or "9999"):
        return best, f"as many pixels and as original, taken first ({(taken.get(best.id) or '')[:19]})"
    return best, "the same in pixels, format and date: indexed first"


def ranking(collection: Collection, store: StoreReader) -> Callable[[list[int]], list[int]]:
    """Contents of ``collection`` best first by ``rank_key`` of their best file (dates read as asked for)."""
    taken: dict[int, str | None] = {}

    def rank(contents: list[int]) -> list[int]:
        todo = [f.id for c in contents for f in collection.files[c] if f.id not in taken]
        if todo:
            meta = store.catalog.metadata.of_ids(todo)
            taken.update({i: meta.get(i, {}).get("taken") for i in todo})
        return sorted(contents, key=lambda c: min(rank_key(f, taken) for f in collection.files[c]))

    return rank


def describe(groups: list[ContentGroup], collection: Collection, store: StoreReader,
             within: Callable[[str], bool] | None = None) -> list[dict[str, Any]]:
    """Each group as ``{"level", "keep", "reason", "members": [{"path", "id", "score", "width", "height",
    "size", "taken", "keep"}]}``: the keeper first (a file of the group's first content, which every other
    passed the rule against), then the others by score. ``within``: only the files it accepts; a similar group
    shows one file per content (identical ones are a copy group's own)."""
    def shown(group: ContentGroup, c: int) -> list[IndexedFile]:
        files = [f for f in collection.files[c] if within is None or within(f.path)]
        return files[:1] if group.level == "similar" and files else files

    ids = [f.id for g in groups for c in g.contents for f in shown(g, c)]
    meta = store.catalog.metadata.of_ids(ids)
    taken = {i: m.get("taken") for i, m in meta.items()}
    out = []
    for group in groups:
        files = [f for c in group.contents for f in shown(group, c)]
        if group.level == "similar":
            files = [min(shown(group, c), key=lambda f: rank_key(f, taken)) for c in group.contents]
        content_of = {f.id: c for c in group.contents for f in shown(group, c)}
        keep, reason = choose(files, taken)
        if content_of[keep.id] != group.contents[0]:  # as good as the keeper: the one the others were judged by
            keep = min(shown(group, group.contents[0]), key=lambda f: rank_key(f, taken))
            reason = "as good as any, and the one the others were compared with"
        anchor = collection.vectors[content_of[keep.id]]
        members = []
        for f in files:
            score = 1.0 if f.hash == keep.hash else float(collection.vectors[content_of[f.id]] @ anchor)
            members.append({"path": f.path, "id": f.id, "score": round(score, 4), "width": f.width,
                            "height": f.height, "size": f.size, "taken": taken.get(f.id), "keep": f.id == keep.id})
        members.sort(key=lambda m: (not m["keep"], -m["score"], m["id"]))
        out.append({"level": group.level, "keep": keep.path, "reason": reason, "members": members})
    return out
