"""What ``classify`` and ``tags`` print: JSON for scripts, a short ranking or table for people."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from clipsearch.display import shown, to_json

if TYPE_CHECKING:
    from clipsearch.app import TagCount
    from search.classify import Classified


def print_classified(results: list[Classified], as_json: bool) -> None:
    if as_json:
        typer.echo(to_json([r.as_dict() for r in results]))
        return
    for result in results:
        typer.echo(shown(result.path) + (f"  (id {result.id})" if result.id is not None else ""))
        if result.error is not None:
            typer.echo(f"  cannot classify: {shown(result.error)}")
            continue
        for s in result.labels:
            typer.echo(f"  {s.probability:6.1%}  {s.score:6.3f}  {shown(s.label)}")
    sys.stdout.flush()


def print_tags(rows: list[TagCount], as_json: bool) -> None:
    if as_json:
        typer.echo(to_json([row.as_dict() for row in rows]))
        return
    if not rows:
        typer.echo("no tags")
        return
    width = max(len(str(row.photos)) for row in rows)
    for row in rows:
        typer.echo(f"{row.photos:>{width}}  {shown(row.tag)}")
