"""Deployments' flow runs: creating them, moving their states, and the helpers the
scheduling and deployments repositories share (``plait._store.scheduling`` is the public
face of both and re-exports what is public here).

- ``create_flow_run`` makes a Scheduled run of a deployment, idempotently by key (a unique
  index: however many schedulers or retried requests, one run per key);
  ``plan_deployment_runs`` is the scheduler's bulk form of it, one run per schedule slot.
- ``flow_run_states_in`` is the one way these repositories move flow runs: a conditional
  update through the transition table (``plait.states``), a ``states`` row and a
  ``flow-run.state-changed`` event per run, in the caller's transaction.

Rows come back as plain dicts (times as aware UTC datetimes).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, func, insert, select, true, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from plait._batch import clean_json, clean_text
from plait._runs import utcnow
from plait._store.database import Database
from plait._store.events import insert_events, new_event
from plait._store.models import DEPLOYMENTS, FLOW_RUN_TAGS, FLOW_RUNS, STATES, WORK_POOLS
from plait.states import FINAL_TYPES, IllegalTransition, State, StateType, check_transition

__all__ = [
    "ALL_TYPES",
    "FINAL",
    "NOT_FINAL",
    "ACTIVE_TYPES",
    "CANCELLING",
    "may_move",
    "flow_run_states_in",
    "merge_job_variables",
    "create_flow_run",
    "plan_deployment_runs",
    "scheduled_count",
    "last_planned",
    "delete_future_auto_runs_in",
    "cancel_scheduled_runs_in",
    "aware",
    "run_dict",
    "missing_run",
]

_F: Table = FLOW_RUNS
_G: Table = FLOW_RUN_TAGS
_S: Table = STATES
_D: Table = DEPLOYMENTS
_P: Table = WORK_POOLS

# StateType.CANCELLING joins states.py with this issue; spelled as text until it does.
CANCELLING = "CANCELLING"
_CANCELLING_FROM = frozenset({"SCHEDULED", "PENDING", "RUNNING", "RETRYING", "PAUSED"})
_CANCELLING_TO = frozenset({"CANCELLED", "CRASHED", "FAILED", "COMPLETED"})
ALL_TYPES = tuple(dict.fromkeys([*(t.value for t in StateType), CANCELLING]))
FINAL = frozenset(t.value for t in FINAL_TYPES)
ACTIVE_TYPES = ("PENDING", "RUNNING", "RETRYING", CANCELLING)
NOT_FINAL = tuple(t for t in ALL_TYPES if t not in FINAL)
_SCHEDULED = StateType.SCHEDULED.value
_CHUNK = 500



def aware(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime (a naive one is taken to be UTC already).

    Raises:
        ValueError: It is not a datetime.
    """
    if not isinstance(moment, datetime):
        raise ValueError(f"expected a datetime, not {moment!r}")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def missing_run(flow_run_id: str) -> LookupError:
    """The error for a flow run id that names no run."""
    return LookupError(f"no flow run with id {flow_run_id!r}; list runs with `plait flow-run ls`")


# -- states --------------------------------------------------------------------------------------
def may_move(current: str, proposed: str) -> bool:
    """Whether the transition table allows ``current`` -> ``proposed``."""
    try:
        now_type, next_type = StateType(current), StateType(proposed)
    except ValueError:  # CANCELLING, before states.py knows it
        if proposed == CANCELLING:
            return current in _CANCELLING_FROM
        if current == CANCELLING:
            return proposed in _CANCELLING_TO
        return False
    try:
        check_transition(State(now_type), State(next_type))
    except IllegalTransition:
        return False
    return True


def _sources(target: str) -> tuple[str, ...]:
    """The stored state types from which a run may move to ``target``."""
    return tuple(t for t in ALL_TYPES if may_move(t, target))


def flow_run_states_in(
    conn: Connection,
    ids: Sequence[str],
    state_type: str,
    name: str,
    message: str | None,
    now: datetime,
    *,
    sources: Sequence[str] | None = None,
    where: Sequence[Any] = (),
    values: dict[str, Any] | None = None,
) -> tuple[list[str], list[dict[str, Any]]]:
    """Move flow runs to a state inside the caller's transaction: each run moves only if its
    stored state may be followed by ``state_type`` (``sources``, when given, lists the
    stored states to move from instead; callers check the table themselves then) and it
    matches ``where``, so a run that moved on meanwhile is left alone. Writes the states rows.

    Returns:
        ``(moved ids, events)``: the caller stores the events with ``insert_events`` as the
        transaction's last write.

    Raises:
        SQLAlchemyError: A statement failed (the caller rolls back).
    """
    allowed = tuple(sources) if sources is not None else _sources(state_type)
    text = clean_text(message) if message is not None else None
    changes: dict[str, Any] = {"state_type": state_type, "state_name": name, "state_message": text}
    if state_type in FINAL:
        changes["end_time"] = now
    changes.update(values or {})
    moved: list[tuple[str, str]] = []
    for i in range(0, len(ids), _CHUNK):
        chunk = list(ids[i:i + _CHUNK])
        moved += [(r[0], r[1]) for r in conn.execute(
            update(_F).where(_F.c.id.in_(chunk), _F.c.state_type.in_(allowed), *where).values(**changes)
            .returning(_F.c.id, _F.c.flow_name)
        )]
    if not moved:
        return [], []
    conn.execute(insert(_S), [
        {"run_id": run_id, "run_kind": "flow", "type": state_type, "name": name, "message": text, "timestamp": now}
        for run_id, _flow in moved
    ])
    events = [
        new_event("flow-run.state-changed", f"flow-run/{run_id}", {
            "flow_run_id": run_id, "flow_name": flow, "state_type": state_type, "state_name": name,
        }, occurred=now)
        for run_id, flow in moved
    ]
    return [run_id for run_id, _flow in moved], events


# -- creating runs -------------------------------------------------------------------------------
def merge_job_variables(*layers: dict[str, Any] | None) -> dict[str, Any]:
    """Job variables of a run: later layers win (pool < deployment < run); nested objects
    (``env``) merge key by key instead of replacing each other."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = merge_job_variables(merged[key], value)
            else:
                merged[key] = value
    return merged


def _insert_if_new(conn: Connection) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(_F).on_conflict_do_nothing(index_elements=[_F.c.idempotency_key])
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(_F).on_conflict_do_nothing(index_elements=[_F.c.idempotency_key])
    return insert(_F)  # pragma: no cover - elsewhere a lost race raises IntegrityError


def run_dict(row: Row[Any]) -> dict[str, Any]:
    """A ``flow_runs`` row as the plain dict these repositories return."""
    return dict(row._mapping)


def _run_values(
    deployment: dict[str, Any],
    pool_variables: dict[str, Any] | None,
    *,
    parameters: dict[str, Any],
    expected_start_time: datetime,
    state_name: str = "Scheduled",
    idempotency_key: str | None = None,
    auto_scheduled: bool = False,
    tags: Sequence[str] | None = None,
    job_variables: dict[str, Any] | None = None,
    name: str | None = None,
    parent_flow_run_id: str | None = None,
    parent_task_run_id: str | None = None,
    retry_of: str | None = None,
    now: datetime,
) -> dict[str, Any]:
    """The ``flow_runs`` row of a new Scheduled run of ``deployment``."""
    expected = aware(expected_start_time)
    all_tags = list(dict.fromkeys([*(deployment.get("tags") or []), *(tags or [])]))
    return {
        "id": str(uuid.uuid4()), "flow_name": deployment["flow_name"],
        "name": name or f"{deployment['name']}-{expected:%Y%m%d-%H%M%S}",
        "parameters": clean_json({**(deployment.get("parameters") or {}), **parameters}),
        "tags": clean_json(all_tags), "state_type": _SCHEDULED, "state_name": state_name, "state_message": None,
        "parent_flow_run_id": parent_flow_run_id, "parent_task_run_id": parent_task_run_id, "run_count": 0,
        "created": now, "start_time": None, "end_time": None, "pid": None, "hostname": None,
        "heartbeat_at": None, "heartbeat_interval": None,
        "deployment_id": deployment["id"], "work_pool_name": deployment.get("work_pool_name"),
        "work_queue_name": deployment.get("work_queue_name"),
        "job_variables": clean_json(merge_job_variables(pool_variables, deployment.get("job_variables"),
                                                        job_variables)),
        "expected_start_time": expected, "idempotency_key": idempotency_key, "worker_id": None,
        "claimed_at": None, "retry_of": retry_of, "auto_scheduled": auto_scheduled,
        "entrypoint": deployment.get("entrypoint"),
    }


def _insert_runs(conn: Connection, rows: list[dict[str, Any]], now: datetime, events: list[dict[str, Any]]) -> set[str]:
    """Insert new runs (a row whose idempotency key names a stored run is skipped) with
    their tags and first state; returns the ids inserted and appends their events."""
    keyed = [r for r in rows if r["idempotency_key"] is not None]
    plain = [r for r in rows if r["idempotency_key"] is None]
    inserted: set[str] = set()
    if keyed:
        inserted.update(conn.scalars(_insert_if_new(conn).returning(_F.c.id), keyed))
    if plain:
        conn.execute(insert(_F), plain)
        inserted.update(r["id"] for r in plain)
    new = [r for r in rows if r["id"] in inserted]
    if not new:
        return inserted
    tags = [{"flow_run_id": r["id"], "tag": t, "created": now} for r in new for t in r["tags"] if isinstance(t, str)]
    if tags:
        conn.execute(insert(_G), tags)
    conn.execute(insert(_S), [
        {"run_id": r["id"], "run_kind": "flow", "type": _SCHEDULED, "name": r["state_name"], "message": None,
         "timestamp": now} for r in new
    ])
    for r in new:
        resource = f"flow-run/{r['id']}"
        events.append(new_event("flow-run.state-changed", resource, {
            "flow_run_id": r["id"], "flow_name": r["flow_name"], "state_type": _SCHEDULED,
            "state_name": r["state_name"],
        }, occurred=now))
        events.append(new_event("flow-run.scheduled", resource, {
            "flow_run_id": r["id"], "flow_name": r["flow_name"], "deployment_id": r["deployment_id"],
            "expected_start_time": r["expected_start_time"].isoformat(), "auto_scheduled": r["auto_scheduled"],
            "retry_of": r["retry_of"],
        }, occurred=now))
    return inserted


def _pool_variables(conn: Connection, pool_name: str | None) -> dict[str, Any] | None:
    if pool_name is None:
        return None
    value = conn.scalar(select(_P.c.base_job_variables).where(_P.c.name == pool_name))
    return value if isinstance(value, dict) else None


def create_flow_run(
    db: Database,
    deployment: dict[str, Any],
    *,
    parameters: dict[str, Any],
    expected_start_time: datetime,
    state_name: str = "Scheduled",
    idempotency_key: str | None = None,
    auto_scheduled: bool = False,
    tags: Sequence[str] | None = None,
    job_variables: dict[str, Any] | None = None,
    name: str | None = None,
    parent_flow_run_id: str | None = None,
    parent_task_run_id: str | None = None,
    retry_of: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Create a Scheduled flow run of ``deployment`` (a row from ``get_deployment``).

    The run gets the deployment's flow name, entrypoint, work pool and queue; its
    parameters are the deployment's defaults updated by ``parameters``; its tags the
    deployment's then ``tags``; its job variables the pool's < the deployment's <
    ``job_variables``. Writes the Scheduled state and the events ``flow-run.state-changed``
    and ``flow-run.scheduled``.

    Args:
        db: The database.
        deployment: The deployment row (``id``, ``flow_name``, ``name``, ``parameters``, ...).
        parameters: The run's own parameter values.
        expected_start_time: When it should start (its slot, or now).
        state_name: Display name of its Scheduled state.
        idempotency_key: When given and a run has this key already, that run is returned
            and nothing is created (safe against concurrent calls).
        auto_scheduled: Created by the scheduler (re-planned when schedules change).
        tags: Tags beyond the deployment's.
        job_variables: The run's own job variables.
        name: The run's name (default: deployment name and slot time).
        parent_flow_run_id: The flow run that asked for it (a subflow link).
        parent_task_run_id: The task run of that flow that asked for it.
        retry_of: The crashed run this one retries.

    Returns:
        ``(flow run row, created)``; created is False when the key named an existing run.

    Raises:
        ValueError: Malformed parameters or job variables.
        DatabaseError: The database cannot be written.
    """
    if not isinstance(parameters, dict):
        raise ValueError(f"a flow run's parameters are a JSON object (a dict), not {type(parameters).__name__}")
    if job_variables is not None and not isinstance(job_variables, dict):
        raise ValueError("a flow run's job_variables are a JSON object (a dict)")
    if idempotency_key is not None and (not isinstance(idempotency_key, str) or not idempotency_key):
        raise ValueError(f"an idempotency key is non-empty text, not {idempotency_key!r}")
    events: list[dict[str, Any]] = []
    for attempt in (1, 2):
        try:
            with db.engine.begin() as conn:
                now = utcnow()
                values = _run_values(
                    deployment, _pool_variables(conn, deployment.get("work_pool_name")), parameters=parameters,
                    expected_start_time=expected_start_time, state_name=state_name, idempotency_key=idempotency_key,
                    auto_scheduled=auto_scheduled, tags=tags, job_variables=job_variables, name=name,
                    parent_flow_run_id=parent_flow_run_id, parent_task_run_id=parent_task_run_id, retry_of=retry_of,
                    now=now,
                )
                run_id, created = values["id"], bool(_insert_runs(conn, [values], now, events))
                if not created:  # the key names a run already (ours or a concurrent caller's)
                    run_id = conn.scalar(select(_F.c.id).where(_F.c.idempotency_key == idempotency_key))
                insert_events(conn, events)
                row = conn.execute(select(_F).where(_F.c.id == run_id)).first()
            assert row is not None
            return run_dict(row), created
        except IntegrityError as exc:  # a backend without ON CONFLICT: the other insert won
            events.clear()
            if attempt == 2 or idempotency_key is None:
                raise db.error(exc, "write") from None
        except SQLAlchemyError as exc:
            raise db.error(exc, "write") from None
    raise AssertionError("unreachable")  # pragma: no cover


def _slot_key(schedule_id: str, slot: datetime) -> str:
    return f"schedule:{schedule_id}:{aware(slot).isoformat()}"


def plan_deployment_runs(
    db: Database, deployment_id: str, slots: Sequence[tuple[datetime, str, dict[str, Any]]], *,
    as_of: datetime | None = None,
) -> int:
    """Create the scheduler's runs of a deployment: one per ``(slot time, schedule id,
    schedule parameters)``, keyed ``schedule:<schedule id>:<slot ISO time>``, so a slot
    planned twice (by this or another server) still has one run.

    The slots were computed from the deployment as read earlier: given ``as_of`` (the
    ``updated`` time of that row), nothing is planned when a save changed the deployment
    since (checked under its lock: a row lock on PostgreSQL, the write lock on SQLite), and
    the next pass plans from the new schedules.

    Returns:
        How many runs were new (0 when the deployment does not exist or is paused).

    Raises:
        DatabaseError: The database cannot be written.
    """
    if not slots:
        return 0
    now = utcnow()
    events: list[dict[str, Any]] = []
    with db.connect("write", write=True) as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        row = conn.execute(select(_D).where(_D.c.id == deployment_id).with_for_update()).first()
        if row is None or row.paused:  # a paused deployment has no future runs (resuming re-plans)
            return 0
        if as_of is not None and aware(row.updated) != aware(as_of):
            return 0  # saved while the slots were computed: they may be of its old schedules
        deployment = dict(row._mapping)
        pool_variables = _pool_variables(conn, deployment["work_pool_name"])
        rows = {}
        for slot, schedule_id, parameters in slots:
            key = _slot_key(schedule_id, slot)
            rows[key] = _run_values(
                deployment, pool_variables, parameters=dict(parameters or {}), expected_start_time=slot,
                idempotency_key=key, auto_scheduled=True, now=now,
            )
        created = len(_insert_runs(conn, sorted(rows.values(), key=lambda r: r["expected_start_time"]), now, events))
        insert_events(conn, events)
    return created


def scheduled_count(db: Database, deployment_id: str, after: datetime) -> int:
    """How many of the scheduler's runs of a deployment wait Scheduled for a slot after
    ``after`` (the scheduler keeps at most its maximum of them).

    Raises:
        DatabaseError: The database cannot be read.
    """
    with db.connect() as conn:
        return int(conn.scalar(
            select(func.count()).select_from(_F).where(
                _F.c.deployment_id == deployment_id, _F.c.state_type == _SCHEDULED,
                _F.c.expected_start_time > aware(after), _F.c.auto_scheduled == true(),
            )
        ) or 0)


def last_planned(db: Database, deployment_id: str) -> datetime | None:
    """The latest slot the scheduler has created a run for (any state), or None.

    Raises:
        DatabaseError: The database cannot be read.
    """
    with db.connect() as conn:
        value: datetime | None = conn.scalar(
            select(func.max(_F.c.expected_start_time)).where(
                _F.c.deployment_id == deployment_id, _F.c.auto_scheduled == true()
            )
        )
    return aware(value) if value is not None else None


def delete_future_auto_runs_in(conn: Connection, deployment_id: str, now: datetime) -> int:
    """Delete a deployment's scheduler runs that wait for a slot after ``now`` and nobody
    claimed (their schedule changed or the deployment was paused: they are re-planned),
    with their states and tags, inside the caller's transaction.

    Returns:
        How many runs were deleted.
    """
    ids: list[str] = list(conn.scalars(select(_F.c.id).where(
        _F.c.deployment_id == deployment_id, _F.c.state_type == _SCHEDULED, _F.c.worker_id.is_(None),
        _F.c.auto_scheduled == true(), _F.c.expected_start_time > now,
    )))
    deleted = 0
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i:i + _CHUNK]
        # conditional again: a run claimed since the select is not taken from its worker
        gone: list[str] = list(conn.scalars(_F.delete().where(
            _F.c.id.in_(chunk), _F.c.state_type == _SCHEDULED, _F.c.worker_id.is_(None)
        ).returning(_F.c.id)))
        if gone:
            conn.execute(_S.delete().where(_S.c.run_id.in_(gone)))
            conn.execute(_G.delete().where(_G.c.flow_run_id.in_(gone)))
        deleted += len(gone)
    return deleted


def cancel_scheduled_runs_in(
    conn: Connection, deployment_id: str, message: str, now: datetime
) -> tuple[list[str], list[dict[str, Any]]]:
    """Cancel every Scheduled run of a deployment inside the caller's transaction.

    Returns:
        ``(cancelled ids, events)`` as ``flow_run_states_in``.
    """
    ids: list[str] = list(conn.scalars(
        select(_F.c.id).where(_F.c.deployment_id == deployment_id, _F.c.state_type == _SCHEDULED)
    ))
    return flow_run_states_in(conn, ids, "CANCELLED", "Cancelled", message, now,
                              sources=(_SCHEDULED,), where=(_F.c.worker_id.is_(None),))
