"""``GET /flow-runs/summary`` and the deployment filter of ``GET /flow-runs``, on a real server
(SQLite and PostgreSQL: the summary's buckets are computed by each database in its own way).

The runs are recorder batches posted to ``/records`` with chosen creation times, so every
count below is known exactly.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from plait._batch import micros
from plait.client import ApiError, PlaitClient
from plait.testing import throwaway_postgres_database
from plait.testing._server import ServerHandle, running_server, sample_batch

pytestmark = pytest.mark.slow

T0 = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
# (state, minutes after T0, tags, subflow?) — three one-hour buckets from T0
RUNS = [
    ("COMPLETED", 5, ["nightly"], False),
    ("COMPLETED", 30, ["nightly", "eu"], False),
    ("FAILED", 59, ["nightly"], False),
    ("COMPLETED", 60, [], True),  # the first microsecond of the second hour
    ("CRASHED", 150, ["eu"], False),
    ("COMPLETED", 200, [], False),  # after the window [T0, T0 + 3h)
]


def _post_run(server: ServerHandle, state: str, created: datetime, tags: list[str], parent: str | None,
              flow_name: str) -> str:
    run_id, rows = sample_batch(state=state, flow_name=flow_name, tasks=0, logs=0)
    flow = rows["new_flows"][0]  # type: ignore[index]
    flow.update(created=micros(created), start_time=micros(created), tags=tags, parent_flow_run_id=parent)
    if flow["end_time"] is not None:
        flow["end_time"] = micros(created + timedelta(seconds=3))
    answer = httpx.post(f"{server.url}/api/v1/records", json={"batch_id": str(uuid.uuid4()), "rows": rows},
                        headers=server.headers("run"), timeout=30)
    assert answer.status_code == 200, answer.text
    return run_id


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base: Path = tmp_path_factory.mktemp(f"summary-{request.param}")
    store = (throwaway_postgres_database("plait_summary") if request.param == "postgres"
             else contextlib.nullcontext(f"sqlite:///{base}/store.db"))
    with store as url, running_server(url, base / "server") as server:
        flow_name = f"summary-{uuid.uuid4().hex[:6]}"
        ids = []
        for state, minutes, tags, subflow in RUNS:
            ids.append(_post_run(server, state, T0 + timedelta(minutes=minutes), tags, ids[0] if subflow else None,
                                 flow_name))
        with PlaitClient(server.url + "/api", api_key=server.admin_key) as client:
            client.save_deployment({"flow_name": flow_name, "name": "nightly", "entrypoint": "/srv/etl.py:etl"})
            made = client.create_deployment_run(f"{flow_name}/nightly", {})
            yield {"server": server, "client": client, "flow": flow_name, "ids": ids, "deployment_run": made}


def _window(client: PlaitClient, flow: str, **filters: Any) -> dict[str, Any]:
    return client.flow_run_summary(flow=flow, since=T0, until=T0 + timedelta(hours=3), buckets=3, **filters)


def test_counts_by_state_overall_and_per_bucket(served: dict[str, Any]) -> None:
    summary = _window(served["client"], served["flow"])
    assert summary["total"] == 5
    assert summary["counts"] == {"COMPLETED": 3, "FAILED": 1, "CRASHED": 1}
    assert summary["bucket_seconds"] == 3600
    assert [b["counts"] for b in summary["buckets"]] == [
        {"COMPLETED": 2, "FAILED": 1}, {"COMPLETED": 1}, {"CRASHED": 1}]
    starts = [datetime.fromisoformat(b["start"]) for b in summary["buckets"]]
    assert starts == [T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)]
    assert datetime.fromisoformat(summary["buckets"][-1]["end"]) == T0 + timedelta(hours=3)


def test_filters_are_those_of_the_list(served: dict[str, Any]) -> None:
    client, flow = served["client"], served["flow"]
    assert _window(client, flow, state=["failed", "CRASHED"])["counts"] == {"FAILED": 1, "CRASHED": 1}
    assert _window(client, flow, tag="nightly")["total"] == 3
    assert _window(client, flow, tag=["nightly", "eu"])["counts"] == {"COMPLETED": 1}
    assert _window(client, flow, top_level=True)["total"] == 4
    assert _window(client, flow, top_level=False)["counts"] == {"COMPLETED": 1}
    assert _window(client, "no-such-flow")["total"] == 0
    # the list agrees with the summary for the same filters
    listed = client.flow_runs(flow=flow, tag="eu", since=T0, until=T0 + timedelta(hours=3)).items
    assert len(listed) == _window(client, flow, tag="eu")["total"] == 2


def test_without_since_the_window_starts_at_the_oldest_matching_run(served: dict[str, Any]) -> None:
    client, flow = served["client"], served["flow"]
    summary = client.flow_run_summary(flow=flow, state="COMPLETED", until=T0 + timedelta(hours=4), buckets=10)
    assert datetime.fromisoformat(summary["since"]) == T0 + timedelta(minutes=5)
    assert summary["total"] == 4 and sum(sum(b["counts"].values()) for b in summary["buckets"]) == 4
    empty = client.flow_run_summary(flow="no-such-flow")
    assert empty["total"] == 0 and empty["since"] is None and empty["buckets"] == []


def test_deployment_filter_and_fields(served: dict[str, Any]) -> None:
    client, flow, made = served["client"], served["flow"], served["deployment_run"]
    for ref in (f"{flow}/nightly", made["deployment_id"]):
        (run,) = client.flow_runs(deployment=ref).items
        assert run["id"] == made["id"]
        assert run["deployment_id"] == made["deployment_id"] and run["deployment_name"] == f"{flow}/nightly"
        assert client.flow_run_summary(deployment=ref)["counts"] == {"SCHEDULED": 1}
    assert client.flow_runs(deployment=f"{flow}/missing").items == []
    by_hand = client.flow_runs(flow=flow, top_level=True, limit=1, since=T0, until=T0 + timedelta(hours=1)).items[0]
    assert by_hand["deployment_id"] is None and by_hand["deployment_name"] is None


def test_bad_input_is_refused_by_name(served: dict[str, Any]) -> None:
    client, flow = served["client"], served["flow"]
    with pytest.raises(ApiError) as refused:
        client.flow_run_summary(flow=flow, since=T0, until=T0)
    assert refused.value.status == 400 and "since" in refused.value.message
    server: ServerHandle = served["server"]
    answer = httpx.get(f"{server.url}/api/v1/flow-runs/summary", params={"buckets": 0},
                       headers=server.headers("read"), timeout=30)
    assert answer.status_code == 422 and "buckets" in answer.text
    assert httpx.get(f"{server.url}/api/v1/flow-runs/summary", timeout=30).status_code == 401
