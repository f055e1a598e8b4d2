"""The actions an automation takes (``plait.automations._actions.take_action``), against
real stores (a SQLite file and PostgreSQL), real flow runs, saved notification blocks and
an HTTP receiver on 127.0.0.1: runs made once with templated parameters, runs cancelled,
suspended, resumed and moved, deployments and pools paused, notifications and webhook
calls received, and failures that name the action and what to do, with secrets masked.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import pytest

from plait._store.database import Database
from plait._store.deployments import get_deployment, save_deployment
from plait._store.events import list_events
from plait.automations._actions import ActionFailed, take_action

T = TypeVar("T")
TOKEN = "T0K3N-b6c1f9e2a7d4"  # in receiver URLs' paths: never in a message or a result

SCHEMA = {
    "type": "object",
    "properties": {"table": {"type": "string"}, "rows": {"type": "integer"}, "day": {"type": "string"}},
    "required": ["table"],
}


# -- a receiver on 127.0.0.1 ---------------------------------------------------------------------------
class _Receiver(BaseHTTPRequestHandler):
    def _record(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append(  # type: ignore[attr-defined]
            {"method": self.command, "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
             "raw": raw})
        failing = self.path.startswith("/fail")
        reply = f"no route for {self.path}".encode() if failing else b"ok"
        self.send_response(500 if failing else 200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_POST = do_PUT = do_PATCH = do_GET = do_DELETE = _record

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def web() -> Iterator[Any]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    httpd.requests = []  # type: ignore[attr-defined]
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- helpers -------------------------------------------------------------------------------------------
def _wait(check: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _context(event: dict[str, Any] | None = None, flow_run: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "event": event or {"id": "ev-1", "seq": 1, "kind": "warehouse.table.refreshed",
                           "occurred": datetime.now(UTC).isoformat(), "resource": {"id": "analytics.orders"},
                           "labels": {}, "payload": {"table": "orders", "rows": 1204}},
        "flow_run": flow_run,
        "automation": {"id": "auto-1", "name": "refresh-chain"},
        "firing": {"id": "firing-1", "fired_at": datetime.now(UTC).isoformat(), "count": 1, "key": [],
                   "posture": "reactive"},
    }


def _deployment(db: Database, **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"flow_name": "etl", "name": "nightly", "entrypoint": "/srv/flows/etl.py:etl",
                            "parameters": {"day": "today"}, "parameter_schema": SCHEMA, "tags": ["prod"],
                            "schedules": []}
    spec.update(changes)
    row, _ = save_deployment(db, spec)
    return row


def _scheduled_run(db: Database, deployment: dict[str, Any], key: str) -> dict[str, Any]:
    from plait._store.scheduling import create_flow_run

    row, _ = create_flow_run(db, deployment, parameters={"table": "t"}, expected_start_time=datetime.now(UTC),
                             idempotency_key=key)
    return row


def _state(db: Database, flow_run_id: str) -> tuple[str, str]:
    from plait._store.control import pause_status

    found = pause_status(db, flow_run_id)
    return found["state_type"], found["state_name"]


def _paused(db: Database, flow_run_id: str) -> bool:
    try:
        return _state(db, flow_run_id)[0] == "PAUSED"
    except LookupError:  # not written yet
        return False


def _runs_of(db: Database, deployment_id: str) -> list[str]:
    from sqlalchemy import select

    from plait._store.models import FLOW_RUNS

    table = FLOW_RUNS
    with db.engine.connect() as conn:
        return list(conn.scalars(select(table.c.id).where(table.c.deployment_id == deployment_id)))


def _full(db: Database, flow_run_id: str) -> dict[str, Any]:
    """The run's stored row, every column."""
    from sqlalchemy import select

    from plait._store.models import FLOW_RUNS

    table = FLOW_RUNS
    with db.engine.connect() as conn:
        row = conn.execute(select(table).where(table.c.id == flow_run_id)).first()
    assert row is not None, flow_run_id
    return dict(row._mapping)


# -- run-deployment ------------------------------------------------------------------------------------
def test_run_deployment_makes_one_run_with_the_templated_parameters(database_url: str) -> None:
    db = Database.open(database_url)
    deployment = _deployment(db)
    action = {"type": "run-deployment", "deployment": "etl/nightly",
              "parameters": {"table": "{{ event.payload.table }}", "rows": "{{ event.payload.rows }}"},
              "job_variables": {"env": {"TABLE": "{{ event.payload.table }}"}},
              "tags": ["automated", "{{ automation.name }}"]}
    first = take_action(db, action, _context(), action_id="act-1")
    again = take_action(db, action, _context(), action_id="act-1")  # taken twice (a restart): one run
    assert first["new"] is True and again["new"] is False
    assert again["flow_run_id"] == first["flow_run_id"]
    assert first["deployment"] == "etl/nightly" and first["deployment_id"] == deployment["id"]
    run = _full(db, first["flow_run_id"])
    # the lone expression kept its type (an int), the deployment's default stayed
    assert run["parameters"] == {"day": "today", "table": "orders", "rows": 1204}
    assert run["state_type"] == "SCHEDULED" and run["deployment_id"] == deployment["id"]
    assert {"prod", "automated", "refresh-chain"} <= set(run["tags"])
    assert run["job_variables"]["env"] == {"TABLE": "orders"}
    assert len(_runs_of(db, deployment["id"])) == 1

    other = take_action(db, action, _context(), action_id="act-2")  # another action: another run
    assert other["new"] is True and other["flow_run_id"] != first["flow_run_id"]
    assert len(_runs_of(db, deployment["id"])) == 2


def test_run_deployment_without_a_deployment_runs_the_triggering_runs(database_url: str) -> None:
    db = Database.open(database_url)
    deployment = _deployment(db)
    upstream = _scheduled_run(db, deployment, "upstream")
    context = _context(flow_run={"id": upstream["id"], "deployment": "etl/nightly",
                                 "deployment_id": deployment["id"], "parameters": {"table": "raw"}})
    action = {"type": "run-deployment", "deployment": None, "parameters": {"table": "{{ flow_run.parameters.table }}"}}
    made = take_action(db, action, context, action_id="act-up")
    assert made["deployment"] == "etl/nightly"
    assert _full(db, made["flow_run_id"])["parameters"]["table"] == "raw"

    # nothing to go on: the error says what to give
    with pytest.raises(ActionFailed, match=r"^run-deployment action: it names no deployment and the triggering "
                                           r"event \(warehouse.table.refreshed\) is not about a run of a deployment; "
                                           r"give the action `deployment: flow_name/deployment_name`$"):
        take_action(db, {"type": "run-deployment"}, _context(), action_id="act-none")


def test_run_deployment_failures_name_the_action_and_the_fix(database_url: str) -> None:
    db = Database.open(database_url)
    _deployment(db)
    with pytest.raises(ActionFailed, match=r"^run-deployment action: deployment 'a/b' does not exist: check the "
                                           r"automation's run-deployment action") as missing:
        take_action(db, {"type": "run-deployment", "deployment": "a/b"}, _context(), action_id="x1")
    assert missing.value.action_type == "run-deployment" and missing.value.retryable is False
    with pytest.raises(ActionFailed, match=r"deployment 'etl/nightly' cannot run with these parameters: .*rows.*"
                                           r"; fix the action's parameters"):
        take_action(db, {"type": "run-deployment", "deployment": "etl/nightly",
                         "parameters": {"table": "t", "rows": "{{ event.payload.table }}"}}, _context(), action_id="x2")
    with pytest.raises(ActionFailed, match=r"fix the template in the automation's actions"):
        take_action(db, {"type": "run-deployment", "deployment": "etl/nightly",
                         "parameters": {"table": "{{ event.payload.nope.deeper }}"}}, _context(), action_id="x3")
    with pytest.raises(ActionFailed, match=r"field 'parameters' must render to an object"):
        take_action(db, {"type": "run-deployment", "deployment": "etl/nightly",
                         "parameters": "{{ event.payload.rows }}"}, _context(), action_id="x4")
    with pytest.raises(ActionFailed, match=r"^teleport action: unknown action type 'teleport'; use one of: "
                                           r"run-deployment, send-notification"):
        take_action(db, {"type": "teleport"}, _context(), action_id="x5")
    assert _runs_of(db, get_deployment(db, "etl/nightly")["id"]) == []  # type: ignore[index]


# -- flow run control ----------------------------------------------------------------------------------
def test_cancel_a_scheduled_run_and_then_one_that_has_ended(database_url: str) -> None:
    db = Database.open(database_url)
    run = _scheduled_run(db, _deployment(db), "to-cancel")
    done = take_action(db, {"type": "cancel-flow-run", "flow_run_id": None}, _context(flow_run={"id": run["id"]}),
                       action_id="c1")
    assert done == {"flow_run_id": run["id"], "state_type": "CANCELLED", "changed": True}
    assert _state(db, run["id"]) == ("CANCELLED", "Cancelled")
    again = take_action(db, {"type": "cancel-flow-run", "flow_run_id": run["id"]}, _context(), action_id="c2")
    assert again["changed"] is False and again["reason"] == "it had already ended (Cancelled)"
    with pytest.raises(ActionFailed, match=r"^cancel-flow-run action: flow run 'nope' does not exist: check the "
                                           r"action's flow_run_id"):
        take_action(db, {"type": "cancel-flow-run", "flow_run_id": "nope"}, _context(), action_id="c3")
    with pytest.raises(ActionFailed, match=r"it names no flow run .* give the action `flow_run_id`"):
        take_action(db, {"type": "cancel-flow-run"}, _context(), action_id="c4")


def test_cancel_stops_a_running_flow(plait_env: str) -> None:
    from plait import flow, runtime, task
    from plait._recording import current_recorder

    db = Database.open(plait_env)
    started = threading.Event()
    box: dict[str, Any] = {}

    @task
    def step(i: int) -> int:
        started.set()
        time.sleep(0.05)
        return i

    @flow
    def long_load() -> None:
        box["id"] = runtime.flow_run.id
        for i in range(600):
            step(i)

    thread = threading.Thread(target=lambda: box.update(state=long_load(return_state=True)), daemon=True)
    thread.start()
    assert started.wait(30)
    current_recorder().flush()
    event = {"id": "e", "seq": 1, "kind": "flow-run.state-changed", "occurred": "", "labels": {}, "payload": {},
             "resource": {"id": f"flow-run/{box['id']}"}}
    done = take_action(db, {"type": "cancel-flow-run"}, _context(event=event), action_id="c-run")
    assert done["state_type"] == "CANCELLING" and done["flow_run_id"] == box["id"]
    thread.join(30)
    assert not thread.is_alive() and box["state"].is_cancelled()
    current_recorder().flush()
    assert _state(db, box["id"])[0] == "CANCELLED"


def test_suspend_parks_a_scheduled_run_and_resume_schedules_it_again(database_url: str) -> None:
    from plait._store.scheduling import claim_deployment_runs

    db = Database.open(database_url)
    deployment = _deployment(db)
    run = _scheduled_run(db, deployment, "to-suspend")
    context = _context(flow_run={"id": run["id"]})
    parked = take_action(db, {"type": "suspend-flow-run"}, context, action_id="s1")
    assert parked == {"flow_run_id": run["id"], "state_type": "PAUSED", "state_name": "Suspended", "changed": True}
    assert _state(db, run["id"]) == ("PAUSED", "Suspended")
    assert claim_deployment_runs(db, deployment["id"], "runner-1", limit=5) == []  # nobody takes a parked run
    assert take_action(db, {"type": "suspend-flow-run"}, context, action_id="s2")["changed"] is False

    resumed = take_action(db, {"type": "resume-flow-run"}, context, action_id="r1")
    assert resumed["state_type"] == "SCHEDULED" and _state(db, run["id"]) == ("SCHEDULED", "Scheduled")
    [claimed] = claim_deployment_runs(db, deployment["id"], "runner-1", limit=5)
    assert claimed["id"] == run["id"]
    # claimed (Pending): started, so it can only be cancelled
    with pytest.raises(ActionFailed, match=r"^suspend-flow-run action: flow run '.*' is Pending: a run that has "
                                           r"started cannot be suspended from outside .* cancel-flow-run"):
        take_action(db, {"type": "suspend-flow-run"}, context, action_id="s3")
    assert take_action(db, {"type": "resume-flow-run"}, context, action_id="r2")["reason"] == "it is not paused (Pending)"


def test_resume_goes_on_with_a_paused_flow(plait_env: str) -> None:
    from plait import flow, runtime
    from plait._pause import pause_flow_run

    db = Database.open(plait_env)
    box: dict[str, Any] = {}

    @flow
    def gated() -> str:
        box["id"] = runtime.flow_run.id
        pause_flow_run(timeout=60, poll_interval=0.05)
        return "went on"

    thread = threading.Thread(target=lambda: box.update(state=gated(return_state=True)), daemon=True)
    thread.start()
    _wait(lambda: "id" in box and _paused(db, box["id"]), "the run to pause")
    done = take_action(db, {"type": "resume-flow-run", "flow_run_id": "{{ event.payload.run }}"},
                       _context(event={"kind": "x.y", "payload": {"run": box["id"]}}), action_id="r-run")
    assert done["state_type"] == "PENDING" and done["state_name"] == "Resuming"
    thread.join(30)
    assert box["state"].result() == "went on"


def test_change_flow_run_state_with_a_templated_message(database_url: str) -> None:
    db = Database.open(database_url)
    run = _scheduled_run(db, _deployment(db), "to-drop")
    action = {"type": "change-flow-run-state", "flow_run_id": run["id"], "state": "cancelled",
              "name": "Stale", "message": "no data for {{ event.payload.table }}"}
    done = take_action(db, action, _context(), action_id="st1")
    assert done == {"flow_run_id": run["id"], "state_type": "CANCELLED", "state_name": "Stale", "changed": True}
    stored = _full(db, run["id"])
    assert (stored["state_type"], stored["state_name"], stored["state_message"]) == (
        "CANCELLED", "Stale", "no data for orders")
    with pytest.raises(ActionFailed, match=r"^change-flow-run-state action: flow run .* cannot move from Cancelled to "
                                           r"Running; change the action's state"):
        take_action(db, {**action, "state": "RUNNING"}, _context(), action_id="st2")
    with pytest.raises(ActionFailed, match=r"state 'SIDEWAYS' is not a state type; use one of: SCHEDULED"):
        take_action(db, {**action, "state": "sideways"}, _context(), action_id="st3")


# -- deployments and work pools ------------------------------------------------------------------------
def test_pause_and_resume_a_deployment_and_a_work_pool(database_url: str) -> None:
    from plait._store.work_pools import create_work_pool, get_work_pool

    db = Database.open(database_url)
    create_work_pool(db, "etl-pool", "process")
    deployment = _deployment(db, work_pool_name="etl-pool")
    run = _scheduled_run(db, deployment, "in-pool")
    context = _context(flow_run={"id": run["id"], "deployment": "etl/nightly", "deployment_id": deployment["id"],
                                 "work_pool": "etl-pool"})

    paused = take_action(db, {"type": "pause-deployment", "deployment": None}, context, action_id="pd")
    assert paused == {"deployment": "etl/nightly", "deployment_id": deployment["id"], "paused": True, "changed": True}
    assert get_deployment(db, "etl/nightly")["paused"] is True  # type: ignore[index]
    resumed = take_action(db, {"type": "resume-deployment", "deployment": "etl/nightly"}, _context(), action_id="rd")
    assert resumed["paused"] is False and get_deployment(db, deployment["id"])["paused"] is False  # type: ignore[index]

    assert take_action(db, {"type": "pause-work-pool"}, context, action_id="pp")["paused"] is True
    assert get_work_pool(db, "etl-pool")["paused"] is True  # type: ignore[index]
    again = take_action(db, {"type": "pause-work-pool", "work_pool": "etl-pool"}, _context(), action_id="pp2")
    assert again["changed"] is False
    assert take_action(db, {"type": "resume-work-pool", "work_pool": "{{ 'etl' }}-pool"}, _context(),
                       action_id="rp")["paused"] is False
    assert get_work_pool(db, "etl-pool")["paused"] is False  # type: ignore[index]
    kinds = [e["kind"] for e in list_events(db, kinds=["deployment.*", "work-pool.*"])["items"]]
    assert kinds[-4:] == ["deployment.paused", "deployment.resumed", "work-pool.paused", "work-pool.resumed"]
    with pytest.raises(ActionFailed, match=r"^pause-work-pool action: work pool 'gone' does not exist"):
        take_action(db, {"type": "pause-work-pool", "work_pool": "gone"}, _context(), action_id="pp3")
    with pytest.raises(ActionFailed, match=r"^pause-deployment action: deployment 'etl/other' does not exist: check "
                                           r"the automation's pause-deployment action"):
        take_action(db, {"type": "pause-deployment", "deployment": "etl/other"}, _context(), action_id="pd2")


# -- send-notification ---------------------------------------------------------------------------------
def test_send_notification_through_webhook_and_slack_blocks(plait_env: str, web: Any) -> None:
    from plait_blocks import SlackWebhook, Webhook

    db = Database.open(plait_env)
    Webhook(url=f"{web.url}/hooks/{TOKEN}").save("ops")
    SlackWebhook(url=f"{web.url}/services/{TOKEN}").save("alerts")
    action = {"type": "send-notification", "block": "webhook/ops",
              "subject": "{{ automation.name }}: {{ event.payload.table }} refreshed",
              "body": "{{ event.payload.rows }} rows"}
    done = take_action(db, action, _context(), action_id="n1")
    assert done == {"block": "webhook/ops", "subject": "refresh-chain: orders refreshed"}
    take_action(db, {**action, "block": "slack-webhook/alerts"}, _context(), action_id="n2")
    hook, slack = web.requests
    assert hook["path"] == f"/hooks/{TOKEN}"
    assert json.loads(hook["raw"]) == {"subject": "refresh-chain: orders refreshed", "body": "1204 rows"}
    assert slack["path"] == f"/services/{TOKEN}"
    assert json.loads(slack["raw"])["text"] == "*refresh-chain: orders refreshed*\n1204 rows"


def test_send_notification_failures_are_masked_and_say_what_to_do(plait_env: str, web: Any) -> None:
    from plait_blocks import Webhook

    db = Database.open(plait_env)
    Webhook(url=f"{web.url}/fail/{TOKEN}").save("broken")
    with pytest.raises(ActionFailed) as failed:
        take_action(db, {"type": "send-notification", "block": "webhook/broken", "subject": "s", "body": "b"},
                    _context(), action_id="n3")
    message = str(failed.value)
    assert message.startswith("send-notification action: block 'webhook/broken' could not deliver: webhook to "
                              "127.0.0.1:")
    assert "HTTP 500" in message and TOKEN not in message and failed.value.retryable is True
    with pytest.raises(ActionFailed, match=r"^send-notification action: no saved .*'webhook/nope'.*; save the block "
                                           r"or fix the action's block"):
        take_action(db, {"type": "send-notification", "block": "webhook/nope"}, _context(), action_id="n4")
    with pytest.raises(ActionFailed, match=r"give the notification block as 'slug/name'"):
        take_action(db, {"type": "send-notification", "block": "broken"}, _context(), action_id="n5")


# -- call-webhook --------------------------------------------------------------------------------------
def test_call_webhook_sends_the_templated_request(database_url: str, web: Any) -> None:
    db = Database.open(database_url)
    action = {"type": "call-webhook", "url": web.url + "/in/{{ event.payload.table }}?token=" + TOKEN,
              "method": "put", "headers": {"Authorization": "Bearer s3cr3t-header", "X-Table": "{{ event.payload.table }}"},
              "body": '{"table": "{{ event.payload.table }}", "rows": {{ event.payload.rows }}}', "timeout": 5}
    done = take_action(db, action, _context(), action_id="w1")
    assert done == {"url": f"{web.url}/…", "method": "PUT", "status_code": 200}
    [got] = web.requests
    assert got["method"] == "PUT" and got["path"] == f"/in/orders?token={TOKEN}"
    assert json.loads(got["raw"]) == {"table": "orders", "rows": 1204}
    assert got["headers"]["authorization"] == "Bearer s3cr3t-header" and got["headers"]["x-table"] == "orders"
    assert got["headers"]["x-plait-action-id"] == "w1"

    # no body: what fired, as JSON
    take_action(db, {"type": "call-webhook", "url": web.url + "/plain"}, _context(), action_id="w2")
    sent = json.loads(web.requests[-1]["raw"])
    assert web.requests[-1]["headers"]["content-type"] == "application/json"
    assert sent["automation"]["name"] == "refresh-chain" and sent["event"]["payload"]["table"] == "orders"


def test_call_webhook_failures_carry_the_status_and_hide_the_url(database_url: str, web: Any) -> None:
    from plait.testing import free_port

    db = Database.open(database_url)
    action = {"type": "call-webhook", "url": f"{web.url}/fail/{TOKEN}", "headers": {"Authorization": "Bearer hdr-s3cr3t"},
              "body": "x"}
    with pytest.raises(ActionFailed) as failed:
        take_action(db, action, _context(), action_id="w3")
    message = str(failed.value)
    assert failed.value.status == 500 and failed.value.retryable is True
    assert message.startswith(f"call-webhook action: POST {web.url}/… answered HTTP 500 Internal Server Error")
    assert message.endswith("; check the action's url, headers and body")
    assert "no route for" in message and TOKEN not in message  # the reply echoed the path: masked

    with pytest.raises(ActionFailed, match=r"^call-webhook action: POST http://127.0.0.1:\d+/… failed: ConnectError")\
            as refused:
        take_action(db, {"type": "call-webhook", "url": f"http://127.0.0.1:{free_port()}/x/{TOKEN}"}, _context(),
                    action_id="w4")
    assert refused.value.status is None and refused.value.retryable and TOKEN not in str(refused.value)
    with pytest.raises(ActionFailed, match=r"its url must be an http:// or https:// URL with a host") as bad:
        take_action(db, {"type": "call-webhook", "url": f"ftp://example.com/{TOKEN}"}, _context(), action_id="w5")
    assert TOKEN not in str(bad.value)
    with pytest.raises(ActionFailed, match=r"header 'X-Bad' holds a line break"):
        take_action(db, {"type": "call-webhook", "url": web.url, "headers": {"X-Bad": "a\r\nInjected: 1"}}, _context(),
                    action_id="w6")
