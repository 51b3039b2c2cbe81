"""How a run indexes, as the user set it: batch size, decode workers, commits, where JPEGs are decoded."""

from __future__ import annotations

from dataclasses import dataclass, field

from clipsearch import images
from clipsearch.errors import UserError

DECODE_MODES = ("auto", "cpu", "gpu")
WORKER_KINDS = ("auto", "threads", "processes")
ENGINES = ("local", "ray")
READ_CHUNK = 8  # files per reader call, and per call to a worker process (bench/pipeline_ceiling.py --chunks)


@dataclass
class RayOptions:
    """The knobs of ``--engine ray`` (``indexer.ray_engine``); None: what fills the cluster."""

    address: str | None = None  # ray://head:10001 or head:6379; None: RAY_ADDRESS, else a local Ray for the run
    replicas: int | None = None  # model actors
    gpus_per_replica: float | None = None  # None: 1 where the cluster has GPUs, else 0
    decode_cpus: float = 1.0  # CPUs each decode task reserves
    threads: int | None = None  # torch threads per CPU replica
    device: str = "auto"  # the actors' model device and precision (the driver's copy stays on the CPU)
    precision: str = "auto"


@dataclass
class Options:
    include_hidden: bool | None = None  # change the folders' setting (None: as each was set; hidden files skipped)
    exclude: tuple[str, ...] = ()  # patterns to add to the folders' exclusions (indexer.walk.EXCLUDE_RULES)
    clear_excludes: bool = False  # drop the folders' exclusions first
    batch_size: int | None = None  # None: the encoder's (128 per GPU, 32 on the CPU)
    workers: int | None = None  # decode workers; None: one per CPU
    commit_every: int = 256  # images
    commit_seconds: float = 30.0
    max_pixels: int = images.DEFAULT_MAX_PIXELS
    decode: str = "auto"  # auto: baseline JPEGs on the GPU when the model runs on one; cpu; gpu (required)
    worker_kind: str = "auto"  # what decodes on the CPU: threads, processes (Linux), auto (decoders.in_processes)
    read_chunk: int = READ_CHUNK  # files per reader call, and per call to a worker process (1: one call per file)
    engine: str = "local"  # local: this process and its workers; ray: a Ray cluster (indexer.ray_engine)
    ray: RayOptions = field(default_factory=RayOptions)

    def __post_init__(self) -> None:
        if self.decode not in DECODE_MODES:
            raise UserError(f"unknown --decode '{self.decode}' ({', '.join(DECODE_MODES)})")
        if self.worker_kind not in WORKER_KINDS:
            raise UserError(f"unknown --worker-kind '{self.worker_kind}' ({', '.join(WORKER_KINDS)})")
        if self.engine not in ENGINES:
            raise UserError(f"unknown --engine '{self.engine}' ({', '.join(ENGINES)})")
        from indexer.walk import Pattern

        for pattern in self.exclude:
            Pattern.parse(pattern)  # a pattern that cannot be used is said before any work
        if self.worker_kind == "processes":
            from indexer import decode_pool

            if not decode_pool.available():
                raise UserError("--worker-kind processes needs Linux; use threads")

    def decode_workers(self) -> int:
        import os

        return self.workers if self.workers is not None else (os.cpu_count() or 2)
