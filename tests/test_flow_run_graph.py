"""``GET /api/v1/flow-runs/{id}/graph`` over real HTTP: the nodes, edges and subflow groups of
a run real flows recorded, a 404 for an unknown run, the key it needs, and its speed at
10,000 task runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from plait.testing._server import ServerHandle, running_server, sample_batch

pytestmark = pytest.mark.slow

FLOWS = '''
from plait import flow, task

@task
def extract():
    return [1, 2, 3]

@task
def audit():
    return "ok"

@task
def load(rows):
    return len(rows)

@task
def add(values):
    return sum(values)

@flow(name="graph-child")
def child(values):
    return add(values)

@flow(name="graph-parent")
def parent():
    rows = extract()
    checked = audit.submit()
    loaded = load.submit(rows, wait_for=[checked]).result()
    return child([loaded, 1])

parent()
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    base = tmp_path_factory.mktemp("graph")
    url = f"sqlite:///{base}/store.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env.update(PLAIT_HOME=str(base / "flows"), PLAIT_DATABASE_URL=url, PLAIT_LOG_TO_CONSOLE="false")
    script = base / "flows.py"
    script.write_text(FLOWS)
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with running_server(url, base / "server", env={"PLAIT_SERVER_MAX_REQUEST_BYTES": "200000000"}) as handle:
        yield handle


def _get(server: ServerHandle, path: str, scope: str | None = "read") -> httpx.Response:
    headers = server.headers(scope) if scope else {}
    return httpx.get(f"{server.url}/api/v1{path}", headers=headers, timeout=60)


def _run_id(server: ServerHandle, flow: str) -> str:
    items = _get(server, f"/flow-runs?flow={flow}").json()["items"]
    assert len(items) == 1, items
    return str(items[0]["id"])


def test_the_graph_has_the_runs_nodes_edges_and_subflow(server: ServerHandle) -> None:
    run_id = _run_id(server, "graph-parent")
    answer = _get(server, f"/flow-runs/{run_id}/graph")
    assert answer.status_code == 200, answer.text
    graph = answer.json()
    assert set(graph) == {"flow_run", "nodes", "edges", "groups"}
    from plait.server.routes.graphs import FlowRunGraph

    FlowRunGraph.model_validate(graph)  # the answer is what the OpenAPI document says
    assert graph["flow_run"]["id"] == run_id and graph["flow_run"]["state_type"] == "COMPLETED"
    by_name = {n["task_name"]: n for n in graph["nodes"]}
    assert {"extract", "audit", "load"} <= set(by_name)
    for node in graph["nodes"]:
        assert node["start_time"] and node["end_time"] and node["duration_seconds"] >= 0
    pairs = {(e["upstream"], e["downstream"], e["kind"]) for e in graph["edges"]}
    assert (by_name["extract"]["id"], by_name["load"]["id"], "data") in pairs
    assert (by_name["audit"]["id"], by_name["load"]["id"], "wait_for") in pairs
    # the edges are those the run's own record holds, each once
    full = _get(server, f"/flow-runs/{run_id}").json()
    recorded = {(u["id"], t["id"], u["kind"]) for t in full["task_runs"] for u in t["upstream"]}
    assert pairs == recorded
    # the subflow: a group, linked from the node that started it (when the engine records one)
    child_id = _run_id(server, "graph-child")
    (group,) = graph["groups"]
    assert group["id"] == child_id and group["flow_name"] == "graph-child" and group["task_run_count"] == 1
    if group["parent_task_run_id"]:
        starter = next(n for n in graph["nodes"] if n["id"] == group["parent_task_run_id"])
        assert starter["subflow_run_id"] == child_id
    child = _get(server, f"/flow-runs/{child_id}/graph").json()
    assert [n["task_name"] for n in child["nodes"]] == ["add"] and child["groups"] == []
    assert child["flow_run"]["parent_flow_run_id"] == run_id


def test_an_unknown_run_is_404_and_a_key_is_needed(server: ServerHandle) -> None:
    missing = str(uuid.uuid4())
    answer = _get(server, f"/flow-runs/{missing}/graph")
    assert answer.status_code == 404
    error = answer.json()["error"]
    assert error["code"] == "not_found" and missing in error["message"]
    assert _get(server, f"/flow-runs/{missing}/graph", scope=None).status_code == 401
    assert _get(server, "/flow-runs/not%20an%20id/graph").status_code == 422
    assert "/api/v1/flow-runs/{id}/graph" in _get(server, "/openapi.json", scope=None).json()["paths"]


def ten_thousand_task_runs(tasks: int = 10_000) -> tuple[str, dict[str, Any]]:
    """A recorder batch of one flow run with ``tasks`` task runs, each after the one at half
    its index (a binary tree of ``data`` edges) and every tenth also waiting for its
    predecessor."""
    run_id, rows = sample_batch(tasks=tasks, logs=0, flow_name="graph-big")
    ids = [t["id"] for t in rows["new_tasks"]]  # type: ignore[index]
    edges = [{"upstream_id": ids[(i - 1) // 2], "downstream_id": ids[i], "kind": "data", "parameter": "x"}
             for i in range(1, len(ids))]
    edges += [{"upstream_id": ids[i - 1], "downstream_id": ids[i], "kind": "wait_for", "parameter": None}
              for i in range(10, len(ids), 10)]
    rows["edges"] = edges
    return run_id, rows


def test_ten_thousand_task_runs_answer_whole(server: ServerHandle) -> None:
    run_id, rows = ten_thousand_task_runs()
    posted = httpx.post(f"{server.url}/api/v1/records", json={"batch_id": str(uuid.uuid4()), "rows": rows},
                        headers=server.headers("run"), timeout=300)
    assert posted.status_code < 300, posted.text
    timings = []
    url = f"{server.url}/api/v1/flow-runs/{run_id}/graph"
    for _ in range(5):
        # timed with the standard library's client: httpx itself takes ~300 ms more to read 4 MB
        began = time.perf_counter()
        with urllib.request.urlopen(urllib.request.Request(url, headers=server.headers("read")), timeout=60) as got:
            body = got.read()
        timings.append(time.perf_counter() - began)
        assert got.status == 200
    graph = json.loads(body)
    assert len(graph["nodes"]) == 10_000
    assert len(graph["edges"]) == 9_999 + 999
    best = min(timings)
    print(f"graph of 10,000 task runs over HTTP: best {best * 1000:.0f} ms, all "
          f"{[round(t * 1000) for t in timings]} ms, {len(body) / 1e6:.1f} MB")  # the speed: bench/ui_scale.py


def test_the_store_reads_the_graph_in_one_query_per_table(tmp_path: Path) -> None:
    from sqlalchemy import event

    from plait._batch import BatchRows
    from plait._store.database import Database
    from plait._store.graphs import flow_run_graph
    from plait._store.ingest import ingest_batch

    db = Database(f"sqlite:///{tmp_path}/store.db")
    run_id, rows = ten_thousand_task_runs(2_000)
    ingest_batch(db, str(uuid.uuid4()), BatchRows.from_wire(rows))
    statements: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    began = time.perf_counter()
    graph = flow_run_graph(db, run_id)
    took = time.perf_counter() - began
    assert len(graph["nodes"]) == 2_000 and len(graph["edges"]) == 1_999 + 199
    assert len(statements) <= 4, statements  # run, task runs, edges, subflows — never one per node
    print(f"store: graph of 2,000 task runs in {took * 1000:.0f} ms, {len(statements)} statements")
