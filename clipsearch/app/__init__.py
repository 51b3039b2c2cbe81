"""The application layer and the Python API: what the CLI, the server and a Python program share.

    import clipsearch

    with clipsearch.open_index() as index:               # the default index, or open_index("~/my-index")
        index.update(["~/Pictures"], model="demo")       # the same report `clipsearch index --json` prints
        for hit in index.search("dog on a beach", k=5):  # words, arithmetic, image=, like=, filters, paging
            print(hit.rank, round(hit.score, 3), hit.path)

docs/api.md is the guide (its examples are run by tests/test_api.py). Results are plain dataclasses with
``as_dict()``: the JSON of ``--json`` and of the HTTP API. Errors that are the caller's to fix are
``clipsearch.UserError``. Nothing heavy is imported until a call needs it: no torch, faiss or ray at import.

Layers (tests/test_layout.py checks them): the shared core (every ``clipsearch`` module outside ``app`` and
``console``) imports neither ``indexer`` nor ``search``; ``indexer`` writes the store, ``search`` reads it;
this package uses all of them; the front ends (``cli``, ``clipsearch.console``, ``search.server``) use this.
"""

from clipsearch.app.index import Index, ProgressCallback, open_index
from clipsearch.app.results import CheckResult, DuplicateGroup, Duplicates, Failure, GroupMember, Info, TagCount

__all__ = ["CheckResult", "DuplicateGroup", "Duplicates", "Failure", "GroupMember", "Index", "Info",
           "ProgressCallback", "TagCount", "open_index"]
