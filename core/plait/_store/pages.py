"""Keyset pages of the run history, for the server's list routes.

Every ``page_*`` function returns ``{"items": [...], "next_cursor": str | None}``: pass
``next_cursor`` back as ``cursor`` for the following page; None means this was the last.
A page reads one page of an index however long the history is (no OFFSET, no COUNT over a
table), and list items never carry a large value whole: parameters over 2,000 bytes of JSON
and messages over 2,000 characters are cut in SQL (see ``plait._store._paging``). The
``get_*`` functions return one record with every value whole.

Orders: flow runs newest first; a flow run's task runs in the order they were created
(every task run, without a flow run filter: newest first); log lines and results in the
order they were stored, oldest first. Timestamps are ISO 8601 strings in UTC.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, Table, exists, func, literal, not_, select
from sqlalchemy.engine import Connection, Row

from plait._runs import utcnow
from plait._store import history
from plait._store._paging import (
    check_limit,
    decode_cursor,
    encode_cursor,
    json_columns,
    json_value,
    text_columns,
    text_value,
)
from plait._store.database import Database
from plait._store.history import upcoming_runs
from plait._store.models import DEPLOYMENTS
from plait._store.runs import _E, _F, _G, _L, _R, _S, _T, _duration, _iso

__all__ = [
    "page_flow_runs",
    "get_flow_run_full",
    "page_task_runs",
    "get_task_run",
    "page_logs",
    "get_log",
    "page_results",
    "deployment_ids",
    "deployment_names",
]

_D: Table = DEPLOYMENTS
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_ID_MAX = 64
_TAG_COUNT_CAP = 5000


def _micros(value: datetime) -> int:
    # exact integer arithmetic: a cursor one microsecond off would skip or repeat a row
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MICRO


def _moment(micros: int) -> datetime:
    try:
        return _EPOCH + micros * _MICRO
    except OverflowError:
        raise ValueError("bad cursor: its time is out of range; start from the first page") from None


def _check_id(value: Any, what: str) -> str:
    """``value`` if it could be an id; else the LookupError a missing one gets."""
    if not isinstance(value, str) or not value or len(value) > _ID_MAX or not value.isprintable():
        raise LookupError(f"no {what} {str(value)[:_ID_MAX]!r}")
    return value


def _strings(values: Sequence[str] | None, what: str) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    items = list(values)
    if not all(isinstance(v, str) and v for v in items):
        raise ValueError(f"{what}: give non-empty strings")
    return items


def _one(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what}: give a non-empty string, not {value!r}")
    return value


def _states(values: Sequence[str] | None) -> list[str]:
    return [history._parse_state_filter(v) for v in _strings(values, "state")]


def _check_time(value: Any, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise ValueError(f"{what}: a datetime, not {type(value).__name__}")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _equal_or_in(column: Any, values: list[str]) -> Any:
    return column == values[0] if len(values) == 1 else column.in_(values)


def _after(created: Any, id_column: Any, key: list[Any], descending: bool) -> Any:
    """Rows after the cursor's ``(created, id)`` in the page order (a form both backends
    answer with a range scan of the (…, created, id) index)."""
    moment, last_id = _moment(key[0]), key[1]
    if descending:
        return (created <= moment) & ((created < moment) | (id_column < last_id))
    return (created >= moment) & ((created > moment) | (id_column > last_id))


def _page(rows: Sequence[Row[Any]], limit: int, cursor_of: Any) -> tuple[Sequence[Row[Any]], str | None]:
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, cursor_of(rows[-1])
    return rows, None


def _rarest_first(conn: Connection, tags: list[str]) -> list[str]:
    """``tags`` (each once) with the one fewest runs carry first: the page walks that tag's
    rows and checks the others per row. Counting stops at ``_TAG_COUNT_CAP`` per tag."""
    tags = list(dict.fromkeys(tags))
    if len(tags) == 1:
        return tags
    sizes = {}
    for tag in tags:
        capped = select(literal(1)).select_from(_G).where(_G.c.tag == tag).limit(_TAG_COUNT_CAP).subquery()
        sizes[tag] = int(conn.scalar(select(func.count()).select_from(capped)) or 0)
    return sorted(tags, key=lambda t: sizes[t])


# -- flow runs -----------------------------------------------------------------------------------
def page_flow_runs(
    db: Database,
    *,
    flow_names: Sequence[str] | None = None,
    states: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    parent_flow_run_id: str | None = None,
    top_level: bool | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    upcoming: bool | None = None,
    deployments: Sequence[str] | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """A page of flow runs, newest first.

    Each item: ``{id, flow_name, name, state_type, state_name, state_message, parameters,
    tags, parent_flow_run_id, parent_task_run_id, run_count, task_run_count, created,
    start_time, end_time, duration_seconds, hostname, pid, expected_start_time, deployment_id,
    deployment_name, work_pool_name, worker_id}`` (``state_message`` and ``parameters`` cut
    when large; ``deployment_name`` is ``"<flow>/<name>"``, null for a run started by hand).

    Args:
        db: The database.
        flow_names: Only runs of these flows.
        states: Only runs in these state types (any case: ``failed``, ``COMPLETED``).
        tags: Only runs carrying every one of these tags.
        parent_flow_run_id: Only subflow runs of this flow run.
        top_level: True: only runs that are no subflow; False: only subflow runs.
        since: Only runs created at or after this time.
        until: Only runs created before this time.
        upcoming: True: only Scheduled runs expected to start later (a scheduler makes
            them ahead); False: every run but those.
        deployments: Only runs of these deployments, each an id or ``"<flow>/<name>"``.
        limit: At most this many items (1 to 1,000).
        cursor: The ``next_cursor`` of the previous page.

    Raises:
        ValueError: A filter, the limit or the cursor is malformed.
        DatabaseError: The database cannot be read.
    """
    limit = check_limit(limit)
    query = select(
        _F.c.id, _F.c.flow_name, _F.c.name, _F.c.state_type, _F.c.state_name,
        *text_columns(_F.c.state_message, "state_message"), *json_columns(_F.c.parameters, "parameters", db.dialect),
        _F.c.tags, _F.c.parent_flow_run_id, _F.c.parent_task_run_id, _F.c.run_count, _F.c.created,
        _F.c.start_time, _F.c.end_time, _F.c.hostname, _F.c.pid, _F.c.expected_start_time,
        _F.c.deployment_id, _F.c.work_pool_name, _F.c.worker_id,
    ).limit(limit + 1)
    # The order (and the keyset) is that of the runs' index, or with tags of the first
    # tag's rows in flow_run_tags: the same (created, id) either way.
    created, run_id = _F.c.created, _F.c.id
    wanted_tags = _strings(tags, "tags")
    if wanted_tags:
        tagged = _G.alias("tagged")
        query = query.select_from(tagged.join(_F, _F.c.id == tagged.c.flow_run_id))
        created, run_id = tagged.c.created, tagged.c.flow_run_id
    query = query.order_by(created.desc(), run_id.desc())
    names = _strings(flow_names, "flow_names")
    if names:
        query = query.where(_equal_or_in(_F.c.flow_name, names))
    state_types = _states(states)
    if state_types:
        query = query.where(_equal_or_in(_F.c.state_type, state_types))
    if parent_flow_run_id is not None:
        query = query.where(_F.c.parent_flow_run_id == _one(parent_flow_run_id, "parent_flow_run_id"))
    if top_level is not None:
        query = query.where(_F.c.parent_flow_run_id.is_(None) if top_level else _F.c.parent_flow_run_id.is_not(None))
    if since is not None:
        query = query.where(created >= _check_time(since, "since"))
    if until is not None:
        query = query.where(created < _check_time(until, "until"))
    if upcoming is not None:
        query = query.where(upcoming_runs(utcnow()) if upcoming else not_(upcoming_runs(utcnow())))
    if cursor is not None:
        query = query.where(_after(created, run_id, decode_cursor(cursor, "flow-runs", (int, str)), True))
    refs = _strings(deployments, "deployments")
    with db.connect() as conn:
        if refs:
            query = query.where(_equal_or_in(_F.c.deployment_id, deployment_ids(conn, refs) or [""]))
        if wanted_tags:
            lead, *others = _rarest_first(conn, wanted_tags)
            query = query.where(tagged.c.tag == lead, *(
                exists(select(literal(1)).select_from(_G).where(_G.c.flow_run_id == tagged.c.flow_run_id,
                                                               _G.c.tag == other))
                for other in others
            ))
        rows, next_cursor = _page(
            conn.execute(query).all(), limit, lambda r: encode_cursor("flow-runs", [_micros(r.created), r.id])
        )
        ids = [r.id for r in rows]
        counts: dict[str, int] = {}
        if ids:  # the page's own task runs only, from the (flow_run_id, created, id) index
            counted = conn.execute(
                select(_T.c.flow_run_id, func.count().label("n")).where(_T.c.flow_run_id.in_(ids))
                .group_by(_T.c.flow_run_id)
            ).all()
            counts = {str(r.flow_run_id): int(r.n) for r in counted}
        labels = deployment_names(conn, {r.deployment_id for r in rows if r.deployment_id})
    now = utcnow()
    items = [
        {
            "id": r.id, "flow_name": r.flow_name, "name": r.name, "state_type": r.state_type,
            "state_name": r.state_name, "state_message": text_value(r.state_message_len, r.state_message_head),
            "parameters": json_value(r.parameters_size, r.parameters_text), "tags": r.tags,
            "parent_flow_run_id": r.parent_flow_run_id, "parent_task_run_id": r.parent_task_run_id,
            "run_count": r.run_count, "task_run_count": counts.get(r.id, 0), "created": _iso(r.created),
            "start_time": _iso(r.start_time), "end_time": _iso(r.end_time),
            "duration_seconds": _duration(r.start_time, r.end_time, r.state_type, now),
            "hostname": r.hostname, "pid": r.pid, "expected_start_time": _iso(r.expected_start_time),
            "deployment_id": r.deployment_id, "deployment_name": labels.get(r.deployment_id or ""),
            "work_pool_name": r.work_pool_name, "worker_id": r.worker_id,
        }
        for r in rows
    ]
    return {"items": items, "next_cursor": next_cursor}


def deployment_ids(conn: Connection, refs: Sequence[str]) -> list[str]:
    """The ids of the deployments ``refs`` names (ids or ``"<flow>/<name>"``; unknown ones
    name nothing)."""
    named = [tuple(ref.rsplit("/", 1)) for ref in refs if "/" in ref]
    ids = [ref for ref in refs if "/" not in ref]
    if named:
        ids += [str(r.id) for r in conn.execute(select(_D.c.id, _D.c.flow_name, _D.c.name).where(
            _D.c.flow_name.in_([flow for flow, _ in named]))) if (r.flow_name, r.name) in set(named)]
    return ids


def deployment_names(conn: Connection, ids: set[str]) -> dict[str, str]:
    """``{id: "<flow>/<name>"}`` of the deployments with these ids (one query)."""
    if not ids:
        return {}
    rows = conn.execute(select(_D.c.id, _D.c.flow_name, _D.c.name).where(_D.c.id.in_(sorted(ids))))
    return {str(r.id): f"{r.flow_name}/{r.name}" for r in rows}


def get_flow_run_full(db: Database, flow_run_id: str) -> dict[str, Any]:
    """One flow run with every value whole: parameters, state history, subflow runs, task
    runs with their state histories and upstream edges (``history.get_flow_run``).

    Raises:
        LookupError: No flow run has exactly this id.
        DatabaseError: The database cannot be read.
    """
    flow_run_id = _check_id(flow_run_id, "flow run")
    with db.connect() as conn:
        found = conn.scalar(select(_F.c.id).where(_F.c.id == flow_run_id))
    if found is None:  # an exact id: the API resolves no prefixes
        raise LookupError(f"no flow run {flow_run_id!r}")
    return history.get_flow_run(db, flow_run_id)


# -- task runs -----------------------------------------------------------------------------------
def page_task_runs(
    db: Database,
    *,
    flow_run_id: str | None = None,
    states: Sequence[str] | None = None,
    task_name: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """A page of task runs: a flow run's in the order they were created, or (without
    ``flow_run_id``) every task run, newest first.

    Each item: ``{id, flow_run_id, task_name, task_key, name, dynamic_key, state_type,
    state_name, state_message, parameters, tags, run_count, retries, cache_key, result_ref,
    created, start_time, end_time, duration_seconds}`` (large values cut).

    Raises:
        ValueError: A filter, the limit or the cursor is malformed.
        DatabaseError: The database cannot be read.
    """
    limit = check_limit(limit)
    descending = flow_run_id is None
    listing = "task-runs" if descending else "flow-run-task-runs"
    query = select(
        _T.c.id, _T.c.flow_run_id, _T.c.task_name, _T.c.task_key, _T.c.name, _T.c.dynamic_key,
        _T.c.state_type, _T.c.state_name, *text_columns(_T.c.state_message, "state_message"),
        *json_columns(_T.c.parameters, "parameters", db.dialect), _T.c.tags, _T.c.run_count, _T.c.cache_key,
        _T.c.result_ref, _T.c.created, _T.c.start_time, _T.c.end_time,
    ).limit(limit + 1)
    if descending:
        query = query.order_by(_T.c.created.desc(), _T.c.id.desc())
    else:
        query = query.order_by(_T.c.created, _T.c.id).where(
            _T.c.flow_run_id == _one(flow_run_id, "flow_run_id")
        )
    state_types = _states(states)
    if state_types:
        query = query.where(_equal_or_in(_T.c.state_type, state_types))
    if task_name is not None:
        query = query.where(_T.c.task_name == _one(task_name, "task_name"))
    if cursor is not None:
        query = query.where(_after(_T.c.created, _T.c.id, decode_cursor(cursor, listing, (int, str)), descending))
    with db.connect() as conn:
        rows, next_cursor = _page(
            conn.execute(query).all(), limit, lambda r: encode_cursor(listing, [_micros(r.created), r.id])
        )
    now = utcnow()
    items = [
        {
            "id": r.id, "flow_run_id": r.flow_run_id, "task_name": r.task_name, "task_key": r.task_key,
            "name": r.name, "dynamic_key": r.dynamic_key, "state_type": r.state_type, "state_name": r.state_name,
            "state_message": text_value(r.state_message_len, r.state_message_head),
            "parameters": json_value(r.parameters_size, r.parameters_text), "tags": r.tags,
            "run_count": r.run_count, "retries": max(r.run_count - 1, 0), "cache_key": r.cache_key,
            "result_ref": r.result_ref, "created": _iso(r.created), "start_time": _iso(r.start_time),
            "end_time": _iso(r.end_time), "duration_seconds": _duration(r.start_time, r.end_time, r.state_type, now),
        }
        for r in rows
    ]
    return {"items": items, "next_cursor": next_cursor}


def get_task_run(db: Database, task_run_id: str) -> dict[str, Any]:
    """One task run with every value whole, its state history, the task runs it depended
    on (``upstream``) and the results it stored.

    Raises:
        LookupError: No task run has this id.
        DatabaseError: The database cannot be read.
    """
    task_run_id = _check_id(task_run_id, "task run")
    up = _T.alias("up")
    with db.connect() as conn:
        run = conn.execute(select(_T).where(_T.c.id == task_run_id)).first()
        if run is None:
            raise LookupError(f"no task run {task_run_id!r}")
        states = conn.execute(
            select(_S.c.type, _S.c.name, _S.c.message, _S.c.timestamp)
            .where(_S.c.run_id == task_run_id, _S.c.run_kind == "task").order_by(_S.c.id)
        ).all()
        edges = conn.execute(
            select(_E.c.upstream_id, _E.c.kind, _E.c.parameter, up.c.task_name)
            .outerjoin(up, up.c.id == _E.c.upstream_id)
            .where(_E.c.downstream_id == task_run_id).order_by(_E.c.id)
        ).all()
        results = conn.execute(select(_R).where(_R.c.task_run_id == task_run_id).order_by(_R.c.id)).all()
    now = utcnow()
    return {
        "id": run.id, "flow_run_id": run.flow_run_id, "task_name": run.task_name, "task_key": run.task_key,
        "name": run.name, "dynamic_key": run.dynamic_key, "state_type": run.state_type,
        "state_name": run.state_name, "state_message": run.state_message, "parameters": run.parameters,
        "tags": run.tags, "run_count": run.run_count, "retries": max(run.run_count - 1, 0),
        "cache_key": run.cache_key, "result_ref": run.result_ref, "created": _iso(run.created),
        "start_time": _iso(run.start_time), "end_time": _iso(run.end_time),
        "duration_seconds": _duration(run.start_time, run.end_time, run.state_type, now),
        "states": [
            {"type": s.type, "name": s.name, "message": s.message, "timestamp": _iso(s.timestamp)} for s in states
        ],
        "upstream": [
            {"id": e.upstream_id, "task_name": e.task_name, "kind": e.kind, "parameter": e.parameter} for e in edges
        ],
        "results": [_result_item(r) for r in results],
    }


# -- logs ----------------------------------------------------------------------------------------
def _level(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().upper()
        if text.isdigit():
            return int(text)
        number = logging.getLevelName(text)
        if isinstance(number, int):
            return number
    raise ValueError(f"unknown log level {value!r}; use DEBUG, INFO, WARNING, ERROR, CRITICAL or a number")


def _log_query(db: Database, *, whole: bool) -> Select[Any]:
    message = [_L.c.message] if whole else text_columns(_L.c.message, "message")
    return (
        select(_L.c.id, _L.c.timestamp, _L.c.level, _L.c.logger, _L.c.flow_run_id, _L.c.task_run_id, *message,
               _T.c.task_name, _T.c.name.label("task_run_name"))
        .outerjoin(_T, _T.c.id == _L.c.task_run_id)
    )


def _log_item(r: Row[Any], message: str | None) -> dict[str, Any]:
    return {
        "id": r.id, "timestamp": _iso(r.timestamp), "level": logging.getLevelName(r.level), "level_no": r.level,
        "logger": r.logger, "flow_run_id": r.flow_run_id, "task_run_id": r.task_run_id,
        "task_name": r.task_name, "task_run_name": r.task_run_name, "message": message,
    }


def page_logs(
    db: Database,
    *,
    flow_run_id: str | None = None,
    task_run_id: str | None = None,
    min_level: int | str | None = None,
    after_id: int | None = None,
    limit: int = 200,
    cursor: str | None = None,
) -> dict[str, Any]:
    """A page of log lines in the order they were stored, oldest first.

    Each item: ``{id, timestamp, level (name), level_no, logger, flow_run_id, task_run_id,
    task_name, task_run_name, message}`` (a message over 2,000 characters cut; ``get_log``
    has it whole).

    Args:
        db: The database.
        flow_run_id: Only lines of this flow run (its task runs' lines included).
        task_run_id: Only lines of this task run.
        min_level: Only lines at this level or above (``"WARNING"``, ``30``).
        after_id: Only lines stored after the line with this id (a ``logs.written``
            event's ``after_log_id``).
        limit: At most this many items (1 to 1,000).
        cursor: The ``next_cursor`` of the previous page.

    Raises:
        ValueError: A filter, the limit or the cursor is malformed.
        DatabaseError: The database cannot be read.
    """
    limit = check_limit(limit)
    query = _log_query(db, whole=False).order_by(_L.c.id).limit(limit + 1)
    if flow_run_id is not None:
        query = query.where(_L.c.flow_run_id == _one(flow_run_id, "flow_run_id"))
    if task_run_id is not None:
        query = query.where(_L.c.task_run_id == _one(task_run_id, "task_run_id"))
    if min_level is not None:
        query = query.where(_L.c.level >= _level(min_level))
    start = None
    if after_id is not None:
        if isinstance(after_id, bool) or not isinstance(after_id, int):
            raise ValueError(f"after_id must be a log line's id (a whole number), not {after_id!r}")
        start = after_id
    if cursor is not None:
        last = decode_cursor(cursor, "logs", (int,))[0]
        start = last if start is None else max(start, last)
    if start is not None:
        query = query.where(_L.c.id > start)
    with db.connect() as conn:
        rows, next_cursor = _page(conn.execute(query).all(), limit, lambda r: encode_cursor("logs", [r.id]))
    items = [_log_item(r, text_value(r.message_len, r.message_head)) for r in rows]
    return {"items": items, "next_cursor": next_cursor}


def get_log(db: Database, log_id: int) -> dict[str, Any]:
    """One log line with its whole message (fields as in ``page_logs``).

    Raises:
        LookupError: No log line has this id.
        DatabaseError: The database cannot be read.
    """
    if isinstance(log_id, bool) or not isinstance(log_id, int):
        raise LookupError(f"no log line {log_id!r}")
    with db.connect() as conn:
        row = conn.execute(_log_query(db, whole=True).where(_L.c.id == log_id)).first()
    if row is None:
        raise LookupError(f"no log line {log_id!r}")
    return _log_item(row, row.message)


# -- results -------------------------------------------------------------------------------------
def _result_item(r: Row[Any]) -> dict[str, Any]:
    return {
        "id": r.id, "task_run_id": r.task_run_id, "storage": r.storage, "path": r.path,
        "serializer": r.serializer, "cache_key": r.cache_key, "expires_at": _iso(r.expires_at),
        "created": _iso(r.created),
    }


def page_results(
    db: Database,
    *,
    task_run_id: str | None = None,
    cache_key: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """A page of the results index, in the order results were stored.

    Each item: ``{id, task_run_id, storage, path, serializer, cache_key, expires_at,
    created}`` (where a result lives; never the value).

    Raises:
        ValueError: The limit or the cursor is malformed.
        DatabaseError: The database cannot be read.
    """
    limit = check_limit(limit)
    query = select(_R).order_by(_R.c.id).limit(limit + 1)
    if task_run_id is not None:
        query = query.where(_R.c.task_run_id == _one(task_run_id, "task_run_id"))
    if cache_key is not None:
        query = query.where(_R.c.cache_key == _one(cache_key, "cache_key"))
    if cursor is not None:
        query = query.where(_R.c.id > decode_cursor(cursor, "results", (int,))[0])
    with db.connect() as conn:
        rows, next_cursor = _page(conn.execute(query).all(), limit, lambda r: encode_cursor("results", [r.id]))
    return {"items": [_result_item(r) for r in rows], "next_cursor": next_cursor}

