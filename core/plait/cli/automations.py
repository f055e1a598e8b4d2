"""``plait automation create | ls | inspect | enable | disable | delete | actions``.

Each command is a thin wrapper of ``plait.automations._manage``'s public functions, which
work on the local store or, with ``PLAIT_API_URL`` set, on that plait server, with the same
output either way. ``ls`` shows the notification rules too (read-only, source
``notification-rule``), so one list answers where every alert comes from.
"""

from __future__ import annotations

from typing import Any

import click

from plait.cli._app import PlaitGroup, json_option

__all__ = ["automation_group", "describe_trigger"]

_STATUS_STYLES = {"done": "green", "failed": "red", "running": "blue", "pending": "yellow", "skipped": "bright_black"}


# -- text -------------------------------------------------------------------------------------------
def _seconds(value: Any) -> str:
    if not isinstance(value, (int, float)) or value <= 0:
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{int(value // size)}{unit}"
    return f"{value:g}s"


def _names(names: Any) -> str:
    return ", ".join(str(n) for n in names) if names else "any event"


def _event_trigger(trigger: dict[str, Any]) -> str:
    posture = trigger.get("posture", "reactive")
    expect = _names(trigger.get("expect"))
    threshold = int(trigger.get("threshold") or 1)
    within = _seconds(trigger.get("within"))
    matching = trigger.get("match") or {}
    where = " where " + ", ".join(
        f"{k}={'|'.join(v) if isinstance(v, list) else v}" for k, v in matching.items()) if matching else ""
    after = trigger.get("after") or []
    per = f" per {', '.join(trigger['for_each'])}" if trigger.get("for_each") else ""
    since = f" after {_names(after)}" if after else ""
    if posture == "proactive":
        expected = f"no {expect}" if threshold == 1 else f"fewer than {threshold} x {expect}"
        return f"proactive: {expected}{where} within {within}{since}{per}"
    times = f" {threshold} times" if threshold > 1 else ""
    window = f" within {within}" if within else ""
    return f"reactive: {expect}{where}{times}{window}{since}{per}"


def describe_trigger(trigger: Any) -> str:
    """A trigger in one line: ``reactive: flow-run.completed where payload.flow_name=load``."""
    if not isinstance(trigger, dict):
        return "-"
    if trigger.get("type") == "compound":
        parts = [_event_trigger(t) for t in trigger.get("triggers") or [] if isinstance(t, dict)]
        within = _seconds(trigger.get("within"))
        return f"{trigger.get('require', 'all')} of ({'; '.join(parts)})" + (f" within {within}" if within else "")
    return _event_trigger(trigger)


def _action_text(action: Any) -> str:
    if not isinstance(action, dict):
        return "-"
    kind = str(action.get("type") or "?")
    target = next((str(action[k]) for k in ("deployment", "block", "work_pool", "flow_run_id", "url", "state")
                   if action.get(k)), "")
    return f"{kind} {target}".strip()


def _source(row: dict[str, Any]) -> str:
    return str(row.get("source") or "-")


def _plain_output(data: Any, as_json: bool, show: Any) -> None:
    from plait.cli._output import echo_json

    if as_json:
        echo_json(data)
    else:
        show(data)


# -- rendering --------------------------------------------------------------------------------------
def _show_saved(results: list[dict[str, Any]]) -> None:
    for result in results:
        row = result["automation"]
        state = "" if row.get("enabled") else " (disabled)"
        click.echo(f"{str(result['outcome']).capitalize()} automation {row['name']}{state}: "
                   f"{describe_trigger(row.get('trigger'))}.")


def _show_automations(rows: list[dict[str, Any]]) -> None:
    from plait.cli._output import Cell, Column, print_message, print_table

    if not rows:
        print_message("No automations. Create one with `plait automation create -f automation.yaml` "
                      "(see docs/automations.md).")
        return
    print_table(
        [Column("Automation", no_wrap=True), Column("Enabled", no_wrap=True), Column("Trigger", max_width=60),
         Column("Actions", max_width=40), Column("Source", no_wrap=True)],
        [[r["name"], Cell("yes", "green") if r.get("enabled") else Cell("no", "bright_black"),
          describe_trigger(r.get("trigger")), "; ".join(_action_text(a) for a in r.get("actions") or []) or "-",
          _source(r)] for r in rows],
    )


def _show_actions(rows: list[dict[str, Any]]) -> None:
    from plait.cli._output import EMPTY, Cell, Column, fmt_time, print_message, print_table

    if not rows:
        print_message("(no actions yet)")
        return
    print_table(
        [Column("Created", no_wrap=True), Column("Action", max_width=40), Column("Status", no_wrap=True),
         Column("Event", no_wrap=True), Column("Flow run", no_wrap=True), Column("Error", max_width=60)],
        [[fmt_time(a.get("created")), _action_text(a.get("action") or {"type": a.get("type")}),
          Cell(str(a.get("status")), _STATUS_STYLES.get(str(a.get("status")), "")),
          a.get("event_kind") or EMPTY, a.get("flow_run_id") or EMPTY, a.get("error") or EMPTY] for a in rows],
    )


def _show_automation(row: dict[str, Any]) -> None:
    import json

    from plait.cli._output import EMPTY, fmt_time, print_fields, print_heading

    pairs: list[tuple[str, str | None]] = [
        ("Automation", row["name"]), ("Id", row.get("id")), ("Enabled", "yes" if row.get("enabled") else "no"),
        ("Description", row.get("description") or EMPTY), ("Trigger", describe_trigger(row.get("trigger"))),
        ("Source", _source(row)),
        ("Created", fmt_time(row.get("created"))), ("Updated", fmt_time(row.get("updated"))),
    ]
    if row.get("read_only"):
        pairs.append(("Read-only", "a notification rule: change it with `plait notification`"))
    print_fields(pairs)
    print_heading("Actions")
    for i, action in enumerate(row.get("actions") or [], start=1):
        click.echo(f"{i}. {_action_text(action)}")
        details = {k: v for k, v in action.items() if k != "type" and v not in (None, "", [], {})}
        for key, value in details.items():
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            click.echo(f"   {key}: {text}")
    print_heading("Recent actions")
    _show_actions(row.get("recent_actions") or [])


def _one_line(verb: str) -> Any:
    return lambda row: click.echo(f"{verb} automation {row['name']}.")


# -- commands ---------------------------------------------------------------------------------------
@click.group("automation", cls=PlaitGroup)
def automation_group() -> None:
    """Automations: when something happens (or does not), run a deployment, notify, cancel..."""


@automation_group.command("create")
@click.option("--file", "-f", "path", required=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="A YAML file: one automation, or 'automations:' with a list of them.")
@json_option
def automation_create_cmd(path: str, as_json: bool) -> None:
    """Create the automations of FILE, or update those of the same names.

    Every automation in the file is checked before any is saved. Prints each outcome:
    created, updated or unchanged (running it twice changes nothing).
    """
    from plait.automations._manage import load_automation_file

    _plain_output(load_automation_file(path), as_json, _show_saved)


@automation_group.command("ls")
@json_option
def automation_ls_cmd(as_json: bool) -> None:
    """List automations (and notification rules): enabled, trigger, actions, source."""
    from plait.automations._manage import list_automations

    _plain_output(list_automations(), as_json, _show_automations)


@automation_group.command("inspect")
@click.argument("key", metavar="NAME_OR_ID")
@json_option
def automation_inspect_cmd(key: str, as_json: bool) -> None:
    """Show an automation: its trigger, its actions and the last 20 actions it took."""
    from plait.automations._manage import get_automation

    _plain_output(get_automation(key), as_json, _show_automation)


@automation_group.command("enable")
@click.argument("key", metavar="NAME_OR_ID")
@json_option
def automation_enable_cmd(key: str, as_json: bool) -> None:
    """Enable an automation: its trigger counts the events that follow."""
    from plait.automations._manage import enable_automation

    _plain_output(enable_automation(key), as_json, _one_line("Enabled"))


@automation_group.command("disable")
@click.argument("key", metavar="NAME_OR_ID")
@json_option
def automation_disable_cmd(key: str, as_json: bool) -> None:
    """Disable an automation: it takes no action until enabled again."""
    from plait.automations._manage import disable_automation

    _plain_output(disable_automation(key), as_json, _one_line("Disabled"))


@automation_group.command("delete")
@click.argument("key", metavar="NAME_OR_ID")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
def automation_delete_cmd(key: str, yes: bool, as_json: bool) -> None:
    """Delete an automation (the actions it took stay listed under its name)."""
    from plait.automations._manage import delete_automation

    if not yes:
        click.confirm(f"Delete automation {key}?", abort=True, err=True)
    _plain_output(delete_automation(key), as_json, _one_line("Deleted"))


@automation_group.command("actions")
@click.argument("key", metavar="NAME_OR_ID")
@click.option("--status", type=click.Choice(["pending", "running", "done", "failed", "skipped"]),
              help="Only actions in this status.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="At most this many.")
@json_option
def automation_actions_cmd(key: str, status: str | None, limit: int, as_json: bool) -> None:
    """List the actions an automation took or is taking, newest first."""
    from plait.automations._manage import automation_actions

    _plain_output(automation_actions(key, status=status, limit=limit), as_json, _show_actions)
