"""The read side of the run history, for the CLI (and later the API server).

Every function takes a ``Database`` and returns plain dicts and lists that ``json.dumps``
accepts: timestamps are ISO 8601 strings in UTC. Listing and showing flow runs first looks
for runs whose process died (``detect_crashed``), so what the user sees is never a Running
run that nothing is running.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import SQLAlchemyError

from plait._runs import utcnow
from plait._store.database import Database
from plait._store.models import FlowRunModel, LogModel, StateModel, TaskRunEdgeModel, TaskRunModel
from plait.exceptions import DatabaseError
from plait.settings import get_settings
from plait.states import StateType

__all__ = [
    "detect_crashed",
    "list_flow_runs",
    "resolve_flow_run_id",
    "get_flow_run",
    "get_logs",
    "get_task_runs_without_flow",
]

_F = FlowRunModel.__table__
_T = TaskRunModel.__table__
_S = StateModel.__table__
_E = TaskRunEdgeModel.__table__
_L = LogModel.__table__

# States that need a live process behind them. Scheduled and Paused runs wait on purpose.
_ACTIVE = (StateType.PENDING.value, StateType.RUNNING.value, StateType.RETRYING.value)
_NOT_FINAL = tuple(t.value for t in StateType if not t.is_final)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _duration(start: datetime | None, end: datetime | None, state_type: str, now: datetime) -> float | None:
    """Seconds from start to end; for a run still going, to now."""
    if start is None:
        return None
    if end is None:
        if state_type not in _NOT_FINAL:
            return None
        end = now
    return round((end - start).total_seconds(), 3)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but belongs to someone else, or we cannot tell: assume alive
    return True


@contextmanager
def _connect(db: Database, action: str = "read") -> Iterator[Connection]:
    """A connection whose driver errors surface as ``DatabaseError`` (URL masked)."""
    try:
        with db.engine.connect() as conn:
            yield conn
    except SQLAlchemyError as exc:
        raise db.error(exc, action) from None


# -- crash detection ----------------------------------------------------------------------
def detect_crashed(db: Database, *, crash_after: float | None = None) -> list[str]:
    """Mark flow runs whose process is gone as Crashed, with their unfinished task runs.

    A Pending/Running/Retrying flow run is crashed when it was started on this host by a
    process that no longer exists, or when it has not written a heartbeat (or, lacking one,
    started) for ``crash_after`` seconds. Runs of this very process are never crashed by
    the pid check, nor while this process's recorder knows them as Running.

    Args:
        db: The database.
        crash_after: Silence, in seconds, that means crashed (default: settings.crash_after).

    Returns:
        The ids of the flow runs newly marked Crashed.
    """
    from plait._store.recorder import running_flow_run_ids

    if crash_after is None:
        crash_after = get_settings().crash_after
    now = utcnow()
    host, me = socket.gethostname(), os.getpid()
    ours = running_flow_run_ids()
    stale_before = now - timedelta(seconds=crash_after)
    verdicts: dict[str, str] = {}
    with _connect(db, "update") as conn:
        rows = conn.execute(
            select(_F.c.id, _F.c.pid, _F.c.hostname, _F.c.heartbeat_at, _F.c.start_time, _F.c.created)
            .where(_F.c.state_type.in_(_ACTIVE))
        ).all()
        for row in rows:
            if row.id in ours:
                continue
            where = f"process {row.pid} on host {row.hostname}"
            if row.hostname == host and row.pid and row.pid != me and not _pid_alive(row.pid):
                verdicts[row.id] = f"{where} is gone (detected at {now.isoformat(timespec='seconds')})"
                continue
            last = row.heartbeat_at or row.start_time or row.created
            if last is not None and last < stale_before:
                silent = int((now - last).total_seconds())
                verdicts[row.id] = (
                    f"{where} has been silent for {silent}s, more than PLAIT_CRASH_AFTER="
                    f"{crash_after:g}s (last heard {last.isoformat(timespec='seconds')}, "
                    f"detected at {now.isoformat(timespec='seconds')})"
                )
        if not verdicts:
            return []
        crashed = [_crash_flow_run(conn, run_id, message, now) for run_id, message in verdicts.items()]
        conn.commit()
    ids = [run_id for run_id in crashed if run_id]
    if ids:
        logging.getLogger("plait.store").info("marked %d flow run(s) Crashed: %s", len(ids), ", ".join(ids))
    return ids


def _detect_crashed_quietly(db: Database) -> None:
    # Listing must still work for a user who may read but not write the history.
    try:
        detect_crashed(db)
    except DatabaseError as exc:
        logging.getLogger("plait.store").warning("could not check for crashed runs: %s", exc)


def _crash_flow_run(conn: Connection, run_id: str, message: str, now: datetime) -> str | None:
    crashed = {"state_type": StateType.CRASHED.value, "state_name": StateType.CRASHED.title, "end_time": now}
    # Conditional on the state, so a run that finished meanwhile is left alone.
    result = conn.execute(
        _F.update()
        .where(_F.c.id == run_id, _F.c.state_type.in_(_ACTIVE))
        .values(state_message=message, **crashed)
    )
    if result.rowcount == 0:
        return None
    task_ids = list(
        conn.scalars(select(_T.c.id).where(_T.c.flow_run_id == run_id, _T.c.state_type.in_(_NOT_FINAL)))
    )
    task_message = f"its flow run {run_id} crashed: {message}"
    if task_ids:
        conn.execute(
            _T.update()
            .where(_T.c.flow_run_id == run_id, _T.c.state_type.in_(_NOT_FINAL))
            .values(state_message=task_message, **crashed)
        )
    history = [{"run_id": run_id, "run_kind": "flow", "message": message}]
    history += [{"run_id": t, "run_kind": "task", "message": task_message} for t in task_ids]
    for entry in history:
        entry.update(type=StateType.CRASHED.value, name=StateType.CRASHED.title, timestamp=now)
    conn.execute(_S.insert(), history)
    return run_id


# -- flow runs ------------------------------------------------------------------------------
def _parse_state_filter(state: str) -> str:
    value = state.strip().upper()
    if value not in StateType.__members__:
        known = ", ".join(t.title for t in StateType)
        raise ValueError(f"unknown state {state!r}; use one of: {known}")
    return value


def list_flow_runs(
    db: Database, state: str | None = None, flow_name: str | None = None, limit: int = 20
) -> list[dict[str, Any]]:
    """The newest flow runs, optionally filtered by state type (any case) and flow name.

    Raises:
        ValueError: ``state`` is not a state type.
        DatabaseError: The database cannot be read.
    """
    state_type = _parse_state_filter(state) if state else None
    _detect_crashed_quietly(db)
    counts = (
        select(_T.c.flow_run_id, func.count().label("n"))
        .where(_T.c.flow_run_id.is_not(None))
        .group_by(_T.c.flow_run_id)
        .subquery()
    )
    query = (
        select(_F, func.coalesce(counts.c.n, 0).label("task_run_count"))
        .outerjoin(counts, counts.c.flow_run_id == _F.c.id)
        .order_by(_F.c.created.desc(), _F.c.id.desc())
        .limit(limit)
    )
    if state_type:
        query = query.where(_F.c.state_type == state_type)
    if flow_name:
        query = query.where(_F.c.flow_name == flow_name)
    now = utcnow()
    with _connect(db) as conn:
        rows = conn.execute(query).all()
    return [
        {
            "id": r.id,
            "flow_name": r.flow_name,
            "name": r.name,
            "state_type": r.state_type,
            "state_name": r.state_name,
            "state_message": r.state_message,
            "start_time": _iso(r.start_time),
            "end_time": _iso(r.end_time),
            "duration_seconds": _duration(r.start_time, r.end_time, r.state_type, now),
            "task_run_count": r.task_run_count,
            "parent_flow_run_id": r.parent_flow_run_id,
            "tags": r.tags,
        }
        for r in rows
    ]


def resolve_flow_run_id(db: Database, id_or_prefix: str) -> str:
    """The full id of the one flow run whose id is, or starts with, ``id_or_prefix``.

    Raises:
        LookupError: No flow run, or more than one, matches.
        DatabaseError: The database cannot be read.
    """
    prefix = id_or_prefix.strip()
    if not prefix:
        raise LookupError("give a flow run id (or its first characters); run `plait flow-run ls` to see ids")
    with _connect(db) as conn:
        if conn.scalar(select(_F.c.id).where(_F.c.id == prefix)) is not None:
            return prefix
        like = _F.c.id.startswith(prefix, autoescape=True)  # "%" and "_" match themselves
        matches = list(conn.scalars(select(_F.c.id).where(like).limit(2)))
        if len(matches) > 1:
            count = conn.scalar(select(func.count()).where(like))
    if not matches:
        raise LookupError(f"no flow run matches {prefix!r}; run `plait flow-run ls` to see ids")
    if len(matches) > 1:
        raise LookupError(f"{prefix!r} matches {count} flow runs; give more characters")
    return matches[0]


def _history(rows: list[Row[Any]]) -> dict[str, list[dict[str, Any]]]:
    by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_run[r.run_id].append(
            {"type": r.type, "name": r.name, "message": r.message, "timestamp": _iso(r.timestamp)}
        )
    return by_run


def get_flow_run(db: Database, id_or_prefix: str) -> dict[str, Any]:
    """One flow run with its state history, subflow runs and task runs (with their
    histories and upstream edges).

    Raises:
        LookupError: No flow run, or more than one, matches ``id_or_prefix``.
        DatabaseError: The database cannot be read.
    """
    _detect_crashed_quietly(db)
    run_id = resolve_flow_run_id(db, id_or_prefix)
    task_ids = select(_T.c.id).where(_T.c.flow_run_id == run_id)
    with _connect(db) as conn:
        run = conn.execute(select(_F).where(_F.c.id == run_id)).one()
        flow_states = conn.execute(
            select(_S).where(_S.c.run_id == run_id, _S.c.run_kind == "flow").order_by(_S.c.id)
        ).all()
        subflows = conn.execute(
            select(
                _F.c.id, _F.c.name, _F.c.flow_name, _F.c.state_type, _F.c.state_name, _F.c.parent_task_run_id
            )
            .where(_F.c.parent_flow_run_id == run_id)
            .order_by(_F.c.created, _F.c.id)
        ).all()
        tasks = conn.execute(
            select(_T).where(_T.c.flow_run_id == run_id).order_by(_T.c.created, _T.c.id)
        ).all()
        task_states = conn.execute(
            select(_S.c.run_id, _S.c.type, _S.c.name, _S.c.message, _S.c.timestamp)
            .where(_S.c.run_kind == "task", _S.c.run_id.in_(task_ids))
            .order_by(_S.c.id)
        ).all()
        up = _T.alias("up")
        edges = conn.execute(
            select(_E.c.downstream_id, _E.c.upstream_id, _E.c.kind, _E.c.parameter, up.c.task_name)
            .outerjoin(up, up.c.id == _E.c.upstream_id)
            .where(_E.c.downstream_id.in_(task_ids))
            .order_by(_E.c.id)
        ).all()
    now = utcnow()
    histories = _history(task_states)
    upstream: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in edges:
        upstream[e.downstream_id].append(
            {"id": e.upstream_id, "task_name": e.task_name, "kind": e.kind, "parameter": e.parameter}
        )
    return {
        "id": run.id,
        "flow_name": run.flow_name,
        "name": run.name,
        "parameters": run.parameters,
        "tags": run.tags,
        "state_type": run.state_type,
        "state_name": run.state_name,
        "state_message": run.state_message,
        "parent_flow_run_id": run.parent_flow_run_id,
        "parent_task_run_id": run.parent_task_run_id,
        "run_count": run.run_count,
        "created": _iso(run.created),
        "start_time": _iso(run.start_time),
        "end_time": _iso(run.end_time),
        "duration_seconds": _duration(run.start_time, run.end_time, run.state_type, now),
        "pid": run.pid,
        "hostname": run.hostname,
        "heartbeat_at": _iso(run.heartbeat_at),
        "states": _history(flow_states).get(run.id, []),
        "subflows": [
            {
                "id": s.id, "name": s.name, "flow_name": s.flow_name, "state_type": s.state_type,
                "state_name": s.state_name, "parent_task_run_id": s.parent_task_run_id,
            }
            for s in subflows
        ],
        "task_runs": [
            {
                "id": t.id,
                "task_name": t.task_name,
                "task_key": t.task_key,
                "name": t.name,
                "dynamic_key": t.dynamic_key,
                "parameters": t.parameters,
                "tags": t.tags,
                "state_type": t.state_type,
                "state_name": t.state_name,
                "state_message": t.state_message,
                "start_time": _iso(t.start_time),
                "end_time": _iso(t.end_time),
                "duration_seconds": _duration(t.start_time, t.end_time, t.state_type, now),
                "run_count": t.run_count,
                "retries": max(t.run_count - 1, 0),
                "cache_key": t.cache_key,
                "result_ref": t.result_ref,
                "states": histories.get(t.id, []),
                "upstream": upstream.get(t.id, []),
            }
            for t in tasks
        ],
    }


def _flow_and_subflow_ids(conn: Connection, run_id: str) -> list[str]:
    ids, frontier = [run_id], [run_id]
    while frontier:  # one query per nesting level
        frontier = list(conn.scalars(select(_F.c.id).where(_F.c.parent_flow_run_id.in_(frontier))))
        frontier = [i for i in frontier if i not in ids]
        ids.extend(frontier)
    return ids


def get_logs(db: Database, id_or_prefix: str) -> list[dict[str, Any]]:
    """Log lines of a flow run, its task runs and its subflow runs, oldest first.

    Each row: ``{timestamp, level (name), logger, flow_run_id, task_run_id, task_name,
    task_run_name, message}``; the task fields are None for a flow run's own lines.

    Raises:
        LookupError: No flow run, or more than one, matches ``id_or_prefix``.
        DatabaseError: The database cannot be read.
    """
    run_id = resolve_flow_run_id(db, id_or_prefix)
    with _connect(db) as conn:
        flow_ids = _flow_and_subflow_ids(conn, run_id)
        task_ids = select(_T.c.id).where(_T.c.flow_run_id.in_(flow_ids))
        rows = conn.execute(
            select(_L, _T.c.task_name, _T.c.name.label("task_run_name"))
            .outerjoin(_T, _T.c.id == _L.c.task_run_id)
            .where(_L.c.flow_run_id.in_(flow_ids) | _L.c.task_run_id.in_(task_ids))
            .order_by(_L.c.timestamp, _L.c.id)
        ).all()
    return [
        {
            "timestamp": _iso(r.timestamp),
            "level": logging.getLevelName(r.level),
            "logger": r.logger,
            "flow_run_id": r.flow_run_id,
            "task_run_id": r.task_run_id,
            "task_name": r.task_name,
            "task_run_name": r.task_run_name,
            "message": r.message,
        }
        for r in rows
    ]


def get_task_runs_without_flow(db: Database, limit: int = 20) -> list[dict[str, Any]]:
    """The newest task runs called outside any flow.

    Raises:
        DatabaseError: The database cannot be read.
    """
    now = utcnow()
    with _connect(db) as conn:
        rows = conn.execute(
            select(_T)
            .where(_T.c.flow_run_id.is_(None))
            .order_by(_T.c.created.desc(), _T.c.id.desc())
            .limit(limit)
        ).all()
    return [
        {
            "id": t.id,
            "task_name": t.task_name,
            "name": t.name,
            "state_type": t.state_type,
            "state_name": t.state_name,
            "state_message": t.state_message,
            "start_time": _iso(t.start_time),
            "end_time": _iso(t.end_time),
            "duration_seconds": _duration(t.start_time, t.end_time, t.state_type, now),
            "run_count": t.run_count,
            "retries": max(t.run_count - 1, 0),
            "cache_key": t.cache_key,
            "result_ref": t.result_ref,
        }
        for t in rows
    ]
