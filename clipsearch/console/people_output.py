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


def listed(items: list[Any]) -> str:
    """"4", "4 and 5", "4, 5 and 7"."""
    words = [str(i) for i in items]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def merged_line(done: dict[str, Any]) -> str:
    """``people merge``: "person 4 merged into person 1; its name Cameraman was dropped" (one), "people 4 and 5 ...;
    their names A and B were dropped" (several)."""
    merged, names = done["merged"], [shown(n) for n in done["names_dropped"]]
    line = f"{'person' if len(merged) == 1 else 'people'} {listed(merged)} merged into person {done['person']}"
    if names:
        whose = "its" if len(merged) == 1 else "their"
        line += f"; {whose} name {names[0]} was dropped" if len(names) == 1 else \
            f"; {whose} names {listed(names)} were dropped"
    return line


def split_line(done: dict[str, Any]) -> str:
    """``people split``: "1 face of person 3 is now person 9", "2 faces of person 3 are now person 9"."""
    n = len(done["faces"])
    return f"{counted(n, 'face')} of person {done['person']} {'is' if n == 1 else 'are'} now person {done['new_person']}"


def removed_line(done: dict[str, Any]) -> str:
    """``people remove``: "1 face is not person 3 any more", "2 faces are not ..."; with --not-a-face, "... not a
    face: never grouped again"."""
    n = len(done["removed"])
    if done.get("not_a_face"):
        return f"{counted(n, 'face')} of person {done['person']} {'is not a face' if n == 1 else 'are not faces'}: " \
               f"never grouped again ('clipsearch people restore {' '.join(map(str, done['removed']))}' undoes it)"
    return f"{counted(n, 'face')} {'is' if n == 1 else 'are'} not person {done['person']} any more"
