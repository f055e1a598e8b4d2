"""What each ``plait`` command does, as plain functions that return data.

The click commands in ``plait.cli._app`` only parse options, call one of these and render
the result; tests and scripts can call them directly::

    from plait.cli.commands import flow_run_ls
    failed = flow_run_ls(state="failed", limit=5)

Everything returned is JSON-friendly (timestamps are ISO 8601 strings in UTC). The store is
imported inside each function so that ``import plait.cli`` never loads SQLAlchemy.

Errors: ``plait.exceptions.DatabaseError`` when the database cannot be opened or read (its
message shows the URL with the password masked), ``LookupError`` for an unknown or ambiguous
flow run id, ``ValueError`` for a bad argument.
"""

from __future__ import annotations

import platform
import sys
from typing import Any

from plait.cli import _source
from plait.states import StateType

__all__ = [
    "STATE_NAMES",
    "version_info",
    "config_show",
    "flow_run_ls",
    "flow_run_inspect",
    "flow_run_logs",
]

# Accepted by ``--state`` in any case.
STATE_NAMES: tuple[str, ...] = tuple(t.value for t in StateType)


def version_info() -> dict[str, Any]:
    """plait's version, the Python running it, the database URL (masked) and plait's home.

    Reads settings only; the database is not opened.
    """
    import plait
    from plait.settings import get_settings, mask_url

    settings = get_settings()
    return {
        "plait": plait.__version__,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_executable": sys.executable,
        "platform": platform.platform(terse=True),
        "database_url": mask_url(settings.effective_database_url),
        "home": str(settings.home),
    }


def config_show(show_secrets: bool = False) -> list[dict[str, Any]]:
    """Every setting: ``{name, value, source, env, description}``; secrets masked.

    ``source`` is ``"env"``, ``"file <path>"`` (``$PLAIT_HOME/config.toml``) or
    ``"default"``. ``show_secrets=True`` reveals passwords and secret values.
    """
    from plait.settings import describe_settings

    return describe_settings(show_secrets=show_secrets)


def normalize_state(state: str | None) -> str | None:
    """``"failed"`` -> ``"FAILED"``; None stays None.

    Raises:
        ValueError: ``state`` is not a state type (the message lists the valid ones).
    """
    if state is None:
        return None
    value = state.strip().upper()
    if value not in STATE_NAMES:
        raise ValueError(f"unknown state {state!r}; use one of: {', '.join(STATE_NAMES)} (any case)")
    return value


def flow_run_ls(
    state: str | None = None, flow_name: str | None = None, limit: int = 20, upcoming: bool | None = False
) -> list[dict[str, Any]]:
    """The newest flow runs, newest first.

    Args:
        state: Only runs in this state type (``"failed"``, ``"COMPLETED"``, ... any case).
        flow_name: Only runs of the flow with this name.
        limit: At most this many runs (>= 1).
        upcoming: False (default): leave out the Scheduled runs a scheduler made ahead (due
            later); True: only those, soonest first; None: every run.

    Returns:
        Rows ``{id, flow_name, name, state_type, state_name, state_message, start_time,
        end_time, duration_seconds, task_run_count, parent_flow_run_id, tags,
        expected_start_time}``.
    """
    state = normalize_state(state)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a whole number >= 1, got {limit!r}")
    if _source.remote():
        return _source.flow_run_ls(state, flow_name, limit, upcoming)
    from plait._store.history import list_flow_runs

    return list_flow_runs(_checked_database(), state=state, flow_name=flow_name, limit=limit, upcoming=upcoming)


def flow_run_inspect(flow_run_id: str) -> dict[str, Any]:
    """One flow run in full: its fields, parameters, state history, subflow runs and task
    runs (each with its state history, attempts and upstream task runs).

    Args:
        flow_run_id: The id, or enough of its first characters to be unique.

    Raises:
        LookupError: No flow run, or more than one, matches ``flow_run_id``.
    """
    if _source.remote():
        run = _source.flow_run_inspect(flow_run_id)
    else:
        from plait._store.history import get_flow_run

        run = get_flow_run(_checked_database(), flow_run_id)
    from plait.cli.deployments import late_reason_of

    run["late_reason"] = late_reason_of(run)  # why a Scheduled (or Late) run has not started; else None
    return run


def flow_run_logs(flow_run_id: str) -> list[dict[str, Any]]:
    """The log lines of a flow run, its task runs and its subflow runs, oldest first.

    Each row is ``{timestamp, level, logger, flow_run_id, task_run_id, task_name,
    task_run_name, source, message}``; ``source`` is what the CLI shows in its third
    column: the task run's name, ``"flow"`` for the flow run itself, or
    ``"subflow <id prefix>"``.

    Raises:
        LookupError: No flow run, or more than one, matches ``flow_run_id``.
    """
    if _source.remote():
        return _source.flow_run_logs(flow_run_id)
    from plait._store.history import get_logs, resolve_flow_run_id

    db = _checked_database()
    run_id = resolve_flow_run_id(db, flow_run_id)
    rows = get_logs(db, run_id)
    # get_logs gives the task's name ("extract"); the CLI shows the task run's ("extract-0").
    missing = any(r.get("task_run_id") and not r.get("task_run_name") for r in rows)
    names = _task_run_names(db, run_id) if missing else {}
    for row in rows:
        task_run_id = row.get("task_run_id")
        if task_run_id:
            row["task_run_name"] = row.get("task_run_name") or names.get(task_run_id) or row.get("task_name")
            row["source"] = row["task_run_name"] or task_run_id[:8]
        else:
            row.setdefault("task_run_name", None)
            owner = row.get("flow_run_id")
            row["source"] = "flow" if owner is None or owner == run_id else f"subflow {owner[:8]}"
    return rows


def _task_run_names(db: Any, run_id: str) -> dict[str, str]:
    """Task run id -> name ("extract-0") for the run and its subflows."""
    from plait._store.history import task_run_names

    try:
        return task_run_names(db, run_id)
    except Exception:  # names are a nicety: fall back to the task names get_logs gave
        return {}


def _checked_database() -> Any:
    """The database, after runs whose process died were replayed and marked Crashed, so
    the CLI never shows a Running run that nothing runs."""
    from plait._recovery import detect_crashed_quietly
    from plait._store.database import get_database

    db = get_database()
    detect_crashed_quietly(db)
    return db
