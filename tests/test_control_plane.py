"""The control plane, local (over the store) and remote (over a real server's API): the same
calls answer the same shapes and raise the same errors, on SQLite and PostgreSQL.

The parity test runs one scenario against ``LocalControl`` and against ``RemoteControl``
(a real uvicorn serving the same database) and compares what each answered, field by field
and type by type; each plane also reads what the other wrote.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from plait._api import ApiConfig, ApiSession
from plait._store.database import Database
from plait.deployments._control import (
    ControlNotFound,
    ControlPlane,
    ControlRefused,
    LocalControl,
    check_run_parameters,
    control_plane,
    revive_times,
)
from plait.deployments._remote_control import RemoteControl


# -- without a store ------------------------------------------------------------------------------
def test_revive_times_turns_time_fields_back_into_aware_datetimes() -> None:
    rows = {"created": "2024-06-01T03:00:00+00:00", "name": "2024-06-01T03:00:00+00:00",
            "deployment": {"updated": "2024-06-01T05:00:00+02:00", "last_polled_at": None},
            "schedules": [{"anchor": "2024-01-01T00:00:00"}], "expected_start_time": "not a time"}
    out = revive_times(rows)
    assert out["created"] == datetime(2024, 6, 1, 3, tzinfo=UTC)
    assert out["name"] == "2024-06-01T03:00:00+00:00"  # not a time field
    assert out["deployment"]["updated"] == datetime(2024, 6, 1, 3, tzinfo=UTC)
    assert out["deployment"]["last_polled_at"] is None
    assert out["schedules"][0]["anchor"] == datetime(2024, 1, 1, tzinfo=UTC)
    assert out["expected_start_time"] == "not a time"


def test_run_parameters_are_checked_against_the_stored_schema() -> None:
    deployment = {"flow_name": "etl", "name": "d", "parameters": {"day": "x"}, "parameter_schema": {
        "type": "object", "properties": {"day": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["day", "n"], "additionalProperties": False}}
    check_run_parameters(deployment, {"n": 3})
    with pytest.raises(ValueError, match="'dya'"):
        check_run_parameters(deployment, {"n": 3, "dya": 1})
    with pytest.raises(ValueError, match="'n'"):
        check_run_parameters(deployment, {})  # required, and the deployment has no default for it
    with pytest.raises(ValueError, match="'n'"):
        check_run_parameters(deployment, {"n": "three"})
    check_run_parameters({"parameter_schema": {}}, {"anything": 1})  # no schema: anything goes


def test_the_control_plane_is_remote_when_an_api_url_is_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PLAIT_HOME", str(tmp_path))
    monkeypatch.setenv("PLAIT_DATABASE_URL", f"sqlite:///{tmp_path}/plait.db")
    monkeypatch.delenv("PLAIT_API_URL", raising=False)
    local = control_plane()
    assert isinstance(local, LocalControl)
    monkeypatch.setenv("PLAIT_API_URL", "http://127.0.0.1:9/api")
    remote = control_plane()
    assert isinstance(remote, RemoteControl) and remote.plan() == 0
    assert remote.session.config.url == "http://127.0.0.1:9/api"
    Database.dispose_all()


# -- on a store ----------------------------------------------------------------------------------
@pytest.fixture
def local(database_url: str) -> Iterator[LocalControl]:
    db = Database.open(database_url)
    yield LocalControl(db)
    db.dispose()


def test_local_control_plane(local: LocalControl) -> None:
    pool = local.create_work_pool("pool-a", "process", base_job_variables={"env": {"A": "1"}})
    assert pool["name"] == "pool-a"
    with pytest.raises(ControlRefused, match="pool-a"):
        local.create_work_pool("pool-a")
    assert local.get_work_pool("missing") is None
    row, outcome = local.save_deployment(_spec("etl", "d", "pool-a"))
    assert outcome == "created" and row["schedules"] == []
    assert local.save_deployment(_spec("etl", "d", "pool-a"))[1] == "unchanged"
    assert local.get_deployment("etl/d")["id"] == row["id"]
    assert local.get_deployment("etl/nope") is None
    assert [d["name"] for d in local.list_deployments(work_pool="pool-a")] == ["d"]

    run = local.create_flow_run("etl/d", {"n": 2}, idempotency_key="k")
    assert run["state_type"] == "SCHEDULED" and run["new"] is True and run["parameters"] == {"day": "x", "n": 2}
    assert isinstance(run["expected_start_time"], datetime) and run["expected_start_time"].tzinfo is not None
    assert local.create_flow_run("etl/d", idempotency_key="k")["id"] == run["id"]
    with pytest.raises(ControlRefused, match="'nn'"):
        local.create_flow_run("etl/d", {"nn": 1})
    with pytest.raises(ControlNotFound, match="etl/nope"):
        local.create_flow_run("etl/nope")

    worker = local.worker_heartbeat("pool-a", "w", "host", 1, 30.0)
    [claimed] = local.claim_runs("pool-a", worker["worker_id"], 5)
    assert claimed["id"] == run["id"] and claimed["state_type"] == "PENDING"
    assert claimed["deployment"]["name"] == "d"
    assert local.request_cancel(run["id"]) == "CANCELLING"
    assert local.cancelling_among([run["id"], str(uuid.uuid4())]) == {run["id"]}
    assert local.worker_heartbeat("pool-a", "w", "host", 1, 30.0)["cancelling"] == [run["id"]]
    with pytest.raises(ControlNotFound):
        local.request_cancel(str(uuid.uuid4()))
    assert local.get_flow_run(run["id"])["state_type"] == "CANCELLING"
    assert local.get_flow_run(str(uuid.uuid4())) is None

    waiting = local.create_flow_run("etl/d")
    assert "pool-a" in local.late_reason(waiting["id"])
    assert local.request_cancel(waiting["id"]) == "CANCELLED"
    with pytest.raises(ControlRefused):
        local.request_cancel(waiting["id"])
    assert local.set_deployment_paused("etl/d", True)["paused"] is True
    with pytest.raises(ControlNotFound):
        local.set_deployment_paused("etl/nope", True)
    assert local.delete_deployment("etl/d") is True and local.delete_deployment("etl/d") is False


def test_local_plan_makes_the_scheduled_runs(local: LocalControl) -> None:
    row, _ = local.save_deployment({**_spec("ticker", "every-minute", None),
                                    "schedules": [{"kind": "interval", "interval_seconds": 60.0, "anchor": None,
                                                   "cron": None, "rrule": None, "timezone": "UTC", "active": True,
                                                   "parameters": {}}]})
    now = datetime.now(UTC)
    made = local.plan(now)
    assert made > 0
    assert local.plan(now) == 0  # idempotent: one run per slot
    assert local.claim_deployment_runs(row["id"], "serve-1", 10) == []  # every slot is in the future
    # a run due now is claimed once, and the claim marks the deployment polled
    due = local.create_flow_run(row["id"], expected_start_time=now - timedelta(seconds=1))
    assert [r["id"] for r in local.claim_deployment_runs(row["id"], "serve-1", 10)] == [due["id"]]
    assert local.claim_deployment_runs(row["id"], "serve-2", 10) == []
    assert local.get_deployment(row["id"])["last_polled_at"] is not None


# -- local and remote alike -----------------------------------------------------------------------
def _spec(flow_name: str, name: str, pool: str | None) -> dict[str, Any]:
    return {"flow_name": flow_name, "name": name, "entrypoint": "/srv/etl.py:etl", "path": None,
            "storage_block": None, "bundle_key": None, "parameters": {"day": "x"},
            "parameter_schema": {"type": "object", "properties": {"day": {"type": "string"},
                                                                   "n": {"type": "integer"}},
                                 "additionalProperties": False},
            "tags": ["t"], "description": "", "version": None, "work_pool_name": pool,
            "work_queue_name": "default" if pool else None, "job_variables": {}, "concurrency_limit": None,
            "collision_strategy": "enqueue", "catchup": "all", "max_active_runs": None, "retries": 0,
            "paused": False, "schedules": None}


def _shape(value: Any) -> Any:
    """What a value looks like: keys and the types of leaves (ids and times differ between runs)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_shape(v) for v in value]
    if isinstance(value, datetime):
        return "datetime+tz" if value.tzinfo is not None else "datetime"
    return type(value).__name__


def _scenario(plane: ControlPlane, tag: str) -> dict[str, Any]:
    """The same calls, on fresh names; what each answered (or raised)."""
    seen: dict[str, Any] = {}
    pool, flow_name = f"pool-{tag}", f"etl-{tag}"
    seen["pool"] = plane.create_work_pool(pool, "process", description="d", concurrency_limit=5)
    try:
        plane.create_work_pool(pool)
    except ControlRefused as exc:
        seen["taken"] = type(exc).__name__
    seen["queue"] = plane.save_work_queue(pool, "high", priority=1)
    seen["paused_pool"] = plane.set_work_pool_paused(pool, True)
    plane.set_work_pool_paused(pool, False)
    seen["saved"] = plane.save_deployment(_spec(flow_name, "d", pool))
    seen["unchanged"] = plane.save_deployment(_spec(flow_name, "d", pool))[1]
    seen["got"] = plane.get_deployment(f"{flow_name}/d")
    seen["missing"] = plane.get_deployment(f"{flow_name}/nope")
    seen["listed"] = plane.list_deployments(flow_name=flow_name)
    at = datetime.now(UTC) - timedelta(seconds=1)
    seen["run"] = plane.create_flow_run(f"{flow_name}/d", {"n": 1}, expected_start_time=at)
    seen["worker"] = plane.worker_heartbeat(pool, "w", "host", 1, 30.0)
    seen["claimed"] = plane.claim_runs(pool, seen["worker"]["worker_id"], 5)
    seen["cancel"] = plane.request_cancel(seen["run"]["id"])
    seen["cancelling"] = sorted(plane.cancelling_among([seen["run"]["id"]]))
    seen["late"] = type(plane.late_reason(plane.create_flow_run(f"{flow_name}/d")["id"])).__name__
    seen["paused"] = plane.set_deployment_paused(f"{flow_name}/d", True)
    seen["pool_after"] = plane.get_work_pool(pool)
    seen["pools"] = [p for p in plane.list_work_pools() if p["name"] == pool]
    for what, call in (("no_deployment", lambda: plane.create_flow_run(f"{flow_name}/nope")),
                       ("no_run", lambda: plane.request_cancel(str(uuid.uuid4()))),
                       ("bad_parameters", lambda: plane.create_flow_run(f"{flow_name}/d", {"zz": 1}))):
        try:
            call()
        except (ControlNotFound, ControlRefused) as exc:
            seen[what] = type(exc).__name__
    seen["deleted"] = (plane.delete_deployment(f"{flow_name}/d"), plane.delete_deployment(f"{flow_name}/d"))
    return seen


@pytest.fixture
def both(database_url: str, tmp_path: Path) -> Iterator[tuple[LocalControl, RemoteControl]]:
    from plait.testing._server import running_server

    db = Database.open(database_url)
    with running_server(database_url, tmp_path / "server") as server:
        remote = RemoteControl(ApiSession(ApiConfig(server.api_url, server.admin_key, 30)))
        try:
            yield LocalControl(db), remote
        finally:
            remote.close()
            db.dispose()


@pytest.mark.slow
def test_local_and_remote_answer_alike(both: tuple[LocalControl, RemoteControl]) -> None:
    local, remote = both
    here, there = _scenario(local, "local"), _scenario(remote, "remote")
    assert set(here) == set(there)
    for key in here:
        assert _shape(here[key]) == _shape(there[key]), key
    assert here["taken"] == "ControlRefused" and here["no_run"] == "ControlNotFound"
    assert here["bad_parameters"] == "ControlRefused" and here["deleted"] == (True, False)

    # each reads what the other wrote, the same
    row, _ = remote.save_deployment(_spec("cross", "d", "pool-remote"))
    assert local.get_deployment("cross/d") == remote.get_deployment("cross/d") == row
    assert local.get_work_pool("pool-local") == remote.get_work_pool("pool-local")
    run = local.create_flow_run("cross/d", {"n": 3})
    assert remote.get_flow_run(run["id"]) == local.get_flow_run(run["id"])
