"""``plait notification create | ls | delete``: manage notification rules.

The plain functions are ``plait.notifications.create_rule``, ``list_rules`` and
``delete_rule`` (re-exported here as ``notification_create``, ``notification_ls`` and
``notification_delete``); the click commands only parse options and render.
"""

from __future__ import annotations

from typing import Any

import click

from plait.cli._app import PlaitGroup, json_option

__all__ = [
    "notification_create",
    "notification_ls",
    "notification_delete",
    "notification_group",
    "show_rules",
]


def notification_create(
    block: str,
    flow_name: str = "*",
    tags: list[str] | None = None,
    states: list[str] | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """``plait notification create``: see ``plait.notifications.create_rule``."""
    from plait.notifications import create_rule

    return create_rule(block, flow_name=flow_name, tags=tags, states=states, name=name)


def notification_ls() -> list[dict[str, Any]]:
    """``plait notification ls``: every rule, oldest first."""
    from plait.notifications import list_rules

    return list_rules()


def notification_delete(id_or_name: str) -> dict[str, Any]:
    """``plait notification delete``: delete one rule, return it."""
    from plait.notifications import delete_rule

    return delete_rule(id_or_name)


def _rule_row(rule: dict[str, Any], short_id: bool) -> list[Any]:
    from plait.cli._output import EMPTY, Cell, fmt_time

    return [
        rule["id"][:8] if short_id else rule["id"],
        rule["name"],
        rule["block"],
        rule["flow_name"],
        ", ".join(rule["tags"]) or EMPTY,
        ", ".join(s.lower() for s in rule["states"]),
        Cell("yes", "green") if rule["enabled"] else Cell("no", "bright_black"),
        fmt_time(rule.get("created")),
    ]


def show_rules(rules: list[dict[str, Any]]) -> None:
    from plait.cli._output import Column, print_message, print_table, use_rich

    if not rules:
        print_message("No notification rules. Add one with `plait notification create --block SLUG/NAME`.")
        return
    print_table(
        [
            Column("ID", no_wrap=True),
            Column("Name", no_wrap=True),
            Column("Block", no_wrap=True),
            Column("Flow"),
            Column("Tags"),
            Column("States"),
            Column("Enabled", no_wrap=True),
            Column("Created", no_wrap=True),
        ],
        [_rule_row(rule, use_rich()) for rule in rules],
    )


@click.group("notification", cls=PlaitGroup)
def notification_group() -> None:
    """Notify through saved blocks when flow runs enter chosen states."""


@notification_group.command("create")
@click.option("--block", "block", required=True, metavar="SLUG/NAME",
              help="The saved notification block to deliver through (see `plait block ls`).")
@click.option("--flow", "flow_name", default="*", show_default=True, metavar="GLOB",
              help="Only flows whose name matches this glob (e.g. 'etl-*').")
@click.option("--tag", "tags", multiple=True, metavar="TAG",
              help="Only runs carrying this tag; repeat for several (all must be present).")
@click.option("--state", "states", multiple=True, metavar="STATE",
              help="State to notify on, any case; repeat for several (default: failed and crashed).")
@click.option("--name", "name", metavar="NAME", help="A unique name for the rule (default: derived).")
@json_option
def notification_create_cmd(
    block: str, flow_name: str, tags: tuple[str, ...], states: tuple[str, ...], name: str | None, as_json: bool
) -> None:
    """Create a rule: notify through a saved block when matching flow runs enter a state."""
    from plait.cli._output import echo_json

    rule = notification_create(block, flow_name=flow_name, tags=list(tags), states=list(states) or None, name=name)
    if as_json:
        echo_json(rule)
        return
    click.echo(
        f"Created notification rule {rule['name']} ({rule['id']}): {rule['block']} on "
        f"{', '.join(s.lower() for s in rule['states'])} of flows matching {rule['flow_name']!r}"
        + (f" tagged {', '.join(rule['tags'])}" if rule["tags"] else "")
    )


@notification_group.command("ls")
@json_option
def notification_ls_cmd(as_json: bool) -> None:
    """List notification rules, oldest first."""
    from plait.cli._output import echo_json

    rules = notification_ls()
    if as_json:
        echo_json(rules)
    else:
        show_rules(rules)


@notification_group.command("delete")
@click.argument("id_or_name", metavar="ID_OR_NAME")
def notification_delete_cmd(id_or_name: str) -> None:
    """Delete a rule by its id (or a unique prefix of it) or its name."""
    rule = notification_delete(id_or_name)
    click.echo(f"Deleted notification rule {rule['name']} ({rule['id']}).")
