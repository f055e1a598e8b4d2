"""Rendering for the CLI: rich tables on a terminal, plain aligned text elsewhere, JSON on request.

Nothing here reads the database. Commands hand over data (dicts from ``plait.cli.commands``)
and the layout; this module decides how it looks:

- stdout is a terminal: ``rich`` tables, state names coloured by state type;
- stdout is a pipe or a file (or click's CliRunner): plain ASCII columns separated by two
  spaces, no colour, no box-drawing characters, so ``grep``/``awk``/``cut`` work;
- ``--json``: one JSON document on stdout and nothing else.

``rich`` is imported only when it is about to draw, so ``import plait.cli`` stays light.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import click

__all__ = [
    "Cell",
    "Column",
    "STATE_STYLES",
    "use_rich",
    "echo_json",
    "print_table",
    "print_fields",
    "print_heading",
    "print_lines",
    "print_message",
    "state_cell",
    "level_cell",
    "fmt_time",
    "fmt_duration",
    "fmt_value",
    "first_line",
    "EMPTY",
]

EMPTY = "-"

# Colour of each state type in rich mode (plain mode never colours).
STATE_STYLES: dict[str, str] = {
    "SCHEDULED": "yellow",
    "PENDING": "bright_black",
    "RUNNING": "blue",
    "RETRYING": "yellow",
    "PAUSED": "magenta",
    "CANCELLING": "magenta",
    "COMPLETED": "green",
    "CACHED": "cyan",
    "FAILED": "red",
    "CRASHED": "bold red",
    "CANCELLED": "bright_black",
}
LEVEL_STYLES: dict[str, str] = {
    "DEBUG": "bright_black",
    "INFO": "",
    "WARNING": "yellow",
    "ERROR": "red",
    "CRITICAL": "bold red",
}


@dataclass(frozen=True)
class Cell:
    """A table cell: its text and, in rich mode only, a style."""

    text: str
    style: str = ""


@dataclass(frozen=True)
class Column:
    """A table column. Widths and overflow ("fold" or "ellipsis") apply in rich mode only;
    plain text is never cut."""

    header: str
    justify: str = "left"
    no_wrap: bool = False
    max_width: int | None = None
    min_width: int | None = None
    overflow: str = "fold"


# -- mode -------------------------------------------------------------------------------------
def use_rich() -> bool:
    """Whether stdout is an interactive terminal (rich output) rather than a pipe or file."""
    try:
        return bool(sys.stdout.isatty())
    except (AttributeError, ValueError):
        return False


def _console() -> Any:
    from rich.console import Console

    # Built per call: sys.stdout may have been swapped (tests, redirection).
    return Console(file=sys.stdout, highlight=False, soft_wrap=False)


def echo_json(data: Any) -> None:
    """Print ``data`` as one indented JSON document (datetimes and oddities as strings)."""
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


# -- text helpers ------------------------------------------------------------------------------
def first_line(text: str | None, limit: int | None = None) -> str:
    """The first non-empty line of ``text`` (with "..." when more was cut), or ``EMPTY``."""
    if not text:
        return EMPTY
    lines = [line.rstrip() for line in str(text).splitlines() if line.strip()]
    if not lines:
        return EMPTY
    line = lines[0]
    more = len(lines) > 1
    if limit is not None and len(line) > limit:
        line, more = line[: limit - 3].rstrip(), True
    return line + (" ..." if more else "")


def fmt_time(iso: str | None, *, millis: bool = False) -> str:
    """An ISO timestamp from the store (UTC) shown in the local time zone."""
    if not iso:
        return EMPTY
    try:
        value = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if value.tzinfo is not None:
        value = value.astimezone()
    text = value.strftime("%Y-%m-%d %H:%M:%S")
    if millis:
        text += f".{value.microsecond // 1000:03d}"
    return text


def fmt_duration(seconds: float | None) -> str:
    """``0.042s``, ``3.20s``, ``2m 05s``, ``1h 02m``."""
    if seconds is None:
        return EMPTY
    if seconds < 1:
        return f"{seconds:.3f}s"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def fmt_value(value: Any) -> str:
    """A setting or parameter value as text: JSON for containers and booleans."""
    if value is None:
        return EMPTY
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, ensure_ascii=False)


def state_cell(state_type: str | None, state_name: str | None = None) -> Cell:
    """The state's name, coloured by its type in rich mode."""
    kind = (state_type or "").upper()
    return Cell(state_name or kind.title() or EMPTY, STATE_STYLES.get(kind, ""))


def level_cell(level: str) -> Cell:
    return Cell(level, LEVEL_STYLES.get(level.upper(), ""))


def _text(cell: Cell | str | None) -> str:
    if cell is None:
        return EMPTY
    return cell.text if isinstance(cell, Cell) else str(cell)


# -- printing ----------------------------------------------------------------------------------
def _plain_rows(headers: Sequence[str], rows: Sequence[Sequence[str]], justify: Sequence[str]) -> list[str]:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], len(text))
    out = []
    for row in [list(headers), *rows]:
        parts = [
            text.rjust(widths[i]) if justify[i] == "right" else text.ljust(widths[i])
            for i, text in enumerate(row)
        ]
        out.append("  ".join(parts).rstrip())
    return out


def print_table(
    columns: Sequence[Column], rows: Sequence[Sequence[Cell | str | None]], *, title: str | None = None
) -> None:
    """A table: rich with coloured cells on a terminal, plain aligned columns otherwise.

    Plain cells are single lines (newlines become spaces) so every row is one line.
    """
    if use_rich():
        from rich import box
        from rich.table import Table
        from rich.text import Text

        table = Table(
            title=title, title_justify="left", box=box.SIMPLE_HEAD, header_style="bold",
            show_edge=False, pad_edge=False, padding=(0, 1, 0, 0),
        )
        for col in columns:
            table.add_column(
                col.header, justify=col.justify, no_wrap=col.no_wrap,  # type: ignore[arg-type]
                max_width=col.max_width, min_width=col.min_width, overflow=col.overflow,  # type: ignore[arg-type]
            )
        for row in rows:
            table.add_row(*(Text(_text(c), style=c.style if isinstance(c, Cell) else "") for c in row))
        _console().print(table)
        return
    if title:
        click.echo(title)
    texts = [[" ".join(_text(c).split()) or EMPTY for c in row] for row in rows]
    for line in _plain_rows([c.header.upper() for c in columns], texts, [c.justify for c in columns]):
        click.echo(line)


def print_fields(pairs: Sequence[tuple[str, Cell | str | None]]) -> None:
    """Label/value lines (``Flow      etl``), labels aligned; rich styles values on a terminal."""
    width = max((len(label) for label, _ in pairs), default=0)
    if use_rich():
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        for label, value in pairs:
            grid.add_row(label, Text(_text(value), style=value.style if isinstance(value, Cell) else ""))
        _console().print(grid)
        return
    for label, value in pairs:
        lines = _text(value).splitlines() or [EMPTY]
        click.echo(f"{label.ljust(width)}  {lines[0]}".rstrip())
        for line in lines[1:]:
            click.echo(f"{'':{width}}  {line}".rstrip())


def print_heading(text: str) -> None:
    """A section heading preceded by a blank line."""
    click.echo("")
    if use_rich():
        from rich.text import Text

        _console().print(Text(text, style="bold underline"))
    else:
        click.echo(text)


def print_message(text: str) -> None:
    """A sentence on stdout (e.g. "No flow runs found."), in italics on a terminal."""
    if use_rich():
        from rich.text import Text

        _console().print(Text(text, style="italic"))
    else:
        click.echo(text)


def print_lines(rows: Sequence[Sequence[Cell | str]], message_of: Sequence[str]) -> None:
    """Log-style lines: leading columns aligned, then a free-text message.

    ``rows`` hold the leading cells; ``message_of[i]`` is row i's message, whose further
    lines (a traceback) are indented under the message column.
    """
    if not rows:
        return
    texts = [[_text(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in texts) for i in range(len(texts[0]))]
    indent = " " * (sum(widths) + 2 * len(widths))
    rich = use_rich()
    console = _console() if rich else None
    for row, cells, message in zip(texts, rows, message_of, strict=True):
        lines = (message or "").splitlines() or [""]
        if console is not None:
            from rich.text import Text

            text = Text()
            for i, cell in enumerate(cells):
                style = cell.style if isinstance(cell, Cell) else ""
                text.append(row[i].ljust(widths[i]), style=style)
                text.append("  ")
            text.append("\n".join([lines[0], *(indent + line for line in lines[1:])]))
            console.print(text, overflow="fold")
        else:
            lead = "  ".join(t.ljust(w) for t, w in zip(row, widths, strict=True))
            click.echo(f"{lead}  {lines[0]}".rstrip())
            for line in lines[1:]:
                click.echo(f"{indent}{line}".rstrip())
