"""What ``duplicates`` prints: JSON for scripts, the non-keepers' paths for ``xargs``, groups for people."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from clipsearch.console.output import print_paths
from clipsearch.display import counted, shown, to_json

if TYPE_CHECKING:
    from clipsearch.app import Duplicates


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"


def print_groups(found: Duplicates, as_json: bool, paths_only: bool, end: bytes = b"\n") -> None:
    if as_json:
        typer.echo(to_json([g.as_dict() for g in found.groups]))
        return
    if paths_only:  # copies only: similar shots are different photos, for a person to choose among
        print_paths(found.copies_to_drop(), end)
        return
    if not found.groups:
        typer.echo("no copies found")
        return
    for group in found.groups:
        typer.echo(f"{group.level}: {len(group.members)} photos; keep {shown(group.keep)} ({group.reason})")
        for m in group.members:
            mark = "keep " if m.keep else f"{m.score:5.3f}"
            typer.echo(f"  {mark}  {m.width:>5}x{m.height:<5} {_size(m.size):>8}  {(m.taken or '-')[:10]:10}"
                       f"  {shown(m.path)}")
    copies = len(found.copies_to_drop())
    typer.echo(f"{counted(len(found.groups), 'group')}; {counted(copies, 'copy', 'copies')} could go (clipsearch "
               "duplicates --paths-only lists them)")
    sys.stdout.flush()
