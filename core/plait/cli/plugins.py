"""``plait plugins ls``: which plugins were found, whether they loaded, and why not.

``plugins_ls()`` is the plain function behind the command (tests and scripts call it); the
click command only renders what it returns.
"""

from __future__ import annotations

from typing import Any

import click

from plait.cli._app import PlaitGroup, json_option

__all__ = ["plugins_ls", "plugins_group", "show_plugins"]


def plugins_ls() -> dict[str, list[dict[str, Any]]]:
    """Discovered plugins and the problems found while loading them.

    Returns:
        ``{"plugins": [{name, module, distribution, version, requires_plait, loaded,
        hooks}], "diagnoses": [{plugin, version, reason, fix}]}``.
    """
    from dataclasses import asdict

    from plait.plugins import diagnoses, plugins

    return {
        "plugins": [info.as_dict() for info in plugins()],
        "diagnoses": [asdict(d) for d in diagnoses()],
    }


def show_plugins(data: dict[str, list[dict[str, Any]]]) -> None:
    from plait.cli._output import EMPTY, Cell, Column, print_heading, print_message, print_table

    rows = data["plugins"]
    if rows:
        print_table(
            [
                Column("Name", no_wrap=True),
                Column("Distribution", no_wrap=True),
                Column("Version", no_wrap=True),
                Column("Plait", no_wrap=True),
                Column("Loaded", no_wrap=True),
                Column("Hooks"),
            ],
            [
                [
                    p["name"],
                    p.get("distribution") or EMPTY,
                    p.get("version") or EMPTY,
                    p.get("requires_plait") or "any",
                    Cell("yes", "green") if p["loaded"] else Cell("no", "red"),
                    ", ".join(p.get("hooks") or []) or EMPTY,
                ]
                for p in rows
            ],
        )
    else:
        print_message("No plugins found (entry point group plait.plugins).")
    problems = data["diagnoses"]
    if problems:
        print_heading(f"Problems ({len(problems)})")
        print_table(
            [
                Column("Plugin", no_wrap=True),
                Column("Version", no_wrap=True),
                Column("Reason"),
                Column("Fix"),
            ],
            [[d["plugin"], d.get("version") or EMPTY, Cell(d["reason"], "red"), d["fix"]] for d in problems],
        )


@click.group("plugins", cls=PlaitGroup)
def plugins_group() -> None:
    """Inspect the plugins plait loads (entry point group plait.plugins)."""


@plugins_group.command("ls")
@json_option
def plugins_ls_cmd(as_json: bool) -> None:
    """List plugins: distribution, version, supported plait range, loaded, hooks.

    Then lists any problems (a plugin that failed to import, supports another plait
    version, or whose hook raised) with the reason and the fix.
    """
    from plait.cli._output import echo_json

    data = plugins_ls()
    if as_json:
        echo_json(data)
    else:
        show_plugins(data)
