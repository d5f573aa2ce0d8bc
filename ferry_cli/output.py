"""Printing: JSON for scripts, tables and short sentences for people, errors on stderr."""

import json
import sys

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

# Tables in a log or a pipe are not cut to 80 columns: a terminal gives its own width.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def wants_json(ctx: click.Context) -> bool:
    return bool((ctx.obj or {}).get("json"))


def print_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def table(columns: dict, rows: list[dict]) -> None:
    """Rows of API objects as a table: {header: field name, or a function of the row}."""
    grid = Table(box=None, padding=(0, 2, 0, 0), header_style="bold")
    for header in columns:
        grid.add_column(header)
    for row in rows:
        cells = [get(row) if callable(get) else row.get(get) for get in columns.values()]
        grid.add_row(*[Text("" if v is None else str(v)) for v in cells])
    out.print(grid)


def say(text: str, *, bold: str = "") -> None:
    """Print a line as it is (no markup: server text may hold brackets); `bold` first."""
    line = Text(bold, style="bold") + Text(text) if bold else Text(text)
    out.print(line)


def gib(mib) -> str:
    return f"{mib / 1024:.0f}" if isinstance(mib, int | float) else "?"


def when(value) -> str:
    """An ISO time as 'YYYY-MM-DD HH:MM' (UTC as the server gave it)."""
    return str(value)[:16].replace("T", " ") if value else ""
