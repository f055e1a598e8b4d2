"""The plait server over real HTTP: a real uvicorn (`plait server start` in a subprocess) per
backend, serving a store that real flows wrote to, on SQLite and PostgreSQL.

One server per backend for the whole module (starting one costs seconds); every test reads
the history the fixture recorded, or writes its own runs with fresh ids.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from plait.testing import throwaway_postgres_database
from plait.testing._server import ServerHandle, running_server, sample_batch

pytestmark = pytest.mark.slow

MAX_BODY = 1_000_000  # the servers here accept bodies up to this many bytes

HISTORY = '''
from plait import flow, get_run_logger, task

@task
def double(x):
    get_run_logger().info("doubling %s", x)
    return 2 * x

@task
def explode():
    raise ValueError("kaboom")

@flow
def child(x: int):
    return double(x)

@flow(tags=["nightly", "etl"])
def nightly(n: int, blob: list | None = None):
    get_run_logger().warning("a long line " + "y" * 3000)
    total = sum(double(i) for i in range(n))
    child(1)
    return total

@flow(tags=["adhoc"])
def adhoc(i: int):
    return double(i)

@flow
def broken():
    explode()

nightly(3, blob=["x" * 400] * 10)  # over 2,000 bytes (history keeps 500 characters a string)
for i in range(25):
    adhoc(i)
try:
    broken()
except Exception:
    pass
'''


@dataclass
class Served:
    backend: str
    database_url: str
    server: ServerHandle
    home: Path

    def get(self, path: str, scope: str = "read", **kwargs: Any) -> httpx.Response:
        return httpx.get(self.server.url + "/api/v1" + path, headers=self.server.headers(scope), timeout=30, **kwargs)

    def post(self, path: str, body: Any, scope: str = "run", **kwargs: Any) -> httpx.Response:
        return httpx.post(self.server.url + "/api/v1" + path, json=body, headers=self.server.headers(scope),
                          timeout=60, **kwargs)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "plait.cli", *args], env=self.server.env,
                              capture_output=True, text=True, timeout=120)


def _record_history(database_url: str, home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env.update(PLAIT_HOME=str(home), PLAIT_DATABASE_URL=database_url, PLAIT_LOG_TO_CONSOLE="false")
    script = home / "history.py"
    script.write_text(HISTORY)
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp(f"server-{request.param}")
    with _database(request.param, base) as url:
        with running_server(url, base / "server", env={"PLAIT_SERVER_MAX_REQUEST_BYTES": str(MAX_BODY)}) as server:
            (base / "flows").mkdir()
            _record_history(url, base / "flows")
            yield Served(request.param, url, server, base)


def _database(backend: str, base: Path) -> Any:
    import contextlib

    if backend == "postgres":
        return throwaway_postgres_database("plait_server")
    return contextlib.nullcontext(f"sqlite:///{base}/store.db")


def _runs(served: Served, **params: Any) -> list[dict[str, Any]]:
    response = served.get("/flow-runs", params={"limit": 500, **params})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def _one(served: Served, flow: str) -> dict[str, Any]:
    (run,) = _runs(served, flow=flow)
    return run


def _assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"code", "message", "detail"} and error["message"], error
    if code is not None:
        assert error["code"] == code, error
    assert "Traceback" not in response.text
    return dict(error)


# -- health and auth -------------------------------------------------------------------------------
def test_health_needs_no_key(served: Served) -> None:
    response = httpx.get(served.server.url + "/api/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["version"]
    assert body["database"] == ("sqlite" if served.backend == "sqlite" else "postgresql")
    assert response.headers["x-request-id"]


def test_a_request_without_a_valid_key_is_401_and_a_small_scope_403(served: Served) -> None:
    url = served.server.url + "/api/v1/flow-runs"
    missing = httpx.get(url)
    _assert_error(missing, 401, "unauthorized")
    assert missing.headers["www-authenticate"] == "Bearer"
    _assert_error(httpx.get(url, headers={"Authorization": "Bearer plait_notakey0_" + "x" * 32}), 401)
    _assert_error(httpx.get(url, headers={"Authorization": "Basic dXNlcjpwdw=="}), 401)
    _, rows = sample_batch()
    refused = served.post("/records", {"batch_id": str(uuid.uuid4()), "rows": rows}, scope="read")
    error = _assert_error(refused, 403, "forbidden")
    assert "run" in error["message"] and error["detail"] == {"needs": "run", "has": "read"}
    assert served.get("/flow-runs").status_code == 200


def test_keys_are_listed_by_prefix_and_a_revoked_key_stops_working(served: Served) -> None:
    name = f"short-lived-{uuid.uuid4().hex[:6]}"
    made = served.cli("server", "api-key", "create", name, "--scope", "read", "--expires-in", "1h", "--json")
    assert made.returncode == 0, made.stderr
    info = json.loads(made.stdout)
    key = info["key"]
    assert info["scope"] == "read" and info["expires_at"] and key.startswith("plait_" + info["prefix"])
    headers = {"Authorization": f"Bearer {key}"}
    assert httpx.get(served.server.url + "/api/v1/events", headers=headers).status_code == 200
    listed = served.cli("server", "api-key", "ls", "--json")
    assert listed.returncode == 0
    assert key not in listed.stdout and "hash" not in listed.stdout
    assert info["prefix"] in {k["prefix"] for k in json.loads(listed.stdout)}
    revoked = served.cli("server", "api-key", "revoke", name)
    assert revoked.returncode == 0, revoked.stderr
    _assert_error(httpx.get(served.server.url + "/api/v1/events", headers=headers), 401)
    again = served.cli("server", "api-key", "revoke", name)
    assert again.returncode == 1 and "no active API key" in again.stderr
    assert key not in served.server.output()  # never in the server's log


# -- flow runs -------------------------------------------------------------------------------------------
def test_flow_run_filters(served: Served) -> None:
    assert len(_runs(served, flow="adhoc")) == 25
    assert {r["flow_name"] for r in _runs(served, flow=["nightly", "broken"])} == {"nightly", "broken"}
    failed = _runs(served, state="failed")
    assert [r["flow_name"] for r in failed] == ["broken"]
    assert _runs(served, state=["FAILED", "completed"], flow="broken") == failed
    assert [r["flow_name"] for r in _runs(served, tag="nightly")] == ["nightly"]
    assert [r["flow_name"] for r in _runs(served, tag=["nightly", "etl"])] == ["nightly"]
    assert _runs(served, tag=["nightly", "adhoc"]) == []
    nightly = _one(served, "nightly")
    assert [r["flow_name"] for r in _runs(served, top_level="false")] == ["child"]
    assert [r["flow_name"] for r in _runs(served, parent=nightly["id"])] == ["child"]
    assert "child" not in {r["flow_name"] for r in _runs(served, top_level="true", flow=["child", "nightly"])}
    assert _runs(served, since="2999-01-01T00:00:00Z") == []
    assert len(_runs(served, flow="adhoc", since=nightly["created"])) == 25
    assert _runs(served, flow="nightly", until=nightly["created"]) == []
    assert nightly["task_run_count"] == 3


def test_keyset_pages_walk_every_run_once_newest_first(served: Served) -> None:
    everything = _runs(served, flow="adhoc")
    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"flow": "adhoc", "limit": 10}
        if cursor:
            params["cursor"] = cursor
        page = served.get("/flow-runs", params=params).json()
        pages += 1
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert [r["id"] for r in seen] == [r["id"] for r in everything]
    assert len({r["id"] for r in seen}) == 25
    created = [r["created"] for r in seen]
    assert created == sorted(created, reverse=True)


def test_lists_truncate_large_fields_and_the_single_item_has_them_whole(served: Served) -> None:
    listed = _one(served, "nightly")
    marker = listed["parameters"]
    assert marker["truncated"] is True and marker["size"] > 4000 and marker["preview"].startswith("{")
    run = served.get(f"/flow-runs/{listed['id']}").json()
    assert run["parameters"] == {"n": 3, "blob": ["x" * 400] * 10}
    assert [s["type"] for s in run["states"]] == ["PENDING", "RUNNING", "COMPLETED"]
    assert len(run["task_runs"]) == 3 and all(t["states"] for t in run["task_runs"])
    assert [s["flow_name"] for s in run["subflows"]] == ["child"]
    lines = served.get(f"/flow-runs/{listed['id']}/logs", params={"level": "warning"}).json()["items"]
    (long_line,) = lines
    assert len(long_line["message"]) < 2100 and "…[truncated" in long_line["message"]
    whole = served.get(f"/logs/{long_line['id']}").json()
    assert whole["message"] == "a long line " + "y" * 3000


def test_task_runs_logs_state_and_results(served: Served) -> None:
    nightly = _one(served, "nightly")
    tasks = served.get("/task-runs", params={"flow_run": nightly["id"]}).json()["items"]
    assert [t["name"] for t in tasks] == ["double-0", "double-1", "double-2"]
    one = served.get(f"/task-runs/{tasks[0]['id']}").json()
    assert one["parameters"] == {"x": 0} and [s["type"] for s in one["states"]][-1] == "COMPLETED"
    assert len(served.get("/task-runs", params={"task": "explode"}).json()["items"]) == 1
    failed = served.get("/task-runs", params={"state": "FAILED"}).json()["items"]
    assert [t["task_name"] for t in failed] == ["explode"]
    logs = served.get("/logs", params={"flow_run": nightly["id"]}).json()["items"]
    assert sum("doubling" in line["message"] for line in logs) == 3
    assert served.get(f"/flow-runs/{nightly['id']}/state").json() == {"id": nightly["id"], "state_type": "COMPLETED"}
    unknown = str(uuid.uuid4())
    assert served.get(f"/flow-runs/{unknown}/state").json() == {"id": unknown, "state_type": None}
    results = served.get("/results")
    assert results.status_code == 200 and isinstance(results.json()["items"], list)


def test_unknown_ids_are_404_naming_them(served: Served) -> None:
    unknown = str(uuid.uuid4())
    for path in (f"/flow-runs/{unknown}", f"/task-runs/{unknown}", f"/flow-runs/{unknown}/logs"):
        error = _assert_error(served.get(path), 404, "not_found")
        assert unknown in error["message"]
    _assert_error(served.get("/logs/987654321"), 404, "not_found")


# -- recording -------------------------------------------------------------------------------------------
def test_a_batch_sent_twice_is_stored_once(served: Served) -> None:
    run_id, rows = sample_batch(tasks=3, logs=4)
    batch = {"batch_id": f"batch-{uuid.uuid4()}", "rows": rows}
    first = served.post("/records", batch)
    assert first.status_code == 200, first.text
    assert first.json() == {"taken": [], "dropped": 0, "reason": "", "duplicate": False, "cancelling": []}
    second = served.post("/records", batch)
    assert second.json()["duplicate"] is True
    run = served.get(f"/flow-runs/{run_id}").json()
    assert [s["type"] for s in run["states"]] == ["PENDING", "RUNNING", "COMPLETED"]
    assert len(run["task_runs"]) == 3 and all(len(t["states"]) == 3 for t in run["task_runs"])
    assert len(served.get("/logs", params={"flow_run": run_id}).json()["items"]) == 4
    events = served.get("/events", params={"resource": f"flow-run/{run_id}", "limit": 100}).json()["items"]
    assert [e["payload"]["state_type"] for e in events if e["kind"] == "flow-run.state-changed"] == [
        "PENDING", "RUNNING", "COMPLETED"]
    assert sum(e["kind"] == "logs.written" for e in events) == 1


def test_text_no_database_stores_is_cleaned_not_refused(served: Served) -> None:
    run_id, rows = sample_batch(tasks=1, logs=1)
    flow = rows["new_flows"][0]  # type: ignore[index]
    flow["tags"] = ["odd\x00tag", "lone\ud800"]
    flow["parameters"] = {"nul\x00key": "a\x00b", "s": ["\udfff"]}
    rows["logs"][0]["message"] = "nul \x00 and \ud800 here"  # type: ignore[index]
    body = json.dumps({"batch_id": str(uuid.uuid4()), "rows": rows})  # as JSON escapes: \u0000, \ud800
    answer = httpx.post(served.server.url + "/api/v1/records", content=body,
                        headers={**served.server.headers("run"), "content-type": "application/json"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["dropped"] == 0
    run = served.get(f"/flow-runs/{run_id}").json()
    assert run["tags"] == ["odd\\x00tag", "lone\ufffd"]
    assert run["parameters"] == {"nul\\x00key": "a\\x00b", "s": ["\ufffd"]}
    (line,) = served.get("/logs", params={"flow_run": run_id}).json()["items"]
    assert line["message"] == "nul \\x00 and \ufffd here"
    # listings that look into JSON columns still work for every run
    assert served.get("/flow-runs", params={"tag": "odd\\x00tag"}).json()["items"][0]["id"] == run_id
    assert served.get("/flow-runs", params={"tag": "nightly"}).status_code == 200


def test_a_run_listed_twice_in_one_list_is_refused(served: Served) -> None:
    _, rows = sample_batch(tasks=1)
    rows["new_tasks"].append(dict(rows["new_tasks"][0]))  # type: ignore[union-attr, index]
    error = _assert_error(served.post("/records", {"batch_id": str(uuid.uuid4()), "rows": rows}), 422)
    assert "listed twice" in error["message"] and "rows.new_tasks" in error["message"]


def test_replay_is_idempotent(served: Served) -> None:
    run_id, rows = sample_batch(tasks=1, logs=2)
    for attempt in range(2):  # a journal replayed twice, under two batch ids
        answer = served.post("/records/replay", {"batch_id": f"replay-{attempt}-{run_id}", "rows": rows})
        assert answer.status_code == 200, answer.text
        assert answer.json()["duplicate"] is False
    run = served.get(f"/flow-runs/{run_id}").json()
    assert len(run["states"]) == 3 and len(run["task_runs"]) == 1
    assert len(served.get("/logs", params={"flow_run": run_id}).json()["items"]) == 2


def test_the_server_marks_a_silent_run_of_another_host_crashed(served: Served) -> None:
    run_id, rows = sample_batch(state="RUNNING", hostname="elsewhere", heartbeat_age=600)
    assert served.post("/records", {"batch_id": str(uuid.uuid4()), "rows": rows}).status_code == 200
    deadline = time.monotonic() + 60  # the crash detector runs every few seconds
    state = None
    while time.monotonic() < deadline:
        state = served.get(f"/flow-runs/{run_id}/state").json()["state_type"]
        if state == "CRASHED":
            break
        time.sleep(0.5)
    assert state == "CRASHED"
    message = served.get(f"/flow-runs/{run_id}").json()["state_message"]
    assert "elsewhere" in message and "silent" in message


REMOTE_FLOW = """
from plait import flow, get_run_logger, task

@task
def inc(x):
    get_run_logger().info("inc %s", x)
    return x + 1

@flow(tags=["remote"])
def remote_flow(n: int):
    return [inc(i) for i in range(n)]

assert remote_flow(4) == [1, 2, 3, 4]
"""


def test_a_flow_with_plait_api_url_records_to_the_server(served: Served, tmp_path: Path) -> None:
    script = tmp_path / "remote.py"
    script.write_text(REMOTE_FLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env.update(PLAIT_HOME=str(tmp_path / "client-home"), PLAIT_API_URL=served.server.api_url,
               PLAIT_API_KEY=served.server.run_key, PLAIT_LOG_TO_CONSOLE="false")
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (run,) = _runs(served, tag="remote", flow="remote-flow")
    whole = served.get(f"/flow-runs/{run['id']}").json()
    assert whole["state_type"] == "COMPLETED" and len(whole["task_runs"]) == 4
    assert [s["type"] for s in whole["states"]] == ["PENDING", "RUNNING", "COMPLETED"]
    lines = served.get("/logs", params={"flow_run": run["id"]}).json()["items"]
    assert sorted(line["message"] for line in lines if line["message"].startswith("inc")) == [
        "inc 0", "inc 1", "inc 2", "inc 3"]
    assert served.server.run_key not in served.server.output()


# -- events ----------------------------------------------------------------------------------------------
def test_events_list_filters_and_pages(served: Served) -> None:
    states = served.get("/events", params={"kind": "flow-run.state-changed", "limit": 1000}).json()["items"]
    assert states and {e["kind"] for e in states} == {"flow-run.state-changed"}
    seqs = [e["seq"] for e in states]
    assert seqs == sorted(seqs)
    both = served.get("/events", params={"kind": ["flow-run.state-changed", "logs.written"], "limit": 5}).json()
    assert len(both["items"]) == 5 and both["next_cursor"]
    following = served.get("/events", params={"kind": ["flow-run.state-changed", "logs.written"], "limit": 5,
                                              "cursor": both["next_cursor"]}).json()
    assert following["items"][0]["seq"] > both["items"][-1]["seq"]
    after = served.get("/events", params={"after": both["items"][0]["seq"], "limit": 1}).json()["items"]
    assert after[0]["seq"] > both["items"][0]["seq"]
    nightly = _one(served, "nightly")
    mine = served.get("/events", params={"resource": f"flow-run/{nightly['id']}"}).json()["items"]
    assert {e["resource"] for e in mine} == {f"flow-run/{nightly['id']}"}
    assert served.get("/events", params={"kind": "block.*"}).status_code == 200
    _assert_error(served.get("/events", params={"kind": "NOT A KIND"}), 400)
    # newest first, paged back by the cursor (or `before`), the same events in reverse
    params = {"kind": "flow-run.state-changed", "order": "desc", "limit": 7}
    newest = served.get("/events", params=params).json()
    older = served.get("/events", params={**params, "cursor": newest["next_cursor"]}).json()
    back = [e["seq"] for e in newest["items"] + older["items"]]
    assert back == sorted(seqs, reverse=True)[:14]
    assert [e["seq"] for e in served.get("/events", params={**params, "before": back[6]}).json()["items"]] == back[7:]
    _assert_error(served.get("/events", params={"order": "sideways"}), 422)


class _Stream:
    """An SSE connection read on a thread: events as dicts, comments as they arrive."""

    def __init__(self, served: Served, headers: dict[str, str] | None = None, **params: Any) -> None:
        self.events: list[dict[str, Any]] = []
        self.connected = threading.Event()
        self.ended = threading.Event()
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._client = httpx.Client(timeout=httpx.Timeout(60, read=60))
        self._request = self._client.build_request(
            "GET", served.server.url + "/api/v1/events/stream", params=params,
            headers={**served.server.headers("read"), **(headers or {})},
        )
        self.status: int | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self.connected.wait(30), self.error

    def _read(self) -> None:
        try:
            response = self._client.send(self._request, stream=True)
            try:
                self.status = response.status_code
                data: list[str] = []
                for line in response.iter_lines():
                    if line.startswith(": connected"):
                        self.connected.set()
                    elif line.startswith("data: "):
                        data.append(line[6:])
                    elif line == "" and data:
                        with self._cond:
                            self.events.append(json.loads("\n".join(data)))
                            self._cond.notify_all()
                        data = []
            finally:
                response.close()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.error = exc
        finally:
            self.connected.set()
            self.ended.set()

    def wait_for(self, predicate: Any, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                left = deadline - time.monotonic()
                assert left > 0 and not self.ended.is_set(), (self.error, self.events[-5:])
                self._cond.wait(left)

    def close(self) -> None:
        self._client.close()


def test_the_stream_pushes_a_new_state_event(served: Served) -> None:
    stream = _Stream(served, kind="flow-run.state-changed")
    try:
        run_id, rows = sample_batch(tasks=1)
        assert served.post("/records", {"batch_id": str(uuid.uuid4()), "rows": rows}).status_code == 200
        posted = time.monotonic()
        event = stream.wait_for(lambda e: e["payload"]["flow_run_id"] == run_id
                                and e["payload"]["state_type"] == "COMPLETED")
        latency = time.monotonic() - posted
        assert event["kind"] == "flow-run.state-changed" and event["resource"] == f"flow-run/{run_id}"
        assert {e["kind"] for e in stream.events} == {"flow-run.state-changed"}  # the filter holds
        print(f"stream latency {latency * 1000:.0f} ms")  # the target is under 1 s; the poll is every 0.2 s
    finally:
        stream.close()


def test_the_stream_resumes_after_last_event_id(served: Served) -> None:
    run_id, rows = sample_batch(tasks=0, logs=1)
    assert served.post("/records", {"batch_id": str(uuid.uuid4()), "rows": rows}).status_code == 200
    stored = served.get("/events", params={"resource": f"flow-run/{run_id}"}).json()["items"]
    first = stored[0]
    stream = _Stream(served, headers={"Last-Event-ID": str(first["seq"] - 1)}, resource=f"flow-run/{run_id}")
    try:
        got = stream.wait_for(lambda e: e["seq"] == stored[-1]["seq"])
        assert [e["seq"] for e in stream.events] == [e["seq"] for e in stored]
        assert got["kind"] == stored[-1]["kind"]
    finally:
        stream.close()


def test_the_stream_can_follow_given_flow_runs_only(served: Served) -> None:
    mine, rows = sample_batch(tasks=2, logs=1)
    other, other_rows = sample_batch(tasks=1, logs=1)
    stored = served.get("/events", params={"limit": 1, "order": "desc"}).json()["items"]
    after = stored[0]["seq"] if stored else 0
    stream = _Stream(served, after=after, flow_run=mine)  # the backlog and the live events, filtered alike
    try:
        assert served.post("/records", {"batch_id": str(uuid.uuid4()), "rows": other_rows}).status_code == 200
        assert served.post("/records", {"batch_id": str(uuid.uuid4()), "rows": rows}).status_code == 200
        stream.wait_for(lambda e: e["kind"] == "flow-run.state-changed" and e["payload"]["state_type"] == "COMPLETED")
        kinds = {e["kind"] for e in stream.events}
        assert kinds == {"flow-run.state-changed", "task-run.state-changed", "logs.written"}
        assert {e["payload"].get("flow_run_id") for e in stream.events} == {mine}
        assert other not in json.dumps(stream.events)
    finally:
        stream.close()
    refused = httpx.get(served.server.url + "/api/v1/events/stream", params={"flow_run": "not a run id"},
                        headers=served.server.headers("read"), timeout=30)
    assert refused.status_code == 422


# -- limits and bad input ------------------------------------------------------------------------------
def test_a_body_over_the_limit_is_413(served: Served) -> None:
    _, rows = sample_batch()
    big = {"batch_id": str(uuid.uuid4()), "rows": rows, "padding": "x" * (MAX_BODY + 10)}
    error = _assert_error(served.post("/records", big), 413, "request_too_large")
    assert error["detail"] == {"max_bytes": MAX_BODY}

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"batch_id": "x", "rows": {"logs": ["'
        for _ in range(MAX_BODY // 10_000 + 2):
            yield b"y" * 10_000
        yield b'"]}}'

    chunked = httpx.post(served.server.url + "/api/v1/records", content=chunks(),
                         headers={**served.server.headers("run"), "content-type": "application/json"}, timeout=60)
    _assert_error(chunked, 413, "request_too_large")


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("POST", "/records", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 422),
        ("POST", "/records", {"json": [1, 2]}, 422),
        ("POST", "/records", {"json": {"batch_id": "b"}}, 422),
        ("POST", "/records", {"json": {"batch_id": "b", "rows": {"nonsense": []}}}, 422),
        ("POST", "/records", {"json": {"batch_id": "b", "rows": {"new_flows": [{"id": "x"}]}}}, 422),
        ("POST", "/records", {"json": {"batch_id": "b\x00", "rows": {}}}, 422),
        ("POST", "/records", {"json": {"batch_id": "b", "rows": {"now": "yesterday"}}}, 422),
        ("POST", "/records", {"json": {"batch_id": "b", "rows": {"now": 10**30}}}, 422),
        ("POST", "/records", {"json": {"batch_id": "b", "rows": {"states": [{"run_id": "x" * 99}]}}}, 422),
        ("POST", "/records/replay", {"json": {"batch_id": "", "rows": {}}}, 422),
        ("GET", "/flow-runs", {"params": {"limit": "abc"}}, 422),
        ("GET", "/flow-runs", {"params": {"limit": 100000}}, 422),
        ("GET", "/flow-runs", {"params": {"state": "sleepy"}}, 422),
        ("GET", "/flow-runs", {"params": {"since": "last tuesday"}}, 422),
        ("GET", "/flow-runs", {"params": {"top_level": "perhaps"}}, 422),
        ("GET", "/flow-runs", {"params": {"cursor": "garbage!!"}}, 400),
        ("GET", "/flow-runs", {"params": {"parent": "a b"}}, 422),
        ("GET", "/flow-runs/has%00nul", {}, 422),
        ("GET", "/flow-runs/" + "a" * 300, {}, 422),
        ("GET", "/task-runs", {"params": {"flow_run": "../../etc"}}, 422),
        ("GET", "/logs", {"params": {"level": "LOUD"}}, 422),
        ("GET", "/logs/not-a-number", {}, 422),
        ("GET", "/events", {"params": {"after": -1}}, 422),
        ("GET", "/events", {"params": {"cursor": "abc"}}, 400),
        ("GET", "/events/stream", {"headers": {"Last-Event-ID": "yesterday"}}, 400),
        ("GET", "/no-such-route", {}, 404),
        ("DELETE", "/flow-runs", {}, 405),
    ],
)
def test_bad_input_is_a_4xx_json_error_never_500(
    served: Served, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    kwargs = dict(kwargs)  # the same parameters serve every backend
    headers = {**served.server.headers("run"), **kwargs.pop("headers", {})}
    response = httpx.request(method, served.server.url + "/api/v1" + path, headers=headers, timeout=30, **kwargs)
    error = _assert_error(response, status)
    if status == 422:
        assert error["detail"] and all("field" in item for item in error["detail"])


def test_a_cursor_of_another_list_is_refused(served: Served) -> None:
    page = served.get("/task-runs", params={"limit": 1}).json()
    error = _assert_error(served.get("/flow-runs", params={"cursor": page["next_cursor"]}), 400, "bad_cursor")
    assert "cursor" in error["message"]


def test_validation_errors_name_the_field(served: Served) -> None:
    _, rows = sample_batch()
    rows["new_tasks"][0]["run_count"] = "many"  # type: ignore[index]
    error = _assert_error(served.post("/records", {"batch_id": "b", "rows": rows}), 422, "validation_error")
    assert "rows.new_tasks.0.run_count" in error["message"]
    error = _assert_error(served.get("/flow-runs", params={"limit": 0}), 422)
    assert "'limit'" in error["message"]


def test_the_openapi_document_lists_the_routes(served: Served) -> None:
    spec = httpx.get(served.server.url + "/api/v1/openapi.json").json()
    for path in ("/api/v1/health", "/api/v1/flow-runs", "/api/v1/flow-runs/{id}", "/api/v1/flow-runs/{id}/state",
                 "/api/v1/flow-runs/{id}/logs", "/api/v1/task-runs", "/api/v1/task-runs/{id}", "/api/v1/logs",
                 "/api/v1/results", "/api/v1/records", "/api/v1/records/replay", "/api/v1/events",
                 "/api/v1/events/stream"):
        assert path in spec["paths"], path
    assert httpx.get(served.server.url + "/api/v1/docs").status_code == 200
    listing = spec["paths"]["/api/v1/flow-runs"]["get"]["responses"]
    assert listing["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")
