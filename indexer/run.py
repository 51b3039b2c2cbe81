"""One indexing run: classify what the walk finds against the catalog, embed what changed, commit in chunks, sweep."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from clipsearch import images
from clipsearch.errors import UserError
from clipsearch.store import StoreWriter
from indexer.reader import READ_CHUNK, Loaded, Reader, Task, bounded_map, chunked, reader_threads
from indexer.walk import walk

if TYPE_CHECKING:
    import torch

    from clipsearch.encoders import Encoder
    from clipsearch.encoders.base import Pending
    from indexer.decode_pool import DecodePool
    from indexer.device_decode import DeviceDecoder

T = TypeVar("T")
DECODE_MODES = ("auto", "cpu", "gpu")
WORKER_KINDS = ("auto", "threads", "processes")


@dataclass
class Options:
    include_hidden: bool = False
    batch_size: int | None = None  # None: the encoder's (128 per GPU, 32 on the CPU)
    workers: int | None = None  # decode workers; None: one per CPU
    commit_every: int = 256  # images
    commit_seconds: float = 30.0
    max_pixels: int = images.DEFAULT_MAX_PIXELS
    decode: str = "auto"  # auto: baseline JPEGs on the GPU when the model runs on one; cpu; gpu (required)
    worker_kind: str = "auto"  # what decodes on the CPU: threads, processes (Linux), auto (decode_in_processes)
    read_chunk: int = READ_CHUNK  # files per reader call, and per call to a worker process (1: one call per file)

    def __post_init__(self) -> None:
        if self.decode not in DECODE_MODES:
            raise UserError(f"unknown --decode '{self.decode}' ({', '.join(DECODE_MODES)})")
        if self.worker_kind not in WORKER_KINDS:
            raise UserError(f"unknown --worker-kind '{self.worker_kind}' ({', '.join(WORKER_KINDS)})")
        if self.worker_kind == "processes":
            from indexer import decode_pool

            if not decode_pool.available():
                raise UserError("--worker-kind processes needs Linux; use threads")


def decode_in_processes(options: Options, encoder: Encoder, workers: int) -> bool:
    """Whether this run decodes on the CPU in worker processes (``indexer.decode_pool``) rather than threads.

    auto: processes on Linux. Each has its own GIL, which threads share with the indexing thread
    (bench/decode_scaling.py), a crash in a decoder library costs one file instead of the run, and a child
    (Pillow and numpy, no torch) adds ~18 MB of its own memory. They need a model whose preprocessing stops at uint8
    pictures (``staged_transform``: every open_clip model); Hugging Face processors stay in threads.
    """
    from indexer import decode_pool

    if options.worker_kind == "threads" or workers <= 0 or encoder.staged_transform is None:
        return False
    return options.worker_kind == "processes" or decode_pool.available()


def decode_pool_for(options: Options, encoder: Encoder, workers: int) -> DecodePool | None:
    """The run's worker processes, or None where it decodes in threads (``decode_in_processes``)."""
    from indexer.decode_pool import DecodePool

    if not decode_in_processes(options, encoder, workers) or encoder.staged_transform is None:
        return None
    return DecodePool(encoder.staged_transform.plan, encoder.image_size, options.max_pixels, workers)


@dataclass
class Report:
    added: int = 0
    updated: int = 0
    removed: int = 0
    renamed: int = 0
    unchanged: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    model_seconds: float = 0.0  # what the model spent on the stored batches: near ``seconds``, the model set the pace
    interrupted: bool = False
    gpu_decoded: int | None = None  # JPEGs nvJPEG decoded; None when the GPU decoded none by design
    notes: list[str] = field(default_factory=list)  # what the run changed on its own (a smaller batch), for the user

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("added", "updated", "removed", "renamed", "unchanged", "failed")}
        out["seconds"] = round(self.seconds, 3)
        out["model_seconds"] = round(self.model_seconds, 3)
        if self.gpu_decoded is not None:
            out["gpu_decoded"] = self.gpu_decoded
        if self.interrupted:
            out["interrupted"] = True
        if self.notes:
            out["notes"] = list(self.notes)
        return out


class Progress:
    """What the run tells a watching person; the CLI supplies a tqdm-backed one."""

    def found(self, n: int = 1) -> None: ...
    def done(self, n: int = 1) -> None: ...
    def close(self) -> None: ...


class Once(Generic[T]):
    """Makes a value (the model, the GPU decoder) the first time any thread needs it, once;
    a failure is re-raised to every caller."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._made = False
        self._value: T | None = None
        self._error: BaseException | None = None

    def if_made(self) -> T | None:
        """The value if some thread has made it already, else None (without making it)."""
        return self._value if self._made else None

    def __call__(self) -> T:
        if not self._made:
            with self._lock:
                if self._error is not None:
                    raise self._error
                if not self._made:
                    try:
                        self._value = self._make()
                    except BaseException as exc:
                        self._error = exc
                        raise
                    self._made = True
        return self._value  # type: ignore[return-value]


GIL_TURN_SECONDS = 0.0005


@contextmanager
def short_gil_turns(seconds: float = GIL_TURN_SECONDS) -> Iterator[None]:
    """A shorter GIL switch interval while the run lasts (CPython's default is 5 ms).

    A decode worker back from C code (file read, libjpeg, a resize) waits for the GIL until its holder
    releases it, or for the whole interval while the holder runs Python: the indexing thread (catalog, the
    model's kernel launches) nearly always does. A photo crosses a dozen such calls, so at 5 ms a worker
    beside one busy Python thread took 2.5x as long per photo; at 0.5 ms, 1.14x (bench/gil_contention.py).
    """
    old = sys.getswitchinterval()
    sys.setswitchinterval(min(old, seconds))
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def model_batch(pixels: list[torch.Tensor], encoder: Encoder) -> torch.Tensor:
    """One batch for ``encoder`` from what the decoders left: uint8 pictures from the CPU workers (normalised
    here, together, after one pinned copy to the GPU when the model runs there) and finished inputs, some of
    them already on the GPU (nvJPEG's)."""
    import torch

    on_gpu = torch.device(encoder.device) if encoder.device.startswith("cuda") else None
    staged = encoder.staged_transform
    pixels = list(pixels)
    for want_uint8 in (True, False):
        at = [i for i, p in enumerate(pixels) if (p.dtype == torch.uint8) == want_uint8 and not p.is_cuda]
        if not at:
            continue
        moved = torch.stack([pixels[i] for i in at])
        if on_gpu is not None:
            moved = moved.pin_memory().to(on_gpu, non_blocking=True)
        if want_uint8:
            assert staged is not None, "uint8 pixels come only from an encoder with a staged transform"
            moved = staged.finish(moved)
        for j, i in enumerate(at):
            pixels[i] = moved[j]
    return torch.stack(pixels)


def index_folders(
    store: StoreWriter,
    roots: Sequence[str],
    get_encoder: Callable[[], Encoder],
    options: Options | None = None,
    progress: Progress | None = None,
    record_roots: bool = True,
) -> Report:
    """Bring the index up to date with ``roots`` (absolute folder paths). Ctrl-C commits what is done.

    ``get_encoder`` is called only once there is something to embed, so a run
    that finds nothing new never pays for loading the model. With
    ``record_roots`` False the folders are scanned (walked and swept) without
    becoming indexed folders of their own: how ``watch`` rescans one album.
    """
    options = options or Options()
    progress = progress or Progress()
    report = Report()
    started = time.monotonic()
    extensions = images.supported_extensions()
    store.begin_run(roots if record_roots else [])
    recorded = set(store.roots())

    walked_fully: dict[str, int] = {}  # root -> image files found, set only when its walk finished

    def on_walk_error(path: str, message: str) -> None:
        report.failed.append({"path": path, "error": message})

    def tasks() -> Iterator[Task]:
        for root in roots:
            found_here = 0
            for found in walk(root, extensions, options.include_hidden, exclude=[str(store.directory)],
                              on_error=on_walk_error):
                found_here += 1
                progress.found()
                previous = store.file_row(found.path)
                if previous is not None and (previous.size, previous.mtime_ns) == (found.size, found.mtime_ns):
                    store.mark_seen(previous.id)
                    report.unchanged += 1
                    progress.done()
                    continue
                if previous is None and store.known_failure(found.path, found.size, found.mtime_ns):
                    progress.done()
                    continue
                yield Task(found, previous)
            walked_fully[root] = found_here

    def load_encoder() -> Encoder:
        loaded = get_encoder()
        if loaded.device.startswith("cuda"):
            import torch

            # With the model on the GPU, the CPU ops left are the workers' small per-photo ones, where torch's
            # intra-op threads only take cores from the other workers: one thread each decodes 10-13% more photos
            # per second on 16 cores (bench/decode_profile.py).
            torch.set_num_threads(1)
        return loaded

    encoder: Once[Encoder] = Once(load_encoder)

    def make_device_decoder() -> DeviceDecoder | None:
        from indexer.device_decode import DeviceDecoder

        return DeviceDecoder.for_encoder(encoder(), options.decode)

    device_decoder: Once[DeviceDecoder | None] = Once(make_device_decoder if options.decode != "cpu" else lambda: None)
    workers = options.workers if options.workers is not None else (os.cpu_count() or 2)

    def make_decode_pool() -> DecodePool | None:
        from indexer.decode_pool import WorkersDidNotStart

        try:
            return decode_pool_for(options, encoder(), workers)
        except WorkersDidNotStart as exc:
            if options.worker_kind == "processes":
                raise UserError(f"decode worker processes could not start ({exc}); use --worker-kind threads") from None
            report.notes.append(f"decode worker processes could not start ({exc}): this run decoded in threads")
            return None

    decode_pool: Once[DecodePool | None] = Once(make_decode_pool)
    reader = Reader(encoder, store.vector_lookup(), options.max_pixels, device_decoder, decode_pool, cpu_decoders=workers)
    batch: list[Loaded] = []
    in_flight: list[tuple[list[Loaded], Pending]] = []  # batches queued on the model, their vectors not stored yet
    batch_limit = options.batch_size or 0  # images per model call; 0: the encoder's, once it is loaded
    out_of_memory_at = 0  # the batch size at which the GPU first ran out of memory, if it did
    reused_new: dict[bytes, int] = {}  # digest -> how many new paths reused it (rename or copy candidates)
    # Contents embedded since the last commit: the readers' ``known`` sees only committed vectors. A set instead
    # of a catalog query per photo: each query hands the GIL to the reader threads and waits to get it back.
    embedded_since_commit: set[bytes] = set()
    since_commit = 0
    last_commit = time.monotonic()

    def store_loaded(item: Loaded, embedding: Any) -> None:
        nonlocal since_commit
        f, prev = item.task.found, item.task.previous
        if prev is not None and prev.hash == item.digest:
            store.touch(prev.id, f.size, f.mtime_ns)
            report.unchanged += 1
        else:
            store.put(f.path, f.size, f.mtime_ns, item.digest, item.width, item.height, embedding)
            if embedding is not None:
                embedded_since_commit.add(item.digest)
            if prev is not None:
                report.updated += 1
            elif embedding is None:
                reused_new[item.digest] = reused_new.get(item.digest, 0) + 1
            else:
                report.added += 1
        since_commit += 1
        progress.done()

    def settle(keep: int) -> None:
        """Store the vectors of the batches in flight but the last ``keep``, oldest first."""
        while len(in_flight) > keep:
            items, done = in_flight.pop(0)
            for item, vector in zip(items, done.result()):
                store_loaded(item, vector)
            report.model_seconds += done.seconds

    def launch(items: list[Loaded]) -> None:
        """Queue ``items`` on the model. A GPU out of memory (a large model, a small GPU, nvJPEG's pictures beside
        it) stores what is in flight, frees the cache and tries again in halves, and later batches stay as small:
        the run goes on at the size that fits instead of failing."""
        import torch

        nonlocal batch_limit, out_of_memory_at

        try:
            in_flight.append((items, encoder().start_images(model_batch([b.pixels for b in items], encoder()))))
            return
        except torch.cuda.OutOfMemoryError:
            pass  # out of the except block first: its traceback holds the failed call's tensors
        settle(0)
        torch.cuda.empty_cache()
        if len(items) == 1:
            raise UserError("the GPU ran out of memory with this model even one image at a time: try --device cpu "
                            "or a smaller model (everything indexed so far is kept)")
        out_of_memory_at = out_of_memory_at or batch_limit
        batch_limit = min(batch_limit, (len(items) + 1) // 2)
        done = 0
        while done < len(items):  # at the size that fits now, which a chunk's own retry may lower again
            chunk = items[done : done + batch_limit]
            launch(chunk)
            done += len(chunk)

    def flush(last: bool = False) -> None:
        """Queue the batch on the model, then store the batch before it. On a GPU the model computes this batch
        while this thread stores the previous one and gathers the next (``Pending``), instead of the GPU waiting
        for both; on a CPU the model has computed it by the time ``start_images`` returns."""
        if batch:
            launch(batch.copy())
            batch.clear()
        settle(0 if last else 1)

    def failed(item: Loaded) -> None:
        f = item.task.found
        store.fail(f.path, f.size, f.mtime_ns, item.error or "unknown error")
        report.failed.append({"path": f.path, "error": item.error or "unknown error"})
        progress.done()

    def embed(item: Loaded) -> None:
        nonlocal batch_limit
        batch.append(item)
        if not batch_limit:
            batch_limit = encoder().batch_size
        if len(batch) >= batch_limit:
            flush()

    def take(item: Loaded) -> None:
        """A decoded (or failed) file: failed, stored with the vector of content already embedded, or embedded."""
        if item.error is not None:
            failed(item)
        elif item.reused or item.digest in embedded_since_commit:
            store_loaded(item, None)
        else:
            embed(item)

    def from_gpu(items: Iterable[Loaded]) -> None:
        for item in items:
            if item.pixels is None:  # nvJPEG refused it: the CPU decoder decides
                reader.decode(item, item.jpeg or b"")
                item.jpeg = None
            take(item)

    def read() -> Iterator[Loaded]:
        """What the reader threads make of the tasks, ``read_chunk`` files per call, as they finish."""
        per_call, threads = max(1, options.read_chunk), reader_threads(workers)
        window = max((options.batch_size or 128) * 2 // per_call, threads)  # calls in flight
        for loaded in bounded_map(reader.read_many, chunked(tasks(), per_call), threads, window):
            yield from loaded

    def maybe_commit() -> None:
        nonlocal since_commit, last_commit
        if since_commit >= options.commit_every or time.monotonic() - last_commit > options.commit_seconds:
            store.commit()
            embedded_since_commit.clear()
            since_commit = 0
            last_commit = time.monotonic()

    with short_gil_turns():
        try:
            for item in read():
                if not item.on_gpu:  # the reader handed those to the GPU decoder: they come back below (maybe already)
                    take(item)
                if (gpu := device_decoder.if_made()) is not None:
                    from_gpu(gpu.ready())
                maybe_commit()
            if (gpu := device_decoder.if_made()) is not None:
                from_gpu(gpu.finish())
                report.gpu_decoded = gpu.decoded
            flush(last=True)
        except KeyboardInterrupt:
            report.interrupted = True
            batch.clear()  # decoded but not stored: the next run does them
            in_flight.clear()
            if (gpu := device_decoder.if_made()) is not None:
                gpu.close()
        finally:
            try:
                store.commit()
            finally:  # even when the commit fails (a full disk): workers left running break the interpreter's exit
                if (pool := decode_pool.if_made()) is not None:
                    pool.close()

    gone_hashes: dict[bytes, int] = {}
    removed = 0
    if not report.interrupted:
        for root in roots:
            if root not in walked_fully:
                continue
            if walked_fully[root] == 0 and root in recorded and store.ids_under(root):
                report.failed.append({"path": root, "error": "no images found any more, so the indexed ones were kept "
                                      "(an unmounted drive?); 'clipsearch forget FOLDER' drops them"})
                continue
            for _, _, digest in store.sweep(root):
                gone_hashes[digest] = gone_hashes.get(digest, 0) + 1
                removed += 1
    for digest, count in reused_new.items():
        renames = min(count, gone_hashes.get(digest, 0))
        report.renamed += renames
        report.added += count - renames
        removed -= renames
    report.removed = removed
    report.seconds = time.monotonic() - started
    if out_of_memory_at:
        report.notes.append(f"the GPU ran out of memory with {out_of_memory_at} images per batch; the run went on "
                            f"with {batch_limit} (--batch-size {batch_limit} starts there)")
    summary = report.as_dict()
    summary["failed"] = len(report.failed)
    store.finish(summary)
    progress.close()
    return report


def resolve_roots(folders: Sequence[str], recorded: Sequence[str]) -> list[str]:
    """Absolute, existing folders to index: the ones given, or else every folder the index already has."""
    if not folders:
        if not recorded:
            raise UserError("no folder given and the index has none yet: clipsearch index FOLDER")
        present = [r for r in recorded if os.path.isdir(r)]
        if not present:
            raise UserError(f"none of the indexed folders exists now: {', '.join(recorded)}")
        return present
    roots = []
    for folder in folders:
        path = os.path.abspath(os.path.expanduser(folder))
        if not os.path.exists(path):
            raise UserError(f"folder not found: {folder}")
        if not os.path.isdir(path):
            raise UserError(f"not a folder: {folder}")
        roots.append(path)
    return roots
