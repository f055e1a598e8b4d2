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

import fnmatch
import logging
import platform
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
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
    "parse_since",
    "task_matches",
    "LEVEL_NAMES",
]

# Accepted by ``--state`` in any case.
STATE_NAMES: tuple[str, ...] = tuple(t.value for t in StateType)
# Accepted by ``flow-run logs --level`` in any case.
LEVEL_NAMES: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$", re.I)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_GLOB_CHARS = set("*?[")
# The state types that say something went wrong: listed first, and in detail, by `inspect`.
FAILED_TYPES = frozenset({StateType.FAILED.value, StateType.CRASHED.value})


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


def parse_since(value: str | datetime, *, now: datetime | None = None) -> datetime:
    """The moment ``--since WHEN`` means, in UTC.

    ``WHEN`` is a time ago (``30m``, ``1h``, ``2d``, ``1w``; ``s`` for seconds) or an ISO
    8601 date or date and time (``2026-11-21``, ``2026-11-21T10:40``, ``2026-11-21 10:40:03+00:00``);
    one without a time zone is in the local time zone, as the tables show times.

    Raises:
        ValueError: ``value`` is neither (the message shows both forms).
    """
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo is not None else value.astimezone().astimezone(UTC)
    text = str(value).strip()
    relative = _RELATIVE.match(text)
    if relative:
        amount, unit = float(relative.group(1)), relative.group(2).lower()
        return (now or datetime.now(UTC)) - timedelta(seconds=amount * _UNIT_SECONDS[unit])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"cannot read {value!r} as a time: give a time ago (30m, 1h, 2d, 1w) or an ISO date or "
            "date and time (2026-11-21, 2026-11-21T10:40, 2026-11-21T10:40:00+00:00)"
        ) from None
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment.astimezone().astimezone(UTC)


def task_matches(pattern: str, *names: str | None) -> bool:
    """Whether a task run named ``names`` (its run name ``extract-0``, its task name
    ``extract``) is what ``--task pattern`` picks: a glob (``*``, ``?``, ``[...]``) must
    match a whole name, anything else is a substring of one; case matters in neither."""
    if any(ch in _GLOB_CHARS for ch in pattern):
        return any(name is not None and fnmatch.fnmatchcase(name, pattern) for name in names)
    return any(name is not None and pattern in name for name in names)


def flow_run_ls(
    state: str | None = None, flow_name: str | None = None, limit: int = 20, upcoming: bool | None = False,
    *, top_level: bool = False, tags: Sequence[str] | None = None, since: str | datetime | None = None,
) -> list[dict[str, Any]]:
    """The newest flow runs, newest first.

    Args:
        state: Only runs in this state type (``"failed"``, ``"COMPLETED"``, ... any case).
        flow_name: Only runs of the flow with this name.
        limit: At most this many runs (>= 1).
        upcoming: False (default): leave out the Scheduled runs a scheduler made ahead (due
            later); True: only those, soonest first; None: every run.
        top_level: Only runs that are not a subflow run.
        tags: Only runs carrying every one of these tags.
        since: Only runs created at or after this time: a datetime, or text as
            ``parse_since`` reads it (``"2d"``, ``"2026-11-21"``).

    Returns:
        Rows ``{id, flow_name, name, state_type, state_name, state_message, start_time,
        end_time, duration_seconds, task_run_count, parent_flow_run_id, tags,
        expected_start_time}``.
    """
    state = normalize_state(state)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a whole number >= 1, got {limit!r}")
    wanted_tags = [tags] if isinstance(tags, str) else list(tags or [])
    if not all(isinstance(t, str) and t.strip() for t in wanted_tags):
        raise ValueError("tags: give non-empty tag names")
    moment = parse_since(since) if since is not None else None
    if _source.remote():
        if not (top_level or wanted_tags or moment):
            return _source.flow_run_ls(state, flow_name, limit, upcoming)
        return _remote_flow_run_ls(state, flow_name, limit, upcoming, top_level, wanted_tags, moment)
    from plait._store.history import list_flow_runs

    return list_flow_runs(
        _checked_database(), state=state, flow_name=flow_name, limit=limit, upcoming=upcoming,
        top_level=top_level or None, tags=wanted_tags or None, since=moment,
    )


def _remote_flow_run_ls(
    state: str | None, flow_name: str | None, limit: int, upcoming: bool | None, top_level: bool,
    tags: list[str], since: datetime | None,
) -> list[dict[str, Any]]:
    """``flow_run_ls`` with the filters ``_source.flow_run_ls`` does not pass on, from the
    server (whose list route takes them all)."""
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    with _source._client() as client:
        items = client.iter_flow_runs(
            state=state, flow=flow_name, upcoming=upcoming, top_level=top_level or None, tag=tags or None,
            since=since, page_size=min(limit, _source._PAGE),
        )
        for item in items:
            rows.append(_source._project(item, _source._LS_KEYS, now))
            if len(rows) >= limit:
                break
    if upcoming:  # soonest first, as the local listing
        rows.sort(key=lambda r: (r.get("expected_start_time") or "", r["id"]))
    return rows


def flow_run_inspect(
    flow_run_id: str, *, state: str | Sequence[str] | None = None, task: str | None = None, limit: int | None = None,
) -> dict[str, Any]:
    """One flow run in full: its fields, parameters, state history, subflow runs and task
    runs (each with its state history, attempts and upstream task runs).

    Args:
        flow_run_id: The id, or enough of its first characters to be unique.
        state: Only task runs in this state type (or any of these), any case.
        task: Only task runs whose name matches (``task_matches``: a glob, else a substring).
        limit: At most this many task runs: failed and crashed ones first, then the others,
            each in the order they were created (the order ``task_runs`` keeps).

    Returns:
        The record; with ``task_run_count``, the number of task runs before any filter
        (``task_runs`` holds the ones that passed), and each upstream edge with ``name``,
        the upstream task run's name.

    Raises:
        LookupError: No flow run, or more than one, matches ``flow_run_id``.
        ValueError: A filter is malformed.
    """
    states = [state] if isinstance(state, str) else list(state or [])
    wanted = {normalize_state(s) for s in states}
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a whole number >= 1, got {limit!r}")
    if _source.remote():
        run = _source.flow_run_inspect(flow_run_id)
    else:
        from plait._store.history import get_flow_run

        run = get_flow_run(_checked_database(), flow_run_id)
    from plait.cli.deployments import late_reason_of

    run["late_reason"] = late_reason_of(run)  # why a Scheduled (or Late) run has not started; else None
    task_runs = list(run.get("task_runs") or [])
    run["task_run_count"] = len(task_runs)
    names = {t.get("id"): t.get("name") for t in task_runs}
    for t in task_runs:  # each edge names its upstream run ("extract-0"), even one a filter leaves out
        for up in t.get("upstream") or []:
            up.setdefault("name", names.get(up.get("id")))
    if wanted:
        task_runs = [t for t in task_runs if t.get("state_type") in wanted]
    if task:
        task_runs = [t for t in task_runs if task_matches(task, t.get("name"), t.get("task_name"))]
    if limit is not None and len(task_runs) > limit:
        keep = {id(t) for t in sorted(task_runs, key=lambda t: t.get("state_type") not in FAILED_TYPES)[:limit]}
        task_runs = [t for t in task_runs if id(t) in keep]
    run["task_runs"] = task_runs
    return run


def _min_level(level: str | int | None) -> int | None:
    if level is None:
        return None
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    text = str(level).strip().upper()
    if text.isdigit():
        return int(text)
    number = logging.getLevelName(text)
    if text not in LEVEL_NAMES or not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r}; use one of: {', '.join(LEVEL_NAMES)} (any case)")
    return number


def _level_number(level: Any) -> int:
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    number = logging.getLevelName(str(level).upper())
    return number if isinstance(number, int) else 0


def flow_run_logs(flow_run_id: str, *, task: str | None = None, level: str | int | None = None) -> list[dict[str, Any]]:
    """The log lines of a flow run, its task runs and its subflow runs, oldest first.

    Each row is ``{timestamp, level, logger, flow_run_id, task_run_id, task_name,
    task_run_name, source, message}``; ``source`` is what the CLI shows in its third
    column: the task run's name, ``"flow"`` for the flow run itself, or
    ``"subflow <id prefix>"``.

    Args:
        flow_run_id: The id, or enough of its first characters to be unique.
        task: Only lines of task runs whose name matches (``task_matches``).
        level: Only lines at this level or above (``"warning"``, ``30``).

    Raises:
        LookupError: No flow run, or more than one, matches ``flow_run_id``.
        ValueError: ``level`` is no log level.
    """
    threshold = _min_level(level)
    if _source.remote():
        rows = _source.flow_run_logs(flow_run_id)
    else:
        rows = _local_logs(flow_run_id, threshold)
    if threshold is not None:
        rows = [r for r in rows if _level_number(r.get("level")) >= threshold]
    if task:
        rows = [r for r in rows
                if r.get("task_run_id") and task_matches(task, r.get("task_run_name"), r.get("task_name"))]
    return rows


def _local_logs(flow_run_id: str, threshold: int | None) -> list[dict[str, Any]]:
    from plait._store.history import get_logs, resolve_flow_run_id

    db = _checked_database()
    run_id = resolve_flow_run_id(db, flow_run_id)
    rows = get_logs(db, run_id, min_level=threshold)
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
