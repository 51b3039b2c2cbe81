"""clipsearch command line: ``clipsearch index``, ``search`` and ``info`` (also ``python cli.py ...``).

Heavy libraries (torch, open_clip, faiss) are imported inside the commands
that need them so that ``--help`` answers at once.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from clipsearch.errors import UserError
from clipsearch.location import ENV_VAR, resolve_index_dir

if TYPE_CHECKING:
    from indexer.job import IndexJob
    from indexer.run import Report

app = typer.Typer(
    help="Private, local search over your photos by what is in them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

IndexOpt = Annotated[
    Optional[Path],
    typer.Option("--index", help=f"Index directory [default: ${ENV_VAR}, else $XDG_DATA_HOME/clipsearch].",
                 show_default=False),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when present), cpu, cuda or cuda:N.")]
PrecisionOpt = Annotated[
    str, typer.Option("--precision", help="auto (fp16 on CUDA, bf16 on CPUs with native bf16, else fp32), fp32, bf16, fp16.")
]


DISK_FULL = "the disk is full: the index keeps its last committed state; free space and run again"


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"clipsearch: error: {message}", err=True)
    return typer.Exit(code)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the user's mistakes and the machine's conditions into one line on stderr, never a traceback."""
    try:
        yield
    except UserError as exc:
        raise _fail(str(exc)) from None
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if "full" in text:
            raise _fail(DISK_FULL) from None
        if "readonly" in text or "read-only" in text:
            raise _fail("the index directory is read-only: the index is unchanged") from None
        if "disk I/O error" in text:
            raise _fail("could not write the index (disk full, quota or a failing disk?): "
                        "it keeps its last committed state") from None
        raise _fail(f"index database error: {text}") from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise _fail(DISK_FULL) from None
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise _fail(f"cannot write {exc.filename or 'the index'}: {exc.strerror}; the index is unchanged") from None
        raise _fail(f"{exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}") from None
    except RuntimeError as exc:  # faiss reports write failures as RuntimeError
        if "write" in str(exc).lower() or "No space" in str(exc):
            raise _fail(DISK_FULL) from None
        raise
    except KeyboardInterrupt:
        raise _fail("interrupted", 130) from None


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=None, ensure_ascii=False))


class _Bar:
    """tqdm progress on stderr for ``index``, shown only when stderr is a terminal."""

    def __init__(self, enabled: bool) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=None, unit="img", desc="indexing", disable=not enabled, file=sys.stderr,
                         dynamic_ncols=True, smoothing=0.05)
        self._found = 0

    def found(self, n: int = 1) -> None:
        self._found += n
        if self._bar.total is None or self._found > self._bar.total:
            self._bar.total = self._found
            self._bar.refresh()

    def done(self, n: int = 1) -> None:
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


@app.command()
def index(
    folders: Annotated[Optional[list[str]], typer.Argument(
        help="Folders of photos. Without one, every folder already in the index is brought up to date.",
        show_default=False)] = None,
    index_dir: IndexOpt = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", help="A preset (fast, best, multilingual, demo), ARCH:TAG (open_clip), ARCH:/path/to/checkpoint.pt, "
        "hf:ORG/NAME or hf:/dir (Hugging Face CLIP/MetaCLIP/ALIGN/SigLIP), ARCH:none (random). See 'clipsearch models'. "
        "Recorded in the index [default: fast = ViT-B-32-quickgelu:metaclip_fullcc].", show_default=False)] = None,
    reindex: Annotated[bool, typer.Option(
        "--reindex", help="Switch an existing index to --model, re-embedding everything.")] = False,
    include_hidden: Annotated[bool, typer.Option("--include-hidden", help="Also index hidden files and folders.")] = False,
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", min=1, help="Images per model call [default: 32 on the CPU, 128 per GPU].", show_default=False)] = None,
    workers: Annotated[Optional[int], typer.Option(
        "--workers", min=0, help="Decode workers [default: number of CPUs].", show_default=False)] = None,
    worker_kind: Annotated[str, typer.Option(
        "--worker-kind", help="What the decode workers are: threads, processes (Linux: each with its own GIL, and a "
        "decoder crash costs one file), or auto (processes where they can run, threads elsewhere and for Hugging Face "
        "models).")] = "auto",
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    decode: Annotated[str, typer.Option(
        "--decode", help="Where JPEGs are decoded: auto (baseline JPEGs on the GPU with nvJPEG when the model runs on "
        "one, sharing the work with the CPU workers; everything else on the CPU), cpu, or gpu (fail if it cannot).")] = "auto",
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
    commit_every: Annotated[int, typer.Option(
        "--commit-every", min=1, help="Commit after this many images (and at least every 30 s).")] = 256,
    wait: Annotated[bool, typer.Option("--wait", help="If another run holds the index, wait for it instead of exiting.")] = False,
    index_type: Annotated[Optional[str], typer.Option(
        "--index-type", help="FAISS index type: auto (exact while small, then IVF with codes that fit memory), Flat, "
        "or a faiss factory string such as IVF4096,SQ8. Remembered by the index.", show_default=False)] = None,
    every: Annotated[Optional[str], typer.Option(
        "--every", help="Keep running: index again at this interval (30m, 1h, 1d), for containers without cron.",
        show_default=False)] = None,
) -> None:
    """Index (or update) folders of photos: new and changed files are embedded, deleted ones dropped.

    Run it again at any time (cron, systemd timer): unchanged files (same size
    and mtime) are not opened, renamed or copied files reuse their vectors, and
    progress is committed as it goes. Exit status is 0 when the index was
    committed, even if some files could not be read (they are listed).
    """
    with _user_errors():
        from indexer.job import IndexJob
        from indexer.run import Options

        directory = resolve_index_dir(index_dir)

        def waiting(holder: str) -> None:
            if not quiet:
                typer.echo(f"clipsearch: waiting for PID {holder}, which is writing to {directory}", err=True)

        job = IndexJob(directory, folders or [], model, reindex, device, precision,
                       Options(include_hidden=include_hidden, batch_size=batch_size, workers=workers,
                               commit_every=commit_every, decode=decode, worker_kind=worker_kind),
                       on_wait=waiting if wait or every else None, index_type=index_type, quiet=quiet or as_json)
        if every:
            _repeat(job, _parse_interval(every), as_json, quiet)
            return
        report = job.run(_Bar(enabled=not quiet and not as_json and sys.stderr.isatty()))
    _print_report(report, directory, as_json, quiet)
    if report.interrupted:
        typer.echo("clipsearch: interrupted; what was done is committed, run again to continue", err=True)
        raise typer.Exit(130)


def _print_report(report: Report, directory: Path, as_json: bool, quiet: bool) -> None:
    if as_json:
        _print_json(report.as_dict())
    elif not quiet:
        typer.echo(
            f"{report.added} added, {report.updated} updated, {report.renamed} renamed, {report.removed} removed, "
            f"{report.unchanged} unchanged, {len(report.failed)} failed in {report.seconds:.1f}s"
            + (f" (the model {report.model_seconds:.1f}s)" if report.model_seconds else "") + f"  ({directory})"
            + (f"; {report.gpu_decoded} JPEGs decoded on the GPU" if report.gpu_decoded else "")
        )
        for note in report.notes:
            typer.echo(f"clipsearch: note: {note}", err=True)
    if not as_json:  # --json carries them on stdout; --quiet still reports them: they are errors
        for failure in report.failed:
            typer.echo(f"  failed: {failure['path']}: {failure['error']}", err=True)


def _parse_interval(text: str) -> float:
    """'90s', '15m', '1h', '1d' (or plain seconds) -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        seconds = float(value) * units[unit]
    except ValueError:
        raise UserError(f"--every '{text}' is not a duration like 30m, 1h or 1d") from None
    if seconds < 1:
        raise UserError("--every must be at least 1s")
    return seconds


def _repeat(job: IndexJob, interval: float, as_json: bool, quiet: bool) -> None:
    """Run the job now and then every ``interval`` seconds until stopped; a failed run waits for the next."""
    import time

    while True:
        started = time.monotonic()
        try:
            _print_report(job.run(), job.directory, as_json, quiet)
        except UserError as exc:
            typer.echo(f"clipsearch: error: {exc} (trying again in {interval:.0f}s)", err=True)
        time.sleep(max(0.0, interval - (time.monotonic() - started)))


@app.command()
def watch(
    folders: Annotated[Optional[list[str]], typer.Argument(
        help="Folders to watch. Without one, every folder already in the index.", show_default=False)] = None,
    index_dir: IndexOpt = None,
    model: Annotated[Optional[str], typer.Option("--model", help="As for index.", show_default=False)] = None,
    debounce: Annotated[float, typer.Option("--debounce", min=0.0,
                                            help="Seconds of quiet after a change before indexing it.")] = 2.0,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
) -> None:
    """Index the folders, then keep the index in step with them: changes are indexed within seconds.

    Only the folders where something changed are rescanned. Stop with Ctrl-C.
    """
    with _user_errors():
        from indexer.job import IndexJob
        from indexer.watch import watch_folders

        directory = resolve_index_dir(index_dir)
        job = IndexJob(directory, folders or [], model, device=device, precision=precision,
                       on_wait=lambda holder: None, quiet=quiet or as_json)
        _print_report(job.run(), directory, as_json, quiet)

        def ready(roots: list[str]) -> None:
            if not quiet and not as_json:
                typer.echo(f"watching {', '.join(roots)} (Ctrl-C stops)", err=True)

        def changed(folders_changed: list[str]) -> None:
            try:
                _print_report(job.run(scan=folders_changed), directory, as_json, quiet)
            except UserError as exc:
                typer.echo(f"clipsearch: error: {exc}", err=True)

        try:
            watch_folders(job.roots(), changed, debounce=debounce, ready=ready)
        except KeyboardInterrupt:
            return


@app.command()
def search(
    query: Annotated[Optional[str], typer.Argument(help="What to look for, in words.", show_default=False)] = None,
    image: Annotated[Optional[Path], typer.Option("--image", help="Find photos like this image instead.",
                                                  show_default=False)] = None,
    k: Annotated[int, typer.Option("-k", "--top", min=1, help="How many results.")] = 10,
    within: Annotated[Optional[str], typer.Option("--in", help="Only results under this folder.",
                                                  show_default=False)] = None,
    index_dir: IndexOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Find the photos that best match a text (or, with --image, a picture), best first.

    The score is the cosine similarity between the query and the photo.
    """
    with _user_errors():
        if (query is None) == (image is None):
            raise UserError("give a text query or --image PATH (one of them)")
        from search.engine import Searcher

        with Searcher(resolve_index_dir(index_dir), device=device, precision=precision) as searcher:
            vector = searcher.embed_text(query) if query is not None else searcher.embed_image(str(image))
            hits = searcher.search(vector, k=k, within=within)
            if as_json:
                _print_json([h.as_dict() for h in hits])
            elif not hits:
                typer.echo("no results")
            else:
                typer.echo(f"{'rank':>4}  {'score':>6}  path")
                for hit in hits:
                    typer.echo(f"{hit.rank:>4}  {hit.score:6.3f}  {hit.path}")
            sys.stdout.flush()
            # The model had to be loaded with torch this time: make the next text search start without it.
            searcher.prepare_fast_text(quiet=as_json)


@app.command()
def forget(
    folders: Annotated[list[str], typer.Argument(help="Indexed folders to drop from the index.", show_default=False)],
    index_dir: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Drop folders and every photo under them from the index (the photos themselves are not touched)."""
    with _user_errors():
        from clipsearch.store import StoreWriter

        directory = resolve_index_dir(index_dir)
        if not (directory / "catalog.sqlite").is_file():
            raise UserError(f"no index at {directory}")
        dropped = {}
        with StoreWriter.open(directory) as store:
            roots = store.roots()
            for folder in folders:
                path = os.path.abspath(os.path.expanduser(folder))
                if path not in roots and not store.ids_under(path):
                    raise UserError(f"{folder} is not in the index (folders: {', '.join(roots) or 'none'})")
                dropped[path] = store.forget(path)
            store.finish({"forgotten": dropped})
    if as_json:
        _print_json({"removed": sum(dropped.values()), "folders": dropped})
    else:
        for path, count in dropped.items():
            typer.echo(f"dropped {count} images under {path}")


@app.command()
def check(
    repair: Annotated[bool, typer.Option("--repair", help="Rebuild the FAISS index from the stored vectors "
                                         "(nothing is re-embedded) and drop rows whose vector is damaged.")] = False,
    index_dir: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify that catalog, stored vectors and FAISS index agree (exit 1 if they do not and --repair was not given)."""
    with _user_errors():
        from clipsearch.store import CATALOG_NAME, StoreWriter

        directory = resolve_index_dir(index_dir)
        if not (directory / CATALOG_NAME).is_file():
            raise UserError(f"no index at {directory}")
        with StoreWriter.open(directory) as store:
            problems = store.check(repair=repair)
            remaining = store.check() if repair and problems else problems
    if as_json:
        _print_json({"ok": not remaining, "problems": problems, "repaired": bool(repair and problems)})
    else:
        for problem in problems:
            typer.echo(f"problem: {problem}")
        typer.echo("repaired" if repair and problems and not remaining else "ok" if not problems else
                   "not repaired: run 'clipsearch check --repair'")
    if remaining:
        raise typer.Exit(1)


@app.command()
def serve(
    index_dir: IndexOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on. Keep 127.0.0.1 unless you mean it.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8000,
    token: Annotated[Optional[str], typer.Option(
        "--token", envvar="CLIPSEARCH_TOKEN",
        help="Shared secret every request must carry (?token=, a bearer header, or the page's cookie). "
             "Use it with a non-local --host.")] = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
) -> None:
    """Serve a search page at / and a JSON API, with the model and index loaded once.

    Open http://127.0.0.1:8000/ for a grid of thumbnails: type words, drop or paste a
    photo, or ask for "more like this". The API: GET /search?q=TEXT&k=10&in=FOLDER,
    GET /search?like=ID, POST /search with an image as the body, GET /thumb/ID,
    GET /file/ID, GET /info. Only indexed files are served, by catalog id.
    A rebuild by 'clipsearch index' is picked up on the next query.
    """
    with _user_errors():
        from search.server import serve as run_server

        if host not in ("127.0.0.1", "localhost", "::1"):
            advice = "" if token else " (add --token SECRET to require a shared secret)"
            typer.echo(f"clipsearch: warning: serving on {host}: anyone who can reach it can search and see your "
                       f"photos{advice}", err=True)
        directory = resolve_index_dir(index_dir)
        shown = f"[{host}]" if ":" in host else host
        suffix = "?token=" + token if token else ""
        typer.echo(f"clipsearch: serving {directory} on http://{shown}:{port}/{suffix} (Ctrl-C stops)", err=True)
        run_server(directory, host=host, port=port, device=device, precision=precision, token=token)


@app.command()
def models(
    as_json: JsonOpt = False,
    cached: Annotated[bool, typer.Option("--cached", help="Only models whose weights are on this machine.")] = False,
) -> None:
    """The models --model accepts: presets, every open_clip pretrained pair, known Hugging Face ids.

    Columns: embedding size, input resolution, image-tower cost relative to ViT-B/32
    (rough), and whether the weights are already on this machine.
    """
    with _user_errors():
        from clipsearch.encoders.listing import list_models

        rows = [r for r in list_models() if r["cached"] or not cached]
    if as_json:
        _print_json(rows)
        return
    width = max(len(r["spec"]) for r in rows) if rows else 10
    typer.echo(f"{'model':{width}}  {'dim':>5}  {'res':>4}  {'cost':>5}  here")
    for r in rows:
        cost = f"{r['cost']:.1f}" if r["cost"] else "?"
        typer.echo(f"{r['spec']:{width}}  {r['dim'] or '?':>5}  {r['resolution'] or '?':>4}  {cost:>5}  "
                   f"{'yes' if r['cached'] else '-'}" + (f"  = {r['preset_of']}" if "preset_of" in r else ""))


@app.command()
def info(index_dir: IndexOpt = None, as_json: JsonOpt = False) -> None:
    """What is indexed, where, and with which model."""
    with _user_errors():
        from clipsearch.store import StoreReader

        store = StoreReader.open(resolve_index_dir(index_dir))
        try:
            data = store.info()
        finally:
            store.close()
    if as_json:
        _print_json(data)
        return
    for key in ("index", "images", "model", "dim", "failing_files"):
        typer.echo(f"{key + ':':15} {data[key]}")
    typer.echo(f"{'roots:':15} {', '.join(data['roots']) or '-'}")
    run = data["last_run"]
    if run:
        typer.echo(f"{'last run:':15} {run['added']} added, {run['updated']} updated, {run['renamed']} renamed, "
                   f"{run['removed']} removed, {run['unchanged']} unchanged, {run['failed']} failed "
                   f"in {run['seconds']:.1f}s")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
