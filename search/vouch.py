"""The hits a search can stand behind, checked just before they are handed out: the page only, never a scan (one
look-up in the paths' index and one ``stat`` per hit; tests/test_served_hits.py).

A hit whose row disagrees with the catalog's own index of paths (a changed byte in the catalog: the second trial
was served a path that does not exist, exit 0) fails the whole search in one line naming ``check --repair`` (HTTP
503), as a damaged stored vector does: the damage is the index's, the cure is one command that loses nothing (the
path is read again from the index, or the file found again by the next run), and a catalog found damaged here may
be wrong where no look-up reaches, so no answer from it is given as sound. A hit whose file is simply not there any
more (deleted or moved since the last run, a drive not mounted) is not damage: it is left out and ``Hits.gone``
says which (a warning on stderr, an ``X-Clipsearch-Warning`` header over HTTP; the JSON stays a list of hits), so
``--paths | xargs`` never meets a path that is not there and the rest of the answer still comes.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from clipsearch.errors import DamagedIndex

if TYPE_CHECKING:
    from clipsearch.store import StoreReader
    from search.query import Hit


class Hits(list):  # type: ignore[type-arg]  # list[Hit], and what was left out of it
    """A page of hits (``Searcher.answer``), and the paths left out of it because no file is there any more
    (``gone``: deleted or moved since the last index run, or a drive not mounted); the CLI and the server say so."""

    def __init__(self, hits: list[Hit], gone: list[str] | None = None) -> None:
        super().__init__(hits)
        self.gone: list[str] = gone or []

    def gone_note(self) -> str | None:
        """One line for stderr (the CLI) or a header (the server), or None when nothing was left out."""
        if not self.gone:
            return None
        return (f"{len(self.gone)} {'hit' if len(self.gone) == 1 else 'hits'} left out: no file is there any more "
                f"({self.gone[0]}{', ...' if len(self.gone) > 1 else ''}; moved, deleted, or a drive not mounted): "
                "'clipsearch index' brings the index up to date")


def stand_behind(store: StoreReader, hits: list[Hit], on_disk: bool = True) -> Hits:
    """``hits`` less those whose file is gone (unless not ``on_disk``: vectors of rows that name no file on this
    machine, as a bench or a collection built elsewhere has); raises ``DamagedIndex`` for a hit the catalog
    disagrees with itself about. Call inside ``store.snapshot()``, with hits read from it."""
    bad = store.catalog.path_check.disagreeing((h.id, h.path) for h in hits)
    if bad:
        file_id, path = bad[0]
        raise DamagedIndex(f"the index at {store.directory} is damaged (the catalog's record of photo {file_id}, "
                           f"{path!r}, disagrees with its own index of paths): 'clipsearch check --repair' mends it "
                           "(nothing is re-embedded)")
    gone = [h.path for h in hits if not os.path.exists(h.path)] if on_disk else []
    missing = set(gone)
    return Hits([h for h in hits if h.path not in missing] if gone else hits, gone)
