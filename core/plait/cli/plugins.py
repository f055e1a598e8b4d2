"""``plait plugins ls``: which plugins were found, what they declare, whether they are loaded, and why not.

``plugins_ls()`` is the plain function behind the command (tests and scripts call it); the
click command only renders what it returns. Listing reads metadata only: a plugin that
declares what it provides stays unimported until something it provides is needed, unless
``--load`` asks to import every plugin (and check each against its declarations).
"""

from __future__ import annotations

from typing import Any

import click

from plait.cli._app import PlaitGroup, json_option

__all__ = ["plugins_ls", "plugins_group", "show_plugins"]

_LOADED = {"loaded": ("yes", "green"), "not imported": ("not yet", ""), "failed": ("no", "red"),
           "incompatible": ("no", "red")}
_PROVIDES = (("block_types", "blocks"), ("storage_schemes", "storage"), ("infrastructure", "infrastructure"))


def plugins_ls(load: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Discovered plugins and the problems found so far.

    Args:
        load: Import every plugin first, so that import failures and mismatches between
            what a plugin declares and what it registers are found now.

    Returns:
        ``{"plugins": [{name, module, distribution, version, requires_plait, loaded, hooks,
        status, default, declares}], "diagnoses": [{plugin, version, reason, fix}]}``.
    """
    from plait.plugins import diagnoses, load_all, plugins

    if load:
        load_all()
    infos = plugins()
    return {
        "plugins": [info.as_dict() for info in infos],
        "diagnoses": [{"plugin": d.plugin, "version": d.version, "reason": d.reason, "fix": d.fix}
                      for d in diagnoses()],
    }


def _provides(declares: dict[str, list[str]]) -> str:
    parts = [f"{label}: {', '.join(declares[key])}" for key, label in _PROVIDES if declares.get(key)]
    return "; ".join(parts)


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
                Column("Provides"),
            ],
            [
                [
                    p["name"],
                    p.get("distribution") or EMPTY,
                    p.get("version") or EMPTY,
                    p.get("requires_plait") or "any",
                    Cell(*_LOADED.get(p.get("status") or "", ("yes", "green") if p["loaded"] else ("no", "red"))),
                    ", ".join(p.get("hooks") or []) or EMPTY,
                    _provides(p.get("declares") or {}) or EMPTY,
                ]
                for p in rows
            ],
        )
        if any(p.get("status") == "not imported" for p in rows):
            click.echo("")
            print_message("Plugins marked 'not yet' are imported when something they provide is first "
                          "needed; `plait plugins ls --load` imports them all now.")
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
@click.option("--load", is_flag=True, help="Import every plugin now and check it against what it declares.")
@json_option
def plugins_ls_cmd(load: bool, as_json: bool) -> None:
    """List plugins: distribution, version, supported plait range, loaded, hooks, what they provide.

    A plugin is imported only when something it provides is needed, so some show as not
    loaded yet. Then lists any problems (a plugin that failed to import, supports another
    plait version, registers something other than it declares, or whose hook raised) with
    the reason and the fix.
    """
    from plait.cli._output import echo_json

    data = plugins_ls(load=load)
    if as_json:
        echo_json(data)
    else:
        show_plugins(data)
