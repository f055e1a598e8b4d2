"""The read side of the run history, for the CLI and the server.

Every function takes a ``Database`` and returns plain dicts and lists that ``json.dumps``
accepts: timestamps are ISO 8601 strings in UTC. Crash detection is the caller's business
(``plait._recovery`` runs it before the CLI reads), so reading never writes.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, exists, func, literal, not_, select
from sqlalchemy.engine import Row
from sqlalchemy.sql import ColumnElement

from plait._runs import utcnow
from plait._store.database import Database
from plait._store.runs import _E, _F, _G, _L, _S, _T, _duration, _iso, _subflow_ids
from plait.states import StateType

__all__ = [
    "list_flow_runs",
    "upcoming_runs",
    "resolve_flow_run_id",
    "get_flow_run",
    "get_logs",
    "task_run_names",
    "get_task_runs_without_flow",
]


# -- flow runs ------------------------------------------------------------------------------
def _parse_state_filter(state: str) -> str:
    value = state.strip().upper()
    if value not in StateType.__members__:
        known = ", ".join(t.title for t in StateType)
        raise ValueError(f"unknown state {state!r}; use one of: {known}")
    return value


def upcoming_runs(now: datetime) -> ColumnElement[bool]:
    """The condition of a Scheduled run expected to start after ``now``."""
    return and_(_F.c.state_type == "SCHEDULED", _F.c.expected_start_time.is_not(None),
                _F.c.expected_start_time > now)


def list_flow_runs(
    db: Database, state: str | None = None, flow_name: str | None = None, limit: int = 20,
    upcoming: bool | None = None, *, top_level: bool | None = None, tags: Sequence[str] | None = None,
    since: datetime | None = None,
) -> list[dict[str, Any]]:
    """The newest flow runs, optionally filtered by state type (any case) and flow name;
    ``upcoming`` True: only Scheduled runs expected to start later, False: all but those;
    ``top_level`` True: only runs that are no subflow run, False: only subflow runs;
    ``tags``: only runs carrying every one of them; ``since``: only runs created at or
    after it (a naive datetime is UTC).

    Raises:
        ValueError: ``state`` is not a state type.
        DatabaseError: The database cannot be read.
    """
    state_type = _parse_state_filter(state) if state else None
    query = (
        select(  # not the parameters: a listing never shows them, and they can be large
            _F.c.id, _F.c.flow_name, _F.c.name, _F.c.state_type, _F.c.state_name, _F.c.state_message,
            _F.c.start_time, _F.c.end_time, _F.c.parent_flow_run_id, _F.c.tags, _F.c.expected_start_time,
        )
        .order_by(_F.c.created.desc(), _F.c.id.desc())
        .limit(limit)
    )
    if state_type:
        query = query.where(_F.c.state_type == state_type)
    if flow_name:
        query = query.where(_F.c.flow_name == flow_name)
    if top_level is not None:
        query = query.where(_F.c.parent_flow_run_id.is_(None) if top_level else _F.c.parent_flow_run_id.is_not(None))
    for tag in dict.fromkeys(tags or ()):
        query = query.where(exists(select(literal(1)).select_from(_G).where(_G.c.flow_run_id == _F.c.id,
                                                                           _G.c.tag == tag)))
    if since is not None:
        query = query.where(_F.c.created >= (since if since.tzinfo is not None else since.replace(tzinfo=UTC)))
    now = utcnow()
    if upcoming is not None:
        query = query.where(upcoming_runs(now) if upcoming else not_(upcoming_runs(now)))
        if upcoming:  # soonest first
            query = query.order_by(None).order_by(_F.c.expected_start_time, _F.c.id)
    with db.connect() as conn:
        rows = conn.execute(query).all()
        # task runs of the listed runs only: a GROUP BY over all task runs grows with history
        counts: dict[str, int] = {}
        ids = [r.id for r in rows]
        if ids:
            counted = conn.execute(
                select(_T.c.flow_run_id, func.count().label("n")).where(_T.c.flow_run_id.in_(ids))
                .group_by(_T.c.flow_run_id)
            ).all()
            counts = {str(c.flow_run_id): int(c.n) for c in counted}
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
            "task_run_count": counts.get(r.id, 0),
            "parent_flow_run_id": r.parent_flow_run_id,
            "tags": r.tags,
            "expected_start_time": _iso(r.expected_start_time),
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
    with db.connect() as conn:
        if conn.scalar(select(_F.c.id).where(_F.c.id == prefix)) is not None:
            return prefix
        like = _F.c.id.startswith(prefix, autoescape=True)  # "%" and "_" match themselves
        matches: list[str] = list(conn.scalars(select(_F.c.id).where(like).limit(2)))
        if len(matches) > 1:
            count = conn.scalar(select(func.count()).where(like))
    if not matches:
        raise LookupError(f"no flow run matches {prefix!r}; run `plait flow-run ls` to see ids")
    if len(matches) > 1:
        raise LookupError(f"{prefix!r} matches {count} flow runs; give more characters")
    return matches[0]


def _history(rows: Sequence[Row[Any]]) -> dict[str, list[dict[str, Any]]]:
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
    run_id = resolve_flow_run_id(db, id_or_prefix)
    task_ids = select(_T.c.id).where(_T.c.flow_run_id == run_id)
    with db.connect() as conn:
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
        placed = _placement(conn, run)
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
        "expected_start_time": _iso(run.expected_start_time),
        "retry_of": run.retry_of,
        "entrypoint": run.entrypoint,
        **placed,
        "pause_schema": run.pause_schema if run.state_type == "PAUSED" else None,
        "pause_deadline": _iso(run.pause_deadline) if run.state_type == "PAUSED" else None,
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
                **_task_summary(t, now),
                "task_key": t.task_key,
                "dynamic_key": t.dynamic_key,
                "parameters": t.parameters,
                "tags": t.tags,
                "states": histories.get(t.id, []),
                "upstream": upstream.get(t.id, []),
            }
            for t in tasks
        ],
    }


def _placement(conn: Any, run: Row[Any]) -> dict[str, Any]:
    """Where a deployment's run ran: its deployment, work pool (and its infrastructure type),
    queue and worker, by name (all None for a run started by hand)."""
    from plait._store.models import DEPLOYMENTS, WORK_POOLS, WORKERS

    deployments, workers, pools = DEPLOYMENTS, WORKERS, WORK_POOLS
    deployment = worker = pool_type = None
    if run.deployment_id:
        deployment = conn.execute(select(deployments.c.flow_name, deployments.c.name)
                                  .where(deployments.c.id == run.deployment_id)).first()
    if run.worker_id:
        worker = conn.scalar(select(workers.c.name).where(workers.c.id == run.worker_id))
    if run.work_pool_name:
        pool_type = conn.scalar(select(pools.c.type).where(pools.c.name == run.work_pool_name))
    return {
        "deployment_id": run.deployment_id,
        "deployment_name": f"{deployment.flow_name}/{deployment.name}" if deployment is not None else None,
        "work_pool_name": run.work_pool_name,
        "work_pool_type": pool_type,
        "work_queue_name": run.work_queue_name,
        "worker_id": run.worker_id,
        "worker_name": worker,
    }


def get_logs(db: Database, id_or_prefix: str, *, min_level: int | None = None) -> list[dict[str, Any]]:
    """Log lines of a flow run, its task runs and its subflow runs, oldest first
    (``min_level``: only lines at that level number or above).

    Each row: ``{timestamp, level (name), logger, flow_run_id, task_run_id, task_name,
    task_run_name, message}``; the task fields are None for a flow run's own lines.

    Raises:
        LookupError: No flow run, or more than one, matches ``id_or_prefix``.
        DatabaseError: The database cannot be read.
    """
    run_id = resolve_flow_run_id(db, id_or_prefix)
    with db.connect() as conn:
        flow_ids = _subflow_ids(conn, run_id)
        task_ids = select(_T.c.id).where(_T.c.flow_run_id.in_(flow_ids))
        query = (
            select(_L, _T.c.task_name, _T.c.name.label("task_run_name"))
            .outerjoin(_T, _T.c.id == _L.c.task_run_id)
            .where(_L.c.flow_run_id.in_(flow_ids) | _L.c.task_run_id.in_(task_ids))
            .order_by(_L.c.timestamp, _L.c.id)
        )
        if min_level is not None:
            query = query.where(_L.c.level >= min_level)
        rows = conn.execute(query).all()
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
    with db.connect() as conn:
        rows = conn.execute(
            select(_T)
            .where(_T.c.flow_run_id.is_(None))
            .order_by(_T.c.created.desc(), _T.c.id.desc())
            .limit(limit)
        ).all()
    return [_task_summary(t, now) for t in rows]


def _task_summary(t: Row[Any], now: datetime) -> dict[str, Any]:
    """The fields of a task run every listing shows."""
    return {
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


def task_run_names(db: Database, run_id: str) -> dict[str, str]:
    """Task run id -> name ("extract-0") for a flow run and its subflow runs.

    Raises:
        DatabaseError: The database cannot be read.
    """
    with db.connect() as conn:
        ids = _subflow_ids(conn, run_id)
        rows = conn.execute(select(_T.c.id, _T.c.name).where(_T.c.flow_run_id.in_(ids))).all()
    return {r.id: r.name for r in rows}
