"""The user's mistakes and the machine's conditions as one line on stderr and an exit status, never a traceback."""

from __future__ import annotations

import errno
import signal
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

from clipsearch.display import shown
from clipsearch.errors import Terminated, UserError

if TYPE_CHECKING:
    from indexer.report import Report

DISK_FULL = "the disk is full: the index keeps its last committed state; free space and run again"


def stop_on_sigterm() -> None:
    """From now on SIGTERM raises ``Terminated`` in the main thread, where a run commits and logs what it did."""

    def raise_terminated(signum: int, frame: object) -> None:
        raise Terminated()

    signal.signal(signal.SIGTERM, raise_terminated)


def stop_if_interrupted(report: Report) -> None:
    """A run that Ctrl-C or SIGTERM stopped has committed what it did; the command that ran it (--every, watch)
    stops too."""
    if report.interrupted:
        raise Terminated() if report.terminated else KeyboardInterrupt()


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"clipsearch: error: {shown(message)}", err=True)
    return typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Around a command's work: each known failure becomes ``clipsearch: error: ...`` and exit 2 (130 for Ctrl-C)."""
    try:
        yield
    except UserError as exc:
        raise fail(str(exc)) from None
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if "full" in text:
            raise fail(DISK_FULL) from None
        if "readonly" in text or "read-only" in text:
            raise fail("the index directory is read-only: the index is unchanged") from None
        if "disk I/O error" in text:
            raise fail("could not write the index (disk full, quota or a failing disk?): "
                       "it keeps its last committed state") from None
        raise fail(f"index database error: {text}") from None
    except sqlite3.DatabaseError as exc:  # a damaged catalog that opened, and failed further in
        raise fail(f"the index's catalog is damaged ({exc}): 'clipsearch check' says what can be saved") from None
    except BrokenPipeError:
        raise  # the reader of our output went away (`| head`): not a failure to report (run_command_line)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise fail(DISK_FULL) from None
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise fail(f"cannot write {exc.filename or 'the index'}: {exc.strerror}; the index is unchanged") from None
        raise fail(f"{exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}") from None
    except RuntimeError as exc:  # faiss reports write failures as RuntimeError
        if "write" in str(exc).lower() or "No space" in str(exc):
            raise fail(DISK_FULL) from None
        raise
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)  # the exit status a shell gives a stop by signal: 128 + its number
        raise fail("terminated" if terminated else "interrupted", 143 if terminated else 130) from None


def run_command_line(app: typer.Typer) -> None:
    """Run the CLI with its own words for what click would print as a usage block: a mistyped option or value is
    one line naming the command's help, exit 2; output cut short by a closed pipe (``| head``) ends quietly."""
    import os
    import sys

    # click's UsageError, wherever this typer takes click from (its own copy since 0.28)
    usage_error = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
    try:
        code = app(standalone_mode=False)
        sys.stdout.flush()
    except usage_error as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `clipsearch` alone: its help, as click shows it
            exc.show()
            sys.exit(exc.exit_code)
        where = exc.ctx.command_path if exc.ctx is not None else "clipsearch"
        typer.echo(f"clipsearch: error: {shown(exc.format_message().rstrip('.'))}; see '{where} --help'", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:  # Ctrl-C or end of input at a prompt
        typer.echo("clipsearch: error: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:  # the reader went away (click says so with exit 1 inside a command; so do we after it)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nor anything more at exit
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
