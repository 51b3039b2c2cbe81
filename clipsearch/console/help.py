"""How ``--help`` reads without rich (which costs every command's start-up): options in the groups their
declarations name (``rich_help_panel``, which plain click help ignores), the Ray options on their own.

Examples stay as written because each command's docstring marks them with click's ``\\b`` (no reflowing).
"""

from __future__ import annotations

from typing import Any

import click
import typer.core


class GroupedOptions(typer.core.TyperCommand):
    """A command whose options are listed under "Options:" and then one heading per ``rich_help_panel``."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        arguments: list[tuple[str, str]] = []
        groups: dict[str, list[tuple[str, str]]] = {"Options": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if isinstance(param, click.Argument):
                arguments.append(record)
            else:
                groups.setdefault(getattr(param, "rich_help_panel", None) or "Options", []).append(record)
        for heading, rows in (("Arguments", arguments), *groups.items()):
            if rows:
                with formatter.section(heading):
                    formatter.write_dl(rows)


def command_options(**extra: Any) -> dict[str, Any]:
    """Keyword arguments for ``app.command``: the grouped help, plus ``extra``."""
    return {"cls": GroupedOptions, **extra}
