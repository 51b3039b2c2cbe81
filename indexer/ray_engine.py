"""Decode + embed on a Ray cluster (``index --engine ray``): the driver's side.

The run is the local engine's (``indexer.run``): this process holds the lock, plans against the
catalog, stores and commits in chunks. Only the files to decode and embed go to Ray Data, a window
of tasks at a time, through two stages: decode tasks on CPUs and a pool of model actors
(``indexer.ray_workers``). Their rows stream back here as the run's outcomes, in any order, as
``pipeline.DecodeEmbed`` hands them on; the writer cannot tell the engines apart.

What Ray gives: a decode task or model actor that dies is retried (a replacement actor loads the
model again); the driver killed leaves the index as any killed run does, and the next run embeds
nothing that was committed. A file whose content only looks stored to the workers (a hash-prefix
match, ``KnownContents``) is decoded and embedded here by the local engine at the end.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from clipsearch.errors import UserError
from clipsearch.photo_meta import PhotoMeta
from clipsearch.signature import Signature
from indexer.concurrency import Once
from indexer.engine import Contents
from indexer.items import Embedded, Failed, Outcome, Reused, Task
from indexer.options import Options
from indexer.pipeline import DecodeEmbed
from indexer.ray_workers import EMBEDDED, FAILED, REUSED, EmbedPhotos, KnownContents, decode_files

if TYPE_CHECKING:
    from clipsearch.encoders import Encoder

WINDOW = 100_000  # tasks per Ray Data execution: the driver keeps a window's tasks in memory (~0.5 KB each)
FILES_PER_DECODE_TASK = 16
# A decode task whose worker died is run again this many times: a worker killed is retried, a file that crashes the
# decoder every time (the local engine's worker processes lose only that file) fails the run instead of looping.
DECODE_RETRIES = 3


class RayCluster:
    """The Ray this run uses: ``address`` (else ``RAY_ADDRESS``), or a local one started for the run and stopped
    after it. Resources are read once connected, for the defaults that fill the cluster."""

    def __init__(self, address: str | None) -> None:
        try:
            import ray
        except ImportError:
            raise UserError("--engine ray needs Ray: pip install 'clipsearch[ray]'") from None
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.started_here = False
        self.connected_here = False
        for name in ("ray", "ray.data"):  # the run reports what matters; Ray's own INFO and WARNING lines are noise
            logging.getLogger(name).setLevel(logging.ERROR)
        # Ray prints what its workers report (a worker died, an actor restarted) to stdout; --json's is the report's
        self._stdout = sys.stdout
        sys.stdout = sys.stderr
        if not ray.is_initialized():
            quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
            try:
                if self.address:
                    _check_reachable(self.address)
                    ray.init(address=self.address, **quiet)
                else:  # "local": a new instance, never one a stale `ray start` left its address behind for
                    ray.init(address="local", include_dashboard=False, **quiet)
                    self.started_here = True
            except (ConnectionError, RuntimeError, ValueError) as exc:
                sys.stdout = self._stdout
                raise UserError(f"cannot connect to Ray at {self.address or 'a new local instance'}: "
                                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
            self.connected_here = True
        import ray.data

        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the run has its own
        context.print_on_execution_start = False
        resources = ray.cluster_resources()
        self.cpus = int(resources.get("CPU", 1))
        self.gpus = int(resources.get("GPU", 0))

    def close(self) -> None:
        """Disconnect, stopping a local Ray started for the run."""
        try:
            if self.connected_here:
                import ray

                ray.shutdown()
        finally:
            sys.stdout = self._stdout


class RayDecodeEmbed:
    """The Ray engine (``indexer.engine.Engine``): ``pipeline.DecodeEmbed``'s work on Ray, tasks in, one outcome per
    task out; its cluster stays for the steps after the decoding (the index's shards, the faces stage) until
    ``release``.

    ``get_encoder`` is the driver's copy of the model (loaded on the CPU): its preprocessing is what the decode
    tasks run, its fingerprint what every actor must match, and the text tower serves the tag stage after."""

    def __init__(self, get_encoder: Callable[[], Encoder], options: Options, contents: Contents,
                 stored_prefixes: Callable[[], bytes], roots: Sequence[str]) -> None:
        self.options = options
        self.contents = contents
        self.roots = list(roots)
        self._encoder: Once[Encoder] = Once(get_encoder)
        self.local = DecodeEmbed(get_encoder, options, contents)  # for the few files the workers guessed wrong
        self._stored_prefixes = stored_prefixes
        self.cluster: Once[RayCluster] = Once(lambda: RayCluster(options.ray.address))
        self.model_seconds = 0.0
        self.gpu_decoded: int | None = None
        self._notes: list[str] = []
        self._misjudged: list[Task] = []

    def run(self, tasks: Iterable[Task]) -> Iterator[Outcome]:
        window: list[Task] = []
        for task in tasks:
            window.append(task)
            if len(window) >= WINDOW:
                yield from self._on_ray(window)
                window = []
        if window:
            yield from self._on_ray(window)
        if self._misjudged:
            yield from self.local.run(self._misjudged)

    def _on_ray(self, tasks: list[Task]) -> Iterator[Outcome]:
        import ray
        import ray.data

        encoder = self._encoder()
        cluster = self.cluster()
        settings = self.settings(cluster, encoder)
        known = ray.put(KnownContents.of(self._stored_prefixes()).prefixes)
        rows = ray.data.from_items([{"i": i, "path": t.path, "size": t.found.size} for i, t in enumerate(tasks)],
                                   override_num_blocks=max(1, min(len(tasks) // FILES_PER_DECODE_TASK, 1000)))
        with warnings.catch_warnings():  # max_retries has no named parameter yet; Ray Data's default retries forever
            warnings.simplefilter("ignore", DeprecationWarning)
            decoded = rows.map_batches(
                decode_files, batch_size=FILES_PER_DECODE_TASK, num_cpus=settings["decode_cpus"],
                fn_kwargs={"known": [known], "plan": encoder.staged_transform.plan,  # type: ignore[union-attr]
                           "side": encoder.image_size, "max_pixels": self.options.max_pixels, "roots": self.roots},
                max_retries=DECODE_RETRIES)
        # Model actors: Ray Data restarts one that dies and retries its batches (its defaults).
        embedded = decoded.map_batches(
            EmbedPhotos.configured(spec=encoder.spec, fingerprint=encoder.fingerprint, device=self.options.ray.device,
                                   precision=self.options.ray.precision, threads=settings["threads"]),
            batch_size=settings["batch_size"], compute=ray.data.ActorPoolStrategy(size=settings["replicas"]),
            num_gpus=settings["gpus_per_replica"], num_cpus=1)
        started = time.monotonic()
        try:
            for batch in embedded.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2):
                yield from self._outcomes(batch, tasks)
        except ray.exceptions.RayError as exc:
            raise UserError(f"the Ray run failed: {_first_line(exc)} (everything committed is kept)") from None
        finally:
            self.model_seconds += time.monotonic() - started

    def _outcomes(self, batch: dict[str, Any], tasks: list[Task]) -> Iterator[Outcome]:
        for i, kind, error, digest, width, height, meta, vector, sign, edges, grid in zip(
                batch["i"], batch["kind"], batch["error"], batch["digest"], batch["width"], batch["height"],
                batch["meta"], batch["vector"], batch["signature"], batch["edges"], batch["grid"]):
            task = tasks[int(i)]
            if kind == FAILED:
                yield Failed(task, str(error))
            elif kind == REUSED and not self.contents.stored(bytes(digest)):
                self._misjudged.append(task)  # a prefix matched, the content did not: the local engine does it
            elif kind == REUSED or self.contents.stored_since_read(bytes(digest)):
                yield Reused(task, bytes(digest), int(width), int(height))  # a copy of one embedded in this run
            else:
                assert kind == EMBEDDED
                self.contents.embedded(bytes(digest))
                yield Embedded(task, bytes(digest), int(width), int(height),
                               np.frombuffer(vector, dtype=np.float32).copy(), PhotoMeta(**_json(meta)),
                               Signature(int(sign), bytes(edges), bytes(grid)) if sign >= 0 else None, str(error) or None)

    def settings(self, cluster: RayCluster, encoder: Encoder) -> dict[str, Any]:
        """What the user set, else what fills the cluster: one replica per GPU (or per ``gpus_per_replica``), else
        one per 8 CPUs, each with an equal share of the CPUs for torch's threads."""
        ray_options = self.options.ray
        if encoder.staged_transform is None:
            raise UserError(f"--engine ray runs open_clip models; index {encoder.spec} with the local engine")
        gpus = ray_options.gpus_per_replica if ray_options.gpus_per_replica is not None else (1.0 if cluster.gpus else 0.0)
        if gpus > 0 and not cluster.gpus:
            raise UserError(f"--gpus-per-replica {gpus:g}: the Ray cluster has no GPU")
        replicas = ray_options.replicas or (max(1, int(cluster.gpus / gpus)) if gpus else max(1, cluster.cpus // 8))
        threads = ray_options.threads or (1 if gpus else max(1, cluster.cpus // replicas))
        batch = self.options.batch_size or (128 if gpus else 32)
        decided = {"replicas": replicas, "gpus_per_replica": gpus, "threads": threads, "batch_size": batch,
                   "decode_cpus": ray_options.decode_cpus}
        note = (f"embedded on Ray ({cluster.address or 'a local instance'}, {cluster.cpus} CPUs, {cluster.gpus} GPUs): "
                f"{replicas} model replica{'s' if replicas != 1 else ''}"
                f"{f' with {gpus:g} GPU each' if gpus else f' of {threads} threads'}, batches of {batch}")
        if note not in self._notes:
            self._notes.append(note)
        return decided

    def encoder(self) -> Encoder:
        return self._encoder()

    def encoder_if_made(self) -> Encoder | None:
        return self._encoder.if_made()

    @property
    def notes(self) -> list[str]:
        return self._notes + self.local.notes

    def shard_runner(self) -> RayShards:
        """The cluster, for building the large index's shards (``large_index.ShardRunner``); Ray is started for
        it only if a build needs it."""
        return RayShards(self.cluster)

    def faces_runner(self) -> RayFaces:
        """The cluster, for the faces stage's photos (``indexer.faces``)."""
        return RayFaces(self.cluster)

    def close(self) -> None:
        """The stages; the cluster stays for the index build and the faces stage until ``release``."""
        self.local.close()

    def release(self) -> None:
        """Disconnect from the cluster, stopping a local Ray started for the run."""
        if (cluster := self.cluster.if_made()) is not None:
            cluster.close()

    def __enter__(self) -> RayDecodeEmbed:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.close()
        finally:
            self.release()


class RayShards:
    """A large index's shards as Ray tasks of one CPU each, as many at once as the cluster has CPUs (the index
    directory must be where every node sees it, as the photos must)."""

    def __init__(self, cluster: Callable[[], RayCluster]) -> None:
        self._cluster = cluster

    @property
    def workers(self) -> int:
        return max(1, self._cluster().cpus)

    def __call__(self, fn: Callable[..., int], args: list[tuple[Any, ...]]) -> list[int]:
        import ray

        task = ray.remote(num_cpus=1, max_retries=2)(fn)  # a worker lost mid-shard: the shard is built again
        try:
            return [int(n) for n in ray.get([task.remote(*a) for a in args])]
        except ray.exceptions.RayError as exc:
            raise UserError(f"building the index on Ray failed: {_first_line(exc)} (everything committed is kept; "
                            "the next run builds it again)") from None


class RayFaces:
    """The faces stage's photos as Ray tasks of one CPU each, twice as many in flight as the cluster has CPUs, results
    as they finish (the folders must be where every node sees them, as for decoding). A task whose worker died
    every time (a photo that crashes dlib) costs its photos' faces only, as a failure the stage records."""

    def __init__(self, cluster: Callable[[], RayCluster]) -> None:
        self._cluster = cluster

    def __call__(self, fn: Callable[[list[Any]], list[Any]], chunks: Iterable[list[Any]]) -> Iterator[list[Any]]:
        import ray

        window = 2 * max(1, self._cluster().cpus)
        task = ray.remote(num_cpus=1, max_retries=2)(fn)
        sent: dict[Any, list[Any]] = {}
        try:
            for chunk in chunks:
                sent[task.remote(chunk)] = chunk
                if len(sent) >= window:
                    yield self._next(sent)
            while sent:
                yield self._next(sent)
        finally:  # Ctrl-C: what was not started is the next run's
            for ref in sent:
                ray.cancel(ref)

    @staticmethod
    def _next(sent: dict[Any, list[Any]]) -> list[Any]:
        import ray

        (done,), _ = ray.wait(list(sent), num_returns=1)
        chunk = sent.pop(done)
        try:
            return ray.get(done)
        except ray.exceptions.RayError as exc:
            return [(row[0], [], f"the face detector's worker died: {_first_line(exc)}"[:200]) for row in chunk]


def _check_reachable(address: str, seconds: float = 10.0) -> None:
    """Fail in one line where nothing answers at a ``host:port`` address: Ray itself would retry for ever."""
    import socket

    if "://" in address or address == "auto":
        return  # a Ray Client address (ray://) reports its own failures; "auto" is the one `ray start` recorded
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address}: expected HOST:PORT (the head's GCS) or ray://HOST:10001")
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except OSError as exc:
        raise UserError(f"nothing answers at {address} ({exc.strerror or exc}): is the Ray head running?") from None


def _json(text: object) -> dict[str, Any]:
    import json

    return json.loads(str(text)) if text else {}


def _first_line(exc: BaseException) -> str:
    """The message of the error behind a Ray error, without Ray's wrapping and the worker's traceback."""
    cause = getattr(exc, "cause", None) or exc
    lines = [line for line in str(cause).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__

