"""``plait.events.emit_event``: custom events stored in the local store (SQLite file and
PostgreSQL) or sent to a real plait server, with run-context labels, masked secrets, checks
that name the field at fault, and an outage that never fails the flow.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from plait._store.database import Database
from plait._store.events import list_events
from plait.events import emit_event


class _Capture(logging.Handler):
    """plait.events' records (plait's loggers do not propagate to caplog)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def events_log() -> Iterator[_Capture]:
    from plait import events

    handler = _Capture()
    log = logging.getLogger("plait.events")
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.DEBUG)
    events._warned.update(at=None, lost=0)
    try:
        yield handler
    finally:
        log.setLevel(level)
        log.removeHandler(handler)
        events._warned.update(at=None, lost=0)
        events.reset_sessions()


def _custom(db: Database) -> list[dict[str, Any]]:
    return [e for e in list_events(db, limit=1000)["items"] if e["kind"].startswith("warehouse.")]


def test_an_event_is_stored_with_its_labels(plait_env: str) -> None:
    db = Database.open(plait_env)
    when = datetime(2024, 5, 1, 6, 30, tzinfo=timezone(timedelta(hours=2)))
    stored = emit_event("warehouse.table.refreshed", resource={"id": "analytics.orders", "schema": "analytics"},
                        payload={"rows": 1204, "columns": ["id", "total"], "late": False}, occurred=when)
    assert stored is not None
    assert stored["kind"] == "warehouse.table.refreshed" and stored["resource"] == "analytics.orders"
    assert stored["labels"] == {"schema": "analytics"} and stored["seq"] > 0
    assert datetime.fromisoformat(stored["occurred"]) == when.astimezone(UTC)
    [found] = _custom(db)
    assert found["id"] == stored["id"] and found["seq"] == stored["seq"]
    assert found["payload"] == {"rows": 1204, "columns": ["id", "total"], "late": False}
    assert found["labels"] == {"schema": "analytics"}
    with pytest.raises(ValueError, match=r"occurred is more than 5 minutes ahead of the clock"):
        emit_event("warehouse.table.refreshed", resource={"id": "x"}, occurred=datetime.now(UTC) + timedelta(hours=1))
    # no labels, no payload: fine too
    bare = emit_event("warehouse.table.vacuumed", resource={"id": "analytics.orders"})
    assert bare is not None and bare["payload"] == {} and not bare.get("labels")


def test_inside_a_flow_and_a_task_the_run_ids_are_labels(plait_env: str) -> None:
    from plait import flow, runtime, task

    db = Database.open(plait_env)
    seen: dict[str, Any] = {}

    @task
    def refresh() -> None:
        seen["task_run_id"] = runtime.task_run.id
        emit_event("warehouse.table.refreshed", resource={"id": "analytics.orders"}, payload={"step": "task"})

    @flow
    def nightly() -> None:
        seen["flow_run_id"] = runtime.flow_run.id
        emit_event("warehouse.load.started", resource={"id": "analytics"}, payload={"step": "flow"})
        refresh()
        # a label given keeps its value
        emit_event("warehouse.load.noted", resource={"id": "analytics", "flow_run_id": "other"})

    assert nightly(return_state=True).is_completed()
    started, refreshed, noted = _custom(db)
    assert started["labels"] == {"flow_run_id": seen["flow_run_id"]}
    assert refreshed["labels"] == {"flow_run_id": seen["flow_run_id"], "task_run_id": seen["task_run_id"]}
    assert noted["labels"] == {"flow_run_id": "other"}
    # outside any run: no run labels
    outside = emit_event("warehouse.load.checked", resource={"id": "analytics"})
    assert outside is not None and not outside.get("labels")


def test_secrets_are_masked_in_payload_and_labels(plait_env: str) -> None:
    from plait import register_secret

    db = Database.open(plait_env)
    register_secret("pw-9f3a7c21e5")
    emit_event("warehouse.login.used", resource={"id": "warehouse", "dsn": "user:pw-9f3a7c21e5@db"},
               payload={"note": "logged in with pw-9f3a7c21e5", "nested": [{"password": "pw-9f3a7c21e5"}]})
    [event] = _custom(db)
    assert "pw-9f3a7c21e5" not in repr(event)
    assert event["payload"] == {"note": "logged in with ***", "nested": [{"password": "***"}]}
    assert event["labels"] == {"dsn": "user:***@db"}


@pytest.mark.parametrize(("event", "resource", "payload", "problem"), [
    ("Warehouse.Refreshed", {"id": "x"}, None, r"event kind 'Warehouse.Refreshed' is not like "
                                                r"'warehouse.table.refreshed'"),
    ("refreshed", {"id": "x"}, None, r"at least two parts"),
    ("flow-run.state-changed", {"id": "x"}, None, r"event kind 'flow-run.state-changed' is reserved for plait "
                                                  r"\(kinds starting 'flow-run.' are its own\)"),
    ("automation.action.executed", {"id": "x"}, None, r"reserved for plait"),
    ("logs.written", {"id": "x"}, None, r"reserved for plait"),
    ("webhook.called", {"id": "x"}, None, r"reserved for plait"),
    ("warehouse.refreshed", "analytics.orders", None, r"resource must be a dict with an 'id'"),
    ("warehouse.refreshed", {"name": "orders"}, None, r"resource needs an 'id'"),
    ("warehouse.refreshed", {"id": "  "}, None, r"resource needs an 'id'"),
    ("warehouse.refreshed", {"id": "x", "rows": 3}, None, r"resource label 'rows': values are text, not int"),
    ("warehouse.refreshed", {"id": "x", "bad key": "v"}, None, r"resource label 'bad key': a label's name"),
    ("warehouse.refreshed", {"id": "x"}, ["rows"], r"payload must be a dict \(a JSON object\), not list"),
    ("warehouse.refreshed", {"id": "x"}, {"at": datetime(2024, 1, 1)}, r"payload.at is a datetime, which is not "
                                                                        r"JSON"),
    ("warehouse.refreshed", {"id": "x"}, {"ratio": math.nan}, r"payload.ratio is nan, which JSON cannot hold"),
    ("warehouse.refreshed", {"id": "x"}, {"deep": {1: "a"}}, r"payload.deep has the key 1, which is not text"),
    ("warehouse.refreshed", {"id": "x"}, {"blob": "x" * 70_000}, r"the event's payload and labels are 70,0\d\d "
                                                                 r"bytes of JSON; at most 65,536 \(64 KiB\)"),
])
def test_malformed_events_are_refused_naming_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, event: Any, resource: Any, payload: Any, problem: str
) -> None:
    url = f"sqlite:///{tmp_path}/plait.db"
    monkeypatch.setenv("PLAIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PLAIT_DATABASE_URL", url)
    with pytest.raises(ValueError, match=problem):
        emit_event(event, resource=resource, payload=payload)
    assert _custom(Database.open(url)) == []


def test_a_store_outage_logs_a_warning_and_the_flow_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, events_log: _Capture
) -> None:
    from plait import flow
    from plait.testing import free_port, reset_state

    # the flow's own records are off; the events go to a PostgreSQL server nobody runs
    monkeypatch.setenv("PLAIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PLAIT_DATABASE_URL", f"postgresql+psycopg://u:pw-outage-1@127.0.0.1:{free_port()}/x"
                                             "?connect_timeout=2")
    monkeypatch.setenv("PLAIT_RECORD_HISTORY", "false")
    reset_state()
    try:
        @flow
        def emits() -> int:
            for i in range(3):
                assert emit_event("warehouse.table.refreshed", resource={"id": f"t{i}"}) is None
            return 3

        assert emits(return_state=True).result() == 3
    finally:
        reset_state()
    warnings = [r for r in events_log.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # the first loss; the next ones wait for the next minute
    message = warnings[0].getMessage()
    assert message.startswith("event warehouse.table.refreshed could not be stored, the flow goes on: DatabaseError")
    assert "pw-outage-1" not in message
    assert sum("not stored" in r.getMessage() for r in events_log.records if r.levelno == logging.DEBUG) == 2


def test_a_server_outage_logs_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, events_log: _Capture) -> None:
    from plait.testing import free_port

    monkeypatch.setenv("PLAIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PLAIT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    monkeypatch.setenv("PLAIT_API_TIMEOUT", "2")
    assert emit_event("warehouse.table.refreshed", resource={"id": "t"}) is None
    [warning] = [r for r in events_log.records if r.levelno == logging.WARNING]
    assert "could not be stored, the flow goes on: ApiUnavailable" in warning.getMessage()
    # what the caller got wrong is still refused at once, server or not
    with pytest.raises(ValueError, match="reserved for plait"):
        emit_event("deployment.created", resource={"id": "t"})


def test_an_event_through_a_real_server(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, events_log: _Capture
) -> None:
    from plait import flow, runtime
    from plait._api import ApiCalls
    from plait.testing import running_server

    if not hasattr(ApiCalls, "emit_event"):
        pytest.skip("ApiCalls.emit_event (POST /events) is not there yet")
    seen: dict[str, Any] = {}
    with running_server(database_url, tmp_path / "server") as server:
        monkeypatch.setenv("PLAIT_HOME", str(tmp_path / "client"))
        monkeypatch.setenv("PLAIT_API_URL", server.api_url)
        monkeypatch.setenv("PLAIT_API_KEY", server.run_key)

        @flow
        def remote() -> None:
            seen["id"] = runtime.flow_run.id
            seen["event"] = emit_event("warehouse.table.refreshed", resource={"id": "analytics.orders", "zone": "eu"},
                                       payload={"rows": 7})

        assert remote(return_state=True).is_completed()
        stored = seen["event"]
        assert stored is not None and stored["seq"] > 0
        assert stored["resource"] == "analytics.orders" and stored["payload"] == {"rows": 7}
        assert stored["labels"] == {"zone": "eu", "flow_run_id": seen["id"]}
        [found] = _custom(Database.open(database_url))
        assert found["id"] == stored["id"] and found["labels"] == stored["labels"]
        # the server refuses what plait reserves, and emit_event raises it
        monkeypatch.setattr("plait.events.is_reserved_kind", lambda kind: False)
        with pytest.raises(ValueError, match=r"the plait server refused the event: .*reserved for plait"):
            emit_event("flow-run.state-changed", resource={"id": "forged"})
    assert not [r for r in events_log.records if r.levelno == logging.WARNING]
