"""Automations end to end: a real server (``plait server start``), a real worker process
(``plait worker start``) and real HTTP calls on 127.0.0.1.

- deployment B runs when A completes, with A's parameter passed on (a deployment trigger
  in ``plait.yaml``, deployed through the server);
- a proactive trigger fires when a flow overruns its window, and not when it finishes in
  time;
- a webhook POST with a JSON body starts a deployment with a templated parameter;
- a Slack-style notification reaches a local receiver when a run fails;
- two servers of one PostgreSQL database take each action once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from plait.client import PlaitClient
from plait.testing import throwaway_postgres_database
from plait.testing._server import ServerHandle, running_server

pytestmark = pytest.mark.slow

FLOWS = textwrap.dedent('''
    import time

    from plait import flow


    @flow
    def load(table: str = "orders") -> str:
        return table


    @flow
    def transform(table: str = "nothing") -> str:
        return f"built {table}"


    @flow
    def nightly(seconds: float = 0.1) -> float:
        time.sleep(seconds)
        return seconds


    @flow
    def breaks(why: str = "boom") -> None:
        raise RuntimeError(why)
''')

PLAIT_YAML = textwrap.dedent('''
    deployments:
      - name: load
        entrypoint: flows.py:load
        work_pool: auto
      - name: transform
        entrypoint: flows.py:transform
        work_pool: auto
        triggers:
          - deployment: load/load
            parameters: {table: "{{ flow_run.parameters.table }}"}
      - name: nightly
        entrypoint: flows.py:nightly
        work_pool: auto
      - name: breaks
        entrypoint: flows.py:breaks
        work_pool: auto
''')

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


class Receiver:
    """An HTTP server on 127.0.0.1 that keeps what is POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                received.append({"path": self.path, "body": raw})
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def client_env(server: ServerHandle, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env.update(PLAIT_API_URL=server.api_url, PLAIT_API_KEY=server.admin_key, PLAIT_HOME=str(home))
    return env


def plait(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "plait.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"plait {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


@contextmanager
def worker(env: dict[str, str], cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "plait.cli", "worker", "start", "--pool", "auto",
                                 "--poll-interval", "0.2", "--heartbeat-interval", "1"],
                                env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A server on SQLite with the flows deployed to a process pool and a worker polling it."""
    home = tmp_path_factory.mktemp("automations-e2e")
    project = home / "project"
    project.mkdir()
    (project / "flows.py").write_text(FLOWS)
    (project / "plait.yaml").write_text(PLAIT_YAML)
    with ExitStack() as stack:
        server = stack.enter_context(running_server(f"sqlite:///{home / 'plait.db'}", home / "server"))
        env = client_env(server, home / "client")
        plait(env, project, "work-pool", "create", "auto", "--type", "process")
        plait(env, project, "deploy")
        stack.enter_context(worker(env, project, home / "worker.log"))
        api = stack.enter_context(PlaitClient(server.api_url, server.admin_key, timeout=30))
        yield {"server": server, "env": env, "project": project, "api": api, "home": home}


def http(server: ServerHandle) -> httpx.Client:
    return httpx.Client(base_url=server.api_url + "/v1", headers=server.headers("admin"), timeout=30)


def runs_of(server: ServerHandle, flow: str) -> list[dict[str, Any]]:
    with http(server) as api:
        page = api.get("/flow-runs", params={"flow": flow, "limit": 100})
        assert page.status_code == 200, page.text
        return list(page.json()["items"])


def ended(server: ServerHandle, flow_run_id: str) -> dict[str, Any] | None:
    with http(server) as api:
        run = api.get(f"/flow-runs/{flow_run_id}").json()
    return run if run.get("state_type") in FINAL else None


def start(server: ServerHandle, deployment: str, **parameters: Any) -> str:
    with http(server) as api:
        answer = api.post(f"/deployments/{deployment}/runs", json={"parameters": parameters})
        assert answer.status_code in (200, 201), answer.text
        return str(answer.json()["id"])


def save_automation(server: ServerHandle, spec: dict[str, Any]) -> dict[str, Any]:
    with http(server) as api:
        answer = api.post("/automations", json=spec)
        assert answer.status_code in (200, 201), answer.text
        return dict(answer.json()["automation"])


def actions(server: ServerHandle, name: str) -> list[dict[str, Any]]:
    with http(server) as api:
        answer = api.get(f"/automations/{name}/actions")
        assert answer.status_code == 200, answer.text
        return list(answer.json()["items"])


def test_b_runs_when_a_completes_with_a_parameter_of_a(site: dict[str, Any]) -> None:
    server = site["server"]
    run_a = start(server, "load/load", table="orders_2026")
    assert wait_for(lambda: ended(server, run_a), "load to end")["state_type"] == "COMPLETED"
    b_runs = wait_for(lambda: [r for r in runs_of(server, "transform")
                               if r["parameters"] == {"table": "orders_2026"}], "transform to be started")
    finished = wait_for(lambda: ended(server, b_runs[0]["id"]), "transform to end")
    assert finished["state_type"] == "COMPLETED"
    done = [a for a in actions(server, "transform/transform: trigger 1") if a["status"] == "done"]
    assert [a["flow_run_id"] for a in done] == [b_runs[0]["id"]]


def test_a_proactive_trigger_fires_on_an_overrun_and_not_in_time(site: dict[str, Any]) -> None:
    server = site["server"]
    receiver = Receiver()
    try:
        save_automation(server, {
            "name": "nightly-overrun",
            "trigger": {"posture": "proactive", "after": ["flow-run.running"],
                        "expect": ["flow-run.completed", "flow-run.failed", "flow-run.crashed"],
                        "match": {"deployment": "nightly/nightly"}, "for_each": ["flow_run_id"], "within": "3s"},
            "actions": [{"type": "call-webhook", "url": receiver.url + "/overrun",
                         "body": '{"run": "{{ event.labels.flow_run_id }}", "fired": "{{ firing.posture }}"}'}],
        })
        quick = start(server, "nightly/nightly", seconds=0.2)
        slow = start(server, "nightly/nightly", seconds=8)
        assert wait_for(lambda: ended(server, quick), "the quick run")["state_type"] == "COMPLETED"
        wait_for(lambda: receiver.bodies, "the overrun alert", timeout=30)
        wait_for(lambda: ended(server, slow), "the slow run", timeout=60)
        time.sleep(1.5)  # a wrong alert for the quick run would have come by now
        runs = [json.loads(b["body"])["run"] for b in receiver.bodies]
        assert runs == [slow], receiver.bodies
        assert json.loads(receiver.bodies[0]["body"])["fired"] == "proactive"
    finally:
        receiver.close()


def test_a_webhook_post_starts_a_deployment_with_a_templated_parameter(site: dict[str, Any]) -> None:
    server = site["server"]
    with http(server) as api:
        made = api.post("/webhooks", json={"name": "loader-hook", "template": (
            '{"event": "warehouse.table.loaded", "resource": {"id": "table/{{ body.table }}", '
            '"source": "{{ headers[\'x-source\'] }}"}, "payload": {"rows": {{ body.rows }}}}')})
        assert made.status_code == 201, made.text
        hook = made.json()
    save_automation(server, {
        "name": "load-from-webhook",
        "trigger": {"expect": ["warehouse.table.loaded"], "match": {"source": "fivetran"}},
        "actions": [{"type": "run-deployment", "deployment": "load/load",
                     "parameters": {"table": "{{ event.resource.split('/')[1] }}_{{ event.payload.rows }}"}}],
    })
    called = httpx.post(server.url + hook["webhook"]["path"], json={"table": "events", "rows": 42},
                        headers={"Authorization": f"Bearer {hook['token']}", "X-Source": "fivetran"}, timeout=30)
    assert called.status_code == 202, called.text
    started = wait_for(lambda: [r for r in runs_of(server, "load") if r["parameters"] == {"table": "events_42"}],
                       "the webhook's run")
    assert wait_for(lambda: ended(server, started[0]["id"]), "that run")["state_type"] == "COMPLETED"
    wrong = httpx.post(server.url + hook["webhook"]["path"], json={"table": "x", "rows": 1},
                       headers={"Authorization": "Bearer not-the-token"}, timeout=30)
    assert wrong.status_code == 401


def test_a_slack_style_notification_is_delivered_on_failed(site: dict[str, Any]) -> None:
    server, env, project = site["server"], site["env"], site["project"]
    receiver = Receiver()
    try:
        plait(env, project, "block", "create", "slack-webhook", "ops-alerts", "--set",
              f"url={receiver.url}/services/T000/B000/XXXX")
        save_automation(server, {
            "name": "alert-on-failure",
            "trigger": {"expect": ["flow-run.failed"], "match": {"flow": "breaks"}},
            "actions": [{"type": "send-notification", "block": "slack-webhook/ops-alerts",
                         "subject": "{{ flow_run.flow_name }} failed",
                         "body": "run {{ flow_run.name }}: {{ flow_run.state_message }}"}],
        })
        failing = start(server, "breaks/breaks", why="disk full")
        assert wait_for(lambda: ended(server, failing), "the failing run")["state_type"] == "FAILED"
        wait_for(lambda: receiver.bodies, "the Slack message", timeout=30)
        message = json.loads(receiver.bodies[0]["body"])
        assert receiver.bodies[0]["path"] == "/services/T000/B000/XXXX"
        assert "breaks failed" in json.dumps(message) and "disk full" in json.dumps(message)
    finally:
        receiver.close()


@pytest.mark.postgres
def test_two_servers_take_each_action_once(tmp_path: Path) -> None:
    receiver = Receiver()
    with ExitStack() as stack:
        url = stack.enter_context(throwaway_postgres_database("plait_automations_two"))
        first = stack.enter_context(running_server(url, tmp_path / "one"))
        second = stack.enter_context(running_server(url, tmp_path / "two"))
        stack.callback(receiver.close)
        save_automation(first, {
            "name": "echo-pings", "trigger": {"expect": ["custom.ping"]},
            "actions": [{"type": "call-webhook", "url": receiver.url + "/ping",
                         "body": "{{ event.payload.n }}"}],
        })
        time.sleep(1.0)  # both evaluators have loaded it
        for n in range(30):
            target = first if n % 2 else second
            with http(target) as api:
                sent = api.post("/events", json={"event": "custom.ping", "resource": {"id": "custom/pinger"},
                                                 "payload": {"n": n}})
                assert sent.status_code == 201, sent.text
        wait_for(lambda: len(receiver.bodies) >= 30, "30 calls", timeout=60)
        # stop whichever server evaluates; the other takes over and takes the rest once too
        time.sleep(1.0)
        with http(first) as api:
            pinged = api.get("/automations/echo-pings/actions", params={"limit": 100}).json()["items"]
        assert len(pinged) == 30 and all(a["status"] == "done" for a in pinged)
        first.stop()
        for n in range(30, 40):
            with http(second) as api:
                assert api.post("/events", json={"event": "custom.ping", "resource": {"id": "custom/pinger"},
                                                 "payload": {"n": n}}).status_code == 201
        wait_for(lambda: len(receiver.bodies) >= 40, "10 more calls after a server stopped", timeout=60)
        time.sleep(1.0)
        assert sorted(int(b["body"]) for b in receiver.bodies) == list(range(40))


def evaluator_pids(server: ServerHandle) -> list[int]:
    assert server.process is not None
    found = subprocess.run(["pgrep", "-P", str(server.process.pid), "-f", "plait.automations._runner"],
                           capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def test_an_evaluator_killed_with_kill_9_is_replaced_and_misses_nothing(site: dict[str, Any]) -> None:
    server = site["server"]
    receiver = Receiver()
    try:
        save_automation(server, {"name": "survives-kill", "trigger": {"expect": ["custom.after-kill"]},
                                 "actions": [{"type": "call-webhook", "url": receiver.url + "/k",
                                              "body": "{{ event.payload.n }}"}]})
        [first] = wait_for(lambda: evaluator_pids(server), "the server's evaluator process")
        time.sleep(0.5)
        os.kill(first, 9)
        with http(server) as api:
            for n in range(3):  # while no evaluator runs: kept in the store, taken by the next one
                assert api.post("/events", json={"event": "custom.after-kill", "resource": {"id": "custom/k"},
                                                 "payload": {"n": n}}).status_code == 201
        wait_for(lambda: len(receiver.bodies) >= 3, "the three calls from the evaluator started again", timeout=60)
        time.sleep(1.0)
        assert sorted(int(b["body"]) for b in receiver.bodies) == [0, 1, 2]
        [second] = evaluator_pids(server)
        assert second != first
    finally:
        receiver.close()


def test_a_server_killed_outright_leaves_no_evaluator_behind(tmp_path: Path) -> None:
    with running_server(f"sqlite:///{tmp_path / 'plait.db'}", tmp_path / "server") as server:
        [child] = wait_for(lambda: evaluator_pids(server), "the server's evaluator process")
        assert server.process is not None
        server.process.kill()
        server.process.wait(30)

        def gone() -> bool:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                return True
            return subprocess.run(["ps", "-o", "stat=", "-p", str(child)], capture_output=True,
                                  text=True).stdout.strip().startswith("Z")

        wait_for(gone, "the orphaned evaluator to stop", timeout=30)
