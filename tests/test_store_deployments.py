"""The deployments and work pools repositories against real databases (SQLite file and
PostgreSQL server): idempotent saves, schedules kept / replaced / cleared, pause and
delete, pools with queues and workers."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from plait._store.database import Database
from plait._store.deployments import (
    delete_deployment,
    get_deployment,
    list_deployments,
    save_deployment,
    set_deployment_paused,
    touch_deployment,
)
from plait._store.events import list_events
from plait._store.models import DEPLOYMENT_SCHEDULES, DEPLOYMENTS, FLOW_RUNS
from plait._store.scheduling import claim_deployment_runs, plan_deployment_runs, request_cancel, scheduled_count
from plait._store.work_pools import (
    WorkPoolExists,
    create_work_pool,
    delete_work_pool,
    get_work_pool,
    list_work_pools,
    save_work_queue,
    set_work_pool_paused,
    update_work_pool,
    worker_heartbeat,
)

CRON = {"kind": "cron", "cron": "0 2 * * *", "timezone": "Europe/Paris"}
EVERY_MINUTE = {"kind": "interval", "interval_seconds": 60, "anchor": "2024-01-01T00:00:00+00:00"}


def _spec(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "flow_name": "etl", "name": "nightly", "entrypoint": "/srv/flows/etl.py:etl",
        "parameters": {"day": "today"}, "tags": ["prod"], "schedules": [CRON],
    }
    spec.update(changes)
    return spec


def _count(db: Database, model: Any, *where: Any) -> int:
    with db.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _flow_run(db: Database, run_id: str) -> Any:
    with db.engine.connect() as conn:
        return conn.execute(select(FLOW_RUNS).where(FLOW_RUNS.c.id == run_id)).first()


def _future_slots(deployment: dict[str, Any], count: int) -> list[tuple[datetime, str, dict[str, Any]]]:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    schedule_id = deployment["schedules"][0]["id"] if deployment["schedules"] else "manual"
    return [(start + timedelta(minutes=i), schedule_id, {}) for i in range(count)]


# -- save / get / list ---------------------------------------------------------------------------------
def test_save_is_created_then_unchanged_then_updated(database_url: str) -> None:
    db = Database.open(database_url)
    row, outcome = save_deployment(db, _spec())
    assert outcome == "created"
    assert (row["flow_name"], row["name"], row["collision_strategy"], row["catchup"], row["retries"]) == (
        "etl", "nightly", "enqueue", "all", 0)
    assert [s["kind"] for s in row["schedules"]] == ["cron"]
    assert row["schedules"][0]["timezone"] == "Europe/Paris" and row["schedules"][0]["active"] is True

    again, outcome = save_deployment(db, _spec())
    assert outcome == "unchanged"
    assert again["updated"] == row["updated"] and again["schedules"][0]["id"] == row["schedules"][0]["id"]
    # a saved row (with its read-only columns and schedule ids) saves as unchanged too
    assert save_deployment(db, get_deployment(db, "etl/nightly"))[1] == "unchanged"  # type: ignore[arg-type]

    changed, outcome = save_deployment(db, _spec(description="the nightly load", retries=2))
    assert outcome == "updated"
    assert changed["id"] == row["id"] and changed["retries"] == 2 and changed["updated"] > row["updated"]
    events = list_events(db, kinds=["deployment.*"])["items"]
    assert [e["kind"] for e in events] == ["deployment.created", "deployment.updated"]
    assert events[1]["payload"]["changed"] == ["description", "retries"]
    assert events[1]["resource"] == "deployment/etl/nightly"
    assert _count(db, DEPLOYMENTS) == 1


def test_schedules_none_keeps_them_and_an_empty_list_clears_them(database_url: str) -> None:
    db = Database.open(database_url)
    row, _ = save_deployment(db, _spec(schedules=[CRON, EVERY_MINUTE]))
    assert [s["kind"] for s in row["schedules"]] == ["cron", "interval"]
    assert row["schedules"][1]["anchor"] == datetime(2024, 1, 1, tzinfo=UTC)
    assert plan_deployment_runs(db, row["id"], _future_slots(row, 3)) == 3

    kept, outcome = save_deployment(db, _spec(schedules=None))
    assert outcome == "unchanged" and [s["id"] for s in kept["schedules"]] == [s["id"] for s in row["schedules"]]
    assert scheduled_count(db, row["id"], datetime.now(UTC)) == 3  # nothing to re-plan

    cleared, outcome = save_deployment(db, _spec(schedules=[]))
    assert outcome == "updated" and cleared["schedules"] == []
    assert _count(db, DEPLOYMENT_SCHEDULES) == 0
    # the scheduler's future runs of the old schedules are gone; re-planning starts afresh
    assert scheduled_count(db, row["id"], datetime.now(UTC)) == 0
    assert save_deployment(db, _spec(schedules=[]))[1] == "unchanged"


def test_a_changed_default_replans_future_runs_but_keeps_due_and_manual_ones(database_url: str) -> None:
    from plait._store.scheduling import create_flow_run

    db = Database.open(database_url)
    row, _ = save_deployment(db, _spec())
    plan_deployment_runs(db, row["id"], _future_slots(row, 2))
    manual, _ = create_flow_run(db, row, parameters={}, expected_start_time=datetime.now(UTC) + timedelta(hours=3))
    due, _ = create_flow_run(db, row, parameters={}, expected_start_time=datetime.now(UTC) - timedelta(minutes=1),
                             auto_scheduled=True, idempotency_key="schedule:x:due")
    save_deployment(db, _spec(parameters={"day": "yesterday"}))
    with db.engine.connect() as conn:
        left: set[str] = set(conn.scalars(select(FLOW_RUNS.c.id)))
    assert left == {manual["id"], due["id"]}


def test_get_by_name_or_id_and_list_pages(database_url: str) -> None:
    db = Database.open(database_url)
    ids = {}
    for flow in ("a", "b"):
        for name in ("x", "y", "z"):
            row, _ = save_deployment(db, _spec(flow_name=flow, name=name, work_pool_name="pool" if name == "y" else None))
            ids[f"{flow}/{name}"] = row["id"]
    assert get_deployment(db, "a/y")["id"] == ids["a/y"]  # type: ignore[index]
    assert get_deployment(db, ids["b/z"])["name"] == "z"  # type: ignore[index]
    assert get_deployment(db, "a/nope") is None and get_deployment(db, "no-such-id") is None

    seen, cursor = [], None
    while True:
        page, cursor = list_deployments(db, limit=4, cursor=cursor)
        seen += [f"{r['flow_name']}/{r['name']}" for r in page]
        assert all("schedules" in r for r in page)
        if cursor is None:
            break
    assert seen == ["a/x", "a/y", "a/z", "b/x", "b/y", "b/z"]
    assert [r["name"] for r in list_deployments(db, flow_name="b")[0]] == ["x", "y", "z"]
    assert [r["flow_name"] for r in list_deployments(db, work_pool="pool")[0]] == ["a", "b"]
    with pytest.raises(ValueError, match="bad cursor"):
        list_deployments(db, cursor="garbage")


def test_two_saves_of_a_new_deployment_at_once_make_one(database_url: str) -> None:
    db = Database.open(database_url)
    barrier = threading.Barrier(4)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def save() -> None:
        barrier.wait()
        try:
            outcomes.append(save_deployment(db, _spec())[1])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=save) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(outcomes) == ["created", "unchanged", "unchanged", "unchanged"]
    assert _count(db, DEPLOYMENTS) == 1 and _count(db, DEPLOYMENT_SCHEDULES) == 1


@pytest.mark.parametrize(("changes", "message"), [
    ({"colision_strategy": "enqueue"}, "unknown deployment field"),
    ({"catchup": "some"}, "catchup is one of all, latest, none"),
    ({"collision_strategy": "replace"}, "collision_strategy is one of"),
    ({"name": "a/b"}, "no '/'"),
    ({"entrypoint": ""}, "needs an entrypoint"),
    ({"retries": -1}, "retries"),
    ({"tags": "prod"}, "tags are a list"),
    ({"schedules": [{"kind": "cron"}]}, "schedule 1: a cron schedule needs cron"),
    ({"schedules": [{"kind": "interval", "interval_seconds": 0}]}, "interval_seconds is a positive number"),
    ({"schedules": [{"kind": "cron", "cron": "* * * * *", "interval_seconds": 5}]}, "has no interval_seconds"),
    ({"schedules": [CRON, {"kind": "weekly"}]}, "schedule 2: kind is one of"),
    ({"schedules": "daily"}, "schedules is a list"),
])
def test_a_malformed_spec_is_refused_naming_the_field(database_url: str, changes: dict[str, Any], message: str) -> None:
    db = Database.open(database_url)
    with pytest.raises(ValueError, match=message):
        save_deployment(db, _spec(**changes))
    assert _count(db, DEPLOYMENTS) == 0


# -- pause / delete / touch ------------------------------------------------------------------------
def test_pause_keeps_runs_from_being_claimed_and_drops_future_ones(database_url: str) -> None:
    from plait._store.scheduling import create_flow_run

    db = Database.open(database_url)
    row, _ = save_deployment(db, _spec())
    plan_deployment_runs(db, row["id"], _future_slots(row, 2))
    due, _ = create_flow_run(db, row, parameters={}, expected_start_time=datetime.now(UTC) - timedelta(seconds=1))
    paused = set_deployment_paused(db, "etl/nightly", True)
    assert paused["paused"] is True
    assert scheduled_count(db, row["id"], datetime.now(UTC)) == 0
    assert claim_deployment_runs(db, row["id"], "runner-1", limit=5) == []
    # saving the spec again (which does not say paused) keeps it paused
    assert save_deployment(db, _spec())[0]["paused"] is True
    assert set_deployment_paused(db, row["id"], False)["paused"] is False
    claimed = claim_deployment_runs(db, row["id"], "runner-1", limit=5)
    assert [r["id"] for r in claimed] == [due["id"]]
    kinds = [e["kind"] for e in list_events(db, kinds=["deployment.*"])["items"]]
    assert kinds == ["deployment.created", "deployment.paused", "deployment.resumed"]
    with pytest.raises(LookupError, match="no deployment 'etl/other'"):
        set_deployment_paused(db, "etl/other", True)


def test_delete_cancels_its_scheduled_runs_and_leaves_running_ones(database_url: str) -> None:
    from plait._store.scheduling import create_flow_run

    db = Database.open(database_url)
    row, _ = save_deployment(db, _spec())
    waiting, _ = create_flow_run(db, row, parameters={}, expected_start_time=datetime.now(UTC) + timedelta(hours=1))
    started, _ = create_flow_run(db, row, parameters={}, expected_start_time=datetime.now(UTC) - timedelta(seconds=1))
    assert [r["id"] for r in claim_deployment_runs(db, row["id"], "runner", limit=5)] == [started["id"]]
    assert delete_deployment(db, "etl/nightly") is True
    assert delete_deployment(db, "etl/nightly") is False
    assert get_deployment(db, row["id"]) is None and _count(db, DEPLOYMENT_SCHEDULES) == 0
    gone = _flow_run(db, waiting["id"])
    assert (gone.state_type, gone.state_message) == ("CANCELLED", "cancelled: deployment deleted (etl/nightly)")
    assert gone.end_time is not None
    assert _flow_run(db, started["id"]).state_type == "PENDING"
    assert request_cancel(db, started["id"]) == "CANCELLING"  # still controllable
    assert "deployment.deleted" in [e["kind"] for e in list_events(db, kinds=["deployment.*"])["items"]]


def test_touch_records_the_last_poll(database_url: str) -> None:
    db = Database.open(database_url)
    row, _ = save_deployment(db, _spec())
    assert row["last_polled_at"] is None
    touch_deployment(db, row["id"])
    polled = get_deployment(db, row["id"])["last_polled_at"]  # type: ignore[index]
    assert polled is not None and abs((datetime.now(UTC) - polled).total_seconds()) < 60
    assert save_deployment(db, _spec())[1] == "unchanged"  # polling is not a change of the deployment


# -- work pools -------------------------------------------------------------------------------------------
def test_work_pool_lifecycle(database_url: str) -> None:
    db = Database.open(database_url)
    pool = create_work_pool(db, "local", "process", description="this host", base_job_variables={"env": {"A": "1"}},
                            concurrency_limit=4)
    assert (pool["type"], pool["concurrency_limit"], pool["paused"]) == ("process", 4, False)
    assert [(q["name"], q["priority"]) for q in pool["queues"]] == [("default", 1)]
    assert pool["workers"] == []
    with pytest.raises(WorkPoolExists, match="a work pool named 'local' already exists"):
        create_work_pool(db, "local", "process")
    with pytest.raises(ValueError, match="no '/'"):
        create_work_pool(db, "a/b", "process")

    save_work_queue(db, "local", "urgent", priority=1)
    save_work_queue(db, "local", "default", priority=5, concurrency_limit=2)
    queues = get_work_pool(db, "local")["queues"]  # type: ignore[index]
    assert [(q["name"], q["priority"], q["concurrency_limit"]) for q in queues] == [
        ("urgent", 1, None), ("default", 5, 2)]
    with pytest.raises(LookupError, match="no work pool named 'nope'"):
        save_work_queue(db, "nope", "q")

    updated = update_work_pool(db, "local", concurrency_limit=None, description="changed")
    assert (updated["concurrency_limit"], updated["description"]) == (None, "changed")
    with pytest.raises(ValueError, match="cannot change created"):
        update_work_pool(db, "local", created="yesterday")
    assert set_work_pool_paused(db, "local", True)["paused"] is True
    create_work_pool(db, "another", "process")
    assert [p["name"] for p in list_work_pools(db)] == ["another", "local"]
    kinds = [e["kind"] for e in list_events(db, kinds=["work-pool.*"])["items"]]
    assert kinds == ["work-pool.created", "work-pool.updated", "work-pool.paused", "work-pool.created"]

    assert delete_work_pool(db, "local") is True and delete_work_pool(db, "local") is False
    assert get_work_pool(db, "local") is None
    with pytest.raises(LookupError):
        set_work_pool_paused(db, "local", False)


def test_worker_heartbeats_keep_one_row_and_report_cancelling_runs(database_url: str) -> None:
    from plait._store.scheduling import claim_runs, create_flow_run, set_flow_run_state

    db = Database.open(database_url)
    create_work_pool(db, "local", "process")
    first = worker_heartbeat(db, "local", "w1", hostname="h", pid=1, heartbeat_interval=30)
    second = worker_heartbeat(db, "local", "w1", hostname="h", pid=2, heartbeat_interval=30)
    assert first == {"worker_id": first["worker_id"], "cancelling": []} and second["worker_id"] == first["worker_id"]
    (worker,) = get_work_pool(db, "local")["workers"]  # type: ignore[index]
    assert (worker["name"], worker["pid"], worker["status"]) == ("w1", 2, "online")
    with pytest.raises(LookupError, match="no work pool named 'other'"):
        worker_heartbeat(db, "other", "w1", hostname="h", pid=1, heartbeat_interval=30)
    with pytest.raises(ValueError, match="heartbeat_interval"):
        worker_heartbeat(db, "local", "w1", hostname="h", pid=1, heartbeat_interval=0)

    row, _ = save_deployment(db, _spec(work_pool_name="local"))
    run, _ = create_flow_run(db, row, parameters={}, expected_start_time=datetime.now(UTC))
    (claimed,) = claim_runs(db, "local", first["worker_id"])
    set_flow_run_state(db, claimed["id"], "RUNNING")
    assert request_cancel(db, run["id"]) == "CANCELLING"
    beat = worker_heartbeat(db, "local", "w1", hostname="h", pid=2, heartbeat_interval=30)
    assert beat["cancelling"] == [run["id"]]


def test_a_worker_silent_for_two_intervals_is_offline(database_url: str) -> None:
    db = Database.open(database_url)
    create_work_pool(db, "local", "process")
    worker_heartbeat(db, "local", "quick", hostname="h", pid=1, heartbeat_interval=0.05)
    worker_heartbeat(db, "local", "slow", hostname="h", pid=2, heartbeat_interval=60)
    import time

    time.sleep(0.2)
    status = {w["name"]: w["status"] for w in get_work_pool(db, "local")["workers"]}  # type: ignore[index]
    assert status == {"quick": "offline", "slow": "online"}


def test_first_heartbeats_racing_make_one_worker(database_url: str) -> None:
    db = Database.open(database_url)
    create_work_pool(db, "local", "process")
    barrier = threading.Barrier(4)
    ids: list[str] = []
    errors: list[BaseException] = []

    def beat() -> None:
        barrier.wait()
        try:
            ids.append(worker_heartbeat(db, "local", "w", hostname="h", pid=1, heartbeat_interval=10)["worker_id"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=beat) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(ids)) == 1


def test_slots_of_a_deployment_saved_meanwhile_are_not_planned(database_url: str) -> None:
    """The scheduler computes slots from the deployment it read; a save that changed it
    before the slots are written wins: no run for a schedule that no longer exists."""
    db = Database.open(database_url)
    old, _ = save_deployment(db, _spec(schedules=[CRON]))
    stale = _future_slots(old, 2)
    new, _ = save_deployment(db, _spec(schedules=[EVERY_MINUTE]))
    assert plan_deployment_runs(db, old["id"], stale, as_of=old["updated"]) == 0
    assert plan_deployment_runs(db, new["id"], _future_slots(new, 2), as_of=new["updated"]) == 2
    assert scheduled_count(db, new["id"], datetime.now(UTC)) == 2
