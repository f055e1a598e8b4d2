"""``plait deploy``, ``plait deployment ...``, ``plait work-pool ...`` and the run-control
commands ``plait flow-run cancel | resume | retry``.

Each command wraps a plain function of this module that returns JSON-friendly data
(``deploy_file``, ``deployment_ls``, ``deployment_run``, ``work_pool_create``,
``flow_run_cancel``...); tests and scripts call those directly. Everything goes through the
control plane (``plait.deployments._control.control_plane()``): the local store, or the
plait server ``PLAIT_API_URL`` names, with the same output either way.

Times given on the command line (``--at``, ``--start``, ``--end``) are ISO 8601 (without an
offset: local time), ``now``, or relative to now: ``+10m``, ``-2h``, ``-7d``.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from plait.cli._app import PlaitGroup, json_option

__all__ = [
    "parse_time", "late_reason_of",
    "deploy_file", "deployment_ls", "deployment_inspect", "deployment_run", "deployment_pause",
    "deployment_delete", "deployment_backfill",
    "work_pool_create", "work_pool_ls", "work_pool_inspect", "work_pool_pause", "work_queue_set",
    "flow_run_cancel", "flow_run_resume", "flow_run_retry",
    "deploy_cmd", "deployment_group", "work_pool_group", "FLOW_RUN_COMMANDS",
]

_RELATIVE = re.compile(r"^([+-])\s*(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


# -- helpers ------------------------------------------------------------------------------------
def _plane() -> Any:
    from plait.deployments._control import control_plane

    return control_plane()


# What users write, masked in output as the API masks it in answers.
_MASKED_KEYS = frozenset({"parameters", "job_variables", "base_job_variables", "description", "state_message"})


def _plain(value: Any, masked: bool = False) -> Any:
    """Rows as JSON-friendly values: times as ISO 8601 text in UTC (the local store gives
    datetimes, a server gives text already), the values users write masked."""
    if isinstance(value, datetime):
        return (value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)).isoformat()
    if isinstance(value, str) and masked:
        from plait._masking import mask

        return mask(value)
    if isinstance(value, dict):
        return {str(k): _plain(v, masked or k in _MASKED_KEYS) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v, masked) for v in value]
    return value


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """``"2024-06-01T03:00"`` (local time), ``"2024-06-01T03:00Z"``, ``"now"``, ``"+10m"``,
    ``"-2h"`` -> a UTC datetime.

    Raises:
        ValueError: Anything else (the message shows the accepted forms).
    """
    now = now or datetime.now(UTC)
    value = text.strip()
    if value.lower() == "now":
        return now
    match = _RELATIVE.match(value.lower())
    if match:
        sign, amount, unit = match.groups()
        delta = timedelta(**{_UNITS[unit]: float(amount)})
        return now + delta if sign == "+" else now - delta
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"{text!r} is not a time; give ISO 8601 (2024-06-01T03:00, local unless it has an offset "
                         "or Z), 'now', or a time relative to now such as +10m, -2h, -7d") from None
    return moment.astimezone(UTC)  # naive: local time


def _full_name(row: dict[str, Any]) -> str:
    return f"{row.get('flow_name')}/{row.get('name')}"


def _duration(seconds: float) -> str:
    left = int(round(seconds))
    if left < 60 or seconds != int(seconds):
        return f"{seconds:g}s"
    parts = []
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m"), (1, "s")):
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts)


def schedule_text(schedule: dict[str, Any]) -> str:
    """One line for a schedule: ``cron 0 3 * * * (Europe/Paris)``, ``every 1h``..."""
    kind = schedule.get("kind")
    if kind == "cron":
        text = f"cron {schedule.get('cron')}"
    elif kind == "interval":
        text = f"every {_duration(float(schedule.get('interval_seconds') or 0))}"
        if schedule.get("anchor"):
            text += f" from {schedule['anchor']}"
    else:
        lines = str(schedule.get("rrule") or "").splitlines()
        text = f"rrule {lines[0] if lines else ''}" + (" ..." if len(lines) > 1 else "")
    if (schedule.get("timezone") or "UTC") != "UTC":
        text += f" ({schedule['timezone']})"
    if schedule.get("active") is False:
        text += " [inactive]"
    return text


def _run_id(id_or_prefix: str) -> str:
    """The full id of a flow run from its id or first characters."""
    from plait.cli import _source

    value = id_or_prefix.strip()
    if _source.remote():
        if len(value) == 36:
            return value
        from plait.cli import commands

        return str(commands.flow_run_inspect(value)["id"])
    from plait._store.database import get_database
    from plait._store.history import resolve_flow_run_id

    return resolve_flow_run_id(get_database(), value)


def late_reason_of(run: dict[str, Any]) -> str | None:
    """Why a Scheduled (or Late) run has not started, for ``plait flow-run inspect``; None
    for a run in any other state, or when the control plane cannot say."""
    if str(run.get("state_type") or "").upper() != "SCHEDULED" or not run.get("id"):
        return None
    try:
        reason = _plane().late_reason(str(run["id"]))
    except Exception:  # an explanation is a nicety: inspect still shows the run
        return None
    return str(reason) if reason else None


# -- deployments ---------------------------------------------------------------------------------
def deploy_file(path: str | Path = "plait.yaml") -> list[dict[str, str]]:
    """Save the deployments ``path`` describes: ``[{name, outcome}]`` (created, updated,
    unchanged)."""
    from plait.deployments import apply_file

    return [{"name": name, "outcome": outcome} for name, outcome in apply_file(path)]


def deployment_ls(flow_name: str | None = None, work_pool: str | None = None) -> list[dict[str, Any]]:
    """Saved deployments (each with ``full_name`` and ``schedules``), by flow then name."""
    filters = {k: v for k, v in (("flow_name", flow_name), ("work_pool", work_pool)) if v}
    rows = [_plain(dict(r)) for r in _plane().list_deployments(**filters)]
    for row in rows:
        row["full_name"] = _full_name(row)
    return sorted(rows, key=lambda r: (str(r.get("flow_name")), str(r.get("name"))))


def deployment_inspect(name: str) -> dict[str, Any]:
    """One deployment in full (``full_name``, parameters, schedules, pool, limits...).

    Raises:
        DeploymentNotFound: No such deployment.
    """
    from plait.deployments import get_deployment

    row = _plain(get_deployment(name))
    row["full_name"] = _full_name(row)
    return dict(row)


def deployment_run(
    name: str, parameters: dict[str, Any], *, at: datetime | None = None, watch: bool = False,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Create a run of a deployment (Scheduled for ``at``, default now); with ``watch``, wait
    until it ends (or ``timeout`` seconds pass)."""
    from plait.deployments import run_deployment

    return dict(_plain(run_deployment(name, parameters, timeout=timeout if watch else 0, scheduled_time=at)))


def deployment_pause(name: str, paused: bool) -> dict[str, Any]:
    """Pause (no runs are made or started) or resume a deployment; returns it."""
    row = _plain(dict(_plane().set_deployment_paused(name, paused)))
    row["full_name"] = _full_name(row)
    return dict(row)


def deployment_delete(name: str) -> dict[str, Any]:
    """Delete a deployment (its runs not yet started end Cancelled); returns what was deleted."""
    from plait.deployments import DeploymentNotFound

    found = deployment_inspect(name)
    if not _plane().delete_deployment(str(found["id"])):
        raise DeploymentNotFound(f"no deployment {name!r}; `plait deployment ls` lists them")
    return found


def deployment_backfill(name: str, start: datetime, end: datetime, limit: int = 1000) -> dict[str, Any]:
    """Create the runs of the slots between ``start`` and ``end`` that have none
    (``plait.deployments.backfill``)."""
    from plait.deployments import backfill

    return dict(_plain(backfill(name, start, end, limit=limit)))


# -- work pools ----------------------------------------------------------------------------------
def _check_pool_type(kind: str) -> None:
    from plait import plugins

    if plugins.infrastructure_class(kind) is None:
        known = ", ".join(sorted(plugins.infrastructure_kinds())) or "none"
        raise ValueError(f"no installed plugin provides infrastructure {kind!r}; work pool types: {known}")


def work_pool_create(
    name: str, kind: str, *, description: str = "", concurrency_limit: int | None = None,
    job_variables: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Create a work pool of infrastructure type ``kind`` (with its queue ``default``).

    Raises:
        ValueError: No plugin provides ``kind``, or the pool exists.
    """
    _check_pool_type(kind)
    row = _plane().create_work_pool(name, kind, description=description, base_job_variables=job_variables or {},
                                    concurrency_limit=concurrency_limit)
    return dict(_plain(dict(row)))


def work_pool_ls() -> list[dict[str, Any]]:
    """Every work pool."""
    return [dict(_plain(dict(r))) for r in _plane().list_work_pools()]


def work_pool_inspect(name: str) -> dict[str, Any]:
    """One work pool with its ``queues`` and ``workers`` (each ``online`` or ``offline``).

    Raises:
        LookupError: No such pool.
    """
    row = _plane().get_work_pool(name)
    if row is None:
        raise LookupError(f"no work pool {name!r}; `plait work-pool ls` lists them")
    return dict(_plain(dict(row)))


def work_pool_pause(name: str, paused: bool) -> dict[str, Any]:
    """Pause (workers claim nothing from it) or resume a work pool; returns it."""
    return dict(_plain(dict(_plane().set_work_pool_paused(name, paused))))


def work_queue_set(
    pool: str, queue: str, *, priority: int = 1, concurrency_limit: int | None = None, paused: bool = False
) -> dict[str, Any]:
    """Create or change a queue of a pool (priority 1 is claimed first)."""
    return dict(_plain(dict(_plane().save_work_queue(pool, queue, priority=priority,
                                                     concurrency_limit=concurrency_limit, paused=paused))))


# -- run control ---------------------------------------------------------------------------------
def flow_run_cancel(flow_run_id: str) -> dict[str, Any]:
    """Cancel a flow run: a Scheduled one ends Cancelled at once, a running one goes to
    Cancelling and whatever runs it stops it. ``{id, state_type}``.

    Raises:
        ValueError: The run already ended.
    """
    run_id = _run_id(flow_run_id)
    return {"id": run_id, "state_type": str(_plane().request_cancel(run_id))}


def flow_run_resume(flow_run_id: str, input_json: str | None = None) -> dict[str, Any]:
    """Resume a Paused flow run, with the input its ``pause_flow_run(wait_for_input=...)``
    asks for (a JSON object, validated against it)."""
    value = None
    if input_json is not None:
        try:
            value = json.loads(input_json)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--input is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise ValueError(f"--input must be a JSON object of field names to values, got {type(value).__name__}")
    run_id = _run_id(flow_run_id)
    return dict(_plain(dict(_plane().resume_flow_run(run_id, value) or {"id": run_id})))


def flow_run_retry(flow_run_id: str, run_here: bool = True) -> dict[str, Any]:
    """Run a Failed or Crashed flow run again, same id and parameters; task runs that
    completed before are not run again.

    A run of a deployment goes back to Scheduled for its worker (or ``serve``). A run
    without one is run here, in a subprocess from its recorded entrypoint, unless
    ``run_here`` is false. Returns the run (``ran_here``, and ``exit_code`` when it ran).
    """
    plane = _plane()
    run_id = _run_id(flow_run_id)
    raw = dict(plane.retry_flow_run(run_id) or {"id": run_id})
    row = dict(_plain(raw))
    row["ran_here"] = False
    if row.get("deployment_id") or not run_here:
        return row
    recorded = dict(plane.get_flow_run(run_id) or {})
    entrypoint = raw.get("entrypoint") or recorded.get("entrypoint")
    if not entrypoint:
        raise ValueError(f"flow run {run_id} has no deployment and no recorded entrypoint, so plait cannot run it "
                         "again; run the flow anew with `plait run path/to/file.py:flow`")
    parameters = raw.get("parameters") if isinstance(raw.get("parameters"), dict) else recorded.get("parameters")
    row["exit_code"] = _run_again_here(run_id, str(entrypoint), dict(parameters or {}))
    row["ran_here"] = True
    final = plane.get_flow_run(run_id)
    if final:
        row.update({k: v for k, v in _plain(dict(final)).items() if k in ("state_type", "state_name")})
    return row


def _run_again_here(run_id: str, entrypoint: str, parameters: dict[str, Any]) -> int:
    """Run ``run_id`` again from ``entrypoint`` in a child process, as a worker would."""
    import inspect

    from plait import plugins

    process: Any = plugins.infrastructure_class("process")
    if process is not None and "flow_run_id" in inspect.signature(process.run).parameters:
        result = process().run(entrypoint, parameters, flow_run_id=run_id)
        return int(result.exit_code if result.exit_code is not None else 1)
    import subprocess
    import sys

    from plait.infrastructure import CONTROL_ENV, child_environment

    env = child_environment(run_id)
    env.pop(CONTROL_ENV, None)  # we show the child's output as it is
    done = subprocess.run([sys.executable, "-m", "plait.infrastructure", entrypoint, "--parameters", "-"],
                          input=json.dumps(parameters), text=True, env=env, check=False)
    return done.returncode


# -- rendering -----------------------------------------------------------------------------------
def _show_outcomes(rows: list[dict[str, str]]) -> None:
    from plait.cli._output import Cell, Column, print_message, print_table

    if not rows:
        print_message("The file describes no deployments.")
        return
    styles = {"created": "green", "updated": "yellow", "unchanged": "bright_black"}
    print_table([Column("Deployment", no_wrap=True), Column("Outcome", no_wrap=True)],
                [[r["name"], Cell(r["outcome"], styles.get(r["outcome"], ""))] for r in rows])


def _show_deployments(rows: list[dict[str, Any]]) -> None:
    from plait.cli._output import EMPTY, Column, fmt_time, print_message, print_table

    if not rows:
        print_message("No deployments. Save one with `plait deploy` or `my_flow.deploy(...)`.")
        return
    print_table(
        [Column("Deployment", no_wrap=True), Column("Work pool", no_wrap=True), Column("Schedules", max_width=50),
         Column("Paused", no_wrap=True), Column("Updated", no_wrap=True)],
        [[r["full_name"], r.get("work_pool_name") or "(serve)",
          "; ".join(schedule_text(s) for s in r.get("schedules") or []) or EMPTY,
          "yes" if r.get("paused") else "no", fmt_time(r.get("updated"))] for r in rows],
    )


def _show_deployment(row: dict[str, Any]) -> None:
    from plait.cli._output import EMPTY, fmt_time, fmt_value, print_fields, print_heading, print_message

    code = (f"bundle {row.get('bundle_key')} in {row.get('storage_block')}" if row.get("storage_block")
            else row.get("path") or EMPTY)
    print_fields([
        ("Deployment", row["full_name"]), ("ID", row.get("id") or EMPTY),
        ("Entrypoint", row.get("entrypoint") or EMPTY), ("Code", code),
        ("Work pool", f"{row.get('work_pool_name')} (queue {row.get('work_queue_name') or 'default'})"
         if row.get("work_pool_name") else "(none: run by `serve`)"),
        ("Paused", "yes" if row.get("paused") else "no"),
        ("Tags", ", ".join(row.get("tags") or []) or EMPTY), ("Version", row.get("version") or EMPTY),
        ("Concurrency", f"{row.get('concurrency_limit') or 'no limit'}, collisions: "
         f"{row.get('collision_strategy') or 'enqueue'}"),
        ("Max active runs", str(row.get("max_active_runs") or "no limit")),
        ("Catch-up", row.get("catchup") or "all"), ("Retries", str(row.get("retries") or 0)),
        ("Last polled", fmt_time(row.get("last_polled_at"))),
        ("Created", fmt_time(row.get("created"))), ("Updated", fmt_time(row.get("updated"))),
    ])
    if row.get("description"):
        print_heading("Description")
        click.echo(row["description"])
    for title, values in (("Parameters", row.get("parameters")), ("Job variables", row.get("job_variables"))):
        print_heading(title)
        if values:
            print_fields([(str(k), fmt_value(v)) for k, v in values.items()])
        else:
            print_message("(none)")
    print_heading("Schedules")
    schedules = row.get("schedules") or []
    if not schedules:
        print_message("(none)")
    for schedule in schedules:
        extra = f"  parameters {fmt_value(schedule['parameters'])}" if schedule.get("parameters") else ""
        click.echo(f"{schedule_text(schedule)}{extra}")


def _show_run(run: dict[str, Any], verb: str) -> None:
    from plait.cli._output import EMPTY, fmt_time, print_fields, state_cell

    print_fields([
        ("Flow run", run.get("id") or EMPTY), ("Name", run.get("name") or EMPTY),
        ("Flow", run.get("flow_name") or EMPTY),
        ("State", state_cell(run.get("state_type"), run.get("state_name"))),
        ("Scheduled for", fmt_time(run.get("expected_start_time"))),
    ])
    click.echo("")
    click.echo(f"{verb} `plait flow-run inspect {run.get('id')}` shows it.")


def _show_pools(rows: list[dict[str, Any]]) -> None:
    from plait.cli._output import EMPTY, Column, print_message, print_table

    if not rows:
        print_message("No work pools. Create one with `plait work-pool create NAME --type process`.")
        return
    print_table(
        [Column("Work pool", no_wrap=True), Column("Type", no_wrap=True), Column("Paused", no_wrap=True),
         Column("Concurrency", justify="right"), Column("Description", max_width=50)],
        [[r["name"], r.get("type") or EMPTY, "yes" if r.get("paused") else "no",
          str(r["concurrency_limit"]) if r.get("concurrency_limit") else "no limit", r.get("description") or EMPTY]
         for r in rows],
    )


def _show_pool(row: dict[str, Any]) -> None:
    from plait.cli._output import (
        EMPTY,
        Column,
        fmt_time,
        fmt_value,
        print_fields,
        print_heading,
        print_message,
        print_table,
    )

    print_fields([
        ("Work pool", row["name"]), ("Type", row.get("type") or EMPTY),
        ("Paused", "yes" if row.get("paused") else "no"),
        ("Concurrency", str(row["concurrency_limit"]) if row.get("concurrency_limit") else "no limit"),
        ("Description", row.get("description") or EMPTY),
        ("Job variables", fmt_value(row.get("base_job_variables") or {})),
    ])
    print_heading("Queues")
    print_table([Column("Queue", no_wrap=True), Column("Priority", justify="right"),
                 Column("Concurrency", justify="right"), Column("Paused")],
                [[q["name"], str(q.get("priority")), str(q.get("concurrency_limit") or "no limit"),
                  "yes" if q.get("paused") else "no"] for q in row.get("queues") or []])
    print_heading("Workers")
    workers = row.get("workers") or []
    if not workers:
        print_message(f"(none: start one with `plait worker start --pool {row['name']}`)")
        return
    print_table([Column("Worker", no_wrap=True), Column("Status", no_wrap=True), Column("Host"),
                 Column("PID", justify="right"), Column("Last heartbeat", no_wrap=True)],
                [[w.get("name") or EMPTY, w.get("status") or EMPTY, w.get("hostname") or EMPTY,
                  str(w.get("pid") or EMPTY), fmt_time(w.get("heartbeat_at"))] for w in workers])


def _emit(data: Any, as_json: bool, show: Any) -> None:
    from plait.cli._output import echo_json

    if as_json:
        echo_json(data)
    else:
        show(data)


def _time_option(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=name) from None


# -- commands ------------------------------------------------------------------------------------
@click.command("deploy")
@click.option("--file", "-f", "path", default="plait.yaml", show_default=True, metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path), help="The deployments file.")
@json_option
def deploy_cmd(path: Path, as_json: bool) -> None:
    """Create or update the deployments a plait.yaml describes.

    Prints each deployment's outcome: created, updated or unchanged. `schedules: []`
    clears a deployment's schedules; leaving `schedules` out keeps them.
    """
    _emit(deploy_file(path), as_json, _show_outcomes)


@click.group("deployment", cls=PlaitGroup)
def deployment_group() -> None:
    """Deployments: flows run on schedules or on request, by workers or `serve`."""


@deployment_group.command("ls")
@click.option("--flow", "flow_name", metavar="NAME", help="Only deployments of this flow.")
@click.option("--pool", "work_pool", metavar="NAME", help="Only deployments of this work pool.")
@json_option
def deployment_ls_cmd(flow_name: str | None, work_pool: str | None, as_json: bool) -> None:
    """List deployments: name, work pool, schedules, paused."""
    _emit(deployment_ls(flow_name, work_pool), as_json, _show_deployments)


@deployment_group.command("inspect")
@click.argument("name", metavar="FLOW/NAME")
@json_option
def deployment_inspect_cmd(name: str, as_json: bool) -> None:
    """Show one deployment: entrypoint, code, pool, limits, parameters, schedules."""
    _emit(deployment_inspect(name), as_json, _show_deployment)


@deployment_group.command("run")
@click.argument("name", metavar="FLOW/NAME")
@click.option("--param", "-p", "assignments", multiple=True, metavar="NAME=VALUE",
              help="A parameter (repeatable); JSON when it parses as JSON, else text.")
@click.option("--params", "params_json", metavar="JSON", help="Parameters as one JSON object.")
@click.option("--at", "at_text", metavar="TIME", help="When it may start (default now): ISO 8601, +10m...")
@click.option("--watch", is_flag=True, help="Wait until the run ends; exit 1 unless it Completed.")
@click.option("--timeout", type=click.FloatRange(min=0), metavar="SECONDS", help="With --watch: stop waiting after.")
@json_option
def deployment_run_cmd(name: str, assignments: tuple[str, ...], params_json: str | None, at_text: str | None,
                       watch: bool, timeout: float | None, as_json: bool) -> None:
    """Create a run of a deployment, for its worker (or serve process) to run."""
    from plait.cli.run import parse_params

    run = deployment_run(name, parse_params(assignments, params_json), at=_time_option(at_text, "--at"),
                         watch=watch, timeout=timeout)
    _emit(run, as_json, lambda r: _show_run(r, "Ended;" if watch else "Created;"))
    if watch and run.get("state_type") not in ("COMPLETED", "CACHED"):
        raise click.exceptions.Exit(1)


@deployment_group.command("pause")
@click.argument("name", metavar="FLOW/NAME")
def deployment_pause_cmd(name: str) -> None:
    """Pause a deployment: no runs are made for it or started until it is resumed."""
    click.echo(f"Paused deployment {deployment_pause(name, True)['full_name']}.")


@deployment_group.command("resume")
@click.argument("name", metavar="FLOW/NAME")
def deployment_resume_cmd(name: str) -> None:
    """Resume a paused deployment (its schedules are planned again)."""
    click.echo(f"Resumed deployment {deployment_pause(name, False)['full_name']}.")


@deployment_group.command("delete")
@click.argument("name", metavar="FLOW/NAME")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def deployment_delete_cmd(name: str, yes: bool) -> None:
    """Delete a deployment; its runs not yet started end Cancelled."""
    if not yes:
        click.confirm(f"Delete deployment {deployment_inspect(name)['full_name']}?", abort=True, err=True)
    click.echo(f"Deleted deployment {deployment_delete(name)['full_name']}.")


@deployment_group.command("backfill")
@click.argument("name", metavar="FLOW/NAME")
@click.option("--start", "start_text", required=True, metavar="TIME", help="First slot time (inclusive).")
@click.option("--end", "end_text", required=True, metavar="TIME", help="Last slot time (inclusive).")
@click.option("--limit", type=click.IntRange(min=1), default=1000, show_default=True, help="Most slots.")
@json_option
def deployment_backfill_cmd(name: str, start_text: str, end_text: str, limit: int, as_json: bool) -> None:
    """Create the runs of the schedule slots between --start and --end that have none."""
    start, end = _time_option(start_text, "--start"), _time_option(end_text, "--end")
    assert start is not None and end is not None
    result = deployment_backfill(name, start, end, limit)
    _emit(result, as_json, lambda r: click.echo(
        f"Backfilled {r['deployment']}: {r['slots']} slot(s), {r['created']} run(s) created, "
        f"{r['existing']} already had one."))


@click.group("work-pool", cls=PlaitGroup)
def work_pool_group() -> None:
    """Work pools: where workers find deployments' runs."""


@work_pool_group.command("create")
@click.argument("name", metavar="NAME")
@click.option("--type", "kind", default="process", show_default=True, metavar="TYPE",
              help="Infrastructure type of its runs (process, or one a collection adds).")
@click.option("--description", default="", help="What the pool is for.")
@click.option("--concurrency-limit", type=click.IntRange(min=1), metavar="N", help="Most runs active at once.")
@click.option("--job-variables", "job_variables", metavar="JSON", help="Default job variables (a JSON object).")
@json_option
def work_pool_create_cmd(name: str, kind: str, description: str, concurrency_limit: int | None,
                         job_variables: str | None, as_json: bool) -> None:
    """Create a work pool (with its queue "default")."""
    variables = json.loads(job_variables) if job_variables else None
    if variables is not None and not isinstance(variables, dict):
        raise click.BadParameter("give a JSON object", param_hint="--job-variables")
    row = work_pool_create(name, kind, description=description, concurrency_limit=concurrency_limit,
                           job_variables=variables)
    _emit(row, as_json, lambda r: click.echo(
        f"Created work pool {r['name']} ({r.get('type')}). Start a worker: plait worker start --pool {r['name']}"))


@work_pool_group.command("ls")
@json_option
def work_pool_ls_cmd(as_json: bool) -> None:
    """List work pools."""
    _emit(work_pool_ls(), as_json, _show_pools)


@work_pool_group.command("inspect")
@click.argument("name", metavar="NAME")
@json_option
def work_pool_inspect_cmd(name: str, as_json: bool) -> None:
    """Show a work pool with its queues and workers (online or offline)."""
    _emit(work_pool_inspect(name), as_json, _show_pool)


@work_pool_group.command("pause")
@click.argument("name", metavar="NAME")
def work_pool_pause_cmd(name: str) -> None:
    """Pause a work pool: its workers claim no runs until it is resumed."""
    click.echo(f"Paused work pool {work_pool_pause(name, True)['name']}.")


@work_pool_group.command("resume")
@click.argument("name", metavar="NAME")
def work_pool_resume_cmd(name: str) -> None:
    """Resume a paused work pool."""
    click.echo(f"Resumed work pool {work_pool_pause(name, False)['name']}.")


@work_pool_group.command("queue")
@click.argument("pool", metavar="POOL")
@click.argument("queue", metavar="QUEUE")
@click.option("--priority", type=click.IntRange(min=1), default=1, show_default=True, help="1 is claimed first.")
@click.option("--concurrency-limit", type=click.IntRange(min=1), metavar="N", help="Most runs active at once.")
@click.option("--pause/--active", "paused", default=False, help="Pause the queue (default: active).")
def work_queue_cmd(pool: str, queue: str, priority: int, concurrency_limit: int | None, paused: bool) -> None:
    """Create or change a queue of a work pool."""
    row = work_queue_set(pool, queue, priority=priority, concurrency_limit=concurrency_limit, paused=paused)
    click.echo(f"Saved queue {row.get('name', queue)} of work pool {pool} (priority {row.get('priority', priority)}).")


@click.command("cancel")
@click.argument("flow_run_id", metavar="ID")
def flow_run_cancel_cmd(flow_run_id: str) -> None:
    """Cancel a flow run: scheduled ones at once, running ones stop within seconds."""
    result = flow_run_cancel(flow_run_id)
    state = "Cancelled" if result["state_type"] == "CANCELLED" else "Cancelling (its runner stops it)"
    click.echo(f"Flow run {result['id']} is {state}.")


@click.command("resume")
@click.argument("flow_run_id", metavar="ID")
@click.option("--input", "input_json", metavar="JSON", help="The input the paused flow waits for (a JSON object).")
def flow_run_resume_cmd(flow_run_id: str, input_json: str | None) -> None:
    """Resume a paused flow run."""
    result = flow_run_resume(flow_run_id, input_json)
    click.echo(f"Resumed flow run {result.get('id', flow_run_id)}.")


@click.command("retry")
@click.argument("flow_run_id", metavar="ID")
def flow_run_retry_cmd(flow_run_id: str) -> None:
    """Run a failed or crashed flow run again; completed task runs are not run again.

    A run of a deployment is Scheduled again for its worker (or serve process); any other
    run is run again here, from its recorded entrypoint. Exits 1 when a run here did not
    complete.
    """
    from plait.cli._output import state_cell

    result = flow_run_retry(flow_run_id)
    if result["ran_here"]:
        click.echo(f"Flow run {result['id']} ran again here: {state_cell(result.get('state_type')).text}.")
        if result.get("state_type") not in ("COMPLETED", "CACHED"):
            raise click.exceptions.Exit(1)
    else:
        who = f"a worker of pool {result['work_pool_name']}" if result.get("work_pool_name") else "its serve process"
        click.echo(f"Flow run {result['id']} is Scheduled again; {who} will run it.")


# Added to ``plait flow-run`` by plait.cli._app.
FLOW_RUN_COMMANDS = (flow_run_cancel_cmd, flow_run_resume_cmd, flow_run_retry_cmd)
