"""``plait variable ls | get | set | unset | inspect``.

Each command wraps a plain function of this module that returns JSON-friendly data
(``variable_ls``, ``variable_set``, ...); tests and scripts call those directly. They go
through ``plait.variables``: to the server ``PLAIT_API_URL`` names, or to the local store.
"""

from __future__ import annotations

import json
from typing import Any

import click

from plait.cli._app import CliError, PlaitGroup, json_option

__all__ = ["variable_ls", "variable_get", "variable_set", "variable_unset", "variable_inspect", "variable_group",
           "parse_value"]


def _api() -> Any:
    from plait import variables

    return variables


def _missing(name: str) -> CliError:
    return CliError(f"no variable named {name!r}; `plait variable ls` lists them, "
                    f"`plait variable set {name} VALUE` makes it")


def parse_value(text: str) -> Any:
    """VALUE as JSON when it parses (``42``, ``true``, ``{"a": 1}``, ``"quoted"``), else the
    text itself (``hello``)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


# -- the functions ----------------------------------------------------------------------------------
def variable_ls() -> list[dict[str, Any]]:
    """Every variable by name."""
    return list(_api().ls())


def variable_inspect(name: str) -> dict[str, Any]:
    """One variable whole.

    Raises:
        CliError: No such variable.
    """
    found = _api().inspect(name)
    if found is None:
        raise _missing(name)
    return dict(found)


def variable_get(name: str) -> Any:
    """The variable's value.

    Raises:
        CliError: No such variable.
    """
    return variable_inspect(name)["value"]


def variable_set(name: str, value: Any, *, overwrite: bool = False, tags: list[str] | None = None) -> dict[str, Any]:
    """Store the variable; returns it.

    Raises:
        ValueError: It exists and not ``overwrite``, or the name or value is malformed.
    """
    return dict(_api().set(name, value, overwrite=overwrite, tags=tags))


def variable_unset(name: str) -> dict[str, Any]:
    """Delete the variable; returns what was deleted.

    Raises:
        CliError: No such variable.
    """
    found = variable_inspect(name)
    if not _api().unset(name):
        raise _missing(name)
    return found


# -- rendering ----------------------------------------------------------------------------------------
def _text(value: Any) -> str:
    """A value as the user wrote it: text as it is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _show_variables(rows: list[dict[str, Any]]) -> None:
    from plait.cli._output import EMPTY, Column, first_line, fmt_time, print_message, print_table

    if not rows:
        print_message("No variables. Set one with `plait variable set NAME VALUE`.")
        return
    print_table(
        [Column("Variable", no_wrap=True), Column("Value", max_width=60), Column("Tags", max_width=30),
         Column("Updated", no_wrap=True)],
        [[r["name"], first_line(_text(r.get("value")), 60), ", ".join(r.get("tags") or []) or EMPTY,
          fmt_time(r.get("updated"))] for r in rows],
    )


def _show_variable(row: dict[str, Any]) -> None:
    from plait.cli._output import EMPTY, fmt_time, print_fields, print_heading

    print_fields([
        ("Variable", row["name"]), ("Id", row.get("id")), ("Tags", ", ".join(row.get("tags") or []) or EMPTY),
        ("Created", fmt_time(row.get("created"))), ("Updated", fmt_time(row.get("updated"))),
    ])
    print_heading("Value")
    click.echo(json.dumps(row.get("value"), indent=2, ensure_ascii=False))


def _emit(data: Any, as_json: bool, show: Any) -> None:
    from plait.cli._output import echo_json

    if as_json:
        echo_json(data)
    else:
        show(data)


# -- commands -----------------------------------------------------------------------------------------
@click.group("variable", cls=PlaitGroup)
def variable_group() -> None:
    """Variables: named JSON values for flows, plait.yaml and blocks files (not secrets)."""


@variable_group.command("ls")
@json_option
def variable_ls_cmd(as_json: bool) -> None:
    """List variables: value, tags, when last set."""
    _emit(variable_ls(), as_json, _show_variables)


@variable_group.command("inspect")
@click.argument("name", metavar="NAME")
@json_option
def variable_inspect_cmd(name: str, as_json: bool) -> None:
    """Show a variable: its value, tags and times."""
    _emit(variable_inspect(name), as_json, _show_variable)


@variable_group.command("get")
@click.argument("name", metavar="NAME")
@json_option
def variable_get_cmd(name: str, as_json: bool) -> None:
    """Print a variable's value (text as it is, anything else as JSON)."""
    value = variable_get(name)
    _emit(value, as_json, lambda v: click.echo(_text(v)))


# a VALUE such as -1.5 is a value, not an unknown option
@variable_group.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("name", metavar="NAME")
@click.argument("value", metavar="VALUE")
@click.option("--overwrite", is_flag=True, help="Replace the value of an existing variable.")
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="A tag (repeat for several); replaces its tags.")
@json_option
def variable_set_cmd(name: str, value: str, overwrite: bool, tags: tuple[str, ...], as_json: bool) -> None:
    """Set a variable. VALUE is read as JSON when it parses (42, true, '{"a": 1}'), else
    taken as text. An existing variable is refused unless --overwrite."""
    try:
        saved = variable_set(name, parse_value(value), overwrite=overwrite, tags=list(tags) if tags else None)
    except ValueError as exc:
        raise CliError(str(exc).replace("pass overwrite=True (CLI: --overwrite)", "pass --overwrite")) from None
    _emit(saved, as_json, lambda r: click.echo(f"Set variable {r['name']}."))


@variable_group.command("unset")
@click.argument("name", metavar="NAME")
@json_option
def variable_unset_cmd(name: str, as_json: bool) -> None:
    """Delete a variable."""
    _emit(variable_unset(name), as_json, lambda r: click.echo(f"Unset variable {r['name']}."))
