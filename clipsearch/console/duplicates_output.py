"""What ``duplicates`` prints: JSON for scripts, the non-keepers' paths for ``xargs``, groups for people."""

from __future__ import annotations

import sys
from typing import Any

import typer

from clipsearch.console.output import print_paths
from clipsearch.display import counted, shown, to_json


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"


def print_groups(groups: list[dict[str, Any]], as_json: bool, paths_only: bool, end: bytes = b"\n") -> None:
    if as_json:
        typer.echo(to_json(groups))
        return
    if paths_only:  # copies only: similar shots are different photos, for a person to choose among
        print_paths([m["path"] for g in groups if g["level"] != "similar" for m in g["members"] if not m["keep"]], end)
        return
    if not groups:
        typer.echo("no copies found")
        return
    for group in groups:
        typer.echo(f"{group['level']}: {len(group['members'])} photos; keep {shown(group['keep'])} ({group['reason']})")
        for m in group["members"]:
            mark = "keep " if m["keep"] else f"{m['score']:5.3f}"
            typer.echo(f"  {mark}  {m['width']:>5}x{m['height']:<5} {_size(m['size']):>8}  {(m['taken'] or '-')[:10]:10}"
                       f"  {shown(m['path'])}")
    copies = sum(len(g["members"]) - 1 for g in groups if g["level"] != "similar")
    typer.echo(f"{counted(len(groups), 'group')}; {counted(copies, 'copy', 'copies')} could go (clipsearch duplicates "
               "--paths-only lists them)")
    sys.stdout.flush()
