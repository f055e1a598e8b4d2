"""Deployments' flow runs against real databases (SQLite file and PostgreSQL server):
idempotent creation, the exactly-once claim under races, concurrency limits, collision
strategy and catch-up at claim, lateness and why, cancellation, and dead workers."""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from plait._store.database import Database
from plait._store.deployments import save_deployment, set_deployment_paused, touch_deployment
from plait._store.events import list_events
from plait._store.models import FLOW_RUN_TAGS, FLOW_RUNS, STATES
from plait._store.scheduling import (
    cancelling_among,
    claim_deployment_runs,
    claim_runs,
    create_flow_run,
    last_planned,
    late_reason,
    mark_late,
    merge_job_variables,
    plan_deployment_runs,
    reap_dead_workers,
    request_cancel,
    scheduled_count,
    set_flow_run_state,
)
from plait._store.work_pools import (
    create_work_pool,
    save_work_queue,
    set_work_pool_paused,
    update_work_pool,
    worker_heartbeat,
)
from plait.states import IllegalTransition, StateType

_F = FLOW_RUNS


def _deployment(db: Database, name: str = "nightly", **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "flow_name": "etl", "name": name, "entrypoint": "/srv/etl.py:etl", "parameters": {"day": "today", "n": 1},
        "tags": ["prod"], "work_pool_name": "local", "job_variables": {"env": {"B": "2"}, "cwd": "/srv"},
    }
    spec.update(changes)
    return save_deployment(db, spec)[0]


def _pool(db: Database, name: str = "local", **options: Any) -> dict[str, Any]:
    return create_work_pool(db, name, "process", base_job_variables={"env": {"A": "1", "B": "1"}}, **options)


def _run(db: Database, run_id: str) -> Any:
    with db.engine.connect() as conn:
        return conn.execute(select(_F).where(_F.c.id == run_id)).first()


def _due(db: Database, deployment: dict[str, Any], count: int = 1, *, ago: float = 1.0, **kwargs: Any) -> list[str]:
    start = datetime.now(UTC) - timedelta(seconds=ago)
    return [create_flow_run(db, deployment, parameters={}, expected_start_time=start + timedelta(microseconds=i),
                            **kwargs)[0]["id"] for i in range(count)]


def _states(db: Database, run_id: str) -> list[tuple[str, str]]:
    with db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(  # type: ignore[misc]
            select(STATES.c.type, STATES.c.name).where(STATES.c.run_id == run_id).order_by(STATES.c.id))]


def _start(db: Database, run_id: str) -> None:
    set_flow_run_state(db, run_id, "RUNNING")


# -- creating runs -----------------------------------------------------------------------------------
def test_merge_job_variables_nests_objects() -> None:
    assert merge_job_variables({"env": {"A": "1"}, "x": 1}, None, {"env": {"B": "2"}, "x": 2}, {"env": {"A": "3"}}) == {
        "env": {"A": "3", "B": "2"}, "x": 2}


def test_create_flow_run_copies_the_deployment_and_merges(database_url: str) -> None:
    db = Database.open(database_url)
    _pool(db)
    deployment = _deployment(db, work_queue_name="urgent")
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    run, created = create_flow_run(db, deployment, parameters={"n": 5}, expected_start_time=when, tags=["extra", "prod"],
                                   job_variables={"env": {"C": "3"}}, parent_flow_run_id="parent-id")
    assert created is True
    assert (run["flow_name"], run["deployment_id"], run["work_pool_name"], run["work_queue_name"]) == (
        "etl", deployment["id"], "local", "urgent")
    assert run["parameters"] == {"day": "today", "n": 5}
    assert run["tags"] == ["prod", "extra"]
    assert run["job_variables"] == {"env": {"A": "1", "B": "2", "C": "3"}, "cwd": "/srv"}
    assert (run["state_type"], run["state_name"], run["expected_start_time"]) == ("SCHEDULED", "Scheduled", when)
    assert (run["entrypoint"], run["parent_flow_run_id"], run["auto_scheduled"]) == ("/srv/etl.py:etl", "parent-id", False)
    assert run["name"] == "nightly-20300102-030405"
    assert _states(db, run["id"]) == [("SCHEDULED", "Scheduled")]
    with db.engine.connect() as conn:
        assert set(conn.scalars(select(FLOW_RUN_TAGS.c.tag).where(FLOW_RUN_TAGS.c.flow_run_id == run["id"]))) == {
            "prod", "extra"}
    kinds = [e["kind"] for e in list_events(db, resource=f"flow-run/{run['id']}")["items"]]
    assert kinds == ["flow-run.state-changed", "flow-run.scheduled"]


def test_the_same_idempotency_key_returns_the_same_run(database_url: str) -> None:
    db = Database.open(database_url)
    deployment = _deployment(db)
    now = datetime.now(UTC)
    first, created = create_flow_run(db, deployment, parameters={"n": 2}, expected_start_time=now, idempotency_key="k1")
    again, created_again = create_flow_run(db, deployment, parameters={"n": 3}, expected_start_time=now,
                                           idempotency_key="k1")
    assert (created, created_again) == (True, False)
    assert again["id"] == first["id"] and again["parameters"]["n"] == 2
    with db.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(_F)) == 1
        assert conn.scalar(select(func.count()).select_from(STATES)) == 1


def test_racing_creations_with_one_key_make_one_run(database_url: str) -> None:
    db = Database.open(database_url)
    deployment = _deployment(db)
    barrier = threading.Barrier(6)
    results: list[tuple[str, bool]] = []
    errors: list[BaseException] = []

    def create() -> None:
        barrier.wait()
        try:
            row, created = create_flow_run(db, deployment, parameters={}, expected_start_time=datetime.now(UTC),
                                           idempotency_key="once")
            results.append((row["id"], created))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len({run_id for run_id, _ in results}) == 1
    assert sorted(created for _, created in results) == [False] * 5 + [True]
    with db.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(_F)) == 1


def test_planning_slots_twice_creates_each_once(database_url: str) -> None:
    db = Database.open(database_url)
    deployment = _deployment(db)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)
    slots = [(start + timedelta(minutes=i), "sched-1", {"n": i}) for i in range(5)]
    assert plan_deployment_runs(db, deployment["id"], slots) == 5
    assert plan_deployment_runs(db, deployment["id"], slots + [(start + timedelta(minutes=9), "sched-1", {})]) == 1
    assert scheduled_count(db, deployment["id"], datetime.now(UTC)) == 6
    assert scheduled_count(db, deployment["id"], start + timedelta(minutes=3)) == 2
    assert last_planned(db, deployment["id"]) == start + timedelta(minutes=9)
    with db.engine.connect() as conn:
        keys: set[str] = set(conn.scalars(select(_F.c.idempotency_key)))
        assert f"schedule:sched-1:{start.isoformat()}" in keys
        assert conn.scalar(select(_F.c.parameters).where(_F.c.expected_start_time == start + timedelta(minutes=2))) == {
            "day": "today", "n": 2}
    assert plan_deployment_runs(db, "no-such-deployment", slots) == 0
    set_deployment_paused(db, deployment["id"], True)
    assert plan_deployment_runs(db, deployment["id"], [(start + timedelta(minutes=20), "sched-1", {})]) == 0


# -- claiming ----------------------------------------------------------------------------------------
def test_claim_moves_due_runs_to_pending_for_the_worker(database_url: str) -> None:
    db = Database.open(database_url)
    _pool(db)
    deployment = _deployment(db)
    due = _due(db, deployment, 2)
    create_flow_run(db, deployment, parameters={}, expected_start_time=datetime.now(UTC) + timedelta(hours=1))
    claimed = claim_runs(db, "local", "worker-1", limit=5)
    assert [r["id"] for r in claimed] == due  # oldest slot first, future runs wait
    assert {(r["state_type"], r["state_name"], r["worker_id"]) for r in claimed} == {("PENDING", "Pending", "worker-1")}
    assert claimed[0]["deployment"]["id"] == deployment["id"] and claimed[0]["claimed_at"] is not None
    assert _states(db, due[0]) == [("SCHEDULED", "Scheduled"), ("PENDING", "Pending")]
    assert claim_runs(db, "local", "worker-2", limit=5) == []
    with pytest.raises(LookupError, match="no work pool named 'other'"):
        claim_runs(db, "other", "worker-1")
    with pytest.raises(ValueError, match="limit"):
        claim_runs(db, "local", "worker-1", limit=0)


def test_a_claim_whose_answer_was_lost_is_answered_again(database_url: str) -> None:
    db = Database.open(database_url)
    _pool(db)
    deployment = _deployment(db)
    first, second, third = _due(db, deployment, 3)
    lost = claim_runs(db, "local", "worker-1", limit=2)  # the answer never reached the worker
    assert [r["id"] for r in lost] == [first, second]
    # the worker holds nothing: the same two again (with their deployment), nothing new
    again = claim_runs(db, "local", "worker-1", limit=5, holding=[])
    assert [r["id"] for r in again] == [first, second] and again[0]["deployment"]["id"] == deployment["id"]
    # it holds one (started): the other again
    assert [r["id"] for r in claim_runs(db, "local", "worker-1", limit=5, holding=[first])] == [second]
    # holding both: new runs; and a worker never gets another worker's Pending runs
    assert [r["id"] for r in claim_runs(db, "local", "worker-1", limit=5, holding=[first, second])] == [third]
    assert claim_runs(db, "local", "worker-2", limit=5, holding=[]) == []
    _start(db, third)
    assert claim_runs(db, "local", "worker-1", limit=5, holding=[first, second]) == []  # Running: delivered
    with pytest.raises(ValueError, match="holding"):
        claim_runs(db, "local", "worker-1", holding="abc")


@pytest.mark.parametrize("limited", [None, "pool", "deployment"])
def test_four_claimers_racing_claim_each_of_200_runs_exactly_once(database_url: str, limited: str | None) -> None:
    db = Database.open(database_url)
    _pool(db)
    deployment = _deployment(db, concurrency_limit=5 if limited == "deployment" else None)
    start = datetime.now(UTC) - timedelta(minutes=1)
    plan_deployment_runs(db, deployment["id"], [(start + timedelta(milliseconds=i), "s", {}) for i in range(200)])
    pool_limit = {"pool": 7, "deployment": 5}.get(limited or "")
    if limited == "pool":
        update_work_pool(db, "local", concurrency_limit=pool_limit)
    barrier = threading.Barrier(4)
    claims: dict[str, list[str]] = {f"w{i}": [] for i in range(4)}
    errors: list[BaseException] = []
    over_limit: list[int] = []

    def work(worker: str) -> None:
        rng = random.Random(worker)
        barrier.wait()
        try:
            misses = 0
            while misses < 20:
                got = claim_runs(db, "local", worker, limit=rng.randint(1, 5))
                claims[worker] += [r["id"] for r in got]
                misses = 0 if got else misses + 1
                if pool_limit is not None:
                    with db.engine.connect() as conn:
                        active = int(conn.scalar(
                            select(func.count()).select_from(_F).where(_F.c.state_type == "PENDING")) or 0)
                    if active > pool_limit:
                        over_limit.append(active)
                    for run_id in [r["id"] for r in got]:  # the run ends: its slot frees
                        _start(db, run_id)
                        set_flow_run_state(db, run_id, "COMPLETED")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in claims]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    everything = [i for ids in claims.values() for i in ids]
    assert len(everything) == 200 and len(set(everything)) == 200
    assert over_limit == []
    with db.engine.connect() as conn:
        owners = {run_id: worker for run_id, worker in conn.execute(select(_F.c.id, _F.c.worker_id))}
        pending_states = conn.scalar(select(func.count()).select_from(STATES).where(
            STATES.c.type == "PENDING"))
    assert all(owners[i] == w for w, ids in claims.items() for i in ids)
    assert pending_states == 200  # one claim each, never two


def test_limits_of_pool_queue_and_deployment_hold_at_claim(database_url: str) -> None:
    db = Database.open(database_url)
    _pool(db, concurrency_limit=3)
    save_work_queue(db, "local", "urgent", priority=1)
    save_work_queue(db, "local", "default", priority=2, concurrency_limit=1)
    urgent = _deployment(db, "urgent", work_queue_name="urgent")
    normal = _deployment(db, "normal")
    limited = _deployment(db, "limited", work_queue_name="urgent", concurrency_limit=1)
    normal_runs = _due(db, normal, 2, ago=30)
    limited_runs = _due(db, limited, 2, ago=20)
    urgent_runs = _due(db, urgent, 2, ago=10)
    claimed = [r["id"] for r in claim_runs(db, "local", "w", limit=10)]
    # the pool allows 3: the urgent queue first (oldest slot first), one of the limited deployment
    assert claimed == [limited_runs[0], *urgent_runs]
    assert _run(db, limited_runs[1]).state_type == "SCHEDULED"  # enqueue: it waits
    assert claim_runs(db, "local", "w", limit=10) == []
    _start(db, urgent_runs[0])
    set_flow_run_state(db, urgent_runs[0], "COMPLETED")
    # a slot of the pool is free; the limited deployment is still full, the default queue has room for one
    assert [r["id"] for r in claim_runs(db, "local", "w", limit=10)] == [normal_runs[0]]
    update_work_pool(db, "local", concurrency_limit=None)
    assert claim_runs(db, "local", "w", limit=10) == []  # default queue full (1), limited deployment full (1)
    assert [r["id"] for r in claim_runs(db, "local", "w", limit=10, queues=["default"])] == []


def test_queue_filter_and_priority(database_url: str) -> None:
    db = Database.open(database_url)
    _pool(db)
    save_work_queue(db, "local", "low", priority=9)
    low = _due(db, _deployment(db, "low", work_queue_name="low"), 1, ago=60)
    high = _due(db, _deployment(db, "high"), 1, ago=1)
    assert [r["id"] for r in claim_runs(db, "local", "w", limit=1)] == high
    assert claim_runs(db, "local", "w", limit=5, queues=["default"]) == []
    assert [r["id"] for r in claim_runs(db, "local", "w", limit=5, queues=["low"])] == low


def test_paused_pool_queue_or_deployment_is_not_claimed(database_url: str) -> None:
    db = Database.open(database_url)
    _pool(db)
    deployment = _deployment(db)
    (run_id,) = _due(db, deployment)
    set_work_pool_paused(db, "local", True)
    assert claim_runs(db, "local", "w", limit=5) == []
    set_work_pool_paused(db, "local", False)
    set_deployment_paused(db, deployment["id"], True)
    assert claim_runs(db, "local", "w", limit=5) == []
    set_deployment_paused(db, deployment["id"], False)
    save_work_queue(db, "local", "default", paused=True)
    assert claim_runs(db, "local", "w", limit=5) == []
    save_work_queue(db, "local", "default", paused=False)
    assert [r["id"] for r in claim_runs(db, "local", "w", limit=5)] == [run_id]


def test_collision_strategy_cancel_new(database_url: str) -> None:
    db = Database.open(database_url)
    _pool(db)
    deployment = _deployment(db, max_active_runs=1, collision_strategy="cancel_new")
    first, second = _due(db, deployment, 2)
    assert [r["id"] for r in claim_runs(db, "local", "w", limit=5)] == [first]
    cancelled = _run(db, second)
    assert (cancelled.state_type, cancelled.state_message) == (
        "CANCELLED", "cancelled: deployment concurrency limit reached (collision strategy cancel_new)")
    _start(db, first)
    set_flow_run_state(db, first, "COMPLETED")
    (third,) = _due(db, deployment)
    assert [r["id"] for r in claim_runs(db, "local", "w", limit=5)] == [third]


def test_catch_up_policies(database_url: str) -> None:
    db = Database.open(database_url)
    _pool(db)
    now = datetime.now(UTC)
    times = [now - timedelta(minutes=m) for m in (30, 20, 10)] + [now + timedelta(hours=1)]
    by_policy: dict[str, dict[str, Any]] = {}
    for policy in ("all", "latest", "none"):
        deployment = _deployment(db, policy, catchup=policy)
        plan_deployment_runs(db, deployment["id"], [(t, f"schedule-{policy}", {}) for t in times])
        by_policy[policy] = deployment
    manual = _due(db, by_policy["latest"], 1, ago=3600)  # asked for by hand: never skipped
    recent = _due(db, by_policy["none"], 1, ago=0.5, auto_scheduled=True, idempotency_key="schedule:s:recent")
    claimed = claim_runs(db, "local", "w", limit=20)
    by_deployment = Counter(r["deployment"]["name"] for r in claimed)
    assert by_deployment == {"all": 3, "latest": 2, "none": 1}
    latest = {r["expected_start_time"] for r in claimed if r["deployment"]["name"] == "latest"}
    assert latest == {_run(db, manual[0]).expected_start_time, times[2]}
    assert [r["id"] for r in claimed if r["deployment"]["name"] == "none"] == recent
    with db.engine.connect() as conn:
        skipped = conn.execute(select(_F.c.deployment_id, _F.c.state_name, _F.c.state_message).where(
            _F.c.state_type == "CANCELLED")).all()
    messages = Counter((d, m) for d, _n, m in skipped)
    assert messages == {
        (by_policy["latest"]["id"], "skipped: catch-up policy 'latest'"): 2,
        (by_policy["none"]["id"], "skipped: catch-up policy 'none'"): 3,
    }
    assert {n for _d, n, _m in skipped} == {"Skipped"}


def test_a_serve_process_claims_its_deployments_runs_without_a_pool(database_url: str) -> None:
    db = Database.open(database_url)
    served = _deployment(db, "served", work_pool_name=None, job_variables={})
    _pool(db)
    pooled = _deployment(db, "pooled")
    mine = _due(db, served, 3)
    _due(db, pooled, 1)
    first = claim_deployment_runs(db, served["id"], "runner-1", limit=2)
    assert [r["id"] for r in first] == mine[:2] and first[0]["worker_id"] == "runner-1"
    assert [r["id"] for r in claim_deployment_runs(db, served["id"], "runner-2", limit=5)] == mine[2:]
    assert claim_deployment_runs(db, pooled["id"], "runner-1", limit=5) == []  # a pool's runs are its workers'
    with pytest.raises(LookupError, match="no deployment"):
        claim_deployment_runs(db, "nope", "runner")


# -- lateness -------------------------------------------------------------------------------------------
def test_mark_late_renames_overdue_scheduled_runs(database_url: str) -> None:
    db = Database.open(database_url)
    _pool(db)
    deployment = _deployment(db)
    (old,) = _due(db, deployment, ago=60)
    (fresh,) = _due(db, deployment, ago=1)
    assert mark_late(db, grace_seconds=15) == 1
    assert mark_late(db, grace_seconds=15) == 0
    late = _run(db, old)
    assert (late.state_type, late.state_name) == ("SCHEDULED", "Late")
    assert _run(db, fresh).state_name == "Scheduled"
    assert _states(db, old) == [("SCHEDULED", "Scheduled"), ("SCHEDULED", "Late")]
    # a Late run is claimed like any other
    assert {r["id"] for r in claim_runs(db, "local", "w", limit=5)} == {old, fresh}


def test_late_reason_names_each_cause(database_url: str) -> None:
    db = Database.open(database_url)
    (run_id,) = _due(db, _deployment(db, "missing-pool", work_pool_name="nowhere"), ago=60)
    assert "work pool 'nowhere' does not exist" in late_reason(db, run_id)

    _pool(db)
    deployment = _deployment(db)
    (run_id,) = _due(db, deployment, ago=60)
    assert late_reason(db, run_id) == (
        "no worker has ever polled pool 'local' (start one with `plait worker start --pool local`)")
    worker = worker_heartbeat(db, "local", "w1", hostname="h", pid=1, heartbeat_interval=5)
    assert late_reason(db, run_id).startswith("nothing is wrong yet: it was due 60 s ago")
    later = datetime.now(UTC) + timedelta(seconds=100)
    assert "no worker has polled pool 'local' in the last 100 s" in late_reason(db, run_id, now=later)

    set_work_pool_paused(db, "local", True)
    assert "work pool 'local' is paused" in late_reason(db, run_id)
    set_work_pool_paused(db, "local", False)
    set_deployment_paused(db, deployment["id"], True)
    assert "deployment 'etl/nightly' is paused" in late_reason(db, run_id)
    set_deployment_paused(db, deployment["id"], False)
    save_work_queue(db, "local", "default", paused=True)
    assert "work queue 'default' of pool 'local' is paused" in late_reason(db, run_id)
    save_work_queue(db, "local", "default", paused=False)

    update_work_pool(db, "local", concurrency_limit=1)
    other = _deployment(db, "other")
    (busy,) = _due(db, other, ago=120)
    assert [r["id"] for r in claim_runs(db, "local", worker["worker_id"])] == [busy]
    assert "work pool 'local' concurrency limit (1) is full: 1 runs are active" in late_reason(db, run_id)
    update_work_pool(db, "local", concurrency_limit=None)

    limited = _deployment(db, "limited", concurrency_limit=1)
    first, second = _due(db, limited, 2, ago=30)
    claim_runs(db, "local", worker["worker_id"], limit=5)
    assert _run(db, second).state_type == "SCHEDULED"
    assert "deployment 'etl/limited' concurrency limit (1) is full" in late_reason(db, second)

    (future,) = _due(db, deployment, ago=-3600)
    assert late_reason(db, future).startswith("nothing is wrong yet: it is scheduled for")
    assert late_reason(db, first).endswith("is Pending, not waiting to start")
    with pytest.raises(LookupError):
        late_reason(db, "no-such-run")


def test_late_reason_for_a_serve_deployment(database_url: str) -> None:
    db = Database.open(database_url)
    served = _deployment(db, "served", work_pool_name=None)
    (run_id,) = _due(db, served, ago=60)
    assert "no serve process has polled deployment 'etl/served' in the last 60 s" in late_reason(db, run_id)
    touch_deployment(db, served["id"])
    assert late_reason(db, run_id).startswith("nothing is wrong yet")


# -- run control ------------------------------------------------------------------------------------------
def test_request_cancel_scheduled_running_and_final(database_url: str) -> None:
    db = Database.open(database_url)
    _pool(db)
    deployment = _deployment(db)
    waiting, running = _due(db, deployment, 2)
    assert request_cancel(db, waiting) == "CANCELLED"
    ended = _run(db, waiting)
    assert (ended.state_type, ended.state_message) == ("CANCELLED", "cancelled before it started")
    assert ended.end_time is not None

    (claimed,) = claim_runs(db, "local", "w")
    assert claimed["id"] == running
    _start(db, running)
    assert request_cancel(db, running) == "CANCELLING"
    assert request_cancel(db, running) == "CANCELLING"  # asking twice is harmless
    assert _states(db, running)[-1] == ("CANCELLING", "Cancelling")
    assert cancelling_among(db, [running, waiting, "nope"]) == {running}
    with pytest.raises(ValueError, match=rf"flow run {waiting} already ended \(Cancelled\); nothing to cancel"):
        request_cancel(db, waiting)
    with pytest.raises(LookupError, match="no flow run with id 'nope'"):
        request_cancel(db, "nope")
    set_flow_run_state(db, running, "CANCELLED", message="stopped by the worker")
    assert _run(db, running).state_type == "CANCELLED"
    kinds = [(e["payload"]["state_type"]) for e in list_events(
        db, kinds=["flow-run.state-changed"], resource=f"flow-run/{running}")["items"]]
    assert kinds == ["SCHEDULED", "PENDING", "RUNNING", "CANCELLING", "CANCELLED"]


def test_set_flow_run_state_follows_the_transition_table(database_url: str) -> None:
    db = Database.open(database_url)
    (run_id,) = _due(db, _deployment(db, work_pool_name=None))
    with pytest.raises(IllegalTransition, match="cannot move from Scheduled to Completed"):
        set_flow_run_state(db, run_id, StateType.COMPLETED)
    with pytest.raises(ValueError, match="unknown state type"):
        set_flow_run_state(db, run_id, "DONE")
    with pytest.raises(LookupError):
        set_flow_run_state(db, "nope", "RUNNING")
    set_flow_run_state(db, run_id, StateType.RUNNING)
    set_flow_run_state(db, run_id, "FAILED", message="boom")
    assert _run(db, run_id).end_time is not None
    set_flow_run_state(db, run_id, "SCHEDULED", "AwaitingRetry")  # a retry takes it back
    again = _run(db, run_id)
    assert (again.state_type, again.state_name, again.end_time) == ("SCHEDULED", "AwaitingRetry", None)


def test_dead_workers_runs_crash_and_are_retried_per_the_deployment(database_url: str) -> None:
    db = Database.open(database_url)
    _pool(db)
    deployment = _deployment(db, retries=1)
    no_retries = _deployment(db, "once")
    (run_id,) = _due(db, deployment)
    (other_id,) = _due(db, no_retries)
    dead = worker_heartbeat(db, "local", "dying", hostname="h", pid=1, heartbeat_interval=5)["worker_id"]
    alive = worker_heartbeat(db, "local", "alive", hostname="h", pid=2, heartbeat_interval=3600)["worker_id"]
    assert {r["id"] for r in claim_runs(db, "local", dead, limit=2)} == {run_id, other_id}
    _start(db, run_id)
    assert reap_dead_workers(db) == []  # heartbeats are fresh

    later = datetime.now(UTC) + timedelta(seconds=11)
    assert sorted(reap_dead_workers(db, now=later)) == sorted([run_id, other_id])
    crashed = _run(db, run_id)
    assert crashed.state_type == "CRASHED" and "worker 'dying' of pool 'local' stopped heartbeating" in (
        crashed.state_message)
    with db.engine.connect() as conn:
        retries = conn.execute(select(_F).where(_F.c.retry_of.is_not(None))).all()
    assert [(r.retry_of, r.state_type, r.parameters, r.deployment_id) for r in retries] == [
        (run_id, "SCHEDULED", crashed.parameters, deployment["id"])]
    assert reap_dead_workers(db, now=later) == []  # nothing left to reap, no second retry

    (retry,) = claim_runs(db, "local", dead)
    assert retry["id"] == retries[0].id
    assert reap_dead_workers(db, now=later + timedelta(seconds=60)) == [retry["id"]]
    with db.engine.connect() as conn:  # retries=1: the retry of the retry is not made
        assert conn.scalar(select(func.count()).select_from(_F).where(_F.c.retry_of.is_not(None))) == 1
    assert alive  # the live worker's runs (none) were never touched


@pytest.mark.skipif(not hasattr(StateType, "CANCELLING"), reason="StateType.CANCELLING not in plait.states yet")
def test_a_dead_workers_cancelling_run_ends_cancelled(database_url: str) -> None:
    db = Database.open(database_url)
    _pool(db)
    (run_id,) = _due(db, _deployment(db, retries=3))
    dead = worker_heartbeat(db, "local", "dying", hostname="h", pid=1, heartbeat_interval=1)["worker_id"]
    claim_runs(db, "local", dead)
    _start(db, run_id)
    request_cancel(db, run_id)
    assert reap_dead_workers(db, now=datetime.now(UTC) + timedelta(seconds=5)) == []
    assert _run(db, run_id).state_type == "CANCELLED"
    with db.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(_F)) == 1  # a cancelled run is not retried


def test_listings_keep_runs_made_ahead_apart(database_url: str) -> None:
    """A scheduler makes runs ahead: they are the newest rows, and would fill a listing of
    the newest runs; ``upcoming`` keeps them apart (the CLI hides them by default)."""
    from plait._store.history import list_flow_runs
    from plait._store.pages import page_flow_runs

    db = Database.open(database_url)
    _pool(db)
    deployment = _deployment(db, name="ahead")
    now = datetime.now(UTC)
    [due] = _due(db, deployment)
    later = [create_flow_run(db, deployment, parameters={}, expected_start_time=now + timedelta(hours=h))[0]["id"]
             for h in (2, 1)]
    assert [r["id"] for r in list_flow_runs(db, flow_name="etl", upcoming=True)] == later[::-1]  # soonest first
    assert [r["id"] for r in list_flow_runs(db, flow_name="etl", upcoming=False)] == [due]
    assert {r["id"] for r in list_flow_runs(db, flow_name="etl")} == {due, *later}
    page = page_flow_runs(db, flow_names=["etl"], upcoming=False)
    assert [r["id"] for r in page["items"]] == [due]
    assert {r["id"] for r in page_flow_runs(db, flow_names=["etl"], upcoming=True)["items"]} == set(later)
