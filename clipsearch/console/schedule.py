"""``index --every``: the same job again and again, for containers without cron."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import typer

from clipsearch.console.errors import stop_if_interrupted
from clipsearch.console.output import print_report
from clipsearch.errors import Terminated, UserError

if TYPE_CHECKING:
    from indexer.job import IndexJob


def parse_interval(text: str) -> float:
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


def repeat(job: IndexJob, interval: float, as_json: bool, quiet: bool) -> None:
    """Run the job now and then every ``interval`` seconds until stopped (Ctrl-C, SIGTERM: a run in progress commits
    what it did first); a failed run waits for the next. A stop is how this ends, not an error: it is said as one
    (exit 143 for SIGTERM, 130 for Ctrl-C, as a shell reports a stop by signal)."""
    try:
        _forever(job, interval, as_json, quiet)
    except KeyboardInterrupt as stop:
        terminated = isinstance(stop, Terminated)
        if not quiet:
            typer.echo(f"clipsearch: stopped ({'SIGTERM' if terminated else 'Ctrl-C'}); what was done is committed",
                       err=True)
        raise typer.Exit(143 if terminated else 130) from None


def _forever(job: IndexJob, interval: float, as_json: bool, quiet: bool) -> None:
    while True:
        started = time.monotonic()
        try:
            report = job.run()
            print_report(report, job.directory, as_json, quiet)
            stop_if_interrupted(report)
        except UserError as exc:
            typer.echo(f"clipsearch: error: {exc} (trying again in {interval:.0f}s)", err=True)
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
