"""The graph of one flow run: its task runs as nodes, their dependencies as edges, its
subflow runs as groups — for the dashboard's graph and any client that draws one.

One query per table (task runs, edges, subflow runs), never one per node: a run of 10,000
task runs answers in a few tens of milliseconds on SQLite.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import String, func, select, type_coerce

from plait._runs import utcnow
from plait._store.database import Database
from plait._store.history import _placement
from plait._store.pages import _check_id
from plait._store.runs import _E, _F, _NOT_FINAL, _T, _duration, _iso

__all__ = ["flow_run_graph"]


# SQLite keeps UTC times as text ("YYYY-MM-DD HH:MM:SS.ffffff"): read as text, 20,000 of them
# become ISO strings and durations in ~20 ms, where aware datetimes take ~150 ms.
def _times(db: Database) -> list[Any]:
    if db.dialect == "sqlite":
        return [type_coerce(_T.c.start_time, String), type_coerce(_T.c.end_time, String)]
    return [_T.c.start_time, _T.c.end_time]


def _sqlite_iso(text: str | None) -> str | None:
    return None if text is None else text.replace(" ", "T", 1) + "+00:00"


def _sqlite_seconds(start: str | None, end: str | None, state_type: str, now: datetime) -> float | None:
    """``runs._duration`` over SQLite's text: naive UTC on both sides, no time zone work."""
    if start is None:
        return None
    if end is None:
        if state_type not in _NOT_FINAL:
            return None
        return round((now - datetime.fromisoformat(start)).total_seconds(), 3)
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 3)


def flow_run_graph(db: Database, flow_run_id: str) -> dict[str, Any]:
    """The graph of a flow run.

    Returns ``{flow_run, nodes, edges, groups}``:

    - ``flow_run``: the run's own fields, whole: ``{id, name, flow_name, state_type,
      state_name, state_message, start_time, end_time, duration_seconds, parameters, tags,
      run_count, created, expected_start_time, hostname, pid, parent_flow_run_id,
      parent_task_run_id, retry_of, deployment_id, deployment_name, work_pool_name,
      work_pool_type, work_queue_name, worker_id, worker_name, pause_schema, pause_deadline,
      task_run_count}`` (the pause fields only while it is Paused).
    - ``nodes``: its task runs in the order they were created, each ``{id, name, task_name,
      task_key, state_type, state_name, state_message, run_count, result_ref, start_time,
      end_time, duration_seconds, subflow_run_id}`` (``subflow_run_id``: the child flow run this task
      run started, else None).
    - ``edges``: ``{upstream, downstream, kind}`` (kind ``data`` or ``wait_for``), between
      nodes of this run only, each pair and kind once.
    - ``groups``: its direct subflow runs ``{id, name, flow_name, state_type, state_name,
      parent_task_run_id, start_time, end_time, task_run_count}``.

    Raises:
        LookupError: No flow run has exactly this id.
        DatabaseError: The database cannot be read.
    """
    flow_run_id = _check_id(flow_run_id, "flow run")
    with db.connect() as conn:
        run = conn.execute(select(_F).where(_F.c.id == flow_run_id)).first()
        if run is None:
            raise LookupError(f"no flow run {flow_run_id!r}")
        placed = _placement(conn, run)
        tasks = conn.execute(
            select(_T.c.id, _T.c.name, _T.c.task_name, _T.c.task_key, _T.c.state_type, _T.c.state_name,
                   _T.c.state_message, _T.c.run_count, _T.c.result_ref, *_times(db))
            .where(_T.c.flow_run_id == flow_run_id).order_by(_T.c.created, _T.c.id)
        ).all()
        # edges are indexed by their downstream end: every edge into this run's task runs
        edges = conn.execute(
            select(_E.c.upstream_id, _E.c.downstream_id, _E.c.kind)
            .join(_T, _T.c.id == _E.c.downstream_id).where(_T.c.flow_run_id == flow_run_id).order_by(_E.c.id)
        ).all()
        subflows = conn.execute(
            select(_F.c.id, _F.c.name, _F.c.flow_name, _F.c.state_type, _F.c.state_name, _F.c.parent_task_run_id,
                   _F.c.start_time, _F.c.end_time)
            .where(_F.c.parent_flow_run_id == flow_run_id).order_by(_F.c.created, _F.c.id)
        ).all()
        child_ids = [s.id for s in subflows]
        counts: dict[str, int] = {}
        if child_ids:
            counts = {str(r.flow_run_id): int(r.n) for r in conn.execute(
                select(_T.c.flow_run_id, func.count().label("n")).where(_T.c.flow_run_id.in_(child_ids))
                .group_by(_T.c.flow_run_id)
            ).all()}
    now = utcnow()
    sqlite = db.dialect == "sqlite"
    iso: Callable[[Any], str | None] = _sqlite_iso if sqlite else _iso
    seconds: Callable[[Any, Any, str, datetime], float | None] = _sqlite_seconds if sqlite else _duration
    now_here = now.replace(tzinfo=None) if sqlite else now
    started_by = {s.parent_task_run_id: s.id for s in subflows if s.parent_task_run_id}
    nodes: list[dict[str, Any]] = []
    known: set[Any] = set()
    row: Any
    for row in tasks:
        tid, name, task_name, task_key, state_type, state_name, message, run_count, result_ref, start, end = row
        # plain tuples and one dict per row: this loop is most of the answer's time at 10k nodes
        known.add(tid)
        nodes.append({
            "id": tid, "name": name, "task_name": task_name, "task_key": task_key, "state_type": state_type,
            "state_name": state_name, "state_message": message, "run_count": run_count, "result_ref": result_ref,
            "start_time": iso(start), "end_time": iso(end),
            "duration_seconds": seconds(start, end, state_type, now_here),
            "subflow_run_id": started_by.get(tid),
        })
    seen: set[tuple[Any, Any, Any]] = set()
    edge_items = []
    for edge in edges:
        upstream, downstream, kind = edge
        key = (upstream, downstream, kind)
        if upstream in known and key not in seen:  # an upstream of another run is no node here
            seen.add(key)
            edge_items.append({"upstream": upstream, "downstream": downstream, "kind": kind})
    return {
        "flow_run": {
            "id": run.id, "name": run.name, "flow_name": run.flow_name, "state_type": run.state_type,
            "state_name": run.state_name, "start_time": _iso(run.start_time), "end_time": _iso(run.end_time),
            "duration_seconds": _duration(run.start_time, run.end_time, run.state_type, now),
            "parent_flow_run_id": run.parent_flow_run_id, "parent_task_run_id": run.parent_task_run_id,
            "state_message": run.state_message, "parameters": run.parameters, "tags": run.tags,
            "run_count": run.run_count, "created": _iso(run.created),
            "expected_start_time": _iso(run.expected_start_time), "hostname": run.hostname, "pid": run.pid,
            "retry_of": run.retry_of, **placed,
            "pause_schema": run.pause_schema if run.state_type == "PAUSED" else None,
            "pause_deadline": _iso(run.pause_deadline) if run.state_type == "PAUSED" else None,
            "task_run_count": len(nodes),
        },
        "nodes": nodes,
        "edges": edge_items,
        "groups": [
            {
                "id": s.id, "name": s.name, "flow_name": s.flow_name, "state_type": s.state_type,
                "state_name": s.state_name, "parent_task_run_id": s.parent_task_run_id,
                "start_time": _iso(s.start_time), "end_time": _iso(s.end_time), "task_run_count": counts.get(s.id, 0),
            }
            for s in subflows
        ],
    }
