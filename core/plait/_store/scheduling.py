"""The scheduling repository: deployments' flow runs from creation to a worker's claim, and
the control of runs that are waiting or running somewhere else.

- ``create_flow_run``, ``plan_deployment_runs``, ``scheduled_count``, ``last_planned``
  (defined in ``plait._store.deployment_runs``, re-exported here): runs are created
  Scheduled, one per idempotency key.
- ``claim_runs`` (a worker, for a pool) and ``claim_deployment_runs`` (a ``serve`` process,
  for its deployment) hand each due run to exactly one claimer: on PostgreSQL candidates
  are selected ``FOR UPDATE SKIP LOCKED``, on SQLite the claim takes the write lock
  (``BEGIN IMMEDIATE``) and each run moves with a conditional update. Concurrency limits of
  the pool, its queues and the deployment are counted inside the claim (on PostgreSQL the
  limited pool and deployment rows are locked first, so two claimers never both fill the
  last slot); the deployment's collision strategy and catch-up policy apply there too.
- ``mark_late`` renames overdue Scheduled runs "Late"; ``late_reason`` says why one waits.
- ``request_cancel``, ``cancelling_among``, ``set_flow_run_state``: run control.
- ``reap_dead_workers`` crashes the runs of workers that stopped heartbeating, and retries
  them as the deployment's ``retries`` allow.

A flow run is "active" (it holds a concurrency slot) while Pending, Running, Retrying or
Cancelling. Every state change writes a ``states`` row and a ``flow-run.state-changed``
event in the transaction of the change. Rows come back as plain dicts (times as aware UTC
datetimes).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, and_, false, func, or_, select, true
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import SQLAlchemyError

from plait._runs import utcnow
from plait._store.database import Database
from plait._store.deployment_runs import (
    ACTIVE_TYPES,
    ALL_TYPES,
    CANCELLING,
    FINAL,
    NOT_FINAL,
    cancel_scheduled_runs_in,
    create_flow_run,
    delete_future_auto_runs_in,
    flow_run_states_in,
    last_planned,
    may_move,
    merge_job_variables,
    plan_deployment_runs,
    scheduled_count,
)
from plait._store.deployment_runs import aware as _aware
from plait._store.deployment_runs import missing_run as _missing_run
from plait._store.deployment_runs import run_dict as _run_dict
from plait._store.events import insert_events
from plait._store.models import DEPLOYMENTS, FLOW_RUNS, WORK_POOLS, WORK_QUEUES, WORKERS
from plait._store.runs import cancelling_among  # one copy: the recorder asks it too
from plait._store.work_pools import DEFAULT_QUEUE, worker_is_online
from plait.settings import get_settings
from plait.states import IllegalTransition, StateType

__all__ = [
    "ACTIVE_TYPES",
    "create_flow_run",
    "plan_deployment_runs",
    "scheduled_count",
    "last_planned",
    "claim_runs",
    "claim_deployment_runs",
    "mark_late",
    "late_reason",
    "request_cancel",
    "cancelling_among",
    "reap_dead_workers",
    "set_flow_run_state",
    "merge_job_variables",
    "flow_run_states_in",
    "delete_future_auto_runs_in",
    "cancel_scheduled_runs_in",
]

_F: Table = FLOW_RUNS
_D: Table = DEPLOYMENTS
_P: Table = WORK_POOLS
_Q: Table = WORK_QUEUES
_W: Table = WORKERS

_SCHEDULED = StateType.SCHEDULED.value
_CANCELLING = CANCELLING
_FINAL = FINAL
_NOT_FINAL = NOT_FINAL
_ALL_TYPES = ALL_TYPES
_may_move = may_move
# A run in a queue the pool does not list is served after every listed queue.
_UNLISTED_PRIORITY = 1_000_000
_SERVE_SILENCE = 60.0  # a serve process silent this long (s) counts as not polling
_CHUNK = 500



# -- claiming runs ---------------------------------------------------------------------------------
def _claim_limit(limit: Any) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise ValueError(f"limit is a whole number of runs from 1 to 1000, not {limit!r}")
    return int(limit)


def _deployment_limit(deployment: dict[str, Any]) -> int | None:
    """The most active runs a deployment allows: the smaller of its limits, if any."""
    limits = [v for v in (deployment.get("concurrency_limit"), deployment.get("max_active_runs")) if v is not None]
    return min(limits) if limits else None


def _due(now: datetime) -> Any:
    return and_(_F.c.state_type == _SCHEDULED, _F.c.worker_id.is_(None), _F.c.expected_start_time <= now)


def _write_lock(conn: Connection) -> None:
    """On SQLite take the write lock now: the claim's counts and updates then see every
    committed claim and no other claim can interleave (PostgreSQL uses row locks)."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _missing_pool(name: str) -> LookupError:
    return LookupError(f"no work pool named {name!r}; create it with `plait work-pool create {name} --type process`")


def _catch_up(conn: Connection, scope: Any, now: datetime, pg: bool) -> list[dict[str, Any]]:
    """Apply the catch-up policies to the due runs of the scheduler in ``scope``.

    ``latest``: of a deployment's due runs only the newest slot runs; older ones are
    Cancelled "Skipped". ``none``: due runs that are already late (named Late, or older
    than the late grace period) are skipped; a run due within the grace period runs.
    ``all``: nothing is skipped. Runs created by hand are never skipped.
    """
    query = (
        select(_F.c.id, _F.c.deployment_id, _F.c.expected_start_time, _F.c.state_name, _D.c.catchup)
        .select_from(_F.join(_D, _D.c.id == _F.c.deployment_id))
        .where(scope, _due(now), _F.c.auto_scheduled == true(), _D.c.catchup != "all", _D.c.paused == false())
    )
    if pg:
        query = query.with_for_update(skip_locked=True, of=_F)
    rows = conn.execute(query).all()
    if not rows:
        return []
    newest: dict[str, datetime] = {}
    for r in rows:
        if r.catchup == "latest" and (r.deployment_id not in newest or r.expected_start_time > newest[r.deployment_id]):
            newest[r.deployment_id] = r.expected_start_time
    late_before = now - timedelta(seconds=get_settings().late_grace)
    skips = {
        "latest": [r.id for r in rows if r.catchup == "latest" and r.expected_start_time < newest[r.deployment_id]],
        "none": [r.id for r in rows if r.catchup == "none"
                 and (r.state_name == "Late" or r.expected_start_time < late_before)],
    }
    events: list[dict[str, Any]] = []
    for policy, ids in skips.items():
        if ids:
            _moved, more = flow_run_states_in(
                conn, ids, "CANCELLED", "Skipped", f"skipped: catch-up policy '{policy}'", now,
                sources=(_SCHEDULED,), where=(_F.c.worker_id.is_(None),),
            )
            events += more
    return events


def _active_counts(conn: Connection, key: Any, where: Any) -> dict[Any, int]:
    rows = conn.execute(
        select(key, func.count()).where(where, _F.c.state_type.in_(ACTIVE_TYPES)).group_by(key)
    ).all()
    return {r[0]: int(r[1]) for r in rows}


def _take(
    conn: Connection,
    candidates: Sequence[Row[Any]],
    claimer: str | None,
    limit: int,
    now: datetime,
    events: list[dict[str, Any]],
    *,
    pool: Row[Any] | None = None,
    queues: dict[str, Row[Any]] | None = None,
) -> list[dict[str, Any]]:
    """Claim up to ``limit`` of ``candidates`` (in their order) within the concurrency limits
    of the pool, the queues and the deployments; returns the claimed runs with their deployment."""
    pg = conn.dialect.name == "postgresql"
    queues = queues or {}
    dep_ids = sorted({c.deployment_id for c in candidates})
    deployments = {r.id: dict(r._mapping) for r in conn.execute(select(_D).where(_D.c.id.in_(dep_ids)))}
    limited = sorted(i for i, d in deployments.items() if _deployment_limit(d) is not None)
    if pg and limited:  # in id order: two claimers never wait on each other in a circle
        for r in conn.execute(select(_D).where(_D.c.id.in_(limited)).order_by(_D.c.id).with_for_update()):
            deployments[r.id] = dict(r._mapping)  # as the claim that held the lock left it
    dep_active = _active_counts(conn, _F.c.deployment_id, _F.c.deployment_id.in_(limited)) if limited else {}
    pool_limit = pool.concurrency_limit if pool is not None else None
    queue_limits = {n: q.concurrency_limit for n, q in queues.items() if q.concurrency_limit is not None}
    pool_active = queue_active = None
    if pool is not None and pool_limit is not None:
        pool_active = _active_counts(conn, _F.c.work_pool_name, _F.c.work_pool_name == pool.name).get(pool.name, 0)
    if pool is not None and queue_limits:
        queue_active = _active_counts(conn, func.coalesce(_F.c.work_queue_name, DEFAULT_QUEUE),
                                      _F.c.work_pool_name == pool.name)
    picked: list[str] = []
    collided: list[str] = []
    for c in candidates:
        if len(picked) >= limit or (pool_limit is not None and pool_active is not None and pool_active >= pool_limit):
            break
        deployment = deployments.get(c.deployment_id)
        if deployment is None or deployment["paused"]:
            continue
        queue_limit = queue_limits.get(c.queue)
        if queue_limit is not None and queue_active is not None and queue_active.get(c.queue, 0) >= queue_limit:
            continue
        dep_limit = _deployment_limit(deployment)
        if dep_limit is not None and dep_active.get(c.deployment_id, 0) >= dep_limit:
            if deployment["collision_strategy"] == "cancel_new":
                collided.append(c.id)
            continue  # enqueue: it waits Scheduled for a free slot
        picked.append(c.id)
        dep_active[c.deployment_id] = dep_active.get(c.deployment_id, 0) + 1
        if pool_active is not None:
            pool_active += 1
        if queue_active is not None:
            queue_active[c.queue] = queue_active.get(c.queue, 0) + 1
    if collided:
        _moved, more = flow_run_states_in(
            conn, collided, "CANCELLED", "Cancelled",
            "cancelled: deployment concurrency limit reached (collision strategy cancel_new)", now,
            sources=(_SCHEDULED,), where=(_F.c.worker_id.is_(None),),
        )
        events += more
    claimed: list[str] = []
    if picked:
        # conditional on the run still being Scheduled and unclaimed: the exactly-once guarantee
        claimed, more = flow_run_states_in(
            conn, picked, "PENDING", "Pending", f"claimed by {claimer}" if claimer else "claimed", now,
            sources=(_SCHEDULED,), where=(_F.c.worker_id.is_(None),), values={"worker_id": claimer, "claimed_at": now},
        )
        events += more
    insert_events(conn, events)
    if not claimed:
        return []
    rows = {r.id: _run_dict(r) for r in conn.execute(select(_F).where(_F.c.id.in_(claimed)))}
    return [{**rows[i], "deployment": deployments[rows[i]["deployment_id"]]} for i in picked if i in rows]


def claim_runs(
    db: Database,
    pool_name: str,
    worker_id: str | None,
    *,
    limit: int = 1,
    queues: Sequence[str] | None = None,
    holding: Sequence[str] | None = None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Claim due Scheduled runs of a work pool for a worker: each run goes to exactly one
    claimer, moving Scheduled -> Pending with ``worker_id`` and ``claimed_at`` set.

    A claim whose answer never reached the worker (a timeout, a dropped connection) is not
    lost: a worker that says which runs it is ``holding`` gets the runs claimed for it that
    are still Pending and that it does not hold (see ``_undelivered``) again, and nothing
    new from that claim.

    Runs are taken from unpaused queues (lower priority number first) of deployments that are
    not paused, oldest slot first, within the concurrency limits of the pool, each queue and
    each deployment (active runs: Pending, Running, Retrying, Cancelling). A deployment at its
    limit keeps its runs waiting (collision strategy ``enqueue``) or cancels them
    (``cancel_new``); its catch-up policy skips old slots first (see ``_catch_up``).

    Args:
        db: The database.
        pool_name: The work pool.
        worker_id: The claiming worker's id (from ``worker_heartbeat``); None for none.
        limit: At most this many runs (1 to 1000).
        queues: Only from these queues of the pool (None: all).
        holding: Ids of the runs the worker is running (None: it does not say; nothing
            is delivered again).
        now: Runs due at or before this time (default: now).

    Returns:
        The claimed flow runs (rows), each with ``"deployment"``: its deployment's row.
        Nothing new when the pool is paused.

    Raises:
        LookupError: No work pool of that name.
        ValueError: A malformed limit or queue list.
        DatabaseError: The database cannot be written.
    """
    limit = _claim_limit(limit)
    if queues is not None and (isinstance(queues, str) or not all(isinstance(q, str) for q in queues)):
        raise ValueError(f"queues is a list of queue names, not {queues!r}")
    moment = _aware(now) if now is not None else utcnow()
    held = _holding(holding)
    try:
        with db.engine.begin() as conn:
            return _claim_from_pool(conn, pool_name, worker_id, limit, list(queues) if queues else None, moment,
                                    held)
    except SQLAlchemyError as exc:
        raise db.error(exc, "write") from None


def _holding(holding: Sequence[str] | None) -> list[str] | None:
    if holding is None:
        return None
    if isinstance(holding, str) or not all(isinstance(i, str) for i in holding) or len(holding) > 10_000:
        raise ValueError(f"holding is a list of at most 10,000 flow run ids, not {holding!r}")
    return list(holding)


def _undelivered(
    conn: Connection, scope: Any, claimer: str | None, holding: list[str] | None, limit: int
) -> list[dict[str, Any]]:
    """Runs claimed for ``claimer`` that are still Pending and that it does not hold: their
    claim's answer was lost on the way (it starts each run it receives before it claims
    again, so any other Pending run of its claims never reached it). Answered again, as the
    claim would have, each with its deployment."""
    if claimer is None or holding is None:
        return []
    query = select(_F).where(scope, _F.c.worker_id == claimer, _F.c.state_type == "PENDING")
    if holding:
        query = query.where(_F.c.id.not_in(holding))
    rows = [_run_dict(r) for r in conn.execute(query.order_by(_F.c.expected_start_time, _F.c.id).limit(limit))]
    if not rows:
        return []
    dep_ids = sorted({r["deployment_id"] for r in rows if r["deployment_id"]})
    deployments = {d.id: dict(d._mapping) for d in conn.execute(select(_D).where(_D.c.id.in_(dep_ids)))}
    return [{**r, "deployment": deployments.get(r["deployment_id"])} for r in rows]


def _claim_from_pool(
    conn: Connection, pool_name: str, claimer: str | None, limit: int, queues: list[str] | None, now: datetime,
    holding: list[str] | None,
) -> list[dict[str, Any]]:
    pg = conn.dialect.name == "postgresql"
    _write_lock(conn)
    pool = conn.execute(select(_P).where(_P.c.name == pool_name)).first()
    if pool is None:
        raise _missing_pool(pool_name)
    again = _undelivered(conn, _F.c.work_pool_name == pool_name, claimer, holding, limit)
    if again:
        return again  # the rest at the next claim, within the limits then
    queue_rows = conn.execute(select(_Q).where(_Q.c.pool_name == pool_name)).all()
    if pg and (pool.concurrency_limit is not None or any(q.concurrency_limit is not None for q in queue_rows)):
        # claimers of a limited pool take turns, so each counts the others' claims
        pool = conn.execute(select(_P).where(_P.c.id == pool.id).with_for_update()).first()
        if pool is None:
            raise _missing_pool(pool_name)
        queue_rows = conn.execute(select(_Q).where(_Q.c.pool_name == pool_name)).all()
    if pool.paused:
        return []
    scope = _F.c.work_pool_name == pool_name
    events = _catch_up(conn, scope, now, pg)
    queue_name = func.coalesce(_F.c.work_queue_name, DEFAULT_QUEUE)
    source = _F.join(_D, _D.c.id == _F.c.deployment_id).outerjoin(
        _Q, and_(_Q.c.pool_name == pool_name, _Q.c.name == queue_name)
    )
    query = (
        select(_F.c.id, _F.c.deployment_id, queue_name.label("queue"))
        .select_from(source)
        .where(scope, _due(now), _D.c.paused == false(), or_(_Q.c.paused.is_(None), _Q.c.paused == false()))
        .order_by(func.coalesce(_Q.c.priority, _UNLISTED_PRIORITY), _F.c.expected_start_time, _F.c.id)
        # a few more than asked for: some may wait on a full queue or deployment
        .limit(max(4 * limit, 50))
    )
    if queues:
        query = query.where(queue_name.in_(queues))
    if pg:
        query = query.with_for_update(skip_locked=True, of=_F)
    candidates = conn.execute(query).all()
    return _take(conn, candidates, claimer, limit, now, events, pool=pool, queues={q.name: q for q in queue_rows})


def claim_deployment_runs(
    db: Database, deployment_id: str, runner_id: str | None, *, limit: int = 1,
    holding: Sequence[str] | None = None, now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Claim due Scheduled runs of one deployment for the ``serve`` process running it, as
    ``claim_runs`` does for a pool (same exactly-once claim, deployment limits, collision
    strategy and catch-up; ``holding`` as there). Only runs without a work pool are taken: a
    pool's runs are its workers'. ``runner_id`` is stored as the runs' ``worker_id``.

    Returns:
        The claimed flow runs, each with ``"deployment"``; nothing when it is paused.

    Raises:
        LookupError: No deployment with that id.
        ValueError: A malformed limit.
        DatabaseError: The database cannot be written.
    """
    limit = _claim_limit(limit)
    moment = _aware(now) if now is not None else utcnow()
    held = _holding(holding)
    try:
        with db.engine.begin() as conn:
            pg = conn.dialect.name == "postgresql"
            _write_lock(conn)
            scope = and_(_F.c.deployment_id == deployment_id, _F.c.work_pool_name.is_(None))
            again = _undelivered(conn, scope, runner_id, held, limit)
            if again:
                return again
            deployment = conn.execute(select(_D.c.id, _D.c.paused).where(_D.c.id == deployment_id)).first()
            if deployment is None:
                raise LookupError(f"no deployment with id {deployment_id!r}; list them with `plait deployment ls`")
            if deployment.paused:
                return []
            events = _catch_up(conn, scope, moment, pg)
            query = (
                select(_F.c.id, _F.c.deployment_id, func.coalesce(_F.c.work_queue_name, DEFAULT_QUEUE).label("queue"))
                .where(scope, _due(moment))
                .order_by(_F.c.expected_start_time, _F.c.id)
                .limit(max(4 * limit, 50))
            )
            if pg:
                query = query.with_for_update(skip_locked=True)
            return _take(conn, conn.execute(query).all(), runner_id, limit, moment, events)
    except SQLAlchemyError as exc:
        raise db.error(exc, "write") from None


# -- lateness ---------------------------------------------------------------------------------------
def mark_late(db: Database, *, grace_seconds: float, now: datetime | None = None) -> int:
    """Rename Scheduled runs not started ``grace_seconds`` after their expected start "Late"
    (still of type Scheduled: a worker may claim them as before).

    Returns:
        How many runs became Late.

    Raises:
        ValueError: A negative grace.
        DatabaseError: The database cannot be written.
    """
    if isinstance(grace_seconds, bool) or not isinstance(grace_seconds, (int, float)) or grace_seconds < 0:
        raise ValueError(f"grace_seconds is 0 or more seconds, not {grace_seconds!r}")
    moment = _aware(now) if now is not None else utcnow()
    cutoff = moment - timedelta(seconds=grace_seconds)
    with db.connect("write", write=True) as conn:
        ids: list[str] = list(conn.scalars(select(_F.c.id).where(
            _F.c.state_type == _SCHEDULED, _F.c.state_name == "Scheduled", _F.c.expected_start_time < cutoff,
        )))
        moved, events = flow_run_states_in(
            conn, ids, _SCHEDULED, "Late", f"not started within {grace_seconds:g} s of its scheduled time", moment,
            sources=(_SCHEDULED,), where=(_F.c.state_name == "Scheduled",),
        )
        insert_events(conn, events)
    return len(moved)


def _since(moment: datetime, now: datetime) -> int:
    return max(0, int((now - moment).total_seconds()))


def late_reason(db: Database, flow_run_id: str, *, now: datetime | None = None) -> str:
    """Why a Scheduled (or Late) run has not started, for people: every cause that applies
    of a paused deployment, pool or queue, a missing pool, no worker (or serve process)
    polling, a full concurrency limit of the pool, queue or deployment, joined by "; " —
    or "nothing is wrong yet: ..." when none does.

    Raises:
        LookupError: No flow run with that id.
        DatabaseError: The database cannot be read.
    """
    moment = _aware(now) if now is not None else utcnow()
    with db.connect() as conn:
        run = conn.execute(select(_F).where(_F.c.id == flow_run_id)).first()
        if run is None:
            raise _missing_run(flow_run_id)
        if run.state_type != _SCHEDULED:
            return f"flow run {run.name!r} is {run.state_name}, not waiting to start"
        deployment = conn.execute(select(_D).where(_D.c.id == run.deployment_id)).first() \
            if run.deployment_id else None
        if deployment is None:
            return (f"flow run {run.name!r} belongs to no deployment (or its deployment was deleted): nothing "
                    f"will start it; cancel it with `plait flow-run cancel {run.id}`")
        reasons = _waiting_reasons(conn, run, deployment, moment)
    if reasons:
        return "; ".join(reasons)
    where = f"pool '{run.work_pool_name}'" if run.work_pool_name else "the serve process"
    if run.expected_start_time > moment:
        return f"nothing is wrong yet: it is scheduled for {run.expected_start_time.isoformat()}"
    return (f"nothing is wrong yet: it was due {_since(run.expected_start_time, moment)} s ago; the next poll "
            f"of {where} should start it")


def _waiting_reasons(conn: Connection, run: Row[Any], deployment: Row[Any], now: datetime) -> list[str]:
    full = f"{deployment.flow_name}/{deployment.name}"
    reasons: list[str] = []
    if deployment.paused:
        reasons.append(f"deployment '{full}' is paused (resume it with `plait deployment resume {full}`)")
    pool_name = run.work_pool_name
    if pool_name is None:
        polled = deployment.last_polled_at
        if polled is None or _since(polled, now) > _SERVE_SILENCE:
            reasons.append(f"no serve process has polled deployment '{full}' in the last {_SERVE_SILENCE:g} s "
                           f"(start one with `{deployment.flow_name}.serve(...)`)")
    else:
        pool = conn.execute(select(_P).where(_P.c.name == pool_name)).first()
        if pool is None:
            reasons.append(f"work pool '{pool_name}' does not exist (create it with "
                           f"`plait work-pool create {pool_name} --type process`)")
        else:
            reasons += _pool_reasons(conn, run, pool, now)
    limit = _deployment_limit(dict(deployment._mapping))
    if limit is not None:
        active = _active_counts(conn, _F.c.deployment_id, _F.c.deployment_id == deployment.id).get(deployment.id, 0)
        if active >= limit:
            reasons.append(f"deployment '{full}' concurrency limit ({limit}) is full: {active} of its runs are "
                           f"active (collision strategy {deployment.collision_strategy})")
    return reasons


def _pool_reasons(conn: Connection, run: Row[Any], pool: Row[Any], now: datetime) -> list[str]:
    name = pool.name
    reasons: list[str] = []
    if pool.paused:
        reasons.append(f"work pool '{name}' is paused (resume it with `plait work-pool resume {name}`)")
    queue_name = run.work_queue_name or DEFAULT_QUEUE
    queue = conn.execute(select(_Q).where(_Q.c.pool_name == name, _Q.c.name == queue_name)).first()
    if queue is not None and queue.paused:
        reasons.append(f"work queue '{queue_name}' of pool '{name}' is paused")
    workers = conn.execute(select(_W.c.heartbeat_at, _W.c.heartbeat_interval).where(_W.c.pool_name == name)).all()
    if not any(worker_is_online(w.heartbeat_at, w.heartbeat_interval, now) for w in workers):
        start = f"start one with `plait worker start --pool {name}`"
        if workers:
            silent = _since(max(w.heartbeat_at for w in workers), now)
            reasons.append(f"no worker has polled pool '{name}' in the last {silent} s ({start})")
        else:
            reasons.append(f"no worker has ever polled pool '{name}' ({start})")
    if pool.concurrency_limit is not None:
        active = _active_counts(conn, _F.c.work_pool_name, _F.c.work_pool_name == name).get(name, 0)
        if active >= pool.concurrency_limit:
            reasons.append(f"work pool '{name}' concurrency limit ({pool.concurrency_limit}) is full: "
                           f"{active} runs are active")
    if queue is not None and queue.concurrency_limit is not None:
        active = _active_counts(
            conn, func.coalesce(_F.c.work_queue_name, DEFAULT_QUEUE), _F.c.work_pool_name == name
        ).get(queue_name, 0)
        if active >= queue.concurrency_limit:
            reasons.append(f"work queue '{queue_name}' of pool '{name}' concurrency limit "
                           f"({queue.concurrency_limit}) is full: {active} runs are active")
    return reasons


# -- run control ------------------------------------------------------------------------------------
def request_cancel(db: Database, flow_run_id: str) -> str:
    """Ask for a run to stop: a Scheduled run (nothing runs it yet) becomes Cancelled at
    once; a Pending, Running, Retrying or Paused one becomes Cancelling, and whatever runs it
    (worker, serve process, the engine itself) ends it Cancelled. Asking again is harmless.

    Returns:
        The state type the run is in now: ``"CANCELLED"`` or ``"CANCELLING"``.

    Raises:
        LookupError: No flow run with that id.
        ValueError: The run already ended ("flow run X already ended (Completed); nothing to cancel").
        DatabaseError: The database cannot be written.
    """
    for _attempt in range(5):
        with db.connect("write", write=True) as conn:
            run = conn.execute(
                select(_F.c.state_type, _F.c.state_name).where(_F.c.id == flow_run_id)
            ).first()
            if run is None:
                raise _missing_run(flow_run_id)
            current = run.state_type
            if current == _CANCELLING:
                return _CANCELLING
            if current in _FINAL:
                raise ValueError(f"flow run {flow_run_id} already ended ({run.state_name}); nothing to cancel")
            if current == _SCHEDULED:
                target, name, message = "CANCELLED", "Cancelled", "cancelled before it started"
            else:
                target, name, message = _CANCELLING, "Cancelling", "cancellation requested"
            if not _may_move(current, target):
                raise ValueError(f"flow run {flow_run_id} is {run.state_name}, which cannot be cancelled")
            moved, events = flow_run_states_in(
                conn, [flow_run_id], target, name, message, utcnow(), sources=(current,)
            )
            if moved:
                insert_events(conn, events)
                return target
        # it moved on between our read and our update: look again
    raise db.error(RuntimeError("the run kept changing state"), "cancel a flow run in")


def set_flow_run_state(
    db: Database, flow_run_id: str, state_type: StateType | str, name: str | None = None, message: str | None = None
) -> None:
    """Move a flow run to a state the transition table allows from its stored one (resume,
    retry and other control; the engine's own moves go through the recorder).

    Args:
        db: The database.
        flow_run_id: The run.
        state_type: The new state type (``StateType`` or its value, ``"CANCELLING"`` too).
        name: The state's display name (default: the type's title).
        message: Why, for people.

    Raises:
        LookupError: No flow run with that id.
        ValueError: An unknown state type.
        IllegalTransition: The table does not allow the move from the stored state.
        DatabaseError: The database cannot be written.
    """
    target = state_type.value if isinstance(state_type, StateType) else str(state_type)
    if target not in _ALL_TYPES:
        raise ValueError(f"unknown state type {target!r}; use one of: {', '.join(_ALL_TYPES)}")
    for _attempt in range(5):
        with db.connect("write", write=True) as conn:
            current = conn.scalar(select(_F.c.state_type).where(_F.c.id == flow_run_id))
            if current is None:
                raise _missing_run(flow_run_id)
            if not _may_move(current, target):
                raise IllegalTransition(f"flow run {flow_run_id} cannot move from {current.title()} to "
                                        f"{target.title()}")
            values = {"end_time": None} if current in _FINAL and target not in _FINAL else {}
            moved, events = flow_run_states_in(
                conn, [flow_run_id], target, name or target.title(), message, utcnow(), sources=(current,),
                values=values,
            )
            if moved:
                insert_events(conn, events)
                return
    raise db.error(RuntimeError("the run kept changing state"), "update")


# -- dead workers ----------------------------------------------------------------------------------
def _attempts_before(conn: Connection, run_id: str, retry_of: str | None) -> int:
    """How many earlier attempts a run retries (the length of its ``retry_of`` chain)."""
    count, seen = 0, {run_id}
    while retry_of is not None and retry_of not in seen:
        seen.add(retry_of)
        count += 1
        retry_of = conn.scalar(select(_F.c.retry_of).where(_F.c.id == retry_of))
    return count


def reap_dead_workers(db: Database, *, now: datetime | None = None) -> list[str]:
    """Crash the runs claimed by workers silent for two of their heartbeat intervals, and
    schedule a retry of each (now, same parameters, ``retry_of`` set, key
    ``retry:<crashed id>``) while its deployment's ``retries`` exceed its earlier attempts.
    A claimed run that was Cancelling ends Cancelled instead. Their unfinished task runs
    and subflow runs end with them (``plait._store.runs.end_flow_runs``).

    Returns:
        The ids of the runs crashed.

    Raises:
        DatabaseError: The database cannot be read or written.
    """
    from plait._store.runs import end_flow_runs

    moment = _aware(now) if now is not None else utcnow()
    with db.connect() as conn:
        dead = {w.id: w for w in conn.execute(select(_W))
                if not worker_is_online(w.heartbeat_at, w.heartbeat_interval, moment)}
        if not dead:
            return []
        runs = conn.execute(select(_F).where(
            _F.c.worker_id.in_(list(dead)), _F.c.state_type.in_([t for t in _NOT_FINAL if t != _SCHEDULED])
        )).all()
    crash: dict[str, str] = {}
    cancel: dict[str, str] = {}
    for run in runs:
        worker = dead[run.worker_id]
        why = (f"worker {worker.name!r} of pool {worker.pool_name!r} stopped heartbeating "
               f"(last heartbeat {worker.heartbeat_at.isoformat()})")
        (cancel if run.state_type == _CANCELLING else crash)[run.id] = why
    crashed = end_flow_runs(db, crash, StateType.CRASHED, subflows=True) if crash else []
    if cancel:
        end_flow_runs(db, cancel, StateType.CANCELLED, subflows=True)
    by_id = {r.id: r for r in runs}
    for run_id in crashed:
        _retry_crashed(db, by_id[run_id])
    return crashed


def _retry_crashed(db: Database, run: Row[Any]) -> dict[str, Any] | None:
    with db.connect() as conn:
        row = conn.execute(select(_D).where(_D.c.id == run.deployment_id)).first() if run.deployment_id else None
        if row is None or not row.retries:
            return None
        attempts = _attempts_before(conn, run.id, run.retry_of)
    if row.retries <= attempts:
        return None
    retry, _created = create_flow_run(
        db, dict(row._mapping), parameters=dict(run.parameters or {}), expected_start_time=utcnow(),
        idempotency_key=f"retry:{run.id}", tags=list(run.tags or []), job_variables=run.job_variables,
        name=f"{run.name}-retry-{attempts + 1}", parent_flow_run_id=run.parent_flow_run_id,
        parent_task_run_id=run.parent_task_run_id, retry_of=run.id,
    )
    return retry
