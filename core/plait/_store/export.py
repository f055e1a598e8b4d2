"""The run history as batches for copying elsewhere (a warehouse), read incrementally.

The cursor is the id of the last state row a batch holds. Every change of a flow or task
run's state appends a state row, and state ids only grow, so "what changed since cursor X"
is the states with a greater id and the runs they belong to, read as they are now.

On SQLite writes are serialized, so ids appear in order. On PostgreSQL two writers'
transactions may commit out of id order, so a state can appear below a cursor already
handed out: a copier re-reads a window of ids below its cursor (appending states by id
makes that harmless) and catches it, and with it the run's row as it is now.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import select

from plait._store._paging import text_columns, text_value
from plait._store.database import Database
from plait._store.runs import _F, _S, _T

__all__ = ["FLOW_RUN_COLUMNS", "STATE_COLUMNS", "TASK_RUN_COLUMNS", "MAX_BATCH", "MAX_CURSOR", "export_batch"]

MAX_BATCH = 10_000
MAX_CURSOR = 2**63 - 1  # a state id is a BIGINT
#: The columns of each exported row, in order (parameters are left out: they can be large,
#: and a warehouse is no place for them).
FLOW_RUN_COLUMNS = (
    "id", "flow_name", "name", "state_type", "state_name", "state_message", "parent_flow_run_id",
    "parent_task_run_id", "deployment_id", "work_pool_name", "run_count", "tags", "created", "start_time",
    "end_time", "expected_start_time",
)
TASK_RUN_COLUMNS = (
    "id", "flow_run_id", "task_name", "task_key", "name", "state_type", "state_name", "state_message",
    "run_count", "tags", "created", "start_time", "end_time",
)
STATE_COLUMNS = ("id", "run_id", "run_kind", "type", "name", "message", "timestamp")
_ID_CHUNK = 500  # ids per IN (...): far below every backend's limit on bound parameters


def _rows(conn: Any, table: Any, columns: Sequence[str], ids: Collection[str]) -> list[dict[str, Any]]:
    """The rows of ``table`` whose id is in ``ids``, messages cut as listings cut them."""
    plain = [table.c[c] for c in columns if c != "state_message"]
    out: list[dict[str, Any]] = []
    ordered = sorted(ids)
    for start in range(0, len(ordered), _ID_CHUNK):
        chunk = ordered[start:start + _ID_CHUNK]
        query = select(*plain, *text_columns(table.c.state_message, "message")).where(table.c.id.in_(chunk))
        for row in conn.execute(query).mappings():
            item = {c: row[c] for c in columns if c != "state_message"}
            item["state_message"] = text_value(row["message_len"], row["message_head"])
            out.append({c: item[c] for c in columns})
    out.sort(key=lambda r: (r["created"], r["id"]))
    return out


def export_batch(db: Database, since: int = 0, limit: int = 1000, *,
                 exclude_flows: Collection[str] = ()) -> dict[str, Any]:
    """The states with an id above ``since`` (at most ``limit``, oldest first) and the flow
    and task runs they belong to, as they are now.

    Args:
        since: The ``cursor`` of the previous batch (0: from the start).
        limit: At most this many state rows (1 to ``MAX_BATCH``).
        exclude_flows: Leave out runs of these flows (and their task runs and states).

    Returns:
        ``{"flow_runs", "task_runs", "states", "cursor", "more"}``: rows as dicts (times as
        aware UTC datetimes, tags as lists), the cursor for the next batch, and whether
        ``limit`` states were read (there may be more).

    Raises:
        ValueError: ``since`` or ``limit`` is out of range.
        DatabaseError: The database cannot be read.
    """
    if isinstance(since, bool) or not isinstance(since, int) or not 0 <= since <= MAX_CURSOR:
        raise ValueError(f"since is a cursor a batch returned (a whole number >= 0), not {since!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_BATCH:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_BATCH}, not {limit!r}")
    excluded = set(exclude_flows)
    with db.connect() as conn:
        state_query = (
            select(*[_S.c[c] for c in STATE_COLUMNS if c != "message"], *text_columns(_S.c.message, "message"))
            .where(_S.c.id > since).order_by(_S.c.id).limit(limit)
        )
        raw = [dict(r) for r in conn.execute(state_query).mappings()]
        cursor = int(raw[-1]["id"]) if raw else since
        flow_ids = {s["run_id"] for s in raw if s["run_kind"] == "flow"}
        task_ids = {s["run_id"] for s in raw if s["run_kind"] != "flow"}
        task_runs = _rows(conn, _T, TASK_RUN_COLUMNS, task_ids)
        flow_ids |= {t["flow_run_id"] for t in task_runs if t["flow_run_id"]}  # a task run's flow run comes along
        flow_runs = _rows(conn, _F, FLOW_RUN_COLUMNS, flow_ids)
    dropped = {f["id"] for f in flow_runs if f["flow_name"] in excluded}
    flow_runs = [f for f in flow_runs if f["id"] not in dropped]
    task_runs = [t for t in task_runs if t["flow_run_id"] not in dropped]
    kept_runs = {f["id"] for f in flow_runs} | {t["id"] for t in task_runs}
    states = []
    for s in raw:
        if s["run_id"] not in kept_runs:
            continue  # an excluded run's, or a run deleted since
        message = text_value(s.pop("message_len"), s.pop("message_head"))
        states.append({c: (message if c == "message" else s[c]) for c in STATE_COLUMNS})
    for run in (*flow_runs, *task_runs):
        run["tags"] = list(run["tags"] or [])
    return {"flow_runs": flow_runs, "task_runs": task_runs, "states": states, "cursor": cursor,
            "more": len(raw) == limit}
