"""``plait concurrency-limit create | ls | inspect | reset | delete``.

Each command wraps a plain function of this module that returns JSON-friendly data
(``limit_create``, ``limit_ls``, ``limit_inspect``, ``limit_reset``, ``limit_delete``);
tests and scripts call those directly. Everything goes through ``plait._limits``'
backend: the local store, or the plait server ``PLAIT_API_URL`` names, with the same output
either way (times as ISO 8601 text in UTC).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from plait.cli._app import PlaitGroup, json_option

__all__ = [
    "limit_create", "limit_ls", "limit_inspect", "limit_reset", "limit_delete", "concurrency_limit_group",
]

# The columns a limit shows, in this order (a server's rows and the store's have the same).
_LIMIT_KEYS = ("name", "limit", "slot_decay_per_second", "active", "description", "used", "created", "updated")
_SLOT_KEYS = ("id", "occupy", "label", "hostname", "pid", "flow_run_id", "task_run_id", "acquired_at")


# -- helpers ------------------------------------------------------------------------------------
def _backend() -> Any:
    from plait._limits import limits_backend

    return limits_backend()


def _plain(value: Any) -> Any:
    """Times as ISO 8601 text in UTC (the store gives datetimes, a server's are revived)."""
    if isinstance(value, datetime):
        return (value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)).isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _limit_row(row: dict[str, Any]) -> dict[str, Any]:
    """A limit with the keys of ``_LIMIT_KEYS`` (the store's bucket columns left out)."""
    from plait._masking import mask

    out = {k: _plain(row.get(k)) for k in _LIMIT_KEYS}
    out["description"] = mask(str(out["description"] or ""))
    return out


def _age(moment: Any, now: datetime) -> float | None:
    if not isinstance(moment, datetime):
        return None
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return max(0.0, round((now - aware).total_seconds(), 3))


def _not_found(name: str) -> LookupError:
    return LookupError(f"no concurrency limit {name!r}; `plait concurrency-limit ls` lists them, "
                       f"`plait concurrency-limit create {name} N` makes it")


# -- the functions ----------------------------------------------------------------------------
def limit_create(
    name: str, limit: int, *, per_second: float = 0.0, description: str = "", active: bool = True
) -> dict[str, Any]:
    """Create the limit ``name`` with these values, or change it to them:
    ``{"limit": row, "outcome": "created" | "updated" | "unchanged"}``.

    Raises:
        ValueError: A bad name or value (the message names it).
    """
    row, outcome = _backend().save(name, limit, slot_decay_per_second=per_second, active=active,
                                   description=description)
    return {"limit": _limit_row(row), "outcome": outcome}


def limit_ls() -> list[dict[str, Any]]:
    """Every limit by name, each with ``used`` (slots held plus what a rate limit has not
    drained yet)."""
    return [_limit_row(r) for r in _backend().list()]


def limit_inspect(name: str) -> dict[str, Any]:
    """One limit with ``slots``: its holders (label, host, pid, flow and task run,
    ``acquired_at``, ``age_seconds``, and ``gone``: whether the holder's process of this
    host is gone; None for another host's). On the local store, flow runs whose process
    died are marked Crashed first, so what they held is not shown.

    Raises:
        LookupError: No such limit.
    """
    from plait._limits import holder_gone

    backend = _backend()
    backend.sweep()
    row = backend.get(name)
    if row is None:
        raise _not_found(name)
    now = datetime.now(UTC)
    out = _limit_row(row)
    slots = []
    for slot in row.get("slots") or []:
        item = {k: _plain(slot.get(k)) for k in _SLOT_KEYS}
        item["age_seconds"] = _age(slot.get("acquired_at"), now)
        item["gone"] = holder_gone(slot)
        slots.append(item)
    out["slots"] = slots
    return out


def limit_reset(name: str) -> dict[str, Any]:
    """Free every slot of the limit and empty its rate bucket: ``{"name", "freed"}``.

    Raises:
        LookupError: No such limit.
    """
    try:
        freed = _backend().reset(name)
    except LookupError:
        raise _not_found(name) from None
    return {"name": name, "freed": freed}


def limit_delete(name: str) -> dict[str, Any]:
    """Delete the limit and its slots (their holders go on; their releases find nothing);
    returns what was deleted.

    Raises:
        LookupError: No such limit.
    """
    backend = _backend()
    row = backend.get(name)
    if row is None or not backend.delete(name):
        raise _not_found(name)
    return _limit_row(row)


# -- rendering -----------------------------------------------------------------------------------
def _size(row: dict[str, Any]) -> str:
    rate = row.get("slot_decay_per_second") or 0
    return f"{row['limit']} slot(s)" + (f", {rate:g}/s" if rate else "")


def _used(row: dict[str, Any]) -> str:
    used = row.get("used")
    return f"{used:g}/{row['limit']}" if isinstance(used, (int, float)) else f"?/{row['limit']}"


def _show_created(answer: dict[str, Any]) -> None:
    row, outcome = answer["limit"], answer["outcome"]
    inactive = "" if row.get("active") else ", inactive"
    click.echo(f"{outcome.capitalize()} concurrency limit {row['name']} ({_size(row)}{inactive}).")


def _show_limits(rows: list[dict[str, Any]]) -> None:
    from plait.cli._output import EMPTY, Column, print_message, print_table

    if not rows:
        print_message("No concurrency limits. Create one with `plait concurrency-limit create NAME N`.")
        return
    print_table(
        [Column("Limit", no_wrap=True), Column("Slots", justify="right"), Column("Used", justify="right"),
         Column("Per second", justify="right"), Column("Active", no_wrap=True), Column("Description", max_width=50)],
        [[r["name"], str(r["limit"]), _used(r), f"{r['slot_decay_per_second']:g}" if r.get("slot_decay_per_second")
          else EMPTY, "yes" if r.get("active") else "no", r.get("description") or EMPTY] for r in rows],
    )


def _show_limit(row: dict[str, Any]) -> None:
    from plait.cli._output import (
        EMPTY,
        Column,
        fmt_duration,
        fmt_time,
        print_fields,
        print_heading,
        print_message,
        print_table,
    )

    print_fields([
        ("Limit", row["name"]), ("Slots", str(row["limit"])), ("Used", _used(row)),
        ("Per second", f"{row['slot_decay_per_second']:g}" if row.get("slot_decay_per_second") else "no decay"),
        ("Active", "yes" if row.get("active") else "no (constrains nothing)"),
        ("Description", row.get("description") or EMPTY),
        ("Created", fmt_time(row.get("created"))), ("Updated", fmt_time(row.get("updated"))),
    ])
    print_heading("Holders")
    slots = row.get("slots") or []
    if not slots:
        print_message("(none)")
        return
    print_table(
        [Column("Holder", max_width=60), Column("Slots", justify="right"), Column("Host"),
         Column("PID", justify="right"), Column("Held for", no_wrap=True), Column("Process", no_wrap=True)],
        [[s.get("label") or EMPTY, str(s.get("occupy")), s.get("hostname") or EMPTY, str(s.get("pid") or EMPTY),
          fmt_duration(s.get("age_seconds")), {True: "gone", False: "running"}.get(s.get("gone"), EMPTY)]
         for s in slots],
    )


def _emit(data: Any, as_json: bool, show: Any) -> None:
    from plait.cli._output import echo_json

    if as_json:
        echo_json(data)
    else:
        show(data)


# -- commands ------------------------------------------------------------------------------------
@click.group("concurrency-limit", cls=PlaitGroup)
def concurrency_limit_group() -> None:
    """Concurrency and rate limits: task runs tagged NAME, plait.concurrency(NAME), plait.rate_limit(NAME)."""


@concurrency_limit_group.command("create")
@click.argument("name", metavar="NAME")
@click.argument("limit", metavar="N", type=click.IntRange(min=0))
@click.option("--per-second", type=click.FloatRange(min=0), default=0.0, metavar="R",
              help="Slots that drain away per second; above 0 it serves plait.rate_limit too.")
@click.option("--description", default="", help="What the limit protects.")
@click.option("--inactive", is_flag=True, help="Keep the limit but constrain nothing.")
@json_option
def limit_create_cmd(name: str, limit: int, per_second: float, description: str, inactive: bool,
                     as_json: bool) -> None:
    """Create a limit of N slots, or change an existing one to these values.

    Prints the outcome: created, updated or unchanged (running it twice changes nothing).
    """
    _emit(limit_create(name, limit, per_second=per_second, description=description, active=not inactive), as_json,
          _show_created)


@concurrency_limit_group.command("ls")
@json_option
def limit_ls_cmd(as_json: bool) -> None:
    """List limits: slots, used, rate, active, description."""
    _emit(limit_ls(), as_json, _show_limits)


@concurrency_limit_group.command("inspect")
@click.argument("name", metavar="NAME")
@json_option
def limit_inspect_cmd(name: str, as_json: bool) -> None:
    """Show a limit and who holds its slots (label, host, pid, for how long)."""
    _emit(limit_inspect(name), as_json, _show_limit)


@concurrency_limit_group.command("reset")
@click.argument("name", metavar="NAME")
@json_option
def limit_reset_cmd(name: str, as_json: bool) -> None:
    """Free every slot of a limit (holders nothing noticed were gone) and empty its rate bucket."""
    _emit(limit_reset(name), as_json,
          lambda r: click.echo(f"Freed {r['freed']} slot(s) of concurrency limit {r['name']}."))


@concurrency_limit_group.command("delete")
@click.argument("name", metavar="NAME")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
def limit_delete_cmd(name: str, yes: bool, as_json: bool) -> None:
    """Delete a limit and its slots: tasks tagged NAME then run without waiting."""
    if not yes:
        click.confirm(f"Delete concurrency limit {name}?", abort=True, err=True)
    _emit(limit_delete(name), as_json, lambda r: click.echo(f"Deleted concurrency limit {r['name']}."))
