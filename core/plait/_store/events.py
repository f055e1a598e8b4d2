"""The events repository: what happened in the store, in commit order.

Every state change of a flow or task run, every block saved or deleted, every batch of log
lines, every API key created or revoked, and every change of a deployment, work pool or
concurrency limit adds one row to ``events``: ``seq`` (the cursor, growing), ``id`` (a
uuid), ``occurred``, ``kind`` (``KINDS``: ``flow-run.state-changed``, ``block.saved``,
``work-pool.paused``, ``concurrency-limit.reset``...), ``resource`` (``flow-run/<id>``,
``task-run/<id>``, ``block/<slug>/<name>``, ``api-key/<name>``,
``deployment/<flow>/<name>``, ``work-pool/<name>``, ``concurrency-limit/<name>``) and a
small JSON ``payload`` (ids, names, state type and name — never a parameter, message or
secret).

Events are written in the transaction of the change they describe, as its last statement.
A reader that polls ``list_events(after_seq=N)`` must never skip an event that commits
after a later one, so ``seq`` order has to be commit order: on PostgreSQL (where sequence
values are handed out before commit) an insert takes a transaction-scoped advisory lock
first, held the few moments until its commit; SQLite has one writer at a time anyway.

A ``logs.written`` payload is ``{flow_run_id, task_run_id (when the lines have no flow
run), count, max_level, after_log_id}``: the new lines are the run's lines with an id
greater than ``after_log_id`` (``plait._store.pages.page_logs(after_id=...)``).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, func, or_, select
from sqlalchemy.engine import Connection

from plait._batch import BatchRows
from plait._runs import utcnow
from plait._store._paging import check_limit
from plait._store.database import Database, _json_dumps
from plait._store.models import EVENTS, _sqlite_bind

__all__ = [
    "KINDS",
    "EventParams",
    "event_rows_for_batch",
    "batch_event_params",
    "insert_event_params",
    "new_event",
    "insert_events",
    "record_event",
    "list_events",
    "latest_seq",
]

_EV: Table = EVENTS

KINDS = (
    "flow-run.state-changed",
    "task-run.state-changed",
    "logs.written",
    "block.saved",
    "block.deleted",
    "api-key.created",
    "api-key.revoked",
    "flow-run.scheduled",
    "deployment.created", "deployment.updated", "deployment.paused", "deployment.resumed", "deployment.deleted",
    "work-pool.created", "work-pool.updated", "work-pool.paused", "work-pool.resumed", "work-pool.deleted",
    "concurrency-limit.created", "concurrency-limit.updated", "concurrency-limit.deleted", "concurrency-limit.reset",
    "automation.created", "automation.updated", "automation.enabled", "automation.disabled", "automation.deleted",
    "automation.triggered", "automation.action.executed", "automation.action.failed", "automation.loop-detected",
    "webhook.created", "webhook.updated", "webhook.deleted",
    "variable.created", "variable.updated", "variable.deleted",
)
# Any fixed 64-bit key; plait's migration lock is "plait", this one "plaitev".
_PG_EVENTS_LOCK = 0x706C6169746576
_KIND = re.compile(r"^[a-z][a-z0-9-]*(\.[a-z0-9-]+)+$")
_KIND_PATTERN = re.compile(r"^[a-z][a-z0-9-]*(\.[a-z0-9-]+)*\.\*$")  # "block.*"
_SQLITE_INSERT = "INSERT INTO events (id, occurred, kind, resource, payload) VALUES (?, ?, ?, ?, ?)"
_PG_INSERT = "INSERT INTO events (id, occurred, kind, resource, payload) VALUES (%s, %s, %s, %s, CAST(%s AS JSON))"
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}
_quote = json.encoder.encode_basestring_ascii  # C: a str as a JSON string literal

# One event ready for the database: (id, occurred, kind, resource, payload as JSON text);
# occurred is a datetime, or on SQLite possibly already the text the column stores.
EventParams = tuple[str, Any, str, str, str]


def _uuid7s(count: int) -> list[str]:
    """``count`` version-7 uuids as text (milliseconds since the epoch, then random bits).

    Time-ordered ids land at the right edge of the ``id`` index instead of all over it, and
    one urandom call serves them all: ``str(uuid.uuid4())`` per event would be the largest
    cost of a batch's events.
    """
    stamp = f"{time.time_ns() // 1_000_000:012x}"
    head = f"{stamp[:8]}-{stamp[8:12]}-7"
    raw = os.urandom(10 * count).hex()
    out = []
    for i in range(0, 20 * count, 20):
        h = raw[i:i + 20]
        out.append(f"{head}{h[:3]}-{_VARIANT[h[3]]}{h[4:7]}-{h[7:19]}")
    return out


def new_event(kind: str, resource: str, payload: dict[str, Any], occurred: datetime | None = None) -> dict[str, Any]:
    """One event row (not stored): ``{id, occurred, kind, resource, payload}``.

    Raises:
        ValueError: ``kind`` is not like ``noun.verb-ed`` or ``resource`` is empty.
    """
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise ValueError(f"event kind {kind!r} is not like 'flow-run.state-changed' (lowercase, dotted)")
    if not isinstance(resource, str) or not resource:
        raise ValueError("an event needs a resource such as 'flow-run/<id>'")
    return {"id": _uuid7s(1)[0], "occurred": occurred or utcnow(), "kind": kind, "resource": resource,
            "payload": payload}


def _json_or_null(value: str | None) -> str:
    return "null" if value is None else _quote(value)


def batch_event_params(
    rows: BatchRows,
    *,
    states: Sequence[dict[str, Any]] | None = None,
    logs_after: int | None = None,
    stamps: Sequence[Any] | None = None,
) -> list[EventParams]:
    """``event_rows_for_batch`` ready for ``insert_event_params``: the recorder's write path.

    Payloads are put together as JSON text from pieces shared by a run's events (a task
    run's three states differ only in their end), which costs a fraction of encoding a
    dict per event. ``stamps``: the states' timestamps already in SQLite's text form (the
    states' own insert made them), used as the events' ``occurred``.
    """
    states = rows.states if states is None else states
    if not states and not rows.logs:
        return []
    params: list[EventParams] = []
    if states:
        names = {r["id"]: r.get("task_name") for r in rows.new_tasks}
        names.update((r["id"], r.get("task_name")) for r in rows.old_tasks)
        names.update((r["id"], r.get("flow_name")) for r in rows.new_flows)
        names.update((r["id"], r.get("flow_name")) for r in rows.old_flows)
        heads: dict[str, tuple[str, str, str]] = {}  # run id -> (kind, resource, payload up to the state)
        tails: dict[str, dict[str, str]] = {}  # type -> name -> the payload's end
        times = stamps if stamps is not None else [s["timestamp"] for s in states]
        for s, event_id, occurred in zip(states, _uuid7s(len(states)), times, strict=True):
            run_id = s["run_id"]
            head = heads.get(run_id)
            if head is None:
                quoted = _quote(run_id)
                if s["run_kind"] == "flow":
                    head = ("flow-run.state-changed", "flow-run/" + run_id,
                            f'{{"flow_run_id": {quoted}, "flow_name": {_json_or_null(names.get(run_id))}, ')
                else:
                    head = ("task-run.state-changed", "task-run/" + run_id,
                            f'{{"task_run_id": {quoted}, "flow_run_id": {_json_or_null(s.get("flow_run_id"))}, '
                            f'"task_name": {_json_or_null(names.get(run_id))}, ')
                heads[run_id] = head
            by_name = tails.get(s["type"])
            if by_name is None:
                by_name = tails[s["type"]] = {}
            tail = by_name.get(s["name"])
            if tail is None:
                tail = by_name[s["name"]] = (
                    f'"state_type": {_quote(s["type"])}, "state_name": {_json_or_null(s["name"])}}}'
                )
            params.append((event_id, occurred, head[0], head[1], head[2] + tail))
    if rows.logs:
        params.extend(_log_events(rows.logs, logs_after))
    return params


def _log_events(logs: list[dict[str, Any]], logs_after: int | None) -> list[EventParams]:
    groups: dict[tuple[str, str | None], list[Any]] = {}  # resource key -> [count, max level, last time]
    for line in logs:
        flow_run_id, task_run_id = line.get("flow_run_id"), line.get("task_run_id")
        key = ("flow-run", flow_run_id) if flow_run_id else ("task-run", task_run_id)
        group = groups.get(key)
        if group is None:
            groups[key] = [1, line["level"], line["timestamp"]]
        else:
            group[0] += 1
            group[1] = max(group[1], line["level"])
            group[2] = max(group[2], line["timestamp"])
    params = []
    for ((noun, owner), (count, level, last)), event_id in zip(groups.items(), _uuid7s(len(groups)), strict=True):
        payload: dict[str, Any] = {"count": count, "max_level": level, "after_log_id": logs_after}
        if noun == "flow-run":
            payload["flow_run_id"] = owner
        else:
            payload.update(flow_run_id=None, task_run_id=owner)
        resource = f"{noun}/{owner}" if owner else "logs"
        params.append((event_id, last, "logs.written", resource, _json_dumps(payload)))
    return params


def event_rows_for_batch(
    rows: BatchRows, *, states: Sequence[dict[str, Any]] | None = None, logs_after: int | None = None
) -> list[dict[str, Any]]:
    """The events of one recorder batch: one per state row, one ``logs.written`` per flow run
    (or, for lines outside any flow run, per task run) with lines in the batch.

    Args:
        rows: The batch.
        states: The state rows actually stored, when not all of ``rows.states`` were.
        logs_after: The greatest log id before this batch's lines were stored.
    """
    return [
        {"id": i, "occurred": occurred, "kind": kind, "resource": resource, "payload": json.loads(payload)}
        for i, occurred, kind, resource, payload in batch_event_params(rows, states=states, logs_after=logs_after)
    ]


# -- writing ---------------------------------------------------------------------------------------

def _lock_for_events(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_EVENTS_LOCK})")


def insert_events(target: Connection | Database, events: Sequence[dict[str, Any]]) -> None:
    """Store event rows (from ``new_event`` or ``event_rows_for_batch``).

    Given a connection, the events join its transaction, of which this must be the last
    write (on PostgreSQL it takes the events lock until that transaction ends; see the
    module docstring). Given a ``Database``, they are written in a transaction of their own.

    Raises:
        SQLAlchemyError: (with a connection) The insert failed.
        DatabaseError: (with a ``Database``) The database cannot be written.
    """
    if not events:
        return
    params = [(e["id"], e["occurred"], e["kind"], e["resource"], _json_dumps(e["payload"])) for e in events]
    if isinstance(target, Database):
        with target.connect("write events to", write=True) as conn:
            insert_event_params(conn, params)
        return
    insert_event_params(target, params)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def insert_event_params(conn: Connection, params: Sequence[EventParams]) -> None:
    """Store events from ``batch_event_params`` in ``conn``'s transaction, as its last
    write (see ``insert_events``).

    Raises:
        SQLAlchemyError: The insert failed.
    """
    if not params:
        return
    _lock_for_events(conn)
    style = conn.dialect.paramstyle
    if conn.dialect.name == "sqlite" and style == "qmark":
        # plain DB-API executemany: a batch of 10,000 tasks brings 30,000 events
        conn.exec_driver_sql(_SQLITE_INSERT, [
            (i, t if t.__class__ is str else _sqlite_bind(t), k, r, p) for i, t, k, r, p in params
        ])
    elif conn.dialect.name == "postgresql" and style in ("format", "pyformat"):
        conn.exec_driver_sql(_PG_INSERT, [(i, _aware(t), k, r, p) for i, t, k, r, p in params])
    else:  # pragma: no cover - plait supports SQLite and PostgreSQL through their usual drivers
        conn.execute(_EV.insert(), [
            {"id": i, "occurred": t, "kind": k, "resource": r, "payload": json.loads(p)} for i, t, k, r, p in params
        ])


def record_event(
    target: Database | Connection, kind: str, resource: str, payload: dict[str, Any],
    *, labels: dict[str, Any] | None = None, occurred: datetime | None = None,
) -> dict[str, Any]:
    """Store one event now and return it as ``list_events`` shows it (with its ``seq``).

    Given a connection, the event joins its transaction (as its last write, as for
    ``insert_events``). ``labels``: the resource's labels beyond its id (custom events).

    Raises:
        ValueError: ``kind`` or ``resource`` is malformed.
        DatabaseError: (with a ``Database``) The database cannot be written.
    """
    event = new_event(kind, resource, payload, occurred)
    if labels:
        event["labels"] = labels
    if isinstance(target, Database):
        with target.connect("write an event to", write=True) as conn:
            seq = _insert_one(conn, event)
    else:
        seq = _insert_one(target, event)
    return _item(seq, event["id"], event["occurred"], kind, resource, payload, labels or None)


def _insert_one(conn: Connection, event: dict[str, Any]) -> int:
    _lock_for_events(conn)
    key = conn.execute(_EV.insert().values(**event)).inserted_primary_key
    return int(key[0]) if key is not None else 0


# -- reading ---------------------------------------------------------------------------------------
def _item(
    seq: int, event_id: str, occurred: datetime, kind: str, resource: str, payload: Any, labels: Any = None
) -> dict[str, Any]:
    item = {"seq": seq, "id": event_id, "occurred": occurred.isoformat(), "kind": kind, "resource": resource,
            "payload": payload}
    if labels:
        item["labels"] = labels
    return item


def _kind_filter(kinds: Sequence[str]) -> Any:
    exact: list[str] = []
    conditions: list[Any] = []
    for kind in kinds:
        if isinstance(kind, str) and _KIND.match(kind):
            exact.append(kind)
        elif isinstance(kind, str) and _KIND_PATTERN.match(kind):
            conditions.append(_EV.c.kind.startswith(kind[:-1], autoescape=True))  # "block.*" -> "block."
        else:
            raise ValueError(
                f"unknown event kind filter {kind!r}: give kinds like 'flow-run.state-changed' or 'block.*'"
            )
    if exact:
        conditions.append(_EV.c.kind.in_(exact) if len(exact) > 1 else _EV.c.kind == exact[0])
    return conditions[0] if len(conditions) == 1 else or_(*conditions)


def resource_prefix(column: Any, prefix: str, dialect: str) -> Any:
    """``column`` starts with ``prefix``, answered from its index.

    PostgreSQL: a LIKE against a pattern-ops index. SQLite: a range, exact under its
    binary collation (its LIKE is case-insensitive and ignores indexes by default).
    """
    if dialect == "sqlite":
        last = ord(prefix[-1])
        after = last + 1 if last + 1 != 0xD800 else 0xE000  # skip the surrogate block
        if after <= 0x10FFFF:
            return (column >= prefix) & (column < prefix[:-1] + chr(after))
    if dialect == "postgresql":
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return column.like(escaped + "%")  # backslash is the default escape; an explicit one hides the prefix
    return func.substr(column, 1, len(prefix)) == prefix  # exact anywhere, if slow


def list_events(
    db: Database,
    *,
    kinds: Sequence[str] | None = None,
    resource: str | None = None,
    after_seq: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_seq: int | None = None,
    newest_first: bool = False,
    limit: int = 100,
) -> dict[str, Any]:
    """Stored events, oldest first (or newest first): ``{"items": [...], "next_cursor": str | None}``.

    Each item: ``{seq, id, occurred (ISO 8601), kind, resource, payload}``. ``next_cursor``
    is the ``seq`` of the last item (as text) when more events match: pass it as
    ``after_seq`` (oldest first) or ``before_seq`` (newest first) for the next page.

    Args:
        db: The database.
        kinds: Only these kinds (none or empty: all); ``"block.*"`` matches every kind
            starting ``block.``.
        resource: Only resources starting with this (``flow-run/<id>``, ``block/``).
        after_seq: Only events after this one.
        since: Only events that occurred at or after this time.
        until: Only events that occurred before this time.
        before_seq: Only events before this one.
        newest_first: List the newest events first.
        limit: At most this many items (1 to 1,000).

    Raises:
        ValueError: A filter or the limit is malformed.
        DatabaseError: The database cannot be read.
    """
    limit = check_limit(limit)
    query = select(_EV).order_by(_EV.c.seq.desc() if newest_first else _EV.c.seq).limit(limit + 1)
    if kinds:
        query = query.where(_kind_filter(list(kinds)))
    if resource:
        query = query.where(resource_prefix(_EV.c.resource, resource, db.dialect))
    for name, value in (("after_seq", after_seq), ("before_seq", before_seq)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{name} must be an event's seq (a whole number), not {value!r}")
    if after_seq is not None:
        query = query.where(_EV.c.seq > after_seq)
    if before_seq is not None:
        query = query.where(_EV.c.seq < before_seq)
    if since is not None:
        query = query.where(_EV.c.occurred >= since)
    if until is not None:
        query = query.where(_EV.c.occurred < until)
    with db.connect("read events from") as conn:
        rows = conn.execute(query).all()
    items = [_item(r.seq, r.id, r.occurred, r.kind, r.resource, r.payload, r.labels) for r in rows[:limit]]
    return {"items": items, "next_cursor": str(items[-1]["seq"]) if len(rows) > limit else None}


def latest_seq(db: Database) -> int:
    """The ``seq`` of the newest event, 0 when there is none (a stream starts after it).

    Raises:
        DatabaseError: The database cannot be read.
    """
    with db.connect("read events from") as conn:
        value = conn.scalar(select(func.max(_EV.c.seq)))
    return int(value or 0)
