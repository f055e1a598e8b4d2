"""The plait server as a process: refusing to start open on a public address, running open
on loopback until a key exists, two servers on one PostgreSQL database, and a graceful stop
that lets a request in flight finish."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from plait.testing import throwaway_postgres_database
from plait.testing._server import free_port, running_server, sample_batch


def _env(database_url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env.update(PLAIT_HOME=str(home), PLAIT_DATABASE_URL=database_url)
    return env


def _plait(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "plait.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_it_refuses_a_public_address_without_auth(tmp_path: Path) -> None:
    env = _env(f"sqlite:///{tmp_path}/store.db", tmp_path / "home")
    done = _plait(env, "server", "start", "--host", "0.0.0.0", "--port", str(free_port()), timeout=60)
    assert done.returncode == 1
    assert "refusing to serve 0.0.0.0 without auth" in done.stderr
    assert "plait server api-key create" in done.stderr and "--insecure-no-auth" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_bad_options_are_refused_clearly(tmp_path: Path) -> None:
    env = _env(f"sqlite:///{tmp_path}/store.db", tmp_path / "home")
    done = _plait(env, "server", "api-key", "create", "ci", "--scope", "root")
    assert done.returncode == 2 and "'root' is not one of 'read', 'run', 'admin'" in done.stderr
    done = _plait(env, "server", "api-key", "create", "ci", "--scope", "run", "--expires-in", "soon")
    assert done.returncode == 2 and "not a duration" in done.stderr
    assert _plait(env, "server", "api-key", "create", "ci", "--scope", "run").returncode == 0
    done = _plait(env, "server", "api-key", "create", "ci", "--scope", "run")
    assert done.returncode == 1 and "already exists" in done.stderr
    listed = _plait(env, "server", "api-key", "ls")
    assert listed.returncode == 0 and "ci" in listed.stdout and "active" in listed.stdout


@pytest.mark.slow
def test_open_on_loopback_until_a_key_exists(tmp_path: Path) -> None:
    with running_server(f"sqlite:///{tmp_path}/store.db", tmp_path / "server", auth=False) as server:
        assert "auth:   off: no API key exists" in server.output()
        url = server.url + "/api/v1/flow-runs"
        assert httpx.get(url).status_code == 200
        made = _plait(server.env, "server", "api-key", "create", "first", "--scope", "read", "--json")
        assert made.returncode == 0, made.stderr
        key = json.loads(made.stdout)["key"]
        deadline = time.monotonic() + 30  # the server looks for keys again every 2 s
        while httpx.get(url).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"Authorization": f"Bearer {key}"}).status_code == 200


# -- graceful shutdown ---------------------------------------------------------------------------------
def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), None)
    while length is not None and len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, body


@pytest.mark.slow
def test_sigterm_lets_the_request_in_flight_finish(tmp_path: Path) -> None:
    with running_server(f"sqlite:///{tmp_path}/store.db", tmp_path / "server") as server:
        stream_done: dict[str, Any] = {}

        def follow() -> None:  # an open event stream must not hold the shutdown up
            try:
                with httpx.stream("GET", server.url + "/api/v1/events/stream", headers=server.headers("read"),
                                  timeout=60) as response:
                    stream_done["status"] = response.status_code
                    for _ in response.iter_lines():
                        pass
                stream_done["ended"] = True
            except Exception as exc:  # noqa: BLE001
                stream_done["error"] = exc

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        deadline = time.monotonic() + 30
        while not stream_done and time.monotonic() < deadline:  # the stream is open before the signal
            time.sleep(0.01)
        run_id, rows = sample_batch(tasks=50, logs=50)
        body = json.dumps({"batch_id": str(uuid.uuid4()), "rows": rows}).encode()
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        try:
            sock.sendall(
                b"POST /api/v1/records HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                + f"Authorization: Bearer {server.run_key}\r\nContent-Length: {len(body)}\r\n".encode()
                + b"Expect: 100-continue\r\n\r\n"
            )
            # the server asks for the body once the route reads it: the request is in flight
            assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue")
            process = server.process
            assert process is not None
            process.send_signal(signal.SIGTERM)
            time.sleep(0.3)  # the server is stopping now: it accepts no new connection
            sock.sendall(body)
            status, answer = _read_response(sock)
        finally:
            sock.close()
        assert status == 200, answer
        assert json.loads(answer)["duplicate"] is False
        assert process.wait(60) == 0
        follower.join(30)
        assert stream_done.get("status") == 200 and stream_done.get("ended"), stream_done
        log = server.output()
        assert "Application shutdown complete" in log
        server.process = None
        server.start()  # the same store, the same port: the batch is there
        response = httpx.get(f"{server.url}/api/v1/flow-runs/{run_id}", headers=server.headers("read"))
        assert response.status_code == 200 and len(response.json()["task_runs"]) == 50


# -- two servers, one PostgreSQL database ------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.postgres
def test_two_servers_on_one_postgres_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    with throwaway_postgres_database("plait_two") as url:
        with running_server(url, tmp_path / "a") as a, running_server(url, tmp_path / "b") as b:
            servers = [a, b]
            stream_events: list[dict[str, Any]] = []
            connected = threading.Event()

            def follow_b() -> None:  # events stored through A reach B's subscribers
                with httpx.stream("GET", b.url + "/api/v1/events/stream", headers=b.headers("read"),
                                  params={"kind": "flow-run.state-changed", "timeout": 120}, timeout=150) as response:
                    for line in response.iter_lines():
                        if line.startswith(": connected"):
                            connected.set()
                        elif line.startswith("data: "):
                            stream_events.append(json.loads(line[6:]))

            follower = threading.Thread(target=follow_b, daemon=True)
            follower.start()
            assert connected.wait(30)

            clients, batches = 6, 8
            expected: dict[str, int] = {}
            answers: list[dict[str, Any]] = []
            lock = threading.Lock()

            errors: list[BaseException] = []

            def client(number: int) -> None:
                try:
                    send_batches(number)
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

            def send_batches(number: int) -> None:
                with httpx.Client(timeout=60) as http:
                    for i in range(batches):
                        run_id, rows = sample_batch(tasks=5, logs=3)
                        batch = {"batch_id": f"c{number}-{i}-{run_id}", "rows": rows}
                        first, other = servers[(number + i) % 2], servers[(number + i + 1) % 2]
                        got = http.post(first.url + "/api/v1/records", json=batch, headers=first.headers("run"))
                        assert got.status_code == 200, got.text
                        # the answer was "lost": the same batch again, through the other server
                        again = http.post(other.url + "/api/v1/records", json=batch, headers=other.headers("run"))
                        assert again.status_code == 200, again.text
                        with lock:
                            expected[run_id] = 5
                            answers.extend([got.json(), again.json()])

            threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(300)
            assert errors == []
            assert len(expected) == clients * batches
            assert sum(a["duplicate"] for a in answers) == clients * batches  # each batch stored once

            for run_id in expected:
                reader = servers[hash(run_id) % 2]
                run = httpx.get(f"{reader.url}/api/v1/flow-runs/{run_id}", headers=reader.headers("read")).json()
                assert [s["type"] for s in run["states"]] == ["PENDING", "RUNNING", "COMPLETED"], run_id
                assert len(run["task_runs"]) == 5 and all(len(t["states"]) == 3 for t in run["task_runs"])
                logs = httpx.get(f"{reader.url}/api/v1/logs", params={"flow_run": run_id},
                                 headers=reader.headers("read")).json()["items"]
                assert len(logs) == 3

            def seen_completed() -> set[str]:
                return {e["payload"]["flow_run_id"] for e in list(stream_events)
                        if e["payload"]["state_type"] == "COMPLETED"}

            deadline = time.monotonic() + 30
            while not set(expected) <= seen_completed() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert set(expected) <= seen_completed()  # B's stream saw A's batches too
            delivered = [(e["payload"]["flow_run_id"], e["payload"]["state_type"]) for e in stream_events
                         if e["payload"]["flow_run_id"] in expected]
            assert len(delivered) == len(set(delivered)) == 3 * len(expected)  # each event once

            from plait._store.database import Database
            from plait._store.leases import lease_holder

            holder = lease_holder(Database.open(url), "crash-detector")
            assert holder is not None and not holder["expired"]


# -- the event hub, without a server ---------------------------------------------------------------------
def _insert_event(db: Any, seq: int) -> None:
    from plait._store.events import new_event
    from plait._store.models import EVENTS

    with db.engine.begin() as conn:
        conn.execute(EVENTS.insert().values(seq=seq, **new_event("block.saved", f"block/x/{seq}", {})))


def test_the_hub_hands_over_an_event_whose_seq_commits_late(tmp_path: Path) -> None:
    from plait._store.database import Database
    from plait.server._stream import EventHub

    db = Database.open(f"sqlite:///{tmp_path}/store.db")
    hub = EventHub(db)
    assert hub.poll() == [] and hub.floor == 0
    _insert_event(db, 1)
    _insert_event(db, 3)  # seq 2 is handed out but not committed yet
    assert [e["seq"] for e in hub.poll()] == [1, 3]
    assert hub.floor == 1  # nothing at or below 1 will come again; 2 may
    _insert_event(db, 2)
    assert [e["seq"] for e in hub.poll()] == [2]
    assert hub.poll() == [] and hub.floor == 3


def test_stream_filters_match_as_the_list_does() -> None:
    from plait.server._stream import matches

    event = {"kind": "block.saved", "resource": "block/aws/prod"}
    assert matches(event, None, None)
    assert matches(event, {"block.*"}, "block/aws")
    assert matches(event, {"flow-run.state-changed", "block.saved"}, None)
    assert not matches(event, {"block.deleted"}, None)
    assert not matches(event, {"blocks.*"}, None)
    assert not matches(event, None, "flow-run/")
