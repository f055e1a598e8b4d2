"""Counts of flow runs by state, over a window and in time buckets (the dashboard's glance).

``flow_run_summary`` answers "did last night's flows succeed?": how many runs of each state
type were created in ``[since, until)``, and the same per bucket of equal width. One
``GROUP BY`` of (state type, bucket) over the filtered runs, on the indexes the flow-run
list uses; the bucket of a row is computed by the database (``julianday`` on SQLite, the
epoch on PostgreSQL), so no row travels to Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Integer, cast, exists, func, literal, select
from sqlalchemy.engine import Connection

from plait._runs import utcnow
from plait._store.database import Database
from plait._store.pages import _check_time, _equal_or_in, _states, _strings, deployment_ids
from plait._store.runs import _F, _G, _iso

__all__ = ["flow_run_summary", "MAX_BUCKETS"]

MAX_BUCKETS = 200


def _conditions(
    conn: Connection,
    flow_names: Sequence[str] | None,
    states: Sequence[str] | None,
    tags: Sequence[str] | None,
    deployments: Sequence[str] | None,
    top_level: bool | None,
) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    names = _strings(flow_names, "flow_names")
    if names:
        where.append(_equal_or_in(_F.c.flow_name, names))
    state_types = _states(states)
    if state_types:
        where.append(_equal_or_in(_F.c.state_type, state_types))
    for tag in dict.fromkeys(_strings(tags, "tags")):
        where.append(exists(select(literal(1)).select_from(_G).where(_G.c.flow_run_id == _F.c.id, _G.c.tag == tag)))
    refs = _strings(deployments, "deployments")
    if refs:
        where.append(_equal_or_in(_F.c.deployment_id, deployment_ids(conn, refs) or [""]))
    if top_level is not None:
        where.append(_F.c.parent_flow_run_id.is_(None) if top_level else _F.c.parent_flow_run_id.is_not(None))
    return where


def _bucket_of(dialect: str, since: datetime, width_us: int) -> ColumnElement[Any]:
    """The 0-based bucket of a run's ``created`` (rows at or after ``since`` only), in whole
    microseconds so a run on a bucket's edge falls in the later bucket on both backends."""
    start_us = _epoch_us(since)
    if dialect == "sqlite":  # created is text 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC
        seconds = cast(func.strftime("%s", _F.c.created), Integer)
        fraction = cast(func.substr(_F.c.created, 21, 6), Integer)
        return (seconds * 1_000_000 + fraction - start_us) // width_us  # whole buckets: one group per bucket
    micros = func.floor(func.extract("epoch", _F.c.created) * 1_000_000)
    return func.floor((micros - start_us) / width_us)


def _epoch_us(moment: datetime) -> int:
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def flow_run_summary(
    db: Database,
    *,
    flow_names: Sequence[str] | None = None,
    states: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    deployments: Sequence[str] | None = None,
    top_level: bool | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    buckets: int = 48,
) -> dict[str, Any]:
    """Flow runs created in ``[since, until)`` counted by state type, overall and per bucket.

    The filters are those of ``pages.page_flow_runs``. ``since`` defaults to the oldest
    matching run's creation, ``until`` to now. Returns ``{total, counts: {STATE: n}, since,
    until, bucket_seconds, buckets: [{start, end, counts: {STATE: n}}]}`` (every bucket
    listed, empty ones with ``{}``; ``since`` null and no buckets when nothing matches).

    Raises:
        ValueError: A filter is malformed, ``buckets`` is not 1 to ``MAX_BUCKETS``, or
            ``since`` is not before ``until``.
        DatabaseError: The database cannot be read.
    """
    if isinstance(buckets, bool) or not isinstance(buckets, int) or not 1 <= buckets <= MAX_BUCKETS:
        raise ValueError(f"buckets: a whole number from 1 to {MAX_BUCKETS}, not {buckets!r}")
    end = _check_time(until, "until") if until is not None else utcnow()
    with db.connect() as conn:
        where = _conditions(conn, flow_names, states, tags, deployments, top_level)
        if since is None:
            oldest = conn.scalar(select(func.min(_F.c.created)).where(*where, _F.c.created < end))
            if oldest is None:
                return {"total": 0, "counts": {}, "since": None, "until": _iso(end), "bucket_seconds": None,
                        "buckets": []}
            start = oldest
        else:
            start = _check_time(since, "since")
        if start >= end:
            raise ValueError(f"since ({start.isoformat()}) must be before until ({end.isoformat()})")
        # whole microseconds per bucket; the last bucket ends exactly at `until`
        width_us = max((_epoch_us(end) - _epoch_us(start)) // buckets, 1)
        rows = _grouped(conn, where, start, end, width_us, db.dialect)
    per_bucket: list[dict[str, int]] = [{} for _ in range(buckets)]
    counts: dict[str, int] = {}
    for state_type, index, n in rows:
        slot = min(max(int(index), 0), buckets - 1)  # the last bucket takes the division's remainder
        per_bucket[slot][state_type] = per_bucket[slot].get(state_type, 0) + n
        counts[state_type] = counts.get(state_type, 0) + n
    step = timedelta(microseconds=width_us)
    return {
        "total": sum(counts.values()),
        "counts": counts,
        "since": _iso(start),
        "until": _iso(end),
        "bucket_seconds": width_us / 1e6,
        "buckets": [
            {"start": _iso(start + step * i), "end": _iso(end if i == buckets - 1 else start + step * (i + 1)),
             "counts": per_bucket[i]}
            for i in range(buckets)
        ],
    }


def _grouped(
    conn: Connection, where: list[ColumnElement[bool]], start: datetime, end: datetime, width_us: int, dialect: str
) -> list[tuple[str, int, int]]:
    """``(state_type, bucket, count)`` of the matching runs created in ``[start, end)``."""
    bucket = _bucket_of(dialect, start, width_us).label("bucket")
    rows = conn.execute(
        select(_F.c.state_type, bucket, func.count().label("n"))
        .where(*where, _F.c.created >= start, _F.c.created < end)
        .group_by(_F.c.state_type, bucket)
    ).all()
    return [(str(r.state_type), int(r.bucket), int(r.n)) for r in rows]
