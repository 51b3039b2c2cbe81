"""What the commands print: JSON for scripts, short tables and lines for people, a progress bar on a terminal."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from clipsearch.display import counted, shown, to_json

if TYPE_CHECKING:
    from clipsearch.app import CheckResult, Failure, Index, Info
    from indexer.report import Report
    from search.query import Hit


def print_json(value: Any) -> None:
    typer.echo(to_json(value))


class ProgressBar:
    """tqdm progress on stderr for ``index``, shown only when enabled (stderr is a terminal)."""

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


def print_report(report: Report, directory: Path, as_json: bool, quiet: bool) -> None:
    if as_json:
        print_json(report.as_dict())
    elif not quiet:
        typer.echo(
            f"{report.added} added, {report.updated} updated, {report.renamed} renamed, {report.removed} removed, "
            f"{report.unchanged} unchanged, {len(report.failed)} failed in {report.seconds:.1f}s"
            + (f" (the model {report.model_seconds:.1f}s)" if report.model_seconds else "") + f"  ({directory})"
            + (f"; {counted(report.gpu_decoded, 'JPEG')} decoded on the GPU" if report.gpu_decoded else "")
        )
        for note in report.notes:
            typer.echo(f"clipsearch: note: {note}", err=True)
    if not as_json:  # --json carries them on stdout; --quiet still reports them: they are errors
        for failure in report.failed:
            typer.echo(f"  failed: {shown(failure['path'])}: {shown(failure['error'])}", err=True)
    if not as_json and not quiet:
        for noted in report.noted:
            typer.echo(f"  indexed with a note: {shown(noted['path'])}: {shown(noted['note'])}", err=True)


def place(lat: float | None, lon: float | None) -> str:
    """A position for people: 5 decimals (about a metre), not the float a GPS rational became (151.20999999999998);
    JSON keeps the number as stored."""
    return "-" if lat is None or lon is None else f"{lat:.5f}, {lon:.5f}"


def print_hits(hits: list[Hit], as_json: bool, dates: bool = False, places: bool = False,
               preview: Callable[[Hit], str | None] | None = None) -> None:
    """``dates``: a column with the date taken (sorted by date); ``places``: one with where (a --near search).
    ``preview``: the escape sequence that shows a hit's thumbnail under its line (``thumbnails``), or None."""
    if as_json:
        print_json([h.as_dict() for h in hits])
    elif not hits:
        typer.echo("no results")
    else:
        typer.echo(f"{'rank':>4}  {'score':>6}  " + (f"{'taken':19}  " if dates else "")
                   + (f"{'place':21}  " if places else "") + "path")
        for hit in hits:
            score = f"{hit.score:6.3f}" if hit.score is not None else f"{'-':>6}"
            taken = f"{(hit.meta.get('taken') or '-')[:19]:19}  " if dates else ""
            where = f"{place(hit.meta.get('lat'), hit.meta.get('lon')):21}  " if places else ""
            at = f"  @ {hit.meta['t']:.1f} s" if hit.meta.get("t") is not None else ""  # a video: its best moment
            typer.echo(f"{hit.rank:>4}  {score}  {taken}{where}{shown(hit.path)}{at}")
            if preview is not None and (picture := preview(hit)) is not None:
                sys.stdout.write(picture)
    sys.stdout.flush()


def thumbnails(index: Index) -> Callable[[Hit], str | None] | None:
    """What shows each hit's thumbnail on this terminal (``clipsearch.console.preview``), or None where it shows no
    images (then --preview prints the plain listing). A photo that cannot be shown is left without a picture."""
    from clipsearch.console import preview

    kind = preview.protocol()
    if kind is None:
        return None

    def show(hit: Hit) -> str | None:
        try:
            return preview.encode(index.thumbnail(hit.id, hit.meta.get("t")), kind)  # a video: its best moment
        except Exception:  # noqa: BLE001 - a file gone or undecodable costs its picture only
            return None

    return show


def print_paths(paths: list[str], end: bytes) -> None:
    """Each path as its exact bytes on disk, then ``end``: what a script hands to the next command."""
    sys.stdout.flush()
    for path in paths:
        sys.stdout.buffer.write(os.fsencode(path) + end)
    sys.stdout.buffer.flush()


def print_check(result: CheckResult, as_json: bool) -> None:
    """A repair that lost anything says what (and the command exits 1); a check says what a repair would do."""
    if as_json:
        print_json(result.as_dict())
        return
    for problem in result.problems:
        typer.echo(f"problem: {shown(problem)}")
    for note in result.notes:
        typer.echo(f"note: {shown(note)}")
    if result.lost_paths:
        listed = ", ".join(shown(p) for p in result.lost_paths[:5]) + (" …" if len(result.lost_paths) > 5 else "")
        verb = "dropped" if result.repaired else "'check --repair' would drop"
        many, again = len(result.lost_paths), result.reembeds
        them = "it" if many == 1 else "them"
        nxt = (f"its stored vector lost: the next index run embeds {them} again" if again == many else
               f"its record's path damaged: the next index run finds {them} again, re-embedding nothing" if not again
               else f"the next index run embeds {again} of them again (their vectors lost) and finds the others again "
               "(their paths damaged), re-embedding nothing for them")
        typer.echo(f"{verb} {counted(many, 'photo')} ({nxt.replace('its ', 'their ') if many > 1 else nxt}): {listed}")
    if result.lost:
        typer.echo(f"repaired with losses: {shown(result.lost)}")
    elif result.repaired:
        typer.echo("repaired" + (" with losses" if result.lost_paths else "") if not result.remaining else
                   "not everything could be repaired")
    else:
        typer.echo("ok" if not result.problems else "not repaired: run 'clipsearch check --repair'")


def print_models(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print_json(rows)
        return
    width = max(len(r["spec"]) for r in rows) if rows else 10
    typer.echo(f"{'model':{width}}  {'dim':>5}  {'res':>4}  {'cost':>5}  here  int8")
    for r in rows:
        cost = f"{r['cost']:g}" if r["cost"] else "?"
        int8 = f"{r['int8']['mean_cosine']:.4f}" if "int8" in r else "-"
        typer.echo(f"{r['spec']:{width}}  {r['dim'] or '?':>5}  {r['resolution'] or '?':>4}  {cost:>5}  "
                   f"{'yes' if r['cached'] else '-':>4}  {int8:>6}" + (f"  = {r['preset_of']}" if "preset_of" in r else ""))
    if any("int8" in r for r in rows):
        typer.echo("int8: --precision int8's mean cosine with fp32 on the first photos it embedded here "
                   "(docs/benchmarks.md: its search quality)")


def print_failures(rows: list[Failure], as_json: bool) -> None:
    if as_json:
        print_json([row.as_dict() for row in rows])
        return
    for row in rows:
        said = row.indexed and "indexed as far as it decodes" not in row.error  # some notes say it themselves
        typer.echo(f"{shown(row.path)}: {shown(row.error)}" + ("  (indexed as far as it decodes)" if said else ""))


def print_info(info: Info, as_json: bool) -> None:
    data = info.as_dict()
    if as_json:
        print_json(data)
        return
    for key in ("index", "images", "model", "dim", "failing_files"):
        typer.echo(f"{key + ':':15} {data[key]}" + ("  (clipsearch info --failed lists them)"
                                                    if key == "failing_files" and data[key] else ""))
    typer.echo(f"{'index type:':15} {data['index_type'] or '-'}"
               + (f"  ({data['index_type_note']})" if data.get("index_type_note") else ""))
    typer.echo(f"{'roots:':15} {shown(', '.join(data['roots'])) or '-'}")
    if data.get("vocabulary") == "none":
        typer.echo(f"{'tags:':15} off (index --vocabulary none)")
    elif data.get("vocabulary"):
        typer.echo(f"{'tags:':15} {data['tags']} tags on {data['tagged_images']} images, from the "
                   f"{shown(data['vocabulary'])} vocabulary" + ("  (clipsearch tags lists them)" if data["tags"] else ""))
    words = data.get("words") or {}
    if words.get("mode"):
        typer.echo(f"{'words:':15} text read in {words['pictures_with_text']} of {words['pictures_read']} pictures read"
                   + (f", {words['pictures_waiting']} waiting" if words["pictures_waiting"] else "")
                   + ("" if words["mode"] == "on" else f" (index --words {words['mode']})"))
    faces = data.get("faces") or {}
    if faces.get("setting", "off") != "off" or faces.get("faces"):
        typer.echo(f"{'faces:':15} {counted(faces['faces'], 'face')} in {faces['faced_photos']} photos looked at, "
                   f"{counted(faces['people'], 'person', 'people')}"
                   + ("  (clipsearch people lists them)" if faces["people"] else "")
                   + ("" if faces["setting"] == "on" else f" (index --faces {faces['setting']})"))
    if again := data.get("reembedding"):
        typer.echo(f"{'re-embedding:':15} with {again['model']}: {again['vectors_done']} of {again['vectors']} vectors "
                   "made, unfinished (searches use the old vectors until a run finishes it: clipsearch index)")
    for root, settings in data.get("root_settings", {}).items():
        said = (["hidden files included"] if settings.get("include_hidden") else []) + (
            [f"excluding {', '.join(settings['exclude'])}"] if settings.get("exclude") else [])
        if said:
            typer.echo(f"{'':15} {shown(root)}: {shown('; '.join(said))}")
    run = data["last_run"]
    if run and "added" in run:
        typer.echo(f"{'last run:':15} {run['added']} added, {run['updated']} updated, {run['renamed']} renamed, "
                   f"{run['removed']} removed, {run['unchanged']} unchanged, {run['failed']} failed "
                   + (f"({run['noted']} indexed with a note: a JPEG cut short) " if run.get("noted") else "")
                   + f"in {run['seconds']:.1f}s")
