"""clipsearch: private, local search over photos by what is in them.

Shared core used by both halves of the product: ``indexer`` (writes the store)
and ``search`` (reads it). Importing this package must stay cheap: no torch,
no faiss, no numpy at import time, so that ``clipsearch --help`` is instant.
"""

__version__ = "0.1.0"
