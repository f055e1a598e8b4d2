"""Rendering for the CLI: rich tables on a terminal, plain aligned text elsewhere, JSON on request.

Nothing here reads the database. Commands hand over data (dicts from ``plait.cli.commands``)
and the layout; this module decides how it looks:

- stdout is a terminal: ``rich`` tables, state names coloured by state type;
- stdout is a pipe or a file (or click's CliRunner): plain ASCII columns separated by two
  spaces, no colour, no box-drawing characters, so ``grep``/``awk``/``cut`` work;
- ``--json``: one JSON document on stdout and nothing else.

Width: the flow-run views ask ``print_table(..., fit=True)`` to keep every line within
``output_width()`` (the terminal's width; piped, ``COLUMNS`` or 80): columns marked ``flex``
are cut with ``...`` to make room, the others (ids, states, times, counts) never are, so
only a cell that cannot be cut makes a line longer. ``wrap_text`` wraps free text (a whole
error message, a traceback) to the width, keeping each line's indentation.

``rich`` is imported only when it is about to draw, so ``import plait.cli`` stays light.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
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
    "output_width",
    "wrap_text",
    "print_block",
    "EMPTY",
]

EMPTY = "-"
DEFAULT_WIDTH = 80  # piped output without COLUMNS
MIN_WIDTH = 20
SEPARATOR = 2  # spaces between columns (plain) = right padding + divider (rich)
NARROW_MESSAGE = 40  # a log message column narrower than this wraps its further lines ...
CONTINUATION_INDENT = 4  # ... this far from the left edge

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
    flex: bool = False  # with print_table(fit=True): may be cut (plain) or wrapped (rich) to fit the width
    fit_as: int | None = None  # with fit=True: the width this (never cut) column counts as, e.g. a full id as 8


# -- mode -------------------------------------------------------------------------------------
def use_rich() -> bool:
    """Whether stdout is an interactive terminal (rich output) rather than a pipe or file."""
    try:
        return bool(sys.stdout.isatty())
    except (AttributeError, ValueError):
        return False


def _console(width: int | None = None) -> Any:
    from rich.console import Console

    # Built per call: sys.stdout may have been swapped (tests, redirection).
    return Console(file=sys.stdout, highlight=False, soft_wrap=False, width=width)


def _env_width() -> int | None:
    try:
        value = int(os.environ.get("COLUMNS", "").strip())
    except ValueError:
        return None
    return max(value, MIN_WIDTH) if value > 0 else None


def output_width() -> int:
    """How wide output may be: the terminal's width on a terminal; piped or redirected,
    ``COLUMNS`` when set (a whole number), else 80."""
    if use_rich():
        return max(int(_console().width), MIN_WIDTH)
    return _env_width() or DEFAULT_WIDTH


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


def wrap_text(text: str | None, width: int) -> list[str]:
    """``text`` as lines of at most ``width`` characters: each line wrapped on spaces (a word
    longer than the width is broken), continuations indented like their line plus two."""
    width = max(width, 10)
    out: list[str] = []
    for raw in (text or "").expandtabs(4).splitlines() or [""]:
        line = raw.rstrip()
        if len(line) <= width:
            out.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())]
        if len(indent) > width // 2:  # deep indentation would leave no room
            indent = indent[: width // 2]
        out += textwrap.wrap(
            line.lstrip(), width, initial_indent=indent, subsequent_indent=indent + "  ",
            break_long_words=True, break_on_hyphens=False,
        ) or [""]
    return out


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


def _fit_widths(columns: Sequence[Column], natural: list[int], width: int) -> list[int]:
    """Column widths that keep a row within ``width``: the ``flex`` columns share what the
    others leave, each getting at least its header (or ``min_width``), the narrow ones all
    they need first. A column with ``fit_as`` (a full id in piped output) counts as that
    wide: the row is longer than ``width`` by at most what such cells need beyond it."""
    counted = [min(n, c.fit_as) if c.fit_as and not c.flex else n for n, c in zip(natural, columns, strict=True)]
    total = sum(counted) + SEPARATOR * (len(natural) - 1)
    flex = [i for i, col in enumerate(columns) if col.flex]
    if total <= width or not flex:
        return natural
    widths = list(natural)
    budget = width - (total - sum(natural[i] for i in flex))
    floor = {i: min(natural[i], max(len(columns[i].header), columns[i].min_width or 0, 3)) for i in flex}
    if sum(floor.values()) > budget:  # no room for the preferred minimums: down to the headers
        floor = {i: min(natural[i], max(len(columns[i].header), 3)) for i in flex}
    pending = sorted(flex, key=lambda i: natural[i])
    while pending:
        share = budget // len(pending)
        i = pending.pop(0)
        widths[i] = max(floor[i], min(natural[i], share))
        budget -= widths[i]
    return widths


def _cut(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    return text[: width - 3].rstrip() + "..." if width > 3 else text[:width]


def print_table(
    columns: Sequence[Column], rows: Sequence[Sequence[Cell | str | None]], *, title: str | None = None,
    fit: bool = False, wide: bool = False,
) -> None:
    """A table: rich with coloured cells on a terminal, plain aligned columns otherwise.

    Plain cells are single lines (newlines become spaces) so every row is one line.
    ``fit``: keep rows within ``output_width()`` by cutting (plain) or wrapping (rich) the
    ``flex`` columns. ``wide``: every cell whole, however long the lines get.
    """
    texts = [[" ".join(_text(c).split()) or EMPTY for c in row] for row in rows]
    headers = [c.header for c in columns]
    widths: list[int] | None = None
    if fit or wide:
        natural = [max([len(h), *(len(row[i]) for row in texts)]) for i, h in enumerate(headers)]
        widths = natural if wide else _fit_widths(columns, natural, output_width())
    if use_rich():
        _rich_table(columns, rows, title, widths, wide)
        return
    if title:
        click.echo(title)
    if widths is not None:
        texts = [[_cut(text, widths[i]) for i, text in enumerate(row)] for row in texts]
    for line in _plain_rows([h.upper() for h in headers], texts, [c.justify for c in columns]):
        click.echo(line)


def _rich_table(
    columns: Sequence[Column], rows: Sequence[Sequence[Cell | str | None]], title: str | None,
    widths: list[int] | None, wide: bool,
) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, header_style="bold",
        show_edge=False, pad_edge=False, padding=(0, 1, 0, 0),
    )
    for i, col in enumerate(columns):
        if widths is None:  # rich decides (the layout of the commands that do not fit)
            table.add_column(
                col.header, justify=col.justify, no_wrap=col.no_wrap,  # type: ignore[arg-type]
                max_width=col.max_width, min_width=col.min_width, overflow=col.overflow,  # type: ignore[arg-type]
            )
        else:  # widths chosen here: rich never squeezes a column away
            table.add_column(
                col.header, justify=col.justify, width=widths[i],  # type: ignore[arg-type]
                no_wrap=not col.flex or col.overflow == "ellipsis",
                overflow=col.overflow if col.flex else "fold",  # type: ignore[arg-type]
            )
    for row in rows:
        table.add_row(*(Text(_text(c), style=c.style if isinstance(c, Cell) else "") for c in row))
    width = None
    if wide and widths is not None:
        width = max(sum(widths) + SEPARATOR * (len(widths) - 1), int(_console().width))
    _console(width).print(table)


def print_block(
    title: Cell | str, pairs: Sequence[tuple[str, Cell | str | None]], *, indent: int = 2, untitled: bool = False
) -> None:
    """A titled record: its title, then indented label/value lines whose values (a whole
    error message, a traceback) wrap to ``output_width()`` under the value column."""
    width = output_width()
    label_width = max((len(label) for label, _ in pairs), default=0)
    lead = " " * indent
    value_width = max(width - indent - label_width - 2, MIN_WIDTH)
    title_style = title.style if isinstance(title, Cell) and title.style else "bold"
    lines: list[list[tuple[str, str]]] = [] if untitled else [[(_text(title), title_style)]]
    for label, value in pairs:
        style = value.style if isinstance(value, Cell) else ""
        for n, line in enumerate(wrap_text(_text(value), value_width) or [EMPTY]):
            head = label.ljust(label_width) if n == 0 else " " * label_width
            lines.append([(f"{lead}{head}  ", "bold" if n == 0 else ""), (line, style)])
    if use_rich():
        from rich.text import Text

        console = _console()
        for parts in lines:
            text = Text()
            for chunk, style in parts:
                text.append(chunk, style=style)
            console.print(text, overflow="ignore", crop=False)
        return
    for parts in lines:
        click.echo("".join(chunk for chunk, _ in parts).rstrip())


def print_fields(pairs: Sequence[tuple[str, Cell | str | None]], *, wrap: bool = False) -> None:
    """Label/value lines (``Flow      etl``), labels aligned; rich styles values on a terminal.

    ``wrap``: values wrap to ``output_width()`` under the value column (every line kept).
    """
    width = max((len(label) for label, _ in pairs), default=0)
    if use_rich() and not wrap:
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        for label, value in pairs:
            grid.add_row(label, Text(_text(value), style=value.style if isinstance(value, Cell) else ""))
        _console().print(grid)
        return
    if wrap:
        print_block("", pairs, indent=0, untitled=True)
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


def print_lines(rows: Sequence[Sequence[Cell | str]], message_of: Sequence[str], *, fit: bool = False) -> None:
    """Log-style lines: leading columns aligned, then a free-text message.

    ``rows`` hold the leading cells; ``message_of[i]`` is row i's message, whose further
    lines (a traceback) are indented under the message column. ``fit``: messages wrap to
    ``output_width()`` under the message column.
    """
    if not rows:
        return
    texts = [[_text(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in texts) for i in range(len(texts[0]))]
    indent = " " * (sum(widths) + 2 * len(widths))
    width = output_width()
    first_room = max(width - len(indent), MIN_WIDTH)
    if fit and first_room < NARROW_MESSAGE:  # little room: further lines start near the left edge
        indent = " " * CONTINUATION_INDENT
    rich = use_rich()
    console = _console() if rich else None
    for row, cells, message in zip(texts, rows, message_of, strict=True):
        if fit:
            head, *tail = (message or "").splitlines() or [""]
            first, *rest = wrap_text(head, first_room) or [""]
            more = [" ".join(r.strip() for r in rest)] if rest else []  # the first line's remainder, rewrapped
            lines = [first, *wrap_text("\n".join([*more, *tail]), width - len(indent))] if more or tail else [first]
        else:
            lines = (message or "").splitlines() or [""]
        if console is not None:
            from rich.text import Text

            text = Text()
            for i, cell in enumerate(cells):
                style = cell.style if isinstance(cell, Cell) else ""
                text.append(row[i].ljust(widths[i]), style=style)
                text.append("  ")
            text.append("\n".join([lines[0], *(indent + line for line in lines[1:])]))
            console.print(text, overflow="fold", crop=not fit)
        else:
            lead = "  ".join(t.ljust(w) for t, w in zip(row, widths, strict=True))
            click.echo(f"{lead}  {lines[0]}".rstrip())
            for line in lines[1:]:
                click.echo(f"{indent}{line}".rstrip())
