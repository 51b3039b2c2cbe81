"""clipsearch command line: ``clipsearch index``, ``search`` and ``info`` (also ``python cli.py ...``).

Heavy libraries (torch, open_clip, faiss) are imported inside the commands
that need them so that ``--help`` answers at once.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from clipsearch.errors import UserError
from clipsearch.location import ENV_VAR, resolve_index_dir

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
            raise _fail("the disk is full: the index keeps its last committed state; free space and run again") from None
        if "readonly" in text or "read-only" in text:
            raise _fail("the index directory is read-only: the index is unchanged") from None
        raise _fail(f"index database error: {text}") from None
    except OSError as exc:
        if exc.errno == 28:  # ENOSPC
            raise _fail("the disk is full: the index keeps its last committed state; free space and run again") from None
        raise _fail(f"{exc.strerror or exc}{': ' + exc.filename if exc.filename else ''}") from None
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

    def total(self, n: int) -> None:
        self._bar.total = n

    def close(self) -> None:
        self._bar.close()


@app.command()
def index(
    folders: Annotated[Optional[list[str]], typer.Argument(
        help="Folders of photos. Without one, every folder already in the index is brought up to date.",
        show_default=False)] = None,
    index_dir: IndexOpt = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", help="ARCH:TAG (open_clip), ARCH:/path/to/checkpoint.pt, ARCH:none (random), or a preset: fast. "
        "Recorded in the index [default: fast = ViT-B-32-quickgelu:metaclip_fullcc].", show_default=False)] = None,
    reindex: Annotated[bool, typer.Option("--reindex", help="Switch an existing index to --model, re-embedding everything.")] = False,
    include_hidden: Annotated[bool, typer.Option("--include-hidden", help="Also index hidden files and folders.")] = False,
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", min=1, help="Images per model call [default: 32, 128 on CUDA].", show_default=False)] = None,
    workers: Annotated[Optional[int], typer.Option(
        "--workers", min=0, help="Decode threads [default: number of CPUs].", show_default=False)] = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
) -> None:
    """Index (or update) folders of photos: new and changed files are embedded, deleted ones dropped.

    Run it again at any time (cron, systemd timer): unchanged files (same size
    and mtime) are not opened, renamed or copied files reuse their vectors, and
    progress is committed as it goes. Exit status is 0 when the index was
    committed, even if some files could not be read (they are listed).
    """
    with _user_errors():
        from clipsearch.encoders import DEFAULT_MODEL, Encoder, load_encoder, parse_spec
        from clipsearch.store import ModelRecord, StoreWriter
        from indexer.run import Options, index_folders, resolve_roots

        directory = resolve_index_dir(index_dir)
        with StoreWriter.open(directory) as store:
            recorded = store.model
            roots = resolve_roots(folders or [], store.roots())
            wanted = parse_spec(model) if model else parse_spec(recorded.spec if recorded else DEFAULT_MODEL)
            keep = recorded is not None and store.count() > 0 and wanted.text == recorded.spec
            if recorded and store.count() and not keep and not reindex:
                raise UserError(f"this index was built with --model {recorded.spec}; to re-embed everything with "
                                f"{wanted.text} pass --reindex (or use another --index)")

            def get_encoder() -> Encoder:
                encoder = load_encoder(wanted, device=device, precision=precision)
                if keep and recorded and encoder.fingerprint != recorded.fingerprint:
                    raise UserError(f"the weights or preprocessing of {wanted.text} changed since this index was "
                                    "built; pass --reindex to re-embed everything with them")
                return encoder

            if not keep:  # a new index or a model switch: record the model before any work
                loaded = get_encoder()
                store.bind_model(ModelRecord(loaded.spec, loaded.fingerprint, loaded.dim), reindex=reindex)
                get_encoder = lambda: loaded  # noqa: E731
            options = Options(include_hidden=include_hidden, batch_size=batch_size, workers=workers)
            bar = _Bar(enabled=not quiet and not as_json and sys.stderr.isatty())
            report = index_folders(store, roots, get_encoder, options, bar)
    if as_json:
        _print_json(report.as_dict())
    elif not quiet:
        typer.echo(
            f"{report.added} added, {report.updated} updated, {report.renamed} renamed, {report.removed} removed, "
            f"{report.unchanged} unchanged, {len(report.failed)} failed in {report.seconds:.1f}s  ({directory})"
        )
    if not quiet or as_json:
        for failure in report.failed:
            typer.echo(f"  failed: {failure['path']}: {failure['error']}", err=True)
    if report.interrupted:
        typer.echo("clipsearch: interrupted; what was done is committed, run again to continue", err=True)
        raise typer.Exit(130)


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

        searcher = Searcher(resolve_index_dir(index_dir), device=device, precision=precision)
        vector = searcher.embed_text(query) if query is not None else searcher.embed_image(str(image))
        hits = searcher.search(vector, k=k, within=within)
    if as_json:
        _print_json([h.as_dict() for h in hits])
        return
    if not hits:
        typer.echo("no results")
        return
    typer.echo(f"{'rank':>4}  {'score':>6}  path")
    for hit in hits:
        typer.echo(f"{hit.rank:>4}  {hit.score:6.3f}  {hit.path}")


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
def info(index_dir: IndexOpt = None, as_json: JsonOpt = False) -> None:
    """What is indexed, where, and with which model."""
    with _user_errors():
        from clipsearch.store import StoreReader

        store = StoreReader.open(resolve_index_dir(index_dir))
        data = store.info()
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
