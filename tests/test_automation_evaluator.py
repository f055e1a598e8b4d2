"""The automation evaluator against a real store (SQLite and PostgreSQL), pass by pass: an
event fires its automation's actions once, two evaluators of one store record each firing
once, a proactive window fires when it ends, an action's failure is an event, and an
automation that keeps setting itself off is stopped."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from plait._runs import utcnow
from plait._store.automations import get_automation, list_automation_actions, save_automation
from plait._store.database import Database
from plait._store.events import list_events, record_event
from plait.automations import parse_automation
from plait.automations._evaluator import Evaluator


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    yield Database.open(database_url)


def save(db: Database, name: str, trigger: dict[str, Any], actions: list[dict[str, Any]] | None = None) -> str:
    spec = parse_automation({"name": name, "trigger": trigger,
                             "actions": actions or [{"type": "cancel-flow-run", "flow_run_id": "no-such-run"}]})
    return str(save_automation(db, spec.to_json())[0]["id"])


def wait_for(what: Callable[[], Any], evaluator: Evaluator, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        evaluator.run_pass()
        found = what()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s")


def kinds(db: Database, prefix: str = "automation.") -> list[str]:
    return [e["kind"] for e in list_events(db, kinds=[prefix + "*"], limit=1000)["items"]]


def test_an_event_fires_each_action_once_and_failures_are_events(db: Database) -> None:
    save(db, "on-refresh", {"expect": ["warehouse.table.refreshed"], "match": {"payload.table": "orders"}},
         [{"type": "cancel-flow-run", "flow_run_id": "{{ event.payload.run }}"},
          {"type": "pause-work-pool", "work_pool": "no-such-pool"}])
    evaluator = Evaluator(db)
    try:
        evaluator.run_pass()  # starts from now: history before the first pass is not evaluated
        record_event(db, "warehouse.table.refreshed", "warehouse/orders", {"table": "customers"})
        record_event(db, "warehouse.table.refreshed", "warehouse/orders", {"table": "orders", "run": "r-404"})
        actions = wait_for(lambda: [a for a in list_automation_actions(db, automation="on-refresh")
                                    if a["status"] in ("done", "failed")] if len(
            [a for a in list_automation_actions(db, automation="on-refresh") if a["status"] in ("done", "failed")]
        ) == 2 else None, evaluator)
        assert sorted(a["position"] for a in actions) == [0, 1]
        assert all(a["status"] == "failed" for a in actions)
        assert any("r-404" in (a["error"] or "") for a in actions)  # the template gave the run id
        for _ in range(5):
            evaluator.run_pass()
        assert len(list_automation_actions(db, automation="on-refresh")) == 2
        assert kinds(db).count("automation.triggered") == 1
        assert kinds(db).count("automation.action.failed") == 2
    finally:
        evaluator.close()


def test_two_evaluators_of_one_store_record_a_firing_once(db: Database) -> None:
    save(db, "once", {"expect": ["custom.ping"]})
    first, second = Evaluator(db), Evaluator(db)
    try:
        first.run_pass()
        second.run_pass()
        for _ in range(20):
            record_event(db, "custom.ping", "custom/x", {})
        for _ in range(4):
            first.run_pass()
            second.run_pass()
        assert len(list_automation_actions(db, automation="once", limit=1000)) == 20
        assert kinds(db).count("automation.triggered") == 20
    finally:
        first.close()
        second.close()


def test_a_proactive_window_fires_when_it_ends_and_not_when_satisfied(db: Database) -> None:
    save(db, "overrun", {"posture": "proactive", "after": ["job.started"], "expect": ["job.finished"],
                         "for_each": ["resource"], "within": 60})
    evaluator = Evaluator(db)
    try:
        evaluator.run_pass()
        record_event(db, "job.started", "job/slow", {})
        record_event(db, "job.started", "job/quick", {})
        record_event(db, "job.finished", "job/quick", {})
        evaluator.run_pass()
        assert list_automation_actions(db, automation="overrun") == []
        # a restarted evaluator picks the open window up from the store
        later = Evaluator(db)
        try:
            later.run_pass(utcnow() + timedelta(seconds=61))
            actions = list_automation_actions(db, automation="overrun")
            assert len(actions) == 1
            triggered = [e for e in list_events(db, kinds=["automation.triggered"])["items"]]
            assert triggered[-1]["payload"]["key"] == {"resource": "job/slow"}
            later.run_pass(utcnow() + timedelta(seconds=200))
            assert len(list_automation_actions(db, automation="overrun")) == 1
        finally:
            later.close()
    finally:
        evaluator.close()


def test_an_automation_that_sets_itself_off_is_stopped(db: Database) -> None:
    save(db, "echo", {"expect": ["custom.start", "automation.action.*"], "match": {"automation": "echo"}})
    evaluator = Evaluator(db)
    try:
        evaluator.run_pass()
        record_event(db, "custom.start", "automation/echo", {})
        wait_for(lambda: "automation.loop-detected" in kinds(db), evaluator)
        assert get_automation(db, "echo")["enabled"] is False
        loop = [e for e in list_events(db, kinds=["automation.loop-detected"])["items"]][-1]
        assert "disabled" in loop["payload"]["reason"]
        assert kinds(db).count("automation.triggered") == 2
    finally:
        evaluator.close()


def test_a_credential_comes_from_a_secret_block_and_none_is_stored(plait_env: str, tmp_path: Any) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from plait.automations import create_automation
    from plait_blocks.values import Secret

    token = "tok-" + "7f3a9c2e1b5d4680"
    Secret(value=token).save("receiver-token")
    heard: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            heard.append(self.headers.get("Authorization") or "")
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{receiver.server_address[1]}/"
    db = Database.open(plait_env)
    create_automation({"name": "with-credential", "trigger": {"expect": ["custom.go"]},
                       "actions": [{"type": "call-webhook", "url": url,
                                    "headers": {"Authorization": "Bearer {{ secret('receiver-token') }}"}}]})
    # a secret plait knows, written into the automation itself, is masked before it is stored
    create_automation({"name": "pasted-credential", "trigger": {"expect": ["custom.never"]},
                       "actions": [{"type": "call-webhook", "url": url, "body": f"key={token}"}]})
    evaluator = Evaluator(db)
    try:
        evaluator.run_pass()
        record_event(db, "custom.go", "custom/x", {})
        wait_for(lambda: heard, evaluator)
        assert heard == [f"Bearer {token}"]
        wait_for(lambda: list_automation_actions(db, automation="with-credential")[0]["status"] == "done", evaluator)
    finally:
        evaluator.close()
        receiver.shutdown()
    assert get_automation(db, "pasted-credential")["actions"][0]["body"] == "key=***"
    if plait_env.startswith("sqlite:///"):
        for path in tmp_path.rglob("*.db*"):
            assert token.encode() not in path.read_bytes(), path


def test_actions_left_by_a_dead_evaluator_are_taken_at_most_once(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from plait._store.deployments import save_deployment
    from plait.automations import _evaluator

    save_deployment(db, {"flow_name": "etl", "name": "nightly", "entrypoint": "/srv/etl.py:etl", "schedules": []})
    save(db, "left-behind", {"expect": ["custom.go"]},
         [{"type": "run-deployment", "deployment": "etl/nightly"},
          {"type": "call-webhook", "url": "http://127.0.0.1:9/never"}])
    dead = Evaluator(db)
    monkeypatch.setattr(dead, "_submit", lambda action, claim=False: None)  # dies before taking anything
    dead.run_pass()
    record_event(db, "custom.go", "custom/x", {})
    dead.run_pass()
    assert sorted(a["status"] for a in list_automation_actions(db, automation="left-behind")) == ["running"] * 2
    monkeypatch.setattr(_evaluator, "_INTERRUPTED_AFTER", timedelta(0))
    for _attempt in range(2):  # a restarted server, then another one
        heir = Evaluator(db)
        try:
            wait_for(lambda: all(a["status"] in ("done", "failed")
                                 for a in list_automation_actions(db, automation="left-behind")), heir)
        finally:
            heir.close()
    taken = {a["type"]: a for a in list_automation_actions(db, automation="left-behind")}
    assert taken["call-webhook"]["status"] == "failed" and "not taken again" in taken["call-webhook"]["error"]
    assert taken["run-deployment"]["status"] == "done"  # keyed by the action: taken again, one run
    from plait._store.pages import page_flow_runs

    runs = page_flow_runs(db, flow_names=["etl"], limit=10)["items"]
    assert [r["id"] for r in runs] == [taken["run-deployment"]["flow_run_id"]]
