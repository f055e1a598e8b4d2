"""Deployments, work pools, workers' claims and run control over the API, against a real
uvicorn server (``plait server start`` in a subprocess) on SQLite and PostgreSQL.

One server per backend for the module, with a 1 s scheduler pass, a 1 s late grace period
and at most 5 future runs per deployment, so the services act within seconds (real clocks,
nothing mocked). Each test uses its own pool and deployment names.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from plait.client import ApiAuthError, ApiError, ApiNotFound, PlaitClient
from plait.testing import throwaway_postgres_database
from plait.testing._server import ServerHandle, running_server

pytestmark = pytest.mark.slow

SERVER_ENV = {
    "PLAIT_SCHEDULER_INTERVAL": "1",
    "PLAIT_SCHEDULER_MAX_RUNS": "5",
    "PLAIT_LATE_GRACE": "1",
}
API = "/api/v1"


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    home = tmp_path_factory.mktemp("deployments-server")
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{home / 'plait.db'}"
        else:
            url = stack.enter_context(throwaway_postgres_database("plait_srv_deployments"))
        handle = stack.enter_context(running_server(url, home, env=SERVER_ENV))
        handle.database_url = url  # type: ignore[attr-defined]
        yield handle


@pytest.fixture
def http(server: ServerHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url + API, timeout=30) as client:
        yield client


def client(server: ServerHandle, scope: str = "run") -> PlaitClient:
    return PlaitClient(server.api_url, {"admin": server.admin_key, "run": server.run_key,
                                        "read": server.read_key}[scope], timeout=30)


def stored_runs(server: ServerHandle, flow_name: str) -> list[dict[str, Any]]:
    """The flow runs of ``flow_name`` as the server's database holds them, every column
    (``GET /flow-runs`` does not show the scheduling columns), by expected start time."""
    from sqlalchemy import select

    from plait._store.database import Database
    from plait._store.models import FLOW_RUNS

    table = FLOW_RUNS
    db = Database.open(server.database_url)  # type: ignore[attr-defined]
    with db.engine.connect() as conn:
        rows = conn.execute(select(table).where(table.c.flow_name == flow_name)
                            .order_by(table.c.expected_start_time)).mappings().all()
    return [dict(r) for r in rows]


def aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def spec(flow_name: str, name: str, pool: str | None, **extra: Any) -> dict[str, Any]:
    return {"flow_name": flow_name, "name": name, "entrypoint": "/srv/flows/etl.py:etl", "work_pool_name": pool,
            "work_queue_name": "default" if pool else None, "parameters": {"day": "today", "n": 1}, **extra}


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g}s")
        time.sleep(0.2)


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "detail"}, body
    if code is not None:
        assert body["error"]["code"] == code, body
    assert "Traceback" not in response.text
    return dict(body["error"])


# -- deployments ------------------------------------------------------------------------------------
def test_deployments_are_saved_listed_and_found_through_the_api_and_the_client(server: ServerHandle,
                                                                             http: httpx.Client) -> None:
    flow_name, pool = unique("etl"), unique("pool")
    with client(server) as runner, client(server, "read") as reader:
        runner.create_work_pool(pool)
        saved = runner.save_deployment(spec(flow_name, "nightly", pool, tags=["prod"],
                                            schedules=[{"kind": "cron", "cron": "0 3 * * *",
                                                        "timezone": "Europe/Paris"}]))
        assert saved["outcome"] == "created"
        deployment = saved["deployment"]
        assert deployment["flow_name"] == flow_name and deployment["name"] == "nightly"
        assert [s["cron"] for s in deployment["schedules"]] == ["0 3 * * *"]
        assert deployment["schedules"][0]["timezone"] == "Europe/Paris"

        again = runner.save_deployment(spec(flow_name, "nightly", pool, tags=["prod"],
                                            schedules=[{"kind": "cron", "cron": "0 3 * * *",
                                                        "timezone": "Europe/Paris"}]))
        assert again["outcome"] == "unchanged" and again["deployment"]["id"] == deployment["id"]
        # schedules=None keeps them; a changed field is an update
        changed = runner.save_deployment(spec(flow_name, "nightly", pool, tags=["prod"], description="v2"))
        assert changed["outcome"] == "updated"
        assert [s["cron"] for s in changed["deployment"]["schedules"]] == ["0 3 * * *"]
        cleared = runner.save_deployment(spec(flow_name, "nightly", pool, tags=["prod"], description="v2",
                                              schedules=[]))
        assert cleared["outcome"] == "updated" and cleared["deployment"]["schedules"] == []
        runner.save_deployment(spec(flow_name, "hourly", pool))

        full = f"{flow_name}/nightly"
        assert reader.deployment(full)["id"] == deployment["id"]
        assert reader.deployment(deployment["id"])["name"] == "nightly"
        names = [d["name"] for d in reader.iter_deployments(flow_name=flow_name)]
        assert names == ["hourly", "nightly"]
        assert {d["name"] for d in reader.deployments(work_pool=pool, limit=1).items} <= {"hourly", "nightly"}
        assert len(list(reader.iter_deployments(work_pool=pool, page_size=1))) == 2

    # the '/' percent-encoded or not, the same deployment
    for path in (f"/deployments/{quote(full, safe='')}", f"/deployments/{full}"):
        got = http.get(path, headers=server.headers("read"))
        assert got.status_code == 200 and got.json()["id"] == deployment["id"], got.text


def test_deployment_errors_have_the_stable_shape(server: ServerHandle, http: httpx.Client) -> None:
    error = assert_error(http.get("/deployments/nope%2Fmissing", headers=server.headers("read")), 404,
                         "deployment_not_found")
    assert "nope/missing" in error["message"]
    assert_error(http.post("/deployments/nope%2Fmissing/runs", json={}, headers=server.headers("run")), 404)
    bad = http.post("/deployments", headers=server.headers("run"),
                    json={**spec("etl", "x", None), "collision_strategy": "sometimes"})
    error = assert_error(bad, 422, "validation_error")
    assert "collision_strategy" in error["message"]
    assert any(item["field"] == "collision_strategy" for item in error["detail"])
    typo = assert_error(http.post("/deployments", headers=server.headers("run"),
                                  json={**spec("etl", "x", None), "paramters": {}}), 422)
    assert "paramters" in typo["message"]
    nul = assert_error(http.post("/deployments", headers=server.headers("run"),
                                 json={**spec("etl", "x", None), "parameters": {"a": "x\u0000y"}}), 422)
    assert "parameters" in nul["message"]
    slash = assert_error(http.post("/deployments", headers=server.headers("run"),
                                   json=spec("etl/x", "y", None)), 422)
    assert "flow_name" in slash["message"]
    bad_cron = assert_error(http.post("/deployments", headers=server.headers("run"),
                                      json={**spec("etl", "x", None),
                                            "schedules": [{"kind": "cron", "cron": "not a cron"}]}), 422)
    assert "schedules.0" in bad_cron["message"]
    assert_error(http.post("/deployments", headers=server.headers("read"), json=spec("etl", "x", None)), 403,
                 "forbidden")


def test_a_deployment_run_is_scheduled_once_per_idempotency_key(server: ServerHandle, http: httpx.Client) -> None:
    flow_name, pool = unique("etl"), unique("pool")
    schema = {"type": "object", "properties": {"day": {"type": "string"}, "n": {"type": "integer"}},
              "required": ["day"], "additionalProperties": False}
    with client(server) as runner:
        runner.create_work_pool(pool, base_job_variables={"env": {"A": "pool", "B": "pool"}})
        runner.save_deployment(spec(flow_name, "d", pool, parameter_schema=schema,
                                    job_variables={"env": {"B": "deployment"}}))
        at = datetime.now(UTC) + timedelta(hours=1)
        run = runner.create_deployment_run(f"{flow_name}/d", {"n": 7}, expected_start_time=at,
                                           idempotency_key="once")
        assert run["state_type"] == "SCHEDULED" and run["new"] is True
        assert run["parameters"] == {"day": "today", "n": 7}
        assert datetime.fromisoformat(run["expected_start_time"]) == at
        assert run["job_variables"]["env"] == {"A": "pool", "B": "deployment"}
        same = runner.create_deployment_run(f"{flow_name}/d", {"n": 8}, idempotency_key="once")
        assert same["id"] == run["id"] and same["new"] is False
        assert runner.flow_run_state(run["id"]).value == "SCHEDULED"
        with pytest.raises(ApiError) as refused:
            runner.create_deployment_run(f"{flow_name}/d", {"dya": "x"})
        assert refused.value.status == 422 and "dya" in refused.value.message
        with pytest.raises(ApiNotFound):
            runner.deployment(f"{flow_name}/missing")

    answer = http.post(f"/deployments/{flow_name}%2Fd/runs", headers=server.headers("run"),
                       json={"parameters": {}, "idempotency_key": "once"})
    assert answer.status_code == 200 and answer.json()["id"] == run["id"]
    fresh = http.post(f"/deployments/{flow_name}%2Fd/runs", headers=server.headers("run"), json={"parameters": {}})
    assert fresh.status_code == 201 and fresh.json()["id"] != run["id"]
    assert_error(http.post(f"/deployments/{flow_name}%2Fd/runs", headers=server.headers("read"), json={}), 403)


def test_pause_resume_and_delete_a_deployment(server: ServerHandle, http: httpx.Client) -> None:
    flow_name, pool = unique("etl"), unique("pool")
    with client(server) as runner, client(server, "admin") as admin:
        runner.create_work_pool(pool)
        runner.save_deployment(spec(flow_name, "d", pool))
        assert runner.pause_deployment(f"{flow_name}/d")["paused"] is True
        assert runner.resume_deployment(f"{flow_name}/d")["paused"] is False
        run = runner.create_deployment_run(f"{flow_name}/d")
        with pytest.raises(ApiAuthError):
            runner.delete_deployment(f"{flow_name}/d")  # needs admin
        assert admin.delete_deployment(f"{flow_name}/d")["name"] == "d"
        assert runner.flow_run_state(run["id"]).value == "CANCELLED"
        with pytest.raises(ApiNotFound):
            admin.delete_deployment(f"{flow_name}/d")


# -- work pools -----------------------------------------------------------------------------------------
def test_work_pools_are_created_paused_and_refused_when_taken(server: ServerHandle, http: httpx.Client) -> None:
    pool = unique("pool")
    with client(server) as runner, client(server, "read") as reader:
        made = runner.create_work_pool(pool, "process", description="local runs", concurrency_limit=3)
        assert made["name"] == pool and made["type"] == "process" and made["paused"] is False
        with pytest.raises(ApiError) as taken:
            runner.create_work_pool(pool)
        assert taken.value.status == 409 and taken.value.code == "work_pool_exists"
        inspected = reader.work_pool(pool)
        assert [q["name"] for q in inspected["queues"]] == ["default"] and inspected["workers"] == []
        assert pool in {p["name"] for p in reader.work_pools()}
        assert runner.pause_work_pool(pool)["paused"] is True
        assert reader.work_pool(pool)["paused"] is True
        assert runner.resume_work_pool(pool)["paused"] is False
        assert runner.update_work_pool(pool, concurrency_limit=None, description="changed")["concurrency_limit"] is None
        high = runner.save_work_queue(pool, "high", priority=1)
        assert high["name"] == "high" and high["priority"] == 1
        with pytest.raises(ApiAuthError) as forbidden:
            reader.pause_work_pool(pool)
        assert forbidden.value.status == 403
        with pytest.raises(ApiNotFound):
            reader.work_pool(unique("missing"))

    assert_error(http.post("/work-pools", json={"name": pool}, headers=server.headers("run")), 409, "work_pool_exists")
    error = assert_error(http.post("/work-pools", json={"name": unique("pool"), "concurrency_limit": 0},
                                   headers=server.headers("run")), 422, "validation_error")
    assert "concurrency_limit" in error["message"]
    assert_error(http.get(f"/work-pools/{unique('missing')}", headers=server.headers("read")), 404,
                 "work_pool_not_found")
    assert_error(http.post(f"/work-pools/{unique('missing')}/pause", headers=server.headers("run")), 404)


def _pool_with_runs(runner: PlaitClient, count: int) -> tuple[str, str, list[str]]:
    flow_name, pool = unique("etl"), unique("pool")
    runner.create_work_pool(pool)
    runner.save_deployment(spec(flow_name, "d", pool))
    ids = [runner.create_deployment_run(f"{flow_name}/d", {"n": i})["id"] for i in range(count)]
    return pool, flow_name, ids


def test_a_worker_heartbeats_and_claims_runs(server: ServerHandle, http: httpx.Client) -> None:
    with client(server) as runner, client(server, "read") as reader:
        pool, flow_name, ids = _pool_with_runs(runner, 3)
        beat = runner.worker_heartbeat(pool, "w1", hostname="host-a", pid=123, heartbeat_interval=30)
        assert beat["worker_id"] and beat["cancelling"] == []
        assert runner.worker_heartbeat(pool, "w1", hostname="host-a", pid=123,
                                       heartbeat_interval=30)["worker_id"] == beat["worker_id"]
        workers = reader.work_pool(pool)["workers"]
        assert [(w["name"], w["status"]) for w in workers] == [("w1", "online")]

        # a paused pool hands out nothing
        runner.pause_work_pool(pool)
        assert runner.claim_runs(pool, beat["worker_id"], limit=10) == []
        runner.resume_work_pool(pool)

        claimed = runner.claim_runs(pool, beat["worker_id"], limit=2)
        assert len(claimed) == 2 and {c["id"] for c in claimed} <= set(ids)
        for run in claimed:
            assert run["state_type"] == "PENDING"
            assert run["deployment"]["flow_name"] == flow_name and run["deployment"]["entrypoint"]
        assert reader.flow_run_state(claimed[0]["id"]).value == "PENDING"
        # the worker never got that answer (it holds nothing): the same two again, not the third
        again = runner.claim_runs(pool, beat["worker_id"], limit=5, holding=[])
        assert [r["id"] for r in again] == [r["id"] for r in claimed] and again[0]["deployment"]["entrypoint"]
        rest = runner.claim_runs(pool, beat["worker_id"], limit=5, holding=[r["id"] for r in claimed])
        assert {r["id"] for r in rest} == set(ids) - {r["id"] for r in claimed}
        with pytest.raises(ApiAuthError) as forbidden:
            reader.claim_runs(pool, beat["worker_id"])
        assert forbidden.value.status == 403
    assert_error(http.post(f"/work-pools/{pool}/claim", json={"worker_id": beat["worker_id"]},
                           headers=server.headers("read")), 403, "forbidden")
    assert_error(http.post(f"/work-pools/{pool}/workers/heartbeat", json={"name": "w2"},
                           headers=server.headers("read")), 403)
    error = assert_error(http.post(f"/work-pools/{pool}/claim", json={"worker_id": beat["worker_id"], "limit": 0},
                                   headers=server.headers("run")), 422)
    assert "limit" in error["message"]


def test_two_workers_claiming_over_http_get_each_of_100_runs_once(server: ServerHandle) -> None:
    with client(server) as runner:
        pool, _flow_name, ids = _pool_with_runs(runner, 100)
    got: dict[str, list[str]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(name: str) -> None:
        try:
            with client(server) as worker:
                worker_id = worker.worker_heartbeat(pool, name, hostname="h", pid=1, heartbeat_interval=30)["worker_id"]
                start.wait()
                mine = got.setdefault(name, [])
                while True:
                    batch = worker.claim_runs(pool, worker_id, limit=3)
                    if not batch:
                        return
                    mine.extend(run["id"] for run in batch)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(name,)) for name in ("w1", "w2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    both = got["w1"] + got["w2"]
    assert sorted(both) == sorted(ids), "every run claimed exactly once"
    assert not set(got["w1"]) & set(got["w2"])
    assert got["w1"] and got["w2"], "both workers took part"


# -- run control ------------------------------------------------------------------------------------------
def test_cancel_through_the_api(server: ServerHandle, http: httpx.Client) -> None:
    with client(server) as runner:
        pool, _flow_name, ids = _pool_with_runs(runner, 2)
        assert runner.cancel_flow_run(ids[0]) == {"id": ids[0], "state_type": "CANCELLED"}  # never started
        worker_id = runner.worker_heartbeat(pool, "w", hostname="h", pid=1, heartbeat_interval=30)["worker_id"]
        [claimed] = runner.claim_runs(pool, worker_id, limit=5)
        assert claimed["id"] == ids[1]
        assert runner.cancel_flow_run(ids[1])["state_type"] == "CANCELLING"
        beat = runner.worker_heartbeat(pool, "w", hostname="h", pid=1, heartbeat_interval=30)
        assert beat["cancelling"] == [ids[1]]
        with pytest.raises(ApiError) as ended:
            runner.cancel_flow_run(ids[0])
        assert ended.value.status == 409 and "Cancelled" in ended.value.message
    assert_error(http.post(f"/flow-runs/{uuid.uuid4()}/cancel", headers=server.headers("run")), 404, "not_found")
    assert_error(http.post(f"/flow-runs/{ids[1]}/cancel", headers=server.headers("read")), 403)


def test_a_waiting_run_says_why_it_is_late(server: ServerHandle, http: httpx.Client) -> None:
    with client(server) as runner:
        pool, _flow_name, [run_id] = _pool_with_runs(runner, 1)
        # the late-runs service (grace 1 s) renames it Late; nobody polls its pool
        wait_for(lambda: runner.flow_run(run_id)["state_name"] == "Late", 15, "the run becoming Late")
        late = runner.late_reason(run_id)
        assert late["state_type"] == "SCHEDULED" and late["state_name"] == "Late" and pool in late["reason"], late
        runner.pause_work_pool(pool)
        assert "paused" in runner.late_reason(run_id)["reason"]
    assert_error(http.get(f"/flow-runs/{uuid.uuid4()}/late-reason", headers=server.headers("read")), 404)


def test_retry_and_resume_through_the_api(server: ServerHandle, http: httpx.Client) -> None:
    from plait._store.database import Database
    from plait._store.scheduling import set_flow_run_state

    with client(server) as runner:
        pool, _flow_name, [run_id] = _pool_with_runs(runner, 1)
        worker_id = runner.worker_heartbeat(pool, "w", hostname="h", pid=1, heartbeat_interval=30)["worker_id"]
        runner.claim_runs(pool, worker_id)
        db = Database.open(server.database_url)  # type: ignore[attr-defined]
        set_flow_run_state(db, run_id, "RUNNING")  # as its engine would
        set_flow_run_state(db, run_id, "FAILED", message="boom")
        with pytest.raises(ApiError) as not_paused:
            runner.resume_flow_run(run_id, {"approved": True})
        assert not_paused.value.status == 409 and "not paused" in not_paused.value.message
        retried = runner.retry_flow_run(run_id)
        assert retried["id"] == run_id and retried["state_type"] == "SCHEDULED"
        assert runner.flow_run_state(run_id).value == "SCHEDULED"
        with pytest.raises(ApiError) as not_failed:
            runner.retry_flow_run(run_id)
        assert not_failed.value.status == 409
        # a paused run waiting for input refuses input that does not fit, naming the field
        again = runner.claim_runs(pool, worker_id)
        assert [r["id"] for r in again] == [run_id]
        set_flow_run_state(db, run_id, "RUNNING")
        set_flow_run_state(db, run_id, "PAUSED")
        from plait._store.control import record_pause

        record_pause(db, run_id, {"title": "Approval", "type": "object", "properties": {
            "approved": {"type": "boolean"}}, "required": ["approved"]}, datetime.now(UTC) + timedelta(minutes=5))
        bad = http.post(f"/flow-runs/{run_id}/resume", json={"input": {"approved": "yes"}},
                        headers=server.headers("run"))
        error = assert_error(bad, 422, "invalid_input")
        assert "approved" in error["message"] and error["detail"][0]["field"] == "input"
        resumed = runner.resume_flow_run(run_id, {"approved": True})
        assert resumed["id"] == run_id and resumed["state_type"] == "PENDING"
    assert_error(http.post(f"/flow-runs/{uuid.uuid4()}/retry", headers=server.headers("run")), 404)
    assert_error(http.post(f"/flow-runs/{run_id}/retry", headers=server.headers("read")), 403)


def test_a_worker_ends_a_run_its_process_could_not_end(server: ServerHandle, http: httpx.Client) -> None:
    from plait._store.database import Database
    from plait._store.scheduling import set_flow_run_state

    with client(server) as runner:
        pool, _flow_name, [run_id] = _pool_with_runs(runner, 1)
        worker_id = runner.worker_heartbeat(pool, "w", hostname="h", pid=1, heartbeat_interval=30)["worker_id"]
        runner.claim_runs(pool, worker_id)
        db = Database.open(server.database_url)  # type: ignore[attr-defined]
        set_flow_run_state(db, run_id, "RUNNING")
        ended = runner.end_flow_run(run_id, "CRASHED", "its process was killed by signal 9")
        assert ended == {"id": run_id, "ended": True, "state_type": "CRASHED"}
        assert runner.flow_run(run_id)["state_message"] == "its process was killed by signal 9"
        # a second verdict does not replace the first
        assert runner.end_flow_run(run_id, "FAILED", "late")["ended"] is False
        assert runner.flow_run(run_id)["state_type"] == "CRASHED"
        # a run never recorded: 404 unless the worker says what to create
        unknown = str(uuid.uuid4())
        with pytest.raises(ApiNotFound):
            runner.end_flow_run(unknown, "CRASHED", "never started")
        made = http.post(f"/flow-runs/{unknown}/end", headers=server.headers("run"), json={
            "state_type": "FAILED", "message": "could not start", "create": {"flow_name": "etl", "pid": 7}})
        assert made.status_code == 200 and made.json() == {"id": unknown, "ended": True, "state_type": "FAILED"}
    bad = http.post(f"/flow-runs/{run_id}/end", headers=server.headers("run"),
                    json={"state_type": "COMPLETED", "message": "x"})
    assert_error(bad, 422)
    assert_error(http.post(f"/flow-runs/{run_id}/end", headers=server.headers("read"),
                           json={"state_type": "CRASHED", "message": "x"}), 403)


# -- the services -------------------------------------------------------------------------------------------
def test_the_scheduler_makes_the_runs_of_an_interval_schedule(server: ServerHandle) -> None:
    flow_name, pool = unique("every-second"), unique("pool")
    with client(server) as runner, client(server, "read") as reader:
        runner.create_work_pool(pool)
        runner.save_deployment(spec(flow_name, "tick", pool,
                                    schedules=[{"kind": "interval", "interval_seconds": 1,
                                                "parameters": {"n": 42}}]))

        def planned() -> list[dict[str, Any]]:
            return stored_runs(server, flow_name)

        runs = wait_for(lambda: len(found := planned()) >= 5 and found, 15, "five scheduled runs")
        assert {r["state_type"] for r in runs} == {"SCHEDULED"}
        assert all(r["auto_scheduled"] and r["parameters"]["n"] == 42 for r in runs)
        times = [aware(r["expected_start_time"]) for r in runs]
        gaps = {round((b - a).total_seconds(), 3) for a, b in zip(times, times[1:], strict=False)}
        assert gaps == {1.0}, times
        assert reader.flow_run(runs[0]["id"])["state_type"] == "SCHEDULED"  # visible through the API too
        # passes keep planning as slots pass, never two runs for one slot, never more than
        # scheduler_max_runs (5) ahead
        first = {r["id"] for r in runs}
        def grown() -> list[dict[str, Any]]:
            found = planned()
            return found if len({r["id"] for r in found} - first) >= 2 else []

        more = wait_for(grown, 15, "new slots being planned")
        slots = [aware(r["expected_start_time"]) for r in more]
        assert len(slots) == len(set(slots)), "one run per slot"
        assert len(set(r["idempotency_key"] for r in more)) == len(more)
        now = datetime.now(UTC)
        assert len([t for t in slots if t > now + timedelta(seconds=1)]) <= 5


def test_a_silent_worker_is_reaped_and_its_run_retried(server: ServerHandle) -> None:
    flow_name, pool = unique("etl"), unique("pool")
    with client(server) as runner:
        runner.create_work_pool(pool)
        runner.save_deployment(spec(flow_name, "d", pool, retries=1))
        run = runner.create_deployment_run(f"{flow_name}/d", {"n": 5})
        worker_id = runner.worker_heartbeat(pool, "doomed", hostname="h", pid=1, heartbeat_interval=0.5)["worker_id"]
        [claimed] = runner.claim_runs(pool, worker_id)
        assert claimed["id"] == run["id"]
        # no more heartbeats: within two intervals plus a reaper pass (5 s) it is Crashed
        wait_for(lambda: runner.flow_run_state(run["id"]).value == "CRASHED", 20, "the run being Crashed")
        assert "doomed" in (runner.flow_run(run["id"]).get("state_message") or "")
        [retry] = wait_for(lambda: [r for r in stored_runs(server, flow_name) if r["id"] != run["id"]], 10,
                           "the retry")
        assert retry["state_type"] == "SCHEDULED" and retry["retry_of"] == run["id"]
        assert retry["parameters"]["n"] == 5


def test_with_two_servers_one_schedules_and_each_slot_has_one_run(server: ServerHandle, tmp_path: Path) -> None:
    from plait._store.database import Database
    from plait._store.leases import lease_holder

    log = server.output()
    for service in ("scheduler", "late-runs", "worker-reaper"):
        assert f"now runs {service}" in log, f"{service} never started:\n{log[-3000:]}"
    flow_name = unique("two-servers")
    with running_server(server.database_url, tmp_path / "second", env=SERVER_ENV) as second:  # type: ignore[attr-defined]
        with PlaitClient(second.api_url, second.run_key, timeout=30) as runner:
            runner.save_deployment(spec(flow_name, "tick", None,
                                        schedules=[{"kind": "interval", "interval_seconds": 1}]))
        time.sleep(4)  # several passes of both servers' schedulers
        db = Database.open(server.database_url)  # type: ignore[attr-defined]
        lease = lease_holder(db, "scheduler")
        assert lease is not None and not lease["expired"]
        assert lease["holder"].split(":")[1] == str(server.process.pid), "the first server keeps the lease"
        assert "now runs scheduler" not in second.output(), "only one server schedules"
        runs = stored_runs(server, flow_name)
        slots = [aware(r["expected_start_time"]) for r in runs]
        assert runs and len(slots) == len(set(slots)), "one run per slot"


def test_secrets_the_server_knows_are_masked_in_answers_but_not_in_claims(server: ServerHandle,
                                                                           http: httpx.Client) -> None:
    from plait.blocks._payloads import block_payload
    from plait_blocks import Webhook

    secret = f"https://hooks.example.com/{uuid.uuid4().hex}"
    saved = http.put(f"/blocks/documents/webhook/{unique('hook')}", headers=server.headers("run"),
                     json=block_payload(Webhook(url=secret)))
    assert saved.status_code == 201, saved.text  # the server now knows the secret
    flow_name = unique("etl")
    with client(server) as runner:
        made = runner.save_deployment(spec(flow_name, "d", None, parameters={"hook": secret},
                                           job_variables={"env": {"HOOK": secret}}))
        assert made["deployment"]["parameters"] == {"hook": "***"}
        assert made["deployment"]["job_variables"] == {"env": {"HOOK": "***"}}
        assert runner.deployment(f"{flow_name}/d")["parameters"] == {"hook": "***"}
        run = runner.create_deployment_run(f"{flow_name}/d")
        assert secret not in str(run)
        # a claim carries what the run needs to start, as stored
        [claimed] = runner.claim_deployment_runs(made["deployment"]["id"], "serve-1", 5)
        assert claimed["id"] == run["id"] and claimed["parameters"] == {"hook": secret}
        assert runner.deployment(f"{flow_name}/d")["last_polled_at"] is not None
