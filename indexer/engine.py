"""What decodes and embeds a run's files: the ``Engine`` a run holds, and ``Contents``, the one thing it is told of
the catalog.

Two engines: the local one (``indexer.pipeline.DecodeEmbed``: reader threads, decode worker processes, nvJPEG, the
model here) and Ray's (``indexer.ray_engine.RayDecodeEmbed``: Ray Data's decode tasks and model actors). The run
(``indexer.run``) sees only this protocol: tasks in, one outcome per task out, what the engine made on the way (the
model, notes, counts), and what it lends the steps after the decoding (Ray's cluster, for the index's shards and the
faces stage; the local engine lends nothing: None).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from clipsearch.encoders import Encoder
    from clipsearch.store.large_index import ShardRunner
    from indexer.faces import Runner as FacesRunner
    from indexer.items import Outcome, Task


class Engine(Protocol):
    def run(self, tasks: Iterable[Task]) -> Iterator[Outcome]:
        """One outcome per task (``Failed``, ``Reused`` or ``Embedded``), as they are ready (not in order)."""

    def close(self) -> None:
        """End the decoding (worker processes, the GPU decoder), dropping what is not handed on. Always called:
        workers left running break the interpreter's exit. What the engine lends stays until ``release``."""

    def release(self) -> None:
        """Give back what the engine lent the steps after the decoding (a Ray cluster started for the run)."""

    def encoder(self) -> Encoder:
        """The engine's copy of the model, loaded now if it was not: the tag stage's text tower."""

    def encoder_if_made(self) -> Encoder | None:
        """The engine's copy of the model if a file needed it, else None (without loading it)."""

    @property
    def model_seconds(self) -> float:
        """What the model spent on the batches handed on."""

    @property
    def gpu_decoded(self) -> int | None:
        """JPEGs nvJPEG decoded; None where the GPU decoded none by design."""

    @property
    def notes(self) -> list[str]:
        """What the engine changed on its own (a smaller batch, threads instead of processes), for the user."""

    def shard_runner(self) -> ShardRunner | None:
        """Where the large index's shards are built (``large_index.ShardRunner``); None: here."""

    def faces_runner(self) -> FacesRunner | None:
        """Where the faces stage looks at photos (``indexer.faces.Runner``); None: threads here."""


class Contents:
    """Whether a hashed file's content needs the model: the one rule, asked by the reader threads before decoding
    and by the indexing thread before embedding.

    ``committed`` answers for the catalog (a thread-safe lookup; for files away from any catalog, nothing is
    stored). Contents embedded since the last commit are kept here in a set: the catalog does not see them yet, and
    a set costs the indexing thread no query (each query hands the GIL to the reader threads and waits to get it
    back)."""

    def __init__(self, committed: Callable[[bytes], bool] | None = None) -> None:
        self._committed = committed or (lambda digest: False)
        self._since_commit: set[bytes] = set()

    def stored(self, digest: bytes) -> bool:
        """The content has a vector stored already (committed, or embedded in this run): this file's own, unchanged
        under a new stamp (``Reused.same_file``), or another file's. Asked of the catalog even for a file's own
        content: after ``--reindex`` its row stays but its vector is gone."""
        return digest in self._since_commit or self._committed(digest)

    def stored_since_read(self, digest: bytes) -> bool:
        """For a file that needed the model when it was read: was its content embedded since, in this run?"""
        return digest in self._since_commit

    def embedded(self, digest: bytes) -> None:
        self._since_commit.add(digest)

    def committed(self) -> None:
        """The catalog now answers for everything embedded so far."""
        self._since_commit.clear()
