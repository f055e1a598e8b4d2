"""The work pools repository: every SQL statement about ``work_pools``, ``work_queues`` and
``workers``.

A work pool is where deployments' runs execute, typed by an infrastructure block type
(``process``). It has default job variables, an optional concurrency limit, priority
queues (a pool is created with the queue ``default``, priority 1; 1 is served first) and
can be paused. A worker polling a pool heartbeats through ``worker_heartbeat``; it is
``online`` while its last heartbeat is younger than two of its heartbeat intervals, and
once it has been silent longer, ``plait._store.scheduling.reap_dead_workers`` crashes the
runs it claimed.

Rows come back as plain dicts with times as aware UTC datetimes.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from plait._batch import clean_json
from plait._runs import utcnow
from plait._store.database import Database
from plait._store.events import insert_events, new_event
from plait._store.models import FLOW_RUNS, WORK_POOLS, WORK_QUEUES, WORKERS

__all__ = [
    "WORK_POOLS",
    "WORK_QUEUES",
    "WORKERS",
    "DEFAULT_QUEUE",
    "WorkPoolExists",
    "create_work_pool",
    "get_work_pool",
    "list_work_pools",
    "update_work_pool",
    "set_work_pool_paused",
    "delete_work_pool",
    "save_work_queue",
    "worker_heartbeat",
    "worker_is_online",
]

WORK_POOLS: Table = WORK_POOLS
WORK_QUEUES: Table = WORK_QUEUES
WORKERS: Table = WORKERS
_P, _Q, _W = WORK_POOLS, WORK_QUEUES, WORKERS
_F: Table = FLOW_RUNS

DEFAULT_QUEUE = "default"
_NAME_MAX = 200
_UPDATABLE = ("type", "description", "base_job_variables", "concurrency_limit", "paused")


class WorkPoolExists(ValueError):
    """A work pool of that name exists already (the API answers 409)."""



def _check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > _NAME_MAX:
        raise ValueError(f"a {what} name is 1 to {_NAME_MAX} characters, not {value!r}")
    if "/" in value or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"a {what} name holds no '/' and no control characters: {value!r}")
    return value


def _check_limit(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} is a whole number of runs (0 or more) or None for no limit, not {value!r}")
    return int(value)


def _check_json_object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{what} is a JSON object (a dict), not {type(value).__name__}")
    cleaned: dict[str, Any] = clean_json(value)
    return cleaned


def worker_is_online(heartbeat_at: datetime, heartbeat_interval: float, now: datetime) -> bool:
    """Whether a worker that last heartbeat at ``heartbeat_at`` counts as alive at ``now``:
    silence of two of its own heartbeat intervals means it is gone."""
    return now - heartbeat_at <= timedelta(seconds=2 * heartbeat_interval)


def _pool_dict(row: Row[Any]) -> dict[str, Any]:
    return dict(row._mapping)


def _queue_dict(row: Row[Any]) -> dict[str, Any]:
    return dict(row._mapping)


def _worker_dict(row: Row[Any], now: datetime) -> dict[str, Any]:
    out = dict(row._mapping)
    out["status"] = "online" if worker_is_online(row.heartbeat_at, row.heartbeat_interval, now) else "offline"
    return out


def _details(conn: Connection, pools: list[Row[Any]]) -> list[dict[str, Any]]:
    """Pool rows with their ``queues`` (priority order) and ``workers`` (name order)."""
    names = [p.name for p in pools]
    if not names:
        return []
    now = utcnow()
    queues: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for q in conn.execute(select(_Q).where(_Q.c.pool_name.in_(names)).order_by(_Q.c.priority, _Q.c.name)):
        queues[q.pool_name].append(_queue_dict(q))
    workers: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for w in conn.execute(select(_W).where(_W.c.pool_name.in_(names)).order_by(_W.c.name)):
        workers[w.pool_name].append(_worker_dict(w, now))
    return [{**_pool_dict(p), "queues": queues[p.name], "workers": workers[p.name]} for p in pools]


def _event(kind: str, pool: dict[str, Any] | Row[Any]) -> dict[str, Any]:
    values = pool if isinstance(pool, dict) else pool._mapping
    return new_event(kind, f"work-pool/{values['name']}", {
        "work_pool_id": values["id"], "name": values["name"], "type": values["type"], "paused": values["paused"],
    })


def _missing(name: str) -> LookupError:
    return LookupError(f"no work pool named {name!r}; create it with `plait work-pool create {name} --type process`")


# -- pools -------------------------------------------------------------------------------------------
def create_work_pool(
    db: Database,
    name: str,
    type: str,  # noqa: A002 - the pool's own word for it
    *,
    description: str = "",
    base_job_variables: dict[str, Any] | None = None,
    concurrency_limit: int | None = None,
) -> dict[str, Any]:
    """Create a work pool with its ``default`` queue (priority 1); emits ``work-pool.created``.

    Args:
        db: The database.
        name: Unique pool name (no ``/``).
        type: The infrastructure block type slug its runs go through (``process``).
        description: Free text for people.
        base_job_variables: Defaults of the runs' job variables (a deployment's and a run's
            own override them).
        concurrency_limit: Most runs of the pool active at once (None: no limit).

    Returns:
        The pool as ``get_work_pool`` returns it.

    Raises:
        WorkPoolExists: (a ValueError) A pool of that name exists.
        ValueError: A malformed argument.
        DatabaseError: The database cannot be written.
    """
    _check_name(name, "work pool")
    if not isinstance(type, str) or not type.strip():
        raise ValueError(f"a work pool's type is an infrastructure block type such as 'process', not {type!r}")
    if not isinstance(description, str):
        raise ValueError("a work pool's description is text")
    now = utcnow()
    values = {
        "id": str(uuid.uuid4()), "name": name, "type": type, "description": description,
        "base_job_variables": _check_json_object(base_job_variables, "base_job_variables"),
        "concurrency_limit": _check_limit(concurrency_limit, "concurrency_limit"),
        "paused": False, "created": now, "updated": now,
    }
    try:
        with db.connect("write", write=True, races=True) as conn:
            conn.execute(insert(_P).values(**values))
            conn.execute(insert(_Q).values(
                id=str(uuid.uuid4()), pool_name=name, name=DEFAULT_QUEUE, priority=1, concurrency_limit=None,
                paused=False, created=now,
            ))
            insert_events(conn, [_event("work-pool.created", values)])
    except IntegrityError:
        raise WorkPoolExists(
            f"a work pool named {name!r} already exists; inspect it with `plait work-pool inspect {name}` "
            "or choose another name"
        ) from None
    pool = get_work_pool(db, name)
    assert pool is not None
    return pool


def get_work_pool(db: Database, name: str) -> dict[str, Any] | None:
    """The pool ``name`` with ``queues`` (priority order) and ``workers`` (each with
    ``status``: ``online`` if its last heartbeat is within two of its intervals, else
    ``offline``), or None.

    Raises:
        DatabaseError: The database cannot be read.
    """
    with db.connect("read") as conn:
        row = conn.execute(select(_P).where(_P.c.name == name)).first()
        return _details(conn, [row])[0] if row is not None else None


def list_work_pools(db: Database) -> list[dict[str, Any]]:
    """Every work pool by name, each with its ``queues`` and ``workers``.

    Raises:
        DatabaseError: The database cannot be read.
    """
    with db.connect("read") as conn:
        return _details(conn, list(conn.execute(select(_P).order_by(_P.c.name))))


def update_work_pool(db: Database, name: str, **changes: Any) -> dict[str, Any]:
    """Change some of a pool's ``type``, ``description``, ``base_job_variables``,
    ``concurrency_limit`` (None removes it) and ``paused``; emits ``work-pool.updated``.

    Returns:
        The pool as ``get_work_pool`` returns it.

    Raises:
        LookupError: No pool of that name.
        ValueError: An unknown field or a malformed value.
        DatabaseError: The database cannot be written.
    """
    unknown = sorted(set(changes) - set(_UPDATABLE))
    if unknown:
        raise ValueError(f"cannot change {', '.join(unknown)} of a work pool; changeable: {', '.join(_UPDATABLE)}")
    values: dict[str, Any] = {}
    if "type" in changes:
        if not isinstance(changes["type"], str) or not changes["type"].strip():
            raise ValueError(f"a work pool's type is an infrastructure block type, not {changes['type']!r}")
        values["type"] = changes["type"]
    if "description" in changes:
        if not isinstance(changes["description"], str):
            raise ValueError("a work pool's description is text")
        values["description"] = changes["description"]
    if "base_job_variables" in changes:
        values["base_job_variables"] = _check_json_object(changes["base_job_variables"], "base_job_variables")
    if "concurrency_limit" in changes:
        values["concurrency_limit"] = _check_limit(changes["concurrency_limit"], "concurrency_limit")
    if "paused" in changes:
        if not isinstance(changes["paused"], bool):
            raise ValueError(f"paused is true or false, not {changes['paused']!r}")
        values["paused"] = changes["paused"]
    with db.connect("write", write=True) as conn:
        row = conn.execute(
            update(_P).where(_P.c.name == name).values(updated=utcnow(), **values).returning(*_P.c)
        ).first()
        if row is None:
            raise _missing(name)
        kind = "work-pool.updated"
        if set(values) == {"paused"}:
            kind = "work-pool.paused" if values["paused"] else "work-pool.resumed"
        insert_events(conn, [_event(kind, row)])
    pool = get_work_pool(db, name)
    if pool is None:  # deleted in between
        raise _missing(name)
    return pool


def set_work_pool_paused(db: Database, name: str, paused: bool) -> dict[str, Any]:
    """Pause (no run of the pool is claimed) or resume a pool; emits ``work-pool.paused``
    or ``work-pool.resumed``.

    Raises:
        LookupError: No pool of that name.
        DatabaseError: The database cannot be written.
    """
    return update_work_pool(db, name, paused=bool(paused))


def delete_work_pool(db: Database, name: str) -> bool:
    """Delete a pool with its queues and workers; emits ``work-pool.deleted``. Its runs stay
    as they are (Scheduled ones wait until a pool of that name exists again).

    Returns:
        Whether there was such a pool.

    Raises:
        DatabaseError: The database cannot be written.
    """
    with db.connect("write", write=True) as conn:
        row = conn.execute(select(_P).where(_P.c.name == name)).first()
        if row is None:
            return False
        conn.execute(delete(_Q).where(_Q.c.pool_name == name))
        conn.execute(delete(_W).where(_W.c.pool_name == name))
        conn.execute(delete(_P).where(_P.c.id == row.id))
        insert_events(conn, [_event("work-pool.deleted", row)])
    return True


# -- queues ------------------------------------------------------------------------------------------
def save_work_queue(
    db: Database,
    pool_name: str,
    name: str,
    *,
    priority: int = 1,
    concurrency_limit: int | None = None,
    paused: bool = False,
) -> dict[str, Any]:
    """Create or update the queue ``name`` of a pool (priority 1 is served first).

    Returns:
        The queue's row.

    Raises:
        LookupError: No pool of that name.
        ValueError: A malformed argument.
        DatabaseError: The database cannot be written.
    """
    _check_name(name, "work queue")
    if isinstance(priority, bool) or not isinstance(priority, int) or priority < 1:
        raise ValueError(f"a queue's priority is a whole number from 1 (served first), not {priority!r}")
    limit = _check_limit(concurrency_limit, "concurrency_limit")
    if not isinstance(paused, bool):
        raise ValueError(f"paused is true or false, not {paused!r}")
    values = {"priority": priority, "concurrency_limit": limit, "paused": paused}
    for attempt in (1, 2):
        try:
            with db.connect("write", write=True, races=True) as conn:
                if conn.scalar(select(_P.c.id).where(_P.c.name == pool_name)) is None:
                    raise _missing(pool_name)
                row = conn.execute(
                    update(_Q).where(_Q.c.pool_name == pool_name, _Q.c.name == name).values(**values).returning(*_Q.c)
                ).first()
                if row is None:
                    row = conn.execute(insert(_Q).values(
                        id=str(uuid.uuid4()), pool_name=pool_name, name=name, created=utcnow(), **values
                    ).returning(*_Q.c)).first()
                assert row is not None
                return _queue_dict(row)
        except IntegrityError as exc:  # another call created the queue meanwhile: update it
            if attempt == 2:
                raise db.error(exc, "write") from None
    raise AssertionError("unreachable")  # pragma: no cover


# -- workers -----------------------------------------------------------------------------------------
def worker_heartbeat(
    db: Database, pool_name: str, worker_name: str, *, hostname: str, pid: int | None, heartbeat_interval: float
) -> dict[str, Any]:
    """Record that a worker of ``pool_name`` is alive (the row is created on its first beat).

    Args:
        db: The database.
        pool_name: The pool it polls.
        worker_name: Unique within the pool; the same name keeps the same worker id.
        hostname: Where it runs.
        pid: Its process id.
        heartbeat_interval: Seconds until its next beat; silence of two means it is gone.

    Returns:
        ``{"worker_id": id, "cancelling": [ids of the flow runs it claimed that are now
        Cancelling]}``: the worker stops those.

    Raises:
        LookupError: No pool of that name.
        ValueError: A malformed argument.
        DatabaseError: The database cannot be written.
    """
    _check_name(worker_name, "worker")
    if isinstance(heartbeat_interval, bool) or not isinstance(heartbeat_interval, (int, float)) or not (
        0 < heartbeat_interval < 86_400
    ):
        raise ValueError(f"heartbeat_interval is positive seconds (under a day), not {heartbeat_interval!r}")
    values = {"hostname": str(hostname), "pid": pid, "heartbeat_at": utcnow(),
              "heartbeat_interval": float(heartbeat_interval)}
    for attempt in (1, 2):
        try:
            with db.connect("write", write=True, races=True) as conn:
                worker_id = conn.scalar(
                    update(_W).where(_W.c.pool_name == pool_name, _W.c.name == worker_name).values(**values)
                    .returning(_W.c.id)
                )
                if worker_id is None:
                    if conn.scalar(select(_P.c.id).where(_P.c.name == pool_name)) is None:
                        raise _missing(pool_name)
                    worker_id = str(uuid.uuid4())
                    conn.execute(insert(_W).values(
                        id=worker_id, pool_name=pool_name, name=worker_name, created=values["heartbeat_at"], **values
                    ))
                cancelling: list[str] = list(conn.scalars(
                    select(_F.c.id).where(_F.c.worker_id == worker_id, _F.c.state_type == "CANCELLING")
                    .order_by(_F.c.id)
                ))
            return {"worker_id": worker_id, "cancelling": cancelling}
        except IntegrityError as exc:  # its first two beats raced: the other one inserted the row
            if attempt == 2:
                raise db.error(exc, "write") from None
    raise AssertionError("unreachable")  # pragma: no cover
