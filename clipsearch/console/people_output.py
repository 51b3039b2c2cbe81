"""What ``people`` prints: JSON for scripts, a short table for people (ids to name, merge and split by)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from clipsearch.display import counted, shown, to_json

if TYPE_CHECKING:
    from clipsearch.app.people import People


def print_people(found: People, as_json: bool) -> None:
    if as_json:
        typer.echo(to_json(found.as_dict()))
        return
    if not found.people:
        typer.echo("no people yet" + ("" if found.setting == "on" else
                                      " (faces are not looked for: 'clipsearch index --faces on' finds them)"))
    else:
        typer.echo(f"{'id':>5}  {'photos':>6}  {'faces':>5}  {'name':20}  a photo of them (face at x,y,w,h)")
        for p in found.people:
            box = ",".join(str(v) for v in p.box)
            typer.echo(f"{p.id:>5}  {p.photos:>6}  {p.faces:>5}  {shown(p.name or '-'):20}  {shown(p.path)} ({box})")
    if found.ungrouped:
        typer.echo(f"and {counted(found.ungrouped, 'face')} seen only once so far (nobody yet)", err=True)


def print_faces(person: int, faces: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        typer.echo(to_json({"person": person, "faces": faces}))
        return
    typer.echo(f"person {person}: {counted(len(faces), 'face')} (split or remove them by face id)")
    for face in faces:
        typer.echo(f"{face['face']:>7}  {','.join(str(v) for v in face['box']):>20}  {shown(face['path'])}")


def print_decision(result: dict[str, Any], as_json: bool, line: str) -> None:
    typer.echo(to_json(result) if as_json else line)
