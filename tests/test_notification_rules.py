"""Notification rules: saved in the database (SQLite and PostgreSQL), validated, matched
against flow run state changes, cached per process, and delivered end to end by the
built-in blocks plugin to a webhook server this test starts on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from plait import flow, task
from plait.plugins import StateChangeEvent


@pytest.fixture
def rules_env(plait_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from plait.notifications import clear_cache
    from plait.plugins import reset_plugins

    monkeypatch.setenv("PLAIT_PLUGINS", "plait_blocks")  # whatever else is installed
    reset_plugins()
    clear_cache()
    yield plait_env
    monkeypatch.delenv("PLAIT_PLUGINS")
    reset_plugins()
    clear_cache()


def event(flow_name: str = "etl-daily", state: str = "FAILED", tags: tuple[str, ...] = ()) -> StateChangeEvent:
    return StateChangeEvent(
        flow_run_id="00000000-0000-0000-0000-000000000001",
        flow_run_name="calm-otter",
        flow_name=flow_name,
        tags=tags,
        state_type=state,
        state_name=state.title(),
        state_message="",
        timestamp="2026-01-01T00:00:00+00:00",
        parameters={},
    )


def save_webhook(name: str, url: str = "http://127.0.0.1:9/hook") -> None:
    from plait_blocks import Webhook

    Webhook(url=url).save(name, overwrite=True)


# -- create, list, delete ----------------------------------------------------------------------
def test_create_list_and_delete_round_trip(rules_env: str) -> None:
    from plait.notifications import create_rule, delete_rule, list_rules

    save_webhook("ops")
    rule = create_rule("webhook/ops", flow_name="etl-*", tags=["prod"], states=["failed", "Crashed"], name="etl-prod")
    assert rule["name"] == "etl-prod"
    assert (rule["block"], rule["block_slug"], rule["block_name"]) == ("webhook/ops", "webhook", "ops")
    assert (rule["flow_name"], rule["tags"], rule["states"], rule["enabled"]) == ("etl-*", ["prod"], ["FAILED", "CRASHED"], True)
    assert len(rule["id"]) == 36 and rule["created"]

    default = create_rule("ops")  # a bare name resolves when unique
    assert default["block"] == "webhook/ops"
    assert (default["flow_name"], default["tags"], default["states"]) == ("*", [], ["FAILED", "CRASHED"])
    assert default["name"] == f"ops-{default['id'][:8]}"

    assert [r["id"] for r in list_rules()] == [rule["id"], default["id"]]
    assert list_rules()[0] == rule  # what create returned is what is stored

    assert delete_rule("etl-prod")["id"] == rule["id"]
    assert delete_rule(default["id"][:8])["id"] == default["id"]
    assert list_rules() == []


def test_the_rules_store_hands_out_plain_records(rules_env: str) -> None:
    from dataclasses import is_dataclass
    from datetime import datetime

    from plait._store import rules
    from plait.notifications import create_rule

    save_webhook("ops")
    created = create_rule("webhook/ops", name="on", tags=["prod"])
    off = rules.NotificationRule(id="00000000-0000-0000-0000-0000000000ff", name="off", block="webhook/ops",
                                 flow_name="*", states=["FAILED"], enabled=False,
                                 created=datetime.now(UTC))
    rules.insert_rule(off)
    stored = rules.list_rules()
    assert [r.name for r in stored] == ["on", "off"]
    assert all(type(r) is rules.NotificationRule and is_dataclass(r) for r in stored)
    assert (stored[0].id, stored[0].tags, stored[0].states, stored[0].enabled) == (
        created["id"], ["prod"], ["FAILED", "CRASHED"], True)
    assert stored[0].created.tzinfo is not None
    assert [r.name for r in rules.list_rules(enabled_only=True)] == ["on"]
    with pytest.raises(rules.RuleNameTaken):
        rules.insert_rule(off)
    assert rules.delete_rule(off.id) is True and rules.delete_rule(off.id) is False
    assert [r.name for r in rules.list_rules()] == ["on"]


def test_states_are_validated_in_any_case(rules_env: str) -> None:
    from plait.notifications import create_rule

    save_webhook("ops")
    assert create_rule("webhook/ops", states=["completed", "COMPLETED", "Cancelled"])["states"] == ["COMPLETED", "CANCELLED"]
    with pytest.raises(ValueError) as info:
        create_rule("webhook/ops", states=["failed", "exploded"])
    message = str(info.value)
    assert "'exploded'" in message
    for name in ("SCHEDULED", "PENDING", "RUNNING", "COMPLETED", "FAILED", "CRASHED", "CANCELLED", "PAUSED"):
        assert name in message
    with pytest.raises(ValueError, match="at least one state"):
        create_rule("webhook/ops", states=[])


def test_block_must_exist_and_be_able_to_notify(rules_env: str) -> None:
    from plait.exceptions import BlockError, BlockNotFound
    from plait.notifications import create_rule, list_rules
    from plait_blocks import JSON, Secret

    save_webhook("ops")
    with pytest.raises(BlockNotFound) as missing:
        create_rule("webhook/opz")
    assert "opz" in str(missing.value) and "ops" in str(missing.value)  # suggests the close name
    with pytest.raises(BlockNotFound):
        create_rule("nothing-like-it")

    Secret(value="not-a-notifier").save("token")
    with pytest.raises(ValueError) as info:
        create_rule("secret/token")
    message = str(info.value)
    assert "cannot send notifications" in message and "'notify'" in message
    assert "plait block ls" in message
    assert "webhook" in message and "slack-webhook" in message and "email" in message  # types that can

    JSON(value=1).save("ops")  # now "ops" names two blocks
    with pytest.raises(BlockError, match="several blocks are named 'ops'") as both:
        create_rule("ops")
    assert "'json/ops'" in str(both.value) and "'webhook/ops'" in str(both.value)
    assert list_rules() == []


def test_rule_names_are_unique_and_inputs_checked(rules_env: str) -> None:
    from plait.notifications import create_rule, delete_rule

    save_webhook("ops")
    create_rule("webhook/ops", name="pager")
    with pytest.raises(ValueError, match="'pager' already exists"):
        create_rule("webhook/ops", name="pager")
    with pytest.raises(ValueError, match="glob cannot be empty"):
        create_rule("webhook/ops", flow_name=" ")
    with pytest.raises(ValueError, match="tag cannot be empty"):
        create_rule("webhook/ops", tags=["prod", ""])
    with pytest.raises(LookupError, match="no notification rule matches 'pagr'; did you mean 'pager'"):
        delete_rule("pagr")
    with pytest.raises(LookupError, match="plait notification ls"):
        delete_rule("ffffffff")


def test_ambiguous_id_prefix(rules_env: str) -> None:
    from plait.notifications import create_rule, delete_rule

    save_webhook("ops")
    ids = [create_rule("webhook/ops")["id"] for _ in range(20)]
    first = ids[0][0]
    same = [i for i in ids if i[0] == first]
    if len(same) > 1:
        with pytest.raises(LookupError, match=f"matches {len(same)} notification rules"):
            delete_rule(first)
    assert delete_rule(ids[0])["id"] == ids[0]


# -- matching ---------------------------------------------------------------------------------
def test_matching_by_glob_tags_states_and_enabled(rules_env: str) -> None:
    from plait.notifications import create_rule, matching_rules

    save_webhook("ops")
    any_failure = create_rule("webhook/ops", name="any-failure")
    etl_prod = create_rule("webhook/ops", flow_name="etl-*", tags=["prod", "eu"], states=["completed", "failed"], name="etl-prod")
    create_rule("webhook/ops", name="off", enabled=False)

    def names(ev: StateChangeEvent) -> list[str]:
        return [r["name"] for r in matching_rules(ev)]

    assert names(event("etl-daily", "FAILED", ("prod", "eu", "x"))) == ["any-failure", "etl-prod"]
    assert names(event("etl-daily", "COMPLETED", ("eu", "prod"))) == ["etl-prod"]
    assert names(event("etl-daily", "COMPLETED", ("prod",))) == []  # every rule tag is required
    assert names(event("report", "FAILED", ("prod", "eu"))) == ["any-failure"]  # glob
    assert names(event("ETL-daily", "FAILED", ("prod", "eu"))) == ["any-failure"]  # case-sensitive glob
    assert names(event("etl-daily", "CRASHED")) == ["any-failure"]
    assert names(event("etl-daily", "RUNNING", ("prod", "eu"))) == []
    matched = matching_rules(event("x", "FAILED"))
    assert matched == [any_failure]
    matched[0]["tags"].append("mutated")  # callers get copies, not the cache
    assert matching_rules(event("etl-a", "COMPLETED", ("prod", "eu"))) == [etl_prod]
    assert matching_rules(event("x", "FAILED"))[0]["tags"] == []


def _count_queries() -> list[str]:
    """Statements on notification_rules from now on (the engine is dropped after the test)."""
    from sqlalchemy import event as sa_event

    from plait._store.database import get_database

    statements: list[str] = []

    def before(conn, cursor, statement, *args):  # noqa: ANN001
        if "notification_rules" in statement:
            statements.append(statement)

    sa_event.listen(get_database().engine, "before_cursor_execute", before)
    return statements


def test_rules_are_cached_and_invalidated_on_change(rules_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from plait import notifications
    from plait.notifications import create_rule, delete_rule, matching_rules

    save_webhook("ops")
    create_rule("webhook/ops", name="first")
    queries = _count_queries()
    for _ in range(500):
        assert [r["name"] for r in matching_rules(event())] == ["first"]
    assert len(queries) == 1  # one read for 500 state changes

    create_rule("webhook/ops", name="second")  # a change in this process is seen at once
    assert [r["name"] for r in matching_rules(event())] == ["first", "second"]
    delete_rule("first")
    assert [r["name"] for r in matching_rules(event())] == ["second"]

    # The cache expires after CACHE_SECONDS.
    reads = len(queries)
    clock = [time.monotonic()]
    monkeypatch.setattr(notifications.time, "monotonic", lambda: clock[0])
    matching_rules(event())
    assert len(queries) == reads
    clock[0] += notifications.CACHE_SECONDS + 0.01
    matching_rules(event())
    assert len(queries) == reads + 1


def test_a_rule_added_by_another_process_is_seen_within_a_second(rules_env: str) -> None:
    from plait.notifications import CACHE_SECONDS, matching_rules

    save_webhook("ops")
    assert matching_rules(event()) == []
    code = "from plait.notifications import create_rule; create_rule('webhook/ops', name='remote')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + CACHE_SECONDS + 1.0
    while not matching_rules(event()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r["name"] for r in matching_rules(event())] == ["remote"]


def test_an_unreadable_database_matches_nothing_and_warns(monkeypatch: pytest.MonkeyPatch, tmp_path, caplog) -> None:
    from plait._store.database import Database
    from plait.notifications import clear_cache, matching_rules

    Database.dispose_all()
    clear_cache()
    monkeypatch.setenv("PLAIT_HOME", str(tmp_path))
    monkeypatch.setenv("PLAIT_DATABASE_URL", "postgresql+psycopg://u:pw-canary@127.0.0.1:1/x")
    monkeypatch.setattr("plait.notifications._last_warning", [0.0])
    with caplog.at_level("WARNING", logger="plait.notifications"):
        assert matching_rules(event()) == []
    assert "cannot read notification rules" in caplog.text
    assert "pw-canary" not in caplog.text
    Database.dispose_all()
    clear_cache()


# -- end to end: a failing flow notifies a webhook -----------------------------------------------
class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        _Hook.received.append({"path": self.path, "body": json.loads(self.rfile.read(length))})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook_server() -> Iterator[str]:
    _Hook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@task
def boom() -> None:
    raise RuntimeError("warehouse on fire")


@flow(name="etl-notified")
def failing_flow() -> None:
    boom()


@flow(name="etl-fine")
def fine_flow() -> int:
    return 1


def test_failed_flow_run_is_delivered_to_the_webhook(rules_env: str, hook_server: str) -> None:
    from plait.notifications import create_rule
    from plait_blocks.plugin import wait_for_deliveries

    save_webhook("ops", f"{hook_server}/alerts/T0K3N")
    save_webhook("prod-only", f"{hook_server}/prod")
    create_rule("webhook/ops", flow_name="etl-*", states=["failed", "completed"])
    create_rule("webhook/prod-only", tags=["prod"])  # the runs below are not tagged prod

    with pytest.raises(RuntimeError, match="warehouse on fire"):
        failing_flow()
    assert fine_flow() == 1
    assert wait_for_deliveries(timeout=30)

    got = sorted((r["path"], r["body"]["flow_name"], r["body"]["state_type"]) for r in _Hook.received)
    assert got == [
        ("/alerts/T0K3N", "etl-fine", "COMPLETED"),
        ("/alerts/T0K3N", "etl-notified", "FAILED"),
    ]
    failed = next(r["body"] for r in _Hook.received if r["body"]["state_type"] == "FAILED")
    assert "RuntimeError: warehouse on fire" in failed["state_message"]
    assert "etl-notified" in failed["subject"]
