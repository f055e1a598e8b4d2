"""The built-in blocks (plait_blocks): storage, values, notification blocks, plugin discovery.

Webhooks go to an HTTP server and email to an SMTP server (aiosmtpd), both started by these
tests on 127.0.0.1; nothing is mocked.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from plait import flow, plugins, task
from plait.plugins import StateChangeEvent
from plait.results import read_result_ref, resolve_storage
from plait_blocks import (
    JSON,
    DeliveryError,
    Email,
    LocalFileSystem,
    Process,
    Secret,
    SlackWebhook,
    Webhook,
    render_event,
)

SLUGS = {"local-file-system", "secret", "json", "webhook", "slack-webhook", "email", "process"}

EVENT = StateChangeEvent(
    flow_run_id="6f1c2a9e-0000-4000-8000-000000000001",
    flow_run_name="brisk-otter",
    flow_name="etl",
    tags=("nightly", "prod"),
    state_type="FAILED",
    state_name="Failed",
    state_message="Flow run encountered an exception: ValueError: boom",
    timestamp="2026-01-02T03:04:05+00:00",
    parameters={"day": "2026-01-01"},
)


# -- servers the tests start ---------------------------------------------------------------
class _Recorder(BaseHTTPRequestHandler):
    """Records every request; paths under /fail answer 500 and echo the path (as many
    frameworks do) to prove the client does not repeat it."""

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        self.server.requests.append(  # type: ignore[attr-defined]
            {"method": self.command, "path": self.path, "headers": dict(self.headers), "raw": raw}
        )
        if self.path.startswith("/fail"):
            reply = f"Cannot {self.command} {self.path}".encode()
            self.send_response(500)
        else:
            reply = b"ok"
            self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_POST = do_PUT = _handle

    def log_message(self, *args: Any) -> None:
        pass


class WebServer:
    def __init__(self) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
        self.httpd.requests = []  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.httpd.requests  # type: ignore[attr-defined]

    def json(self, index: int = -1) -> Any:
        return json.loads(self.requests[index]["raw"])


@pytest.fixture
def web() -> Iterator[WebServer]:
    server = WebServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        from email import message_from_bytes, policy

        self.messages.append({
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "message": message_from_bytes(envelope.content, policy=policy.default),
            "login": getattr(session, "login_data", None),
        })
        return "250 Message accepted for delivery"


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
    from aiosmtpd.smtp import AuthResult

    ok = getattr(auth_data, "login", None) == b"alice" and getattr(auth_data, "password", None) == b"pa55word"
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp() -> Iterator[tuple[int, _Mailbox]]:
    from aiosmtpd.controller import Controller

    mailbox = _Mailbox()
    port = _free_port()
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=port,
        authenticator=_authenticate, auth_require_tls=False,
    )
    controller.start()
    try:
        yield port, mailbox
    finally:
        controller.stop()


# -- Webhook ---------------------------------------------------------------------------------
def test_webhook_posts_json_subject_and_body(web):
    Webhook(url=f"{web.url}/hooks/T0K3N").notify("Backfill done", "1,204 rows")
    [request] = web.requests
    assert request["method"] == "POST"
    assert request["path"] == "/hooks/T0K3N"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["User-Agent"].startswith("plait/")
    assert web.json() == {"subject": "Backfill done", "body": "1,204 rows"}


def test_webhook_event_payload_carries_the_event_fields(web):
    Webhook(url=f"{web.url}/hooks/T0K3N").notify_event(EVENT)
    payload = web.json()
    subject, body = render_event(EVENT)
    assert payload["subject"] == subject == "plait: flow 'etl' run 'brisk-otter' is Failed"
    assert payload["body"] == body
    assert payload["flow_name"] == "etl"
    assert payload["state_type"] == "FAILED"
    assert payload["flow_run_id"] == EVENT.flow_run_id
    assert payload["tags"] == ["nightly", "prod"]


def test_webhook_put_with_secret_headers_and_template(web):
    hook = Webhook(
        url=f"{web.url}/put/here",
        method="PUT",
        headers={"Authorization": "Bearer s3cr3t", "X-Team": "data"},
        content_type="text/plain",
        body_template="{state_type} {flow_name}/{flow_run_name} ({tags}) at {timestamp}: {state_message}",
    )
    assert "s3cr3t" not in repr(hook) and "s3cr3t" not in hook.model_dump_json()
    hook.notify_event(EVENT)
    [request] = web.requests
    assert request["method"] == "PUT"
    assert request["headers"]["Authorization"] == "Bearer s3cr3t"
    assert request["headers"]["X-Team"] == "data"
    assert request["headers"]["Content-Type"] == "text/plain"
    assert request["raw"].decode() == (
        "FAILED etl/brisk-otter (nightly, prod) at 2026-01-02T03:04:05+00:00: "
        "Flow run encountered an exception: ValueError: boom"
    )


def test_webhook_json_template_with_escaped_braces(web):
    hook = Webhook(url=f"{web.url}/t", body_template='{{"text": "{subject}", "run": "{flow_run_id}"}}')
    hook.notify_event(EVENT)
    assert web.json() == {"text": "plait: flow 'etl' run 'brisk-otter' is Failed", "run": EVENT.flow_run_id}
    hook.notify("plain", "message")  # event fields render empty outside an event
    assert web.json() == {"text": "plain", "run": ""}


@pytest.mark.parametrize("template", ["{nope}", "{subject", "{0}"])
def test_webhook_refuses_a_template_it_cannot_render(template):
    with pytest.raises(ValueError, match="body_template cannot be rendered"):
        Webhook(url="https://hooks.example.com/x", body_template=template)


def test_webhook_error_names_status_and_host_never_the_token(web):
    hook = Webhook(url=f"{web.url}/fail/SECRET-TOKEN-123?key=QUERY-SECRET")
    with pytest.raises(DeliveryError) as caught:
        hook.notify("s", "b")
    message = str(caught.value)
    assert "500" in message
    assert web.url.removeprefix("http://") in message
    assert "SECRET-TOKEN-123" not in message and "QUERY-SECRET" not in message
    assert "/fail" not in message


def test_webhook_unreachable_names_host_never_the_token():
    port = _free_port()  # nothing listens there
    with pytest.raises(DeliveryError) as caught:
        Webhook(url=f"http://127.0.0.1:{port}/hooks/SECRET-TOKEN", timeout_seconds=5).notify("s", "b")
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert "SECRET-TOKEN" not in message


def test_webhook_url_must_be_http_and_is_not_echoed_in_the_error():
    with pytest.raises(ValueError) as caught:
        Webhook(url="ftp://files.example.com/SECRET-TOKEN")
    assert "http" in str(caught.value)
    assert "SECRET-TOKEN" not in str(caught.value)


# -- Slack -----------------------------------------------------------------------------------
def test_slack_webhook_sends_the_incoming_webhook_payload(web):
    SlackWebhook(url=f"{web.url}/services/T000/B000/XXXX").notify("Deploy done", "All <3 services & more")
    [request] = web.requests
    assert request["method"] == "POST"
    assert request["path"] == "/services/T000/B000/XXXX"
    assert request["headers"]["Content-Type"] == "application/json"
    assert web.json() == {"text": "*Deploy done*\nAll &lt;3 services &amp; more"}


def test_slack_webhook_with_blocks_and_event(web):
    SlackWebhook(url=f"{web.url}/services/x", use_blocks=True).notify_event(EVENT)
    payload = web.json()
    subject, body = render_event(EVENT)
    assert payload["text"] == f"*{subject}*\n{body}"
    assert [b["type"] for b in payload["blocks"]] == ["header", "section"]
    assert payload["blocks"][0]["text"] == {"type": "plain_text", "text": subject}
    assert "plait flow-run inspect " + EVENT.flow_run_id in payload["blocks"][1]["text"]["text"]


def test_slack_error_does_not_name_the_url(web):
    with pytest.raises(DeliveryError) as caught:
        SlackWebhook(url=f"{web.url}/fail/services/T000/B000/SECRETXYZ").notify("s", "b")
    assert "500" in str(caught.value)
    assert "SECRETXYZ" not in str(caught.value)


# -- Email -----------------------------------------------------------------------------------
def test_email_delivers_through_smtp(smtp):
    port, mailbox = smtp
    Email(
        smtp_host="127.0.0.1", smtp_port=port, use_starttls=False,
        from_address="plait@example.com", to_addresses=["oncall@example.com", "lead@example.com"],
        subject_prefix="[plait] ",
    ).notify("Backfill done", "Loaded 1,204 rows.")
    [mail] = mailbox.messages
    assert mail["mail_from"] == "plait@example.com"
    assert mail["rcpt_tos"] == ["oncall@example.com", "lead@example.com"]
    message = mail["message"]
    assert message["Subject"] == "[plait] Backfill done"
    assert message["From"] == "plait@example.com"
    assert message["To"] == "oncall@example.com, lead@example.com"
    assert message.get_content().strip() == "Loaded 1,204 rows."


def test_email_logs_in_and_sends_an_event(smtp):
    port, mailbox = smtp
    Email(
        smtp_host="127.0.0.1", smtp_port=port, use_starttls=False,
        username="alice", password="pa55word",
        from_address="plait@example.com", to_addresses=["oncall@example.com"],
    ).notify_event(EVENT)
    [mail] = mailbox.messages
    assert mail["message"]["Subject"] == "plait: flow 'etl' run 'brisk-otter' is Failed"
    text = mail["message"].get_content()
    assert "ValueError: boom" in text
    assert f"plait flow-run inspect {EVENT.flow_run_id}" in text


def test_email_wrong_password_is_a_delivery_error_without_the_password(smtp):
    port, mailbox = smtp
    email = Email(
        smtp_host="127.0.0.1", smtp_port=port, use_starttls=False,
        username="alice", password="not-the-pa55word",
        from_address="plait@example.com", to_addresses=["oncall@example.com"],
    )
    with pytest.raises(DeliveryError) as caught:
        email.notify("s", "b")
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "Authentication" in str(caught.value)
    assert "not-the-pa55word" not in str(caught.value)
    assert mailbox.messages == []


def test_email_settings_are_checked():
    base = {"smtp_host": "smtp.example.com", "from_address": "a@example.com", "to_addresses": ["b@example.com"]}
    assert Email(**base).port == 587
    assert Email(**base, use_ssl=True, use_starttls=False).port == 465
    assert Email(**base, use_starttls=False).port == 25
    with pytest.raises(ValueError, match="exclude each other"):
        Email(**base, use_ssl=True)
    with pytest.raises(ValueError, match="needs a username"):
        Email(**base, password="x")
    with pytest.raises(ValueError, match="not one email address"):
        Email(**{**base, "to_addresses": ["nobody"]})
    with pytest.raises(ValueError):
        Email(**{**base, "to_addresses": []})
    with pytest.raises(ValueError) as caught:
        Email(**base, username="u", password="hunter2-secret", smtp_port=0)
    assert "hunter2-secret" not in str(caught.value)


# -- LocalFileSystem ---------------------------------------------------------------------------
def test_local_file_system_reads_writes_lists_deletes(tmp_path):
    fs = LocalFileSystem(basepath=tmp_path / "store")
    assert fs.basepath == str(tmp_path / "store")
    assert fs.list_paths() == []
    fs.write_path("b.txt", b"two")
    fs.write_path("a/one.bin", b"\x00\x01")
    fs.write_path("a/deep/x.txt", b"x")
    fs.write_path("b.txt", b"TWO")  # replaced
    assert fs.read_path("b.txt") == b"TWO"
    assert fs.read_path("a/one.bin") == b"\x00\x01"
    assert fs.list_paths() == ["a/deep/x.txt", "a/one.bin", "b.txt"]
    assert fs.list_paths("a/") == ["a/deep/x.txt", "a/one.bin"]
    assert fs.list_paths("a/o") == ["a/one.bin"]
    assert fs.list_paths("zzz/") == []
    assert fs.exists("a/one.bin") and not fs.exists("a") and not fs.exists("nope")
    fs.delete_path("a/one.bin")
    assert not fs.exists("a/one.bin")
    with pytest.raises(FileNotFoundError):
        fs.read_path("a/one.bin")
    with pytest.raises(FileNotFoundError):
        fs.delete_path("a/one.bin")
    assert not [p for p in (tmp_path / "store").rglob("*") if p.name.startswith(".plait-tmp")]


@pytest.mark.parametrize("path", ["../outside.txt", "a/../../outside.txt", "/etc/passwd", ""])
def test_local_file_system_refuses_paths_outside_basepath(tmp_path, path):
    fs = LocalFileSystem(basepath=str(tmp_path / "store"))
    for call in (lambda: fs.write_path(path, b"x"), lambda: fs.read_path(path), lambda: fs.delete_path(path)):
        with pytest.raises(ValueError, match="escapes the storage directory|does not name a file"):
            call()
    assert not (tmp_path / "outside.txt").exists()
    with pytest.raises(ValueError, match="escapes"):
        fs.list_paths("../")


def test_local_file_system_refuses_symlinks_leading_outside(tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "store" / "link").symlink_to(tmp_path / "elsewhere")
    fs = LocalFileSystem(basepath=tmp_path / "store")
    with pytest.raises(ValueError, match="escapes"):
        fs.write_path("link/x.txt", b"x")


def test_local_file_system_uri_round_trips_through_the_file_scheme(tmp_path):
    base = tmp_path / "with space"
    fs = LocalFileSystem(basepath=base)
    assert fs.uri == base.resolve().as_uri() and fs.uri.startswith("file://")
    for spec in (str(base), base, fs.uri):
        storage = resolve_storage(spec)
        assert isinstance(storage, LocalFileSystem), spec
        assert Path(storage.basepath) == base.resolve()


def test_default_result_storage_is_a_local_file_system(plait_harness):
    storage = resolve_storage(None)
    assert isinstance(storage, LocalFileSystem)
    assert Path(storage.basepath) == (plait_harness.home / "storage").resolve()


def test_persisted_results_go_through_the_file_scheme(plait_harness, tmp_path):
    results = tmp_path / "results"

    @task(persist_result=True, result_storage=str(results))
    def extract() -> list[int]:
        return [1, 2, 3]

    @flow
    def pipeline() -> list[int]:
        return extract()

    assert pipeline() == [1, 2, 3]
    [run] = plait_harness.flow_runs()
    [task_run] = plait_harness.flow_run(run["id"])["task_runs"]
    ref = task_run["result_ref"]
    assert ref.startswith(results.resolve().as_uri() + "/")
    assert read_result_ref(ref) == [1, 2, 3]
    assert LocalFileSystem(basepath=results).list_paths() == [ref.rpartition("/")[2]]


CACHED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from plait import flow, task
    from plait.results import resolve_storage

    @task(cache_policy="inputs", result_storage=sys.argv[1])
    def expensive(x):
        return {"value": x * 10}

    @flow
    def cached_flow(x: int):
        return expensive(x, return_state=True).type.value

    print(json.dumps([cached_flow(4), type(resolve_storage(sys.argv[1])).__name__]))
    """
)


def test_second_process_reads_the_cache_through_local_file_system(plait_harness, tmp_path):
    script = tmp_path / "cached.py"
    script.write_text(CACHED_SCRIPT)
    results = tmp_path / "results"
    env = {**os.environ, "PLAIT_HOME": str(plait_harness.home), "PLAIT_DATABASE_URL": plait_harness.database_url}

    def run() -> list[str]:
        done = subprocess.run([sys.executable, str(script), results.as_uri()], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    assert run() == ["COMPLETED", "LocalFileSystem"]
    assert run() == ["CACHED", "LocalFileSystem"]
    assert len(LocalFileSystem(basepath=results).list_paths()) == 1


# -- values ------------------------------------------------------------------------------------
def test_secret_get_and_masking():
    secret = Secret(value="s3cr3t-token")
    assert secret.get() == "s3cr3t-token"
    assert "s3cr3t-token" not in repr(secret)
    assert "s3cr3t-token" not in secret.model_dump_json()
    assert Secret.secret_fields() == ["value"]


@pytest.mark.parametrize("value", [{"tables": ["a", "b"], "limit": 10}, [1, 2.5, None], "text", 3, True, None])
def test_json_get(value):
    assert JSON(value=value).get() == value
    assert json.loads(JSON(value=value).model_dump_json()) == {"value": value}


def test_json_refuses_values_json_cannot_hold():
    with pytest.raises(ValueError):
        JSON(value={"when": object()})


# -- conformance and discovery ---------------------------------------------------------------------
EXAMPLES: list[tuple[type, dict[str, Any]]] = [
    (LocalFileSystem, {"basepath": "/tmp/plait-results"}),
    (Secret, {"value": "s3cr3t"}),
    (JSON, {"value": {"tables": ["orders"], "limit": 10}}),
    (Webhook, {"url": "https://hooks.example.com/T0K3N", "headers": {"Authorization": "Bearer x"}}),
    (SlackWebhook, {"url": "https://hooks.slack.com/services/T000/B000/XXXX"}),
    (Email, {"smtp_host": "smtp.example.com", "username": "u", "password": "p",
             "from_address": "a@example.com", "to_addresses": ["b@example.com"]}),
]


@pytest.mark.parametrize("cls,example", EXAMPLES, ids=[c.block_type_slug for c, _ in EXAMPLES])
def test_blocks_pass_the_conformance_suite(cls, example):
    from plait.testing import assert_block_conforms

    assert_block_conforms(cls, cls(**example))


@pytest.mark.parametrize("cls", [c for c, _ in EXAMPLES] + [Process], ids=lambda c: c.block_type_slug)
def test_blocks_document_themselves(cls):
    assert cls.block_description
    assert cls.code_example.strip()
    compile(cls.code_example, f"<{cls.__name__}.code_example>", "exec")
    assert cls.capabilities is not None
    for name, field in cls.model_fields.items():
        assert field.description, f"{cls.__name__}.{name} has no description"
    json.dumps(cls.block_schema())


def test_builtins_are_discovered_through_the_entry_point():
    plugins.reset_plugins()
    [info] = [p for p in plugins.plugins() if p.name == "plait_blocks"]
    assert info.loaded
    assert info.module == "plait_blocks.plugin"
    assert info.distribution == "plait"
    assert {"plait_register_blocks", "plait_register_storage", "plait_register_infrastructure",
            "plait_notify"} <= set(info.hooks)
    assert not [d for d in plugins.diagnoses() if d.plugin == "plait_blocks"]
    classes = plugins.block_classes()
    assert SLUGS <= set(classes)
    assert classes["webhook"] is Webhook and classes["local-file-system"] is LocalFileSystem
    assert plugins.infrastructure_kinds()["process"] is Process


def test_builtin_block_capabilities():
    classes = plugins.block_classes()
    assert {"read-path", "write-path"} <= set(classes["local-file-system"].capabilities)
    for slug in ("webhook", "slack-webhook", "email"):
        assert "notify" in classes[slug].capabilities
    assert "run-infrastructure" in classes["process"].capabilities
