"""Notification rules delivered end to end by the built-in blocks plugin's ``plait_notify``.

A saved notification block, a rule, real flow runs, and a real HTTP (or SMTP) server on
127.0.0.1 started by the test; deliveries run on a background thread, so each test waits
for them with ``wait_for_deliveries``.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from plait import flow
from plait.notifications import create_rule
from plait.plugins import StateChangeEvent
from plait_blocks import Email, SlackWebhook, Webhook, wait_for_deliveries
from plait_blocks import plugin as builtin_plugin


class _Recorder(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append({"path": self.path, "headers": dict(self.headers), "raw": raw})  # type: ignore[attr-defined]
        failing = self.path.startswith("/fail")
        reply = f"Cannot POST {self.path}".encode() if failing else b"ok"
        self.send_response(500 if failing else 200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def web() -> Iterator[Any]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    httpd.requests = []  # type: ignore[attr-defined]
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def notify_env(plait_harness: Any) -> Iterator[Any]:
    """A fresh plait home; deliveries from earlier tests are finished first."""
    assert wait_for_deliveries(timeout=30)
    yield plait_harness
    assert wait_for_deliveries(timeout=30)


class _Capture(logging.Handler):
    """Collects plait.notifications records (plait's logger does not propagate to caplog)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def notification_log() -> Iterator[_Capture]:
    handler = _Capture()
    log = logging.getLogger("plait.notifications")
    log.addHandler(handler)
    try:
        yield handler
    finally:
        log.removeHandler(handler)


@flow(name="nightly-etl")
def nightly_failing() -> None:
    raise ValueError("boom: the source table is empty")


@flow(name="nightly-etl")
def nightly_ok() -> int:
    return 1


@flow(name="daily-etl")
def daily_failing() -> None:
    raise ValueError("boom")


def _payloads(web: Any) -> list[dict[str, Any]]:
    return [json.loads(r["raw"]) for r in web.requests]


def test_failed_nightly_run_is_delivered_once_to_the_webhook(notify_env, web):
    Webhook(url=f"{web.url}/hooks/T0K3N").save("ops")
    rule = create_rule(block="webhook/ops", flow_name="nightly-*", states=["FAILED"])
    assert rule["block"] == "webhook/ops"

    with pytest.raises(ValueError, match="boom"):
        nightly_failing()
    assert nightly_ok() == 1
    with pytest.raises(ValueError):
        daily_failing()  # another flow: the glob does not match
    assert wait_for_deliveries(timeout=30)

    [payload] = _payloads(web)
    assert web.requests[0]["path"] == "/hooks/T0K3N"
    assert payload["flow_name"] == "nightly-etl"
    assert payload["state_type"] == "FAILED"
    assert payload["state_name"] == "Failed"
    assert "boom: the source table is empty" in payload["state_message"]
    failed = [r for r in notify_env.flow_runs() if r["flow_name"] == "nightly-etl" and r["state_type"] == "FAILED"]
    assert [r["id"] for r in failed] == [payload["flow_run_id"]]
    assert payload["subject"] == f"plait: flow 'nightly-etl' run '{payload['flow_run_name']}' is Failed"
    assert f"plait flow-run inspect {payload['flow_run_id']}" in payload["body"]


def test_rule_on_tags_and_completed_state_delivers_to_slack(notify_env, web):
    SlackWebhook(url=f"{web.url}/services/T000/B000/XXXX").save("team")
    create_rule(block="slack-webhook/team", flow_name="*", tags=["prod"], states=["COMPLETED"])

    @flow(name="report", tags=["prod", "daily"])
    def prod_report() -> str:
        return "ok"

    @flow(name="report")
    def untagged_report() -> str:
        return "ok"

    prod_report()
    untagged_report()
    assert wait_for_deliveries(timeout=30)
    [payload] = _payloads(web)
    assert set(payload) == {"text"}
    assert payload["text"].startswith("*plait: flow 'report' run '")
    assert payload["text"].split("\n", 1)[0].endswith("is Completed*")


def test_email_rule_delivers_through_smtp(notify_env):
    from aiosmtpd.controller import Controller

    received: list[bytes] = []

    class Mailbox:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope.content)
            return "250 OK"

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    controller = Controller(Mailbox(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        Email(smtp_host="127.0.0.1", smtp_port=port, use_starttls=False,
              from_address="plait@example.com", to_addresses=["oncall@example.com"]).save("oncall")
        create_rule(block="email/oncall", flow_name="nightly-*")  # default states: FAILED, CRASHED
        with pytest.raises(ValueError):
            nightly_failing()
        assert wait_for_deliveries(timeout=30)
    finally:
        controller.stop()
    [raw] = received
    text = raw.decode()
    assert "Subject: plait: flow 'nightly-etl' run '" in text
    assert "boom: the source table is empty" in text


def test_failed_delivery_is_logged_and_never_breaks_the_run(notify_env, web, notification_log):
    Webhook(url=f"{web.url}/fail/SECRET-TOKEN?key=QUERY-SECRET").save("broken")
    Webhook(url=f"{web.url}/hooks/good").save("good")
    create_rule(block="webhook/broken", flow_name="nightly-*", states=["FAILED"], name="page-ops")
    create_rule(block="webhook/good", flow_name="nightly-*", states=["FAILED"], name="audit")

    with pytest.raises(ValueError, match="boom"):  # the flow's own error, untouched
        nightly_failing()
    assert wait_for_deliveries(timeout=30)

    assert sorted(r["path"] for r in web.requests) == ["/fail/SECRET-TOKEN?key=QUERY-SECRET", "/hooks/good"]
    [warning] = [m for m in notification_log.messages if "failed" in m]
    assert "'page-ops'" in warning and "webhook/broken" in warning and "500" in warning
    assert "SECRET-TOKEN" not in warning and "QUERY-SECRET" not in warning
    assert not [m for m in notification_log.messages if "SECRET" in m]
    runs = notify_env.flow_runs()
    assert [r["state_type"] for r in runs] == ["FAILED"]


def test_unreachable_webhook_does_not_hold_up_or_fail_the_flow(notify_env, notification_log):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens
    Webhook(url=f"http://127.0.0.1:{port}/hooks/SECRET-TOKEN", timeout_seconds=5).save("gone")
    create_rule(block="webhook/gone", flow_name="*", states=["COMPLETED"])
    assert nightly_ok() == 1
    assert wait_for_deliveries(timeout=30)
    [warning] = [m for m in notification_log.messages if "failed" in m]
    assert "webhook/gone" in warning and f"127.0.0.1:{port}" in warning
    assert "SECRET-TOKEN" not in warning


def test_plait_notify_without_rules_does_nothing(notify_env, web):
    event = StateChangeEvent(
        flow_run_id="x", flow_run_name="r", flow_name="nightly-etl", tags=(), state_type="FAILED",
        state_name="Failed", state_message="", timestamp="2026-01-01T00:00:00+00:00", parameters={},
    )
    assert builtin_plugin.plait_notify(event) is None
    assert wait_for_deliveries(timeout=5)
    assert web.requests == []
