"""Webhooks: the repository on SQLite and PostgreSQL (tokens kept as SHA-256 only, events in
the same transaction), the local functions and the `plait webhook` commands, and, against a
real uvicorn server, real HTTP calls of the receiver: token required (three ways to send
it), 401 for a wrong one, 404 for unknown and disabled webhooks, 413 past 512 KiB (by
Content-Length and chunked), 429 past the rate with Retry-After, bad templates refused at
creation with their line and column, a JSON body turned into an event with a templated
kind, resource, labels and payload (read back from GET /events), secrets masked, and the
management routes through the API client and the CLI with PLAIT_API_URL set."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from pydantic import Field, SecretStr
from sqlalchemy import select

from plait._store.database import Database
from plait._store.events import list_events
from plait._store.webhooks import (
    WEBHOOKS,
    WebhookExists,
    create_webhook,
    delete_webhook,
    get_webhook,
    list_webhooks,
    record_webhook_call,
    rotate_webhook_token,
    update_webhook,
    webhook_for_call,
)
from plait.automations import _webhooks
from plait.automations._templates import TemplateError
from plait.blocks import CredentialsBlock
from plait.blocks._payloads import block_payload
from plait.cli.webhooks import webhook_group
from plait.testing import reset_state, throwaway_postgres_database
from plait.testing._server import ServerHandle, running_server

API = "/api/v1"
GITHUB = """{
  "event": "github.{{ headers['x-github-event'] | default('push') }}",
  "resource": {"id": {{ ("github/" ~ body.repository.full_name) | tojson }},
               "branch": {{ body.ref | replace('refs/heads/', '') | tojson }}},
  "payload": {"after": {{ body.after | tojson }}, "commits": {{ body.commits | length }},
              "pusher": {{ body.pusher | tojson }}, "env": {{ query.env | default('none') | tojson }}}
}"""
PUSH = {"ref": "refs/heads/main", "after": "abc123", "repository": {"full_name": "acme/analytics"},
        "commits": [{"id": 1}, {"id": 2}], "pusher": {"name": "ada"}}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def stored_hash(db: Database, name: str) -> str:
    with db.engine.connect() as conn:
        return str(conn.scalar(select(WEBHOOKS.c.token_hash).where(WEBHOOKS.c.name == name)))


# -- the repository -------------------------------------------------------------------------------------
def test_a_webhook_is_created_listed_changed_rotated_and_deleted_with_events(database_url: str) -> None:
    db = Database.open(database_url)
    made, token = create_webhook(db, "github-push", GITHUB, description="pushes")
    assert set(made) == {"id", "name", "slug", "path", "template", "description", "enabled", "created", "updated",
                         "last_called_at"}
    assert made["path"] == f"/api/v1/webhooks/{made['slug']}" and len(made["slug"]) >= 22 and len(token) >= 40
    assert made["enabled"] is True and made["last_called_at"] is None and made["created"].endswith("+00:00")
    assert stored_hash(db, "github-push") == hashlib.sha256(token.encode()).hexdigest()
    assert token not in json.dumps(made)
    assert [w["name"] for w in list_webhooks(db)] == ["github-push"]
    assert get_webhook(db, "github-push") == made

    with pytest.raises(WebhookExists, match="already exists"):
        create_webhook(db, "github-push", GITHUB)
    for bad in ("", "has space", "-leading", "x" * 201, "slash/ed"):
        with pytest.raises(ValueError, match="a webhook's name"):
            create_webhook(db, bad, GITHUB)
    with pytest.raises(ValueError, match="needs a template"):
        create_webhook(db, "empty", "  ")
    with pytest.raises(LookupError, match="no webhook named 'nope'.*plait webhook ls"):
        get_webhook(db, "nope")

    same, changed = update_webhook(db, "github-push", description="pushes")
    assert changed == [] and same == made
    off, changed = update_webhook(db, "github-push", enabled=False, description="all pushes")
    assert changed == ["description", "enabled"] and off["enabled"] is False

    rotated, new_token = rotate_webhook_token(db, "github-push")
    assert new_token != token and stored_hash(db, "github-push") == hashlib.sha256(new_token.encode()).hexdigest()
    assert rotated["slug"] == made["slug"]

    gone = delete_webhook(db, "github-push")
    assert gone["name"] == "github-push" and list_webhooks(db) == []
    with pytest.raises(LookupError):
        delete_webhook(db, "github-push")

    events = list_events(db, kinds=["webhook.*"])["items"]
    assert [(e["kind"], e["resource"]) for e in events] == [
        ("webhook.created", "webhook/github-push"), ("webhook.updated", "webhook/github-push"),
        ("webhook.updated", "webhook/github-push"), ("webhook.deleted", "webhook/github-push"),
    ]
    assert events[1]["payload"] == {"name": "github-push", "enabled": False, "changed": ["description", "enabled"]}
    assert events[2]["payload"]["changed"] == ["token"]
    assert not any(t in json.dumps(events) for t in (token, new_token))


def test_a_call_needs_the_enabled_webhook_and_its_token(database_url: str) -> None:
    db = Database.open(database_url)
    made, token = create_webhook(db, "hook", GITHUB)
    slug = made["slug"]
    assert webhook_for_call(db, slug, token)["name"] == "hook"
    for wrong in (None, "", token[:-1], token + "x", "x" * 43):
        with pytest.raises(PermissionError):
            webhook_for_call(db, slug, wrong)
    for unknown in ("no-such-slug", "", "../x", "a" * 100):
        with pytest.raises(LookupError):
            webhook_for_call(db, unknown, token)
    update_webhook(db, "hook", enabled=False)
    with pytest.raises(LookupError, match="disabled"):
        webhook_for_call(db, slug, token)
    update_webhook(db, "hook", enabled=True)
    _, new_token = rotate_webhook_token(db, "hook")
    with pytest.raises(PermissionError):
        webhook_for_call(db, slug, token)
    assert webhook_for_call(db, slug, new_token)["name"] == "hook"


def test_a_call_stores_its_event_and_notes_the_time(database_url: str) -> None:
    db = Database.open(database_url)
    made, _token = create_webhook(db, "hook", GITHUB)
    stored = record_webhook_call(db, made["id"], "github.push", "github/acme/analytics", {"after": "abc"},
                                 {"branch": "main", "webhook": "hook"})
    assert stored["seq"] > 0 and stored["kind"] == "github.push"
    (item,) = list_events(db, kinds=["github.push"])["items"]
    assert (item["id"], item["resource"], item["payload"], item["labels"]) == (
        stored["id"], "github/acme/analytics", {"after": "abc"}, {"branch": "main", "webhook": "hook"})
    assert get_webhook(db, "hook")["last_called_at"] is not None


# -- the event a call makes -------------------------------------------------------------------------------
def test_the_template_context_hides_the_token_and_credentials() -> None:
    ctx = _webhooks.call_context(
        "hook", b'{"a": 1}',
        [("Authorization", "Bearer t0k"), ("X-Plait-Webhook-Token", "t0k"), ("Cookie", "c=1"), ("X-A", "1"),
         ("x-a", "2"), ("Content-Type", "application/json")],
        [("token", "t0k"), ("env", "prod"), ("env", "dev")],
    )
    assert ctx == {"body": {"a": 1}, "text": '{"a": 1}', "method": "POST", "webhook": {"name": "hook"},
                   "headers": {"x-a": "1, 2", "content-type": "application/json"}, "query": {"env": "prod"}}
    assert _webhooks.call_context("hook", b"plain \xff text", [], [])["body"] == "plain \ufffd text"
    assert _webhooks.call_context("hook", b"[" * 100_000, [], [])["body"] == "[" * 100_000  # too deep: the text


@pytest.mark.parametrize(("template", "words"), [
    ('"just text"', "gives str, not an object"),
    ('{"event": "x.y", "resource": {"id": "r"}, "extra": 1}', r"unknown key\(s\) extra"),
    ('{"event": "x.y"}', "no resource object"),
    ('{"event": "flow-run.state-changed", "resource": {"id": "r"}}', "reserved for plait"),
    ('{"event": "webhook.called", "resource": {"id": "r"}}', "reserved for plait"),
    ('{"event": "Not A Kind", "resource": {"id": "r"}}', "is not like"),
    ('{"event": "x.y", "resource": {"id": ""}}', "needs an 'id'"),
    ('{"event": "x.y", "resource": {"id": "r", "n": 3}}', "values are text"),
    ('{"event": "x.y", "resource": {"id": "r"}, "payload": [1]}', "payload must be a dict"),
    ('{"event": "x.y", "resource": {"id": "r"}, "payload": {"big": "{{ "x" * 70000 }}"}}', "at most 65,536"),
])
def test_an_output_that_is_no_event_is_refused(template: str, words: str) -> None:
    with pytest.raises(_webhooks.WebhookEventError, match=words):
        _webhooks.event_from_call("hook", template, _webhooks.call_context("hook", b"{}", [], []))


def test_the_default_template_makes_the_body_the_payload() -> None:
    made = _webhooks.event_from_call("hook", _webhooks.DEFAULT_TEMPLATE,
                                     _webhooks.call_context("hook", b'{"a": [1, 2]}', [], []))
    assert made == {"kind": "external.webhook-called", "resource_id": "webhook/hook", "labels": {"webhook": "hook"},
                    "payload": {"a": [1, 2]}}
    text = _webhooks.event_from_call("hook", _webhooks.DEFAULT_TEMPLATE,
                                     _webhooks.call_context("hook", b"not json", [], []))
    assert text["payload"] == {"body": "not json"}


def test_a_template_cannot_claim_another_webhook_and_nul_is_made_storable() -> None:
    made = _webhooks.event_from_call(
        "hook", '{"event": "x.y", "resource": {"id": "r", "webhook": "other"}, "payload": {{ body | tojson }}}',
        _webhooks.call_context("hook", b'{"t": "a\\u0000b\\ud800"}', [], []))
    assert made["labels"] == {"webhook": "hook"}
    assert made["payload"] == {"t": "a\\x00b\ufffd"}


# -- local functions and the CLI ----------------------------------------------------------------------------
def run(*args: str, input: str | None = None) -> Result:
    result = CliRunner().invoke(webhook_group, list(args), input=input)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result


def test_the_local_functions_check_templates_and_use_the_store(plait_env: str) -> None:
    with pytest.raises(TemplateError) as caught:
        _webhooks.create_webhook("bad", '{"event": {{ body.x | nosuch }}}')
    assert (caught.value.line, caught.value.column) == (1, 23)
    assert str(caught.value).startswith("template of webhook 'bad': line 1, column 23: No filter named 'nosuch'")
    made = _webhooks.create_webhook("plain")
    assert made["webhook"]["template"] == _webhooks.DEFAULT_TEMPLATE and made["path"] == made["webhook"]["path"]
    assert _webhooks.webhook_url(made["webhook"]) is None
    with pytest.raises(TemplateError, match="line 2"):
        _webhooks.update_webhook("plain", template="ok\n{% if %}")
    assert _webhooks.update_webhook("plain", enabled=False)["enabled"] is False
    assert [w["name"] for w in _webhooks.list_webhooks()] == ["plain"]
    assert _webhooks.rotate_webhook_token("plain")["token"] != made["token"]
    assert _webhooks.delete_webhook("plain")["name"] == "plain"
    with pytest.raises(LookupError):
        _webhooks.get_webhook("plain")


def test_the_webhook_commands_on_the_local_store(plait_env: str, tmp_path: Path) -> None:
    template = tmp_path / "github.j2"
    template.write_text(GITHUB)
    created = run("create", "github", "--template-file", str(template), "--description", "pushes")
    token = created.output.split("Token")[1].split()[0]
    assert "Created webhook github." in created.output and "served by `plait server start`" in created.output
    assert "/api/v1/webhooks/" in created.output and len(token) >= 40
    as_json = json.loads(run("create", "plain", "--disabled", "--json").output)
    assert as_json["url"] is None and as_json["webhook"]["enabled"] is False and as_json["token"]

    listed = json.loads(run("ls", "--json").output)
    assert [w["name"] for w in listed] == ["github", "plain"] and token not in json.dumps(listed)
    assert "github" in run("ls").output
    inspected = run("inspect", "github").output
    assert "repository.full_name" in inspected and "pushes" in inspected and token not in inspected
    assert "Enabled webhook plain." in run("enable", "plain").output
    assert json.loads(run("disable", "plain", "--json").output)["enabled"] is False
    rotated = run("rotate", "github").output
    assert "Rotated the token of webhook github." in rotated and token not in rotated
    assert "Deleted webhook plain." in run("delete", "plain", "--yes").output
    assert "Deleted webhook github." in run("delete", "github", input="y\n").output
    assert "No webhooks" in run("ls").output

    for args, words in [(("inspect", "nope"), "no webhook named 'nope'"),
                        (("create", "x", "--template", "{{ a +"), "template of webhook 'x': line 1, column 7"),
                        (("create", "x", "--template", "a", "--template-file", str(template)), "not both")]:
        result = CliRunner().invoke(webhook_group, list(args))
        assert result.exit_code == 1 and words in result.output, result.output


# -- a real server ------------------------------------------------------------------------------------------
class HookCredentials(CredentialsBlock):
    """Credentials the webhook test's sender uses."""

    user: str = Field(description="Who logs in.")
    password: SecretStr = Field(description="The password.")


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    home = tmp_path_factory.mktemp("webhooks-server")
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{home / 'plait.db'}"
        else:
            url = stack.enter_context(throwaway_postgres_database("plait_srv_webhooks"))
        yield stack.enter_context(running_server(url, home))


@pytest.fixture
def http(server: ServerHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url + API, timeout=30) as client:
        yield client


def make(http: httpx.Client, server: ServerHandle, template: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": unique("hook"), **extra}
    if template is not None:
        body["template"] = template
    answer = http.post("/webhooks", json=body, headers=server.headers("admin"))
    assert answer.status_code == 201, answer.text
    made: dict[str, Any] = answer.json()
    return made


def error_of(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "detail"}, body
    if code is not None:
        assert body["error"]["code"] == code, body
    assert "Traceback" not in response.text
    return dict(body["error"])


def event_of(http: httpx.Client, server: ServerHandle, seq: int) -> dict[str, Any]:
    page = http.get("/events", params={"after": seq - 1, "limit": 1}, headers=server.headers("read")).json()
    (item,) = page["items"]
    assert item["seq"] == seq
    return dict(item)


@pytest.mark.slow
def test_a_json_body_becomes_the_templated_event(server: ServerHandle, http: httpx.Client) -> None:
    made = make(http, server, GITHUB, description="pushes")
    hook, token = made["webhook"], made["token"]
    assert made["path"] == hook["path"] == f"/api/v1/webhooks/{hook['slug']}"
    answer = httpx.post(server.url + hook["path"], json=PUSH, params={"env": "prod"}, timeout=30,
                        headers={"Authorization": f"Bearer {token}", "X-GitHub-Event": "push"})
    assert answer.status_code == 202, answer.text
    assert set(answer.json()) == {"id", "seq"}
    event = event_of(http, server, answer.json()["seq"])
    assert event["id"] == answer.json()["id"]
    assert (event["kind"], event["resource"]) == ("github.push", "github/acme/analytics")
    assert event["labels"] == {"branch": "main", "webhook": hook["name"]}
    assert event["payload"] == {"after": "abc123", "commits": 2, "pusher": {"name": "ada"}, "env": "prod"}
    found = http.get(f"/webhooks/by-name/{hook['name']}", headers=server.headers("read")).json()
    assert found["last_called_at"] is not None and "token" not in found


@pytest.mark.slow
def test_the_token_is_required_and_may_come_three_ways(server: ServerHandle, http: httpx.Client) -> None:
    made = make(http, server)
    path, token = server.url + made["path"], made["token"]
    error = error_of(httpx.post(path, json={"a": 1}, timeout=30), 401, "unauthorized")
    assert "no token was sent" in error["message"]
    for headers, params in [({"Authorization": "Bearer wrong"}, {}), ({"X-Plait-Webhook-Token": token[:-1]}, {}),
                            ({}, {"token": "wrong"}), ({"Authorization": f"Bearer {server.admin_key}"}, {})]:
        response = httpx.post(path, json={"a": 1}, headers=headers, params=params, timeout=30)
        assert "the token is wrong" in error_of(response, 401, "unauthorized")["message"]
        assert response.headers["www-authenticate"].startswith("Bearer")
    for headers, params in [({"Authorization": f"Bearer {token}"}, {}), ({"X-Plait-Webhook-Token": token}, {}),
                            ({}, {"token": token})]:
        answer = httpx.post(path, json={"a": 1}, headers=headers, params=params, timeout=30)
        assert answer.status_code == 202, answer.text
        event = event_of(http, server, answer.json()["seq"])
        assert (event["kind"], event["payload"]) == ("external.webhook-called", {"a": 1})


@pytest.mark.slow
def test_a_token_in_the_query_string_is_not_logged(server: ServerHandle, http: httpx.Client) -> None:
    made = make(http, server)
    answer = httpx.post(server.url + made["path"], json={}, params={"token": made["token"]}, timeout=30)
    assert answer.status_code == 202, answer.text
    log = server.output()
    assert made["webhook"]["slug"] in log  # the call is in the access log...
    assert made["token"] not in log  # ...with its ?token= masked


@pytest.mark.slow
def test_unknown_and_disabled_webhooks_answer_404(server: ServerHandle, http: httpx.Client) -> None:
    error_of(httpx.post(server.url + "/api/v1/webhooks/no-such-slug", json={}, timeout=30), 404, "webhook_not_found")
    made = make(http, server, enabled=False)
    name, auth = made["webhook"]["name"], {"Authorization": f"Bearer {made['token']}"}
    path = server.url + made["path"]
    error_of(httpx.post(path, json={}, headers=auth, timeout=30), 404, "webhook_not_found")
    enabled = http.patch(f"/webhooks/by-name/{name}", json={"enabled": True}, headers=server.headers("admin"))
    assert enabled.status_code == 200 and enabled.json()["enabled"] is True
    assert httpx.post(path, json={}, headers=auth, timeout=30).status_code == 202
    deleted = http.delete(f"/webhooks/by-name/{name}", headers=server.headers("admin"))
    assert deleted.status_code == 200 and deleted.json()["name"] == name
    error_of(httpx.post(path, json={}, headers=auth, timeout=30), 404, "webhook_not_found")


@pytest.mark.slow
def test_a_body_past_512_kib_is_413(server: ServerHandle, http: httpx.Client) -> None:
    made = make(http, server)
    path, auth = server.url + made["path"], {"Authorization": f"Bearer {made['token']}"}
    big = json.dumps({"blob": "x" * (512 * 1024)})
    error = error_of(httpx.post(path, content=big, headers={**auth, "content-type": "application/json"}, timeout=30),
                     413, "request_too_large")
    assert error["detail"] == {"max_bytes": 512 * 1024}

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(60):
            yield b"y" * 10_000

    error_of(httpx.post(path, content=chunks(), headers=auth, timeout=30), 413, "request_too_large")
    fits = httpx.post(path, content=b"y" * 60_000, headers=auth, timeout=30)
    assert fits.status_code == 202, fits.text
    assert event_of(http, server, fits.json()["seq"])["payload"] == {"body": "y" * 60_000}


@pytest.mark.slow
def test_calls_past_the_rate_get_429_with_retry_after(server: ServerHandle, http: httpx.Client) -> None:
    made = make(http, server)
    path, auth = server.url + made["path"], {"Authorization": f"Bearer {made['token']}"}
    # 16 callers at once: the calls come faster than 20 a second however slow each one is
    # on a loaded machine (one caller after another may never outrun the refill)
    from concurrent.futures import ThreadPoolExecutor

    with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=16)) as client:
        with ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(lambda _: client.post(path, json={"n": 1}, headers=auth), range(300)))
    statuses = [r.status_code for r in responses]
    assert 429 in statuses and statuses.count(202) >= 40 and set(statuses) == {202, 429}, statuses
    response = next(r for r in responses if r.status_code == 429)
    error = error_of(response, 429, "too_many_requests")
    assert int(response.headers["retry-after"]) >= 1 and error["detail"]["retry_after"] > 0
    assert "at most 20 calls a second (bursts of 40)" in error["message"]
    other = make(http, server)  # the limit is per webhook
    assert httpx.post(server.url + other["path"], json={}, headers={"Authorization": f"Bearer {other['token']}"},
                      timeout=30).status_code == 202


@pytest.mark.slow
def test_a_bad_template_is_refused_at_creation_with_line_and_column(server: ServerHandle,
                                                                     http: httpx.Client) -> None:
    name = unique("bad")
    body = {"name": name, "template": '{"event": "x.y",\n "resource": {"id": {{ body.id | nosuch }}}}'}
    error = error_of(http.post("/webhooks", json=body, headers=server.headers("admin")), 400, "invalid_template")
    assert error["detail"] == {"field": "template", "line": 2, "column": 34}
    assert error["message"].startswith(f"template of webhook {name!r}: line 2, column 34: No filter named 'nosuch'")
    escape = {"name": name, "template": "{% include 'x' %}"}
    error_of(http.post("/webhooks", json=escape, headers=server.headers("admin")), 400, "invalid_template")
    assert http.get(f"/webhooks/by-name/{name}", headers=server.headers("read")).status_code == 404
    made = make(http, server)
    patch = http.patch(f"/webhooks/by-name/{made['webhook']['name']}", json={"template": "{% for %}"},
                       headers=server.headers("admin"))
    assert error_of(patch, 400, "invalid_template")["detail"]["line"] == 1


@pytest.mark.slow
def test_a_call_whose_template_fails_or_makes_no_event_is_400(server: ServerHandle, http: httpx.Client) -> None:
    made = make(http, server, '{"event": "x.y", "resource": {"id": "r"},\n "payload": {"v": {{ body.missing.x }}}}')
    auth = {"Authorization": f"Bearer {made['token']}"}
    error = error_of(httpx.post(server.url + made["path"], json={"a": 1}, headers=auth, timeout=30), 400,
                     "template_failed")
    assert "has no attribute 'missing'" in error["message"] and error["detail"]["line"] == 2
    escape = make(http, server, '{"event": "x.y", "resource": {"id": {{ "".__class__ | string | tojson }}}}')
    error = error_of(httpx.post(server.url + escape["path"], json={}, timeout=30,
                                headers={"Authorization": f"Bearer {escape['token']}"}), 400, "template_failed")
    assert "unsafe" in error["message"] and "<class" not in error["message"]
    forged = make(http, server, '{"event": "flow-run.state-changed", "resource": {"id": "flow-run/x"}}')
    error = error_of(httpx.post(server.url + forged["path"], json={}, timeout=30,
                                headers={"Authorization": f"Bearer {forged['token']}"}), 400, "not_an_event")
    assert "reserved for plait" in error["message"]


@pytest.mark.slow
def test_secrets_the_server_knows_are_masked_in_the_event(server: ServerHandle, http: httpx.Client) -> None:
    secret = f"hook-secret-{uuid.uuid4().hex}"
    block = HookCredentials(user="etl", password=SecretStr(secret))
    saved = http.put(f"/blocks/documents/hook-credentials/{unique('creds')}", json=block_payload(block),
                     headers=server.headers("run"))
    assert saved.status_code in (200, 201), saved.text
    made = make(http, server, '{"event": "x.leaked", "resource": {"id": "r", "who": {{ body.who | tojson }}}, '
                              '"payload": {{ body | tojson }}}')
    answer = httpx.post(server.url + made["path"], json={"password": secret, "who": secret, "note": f"pw={secret}"},
                        headers={"Authorization": f"Bearer {made['token']}"}, timeout=30)
    assert answer.status_code == 202, answer.text
    event = event_of(http, server, answer.json()["seq"])
    assert secret not in json.dumps(event)
    assert event["payload"] == {"password": "***", "who": "***", "note": "pw=***"} and event["labels"]["who"] == "***"


@pytest.mark.slow
def test_management_needs_admin_and_never_shows_the_token(server: ServerHandle, http: httpx.Client) -> None:
    body = {"name": unique("hook")}
    error_of(http.post("/webhooks", json=body), 401)
    error_of(http.post("/webhooks", json=body, headers=server.headers("run")), 403)
    made = make(http, server, name=body["name"])
    assert made["webhook"]["template"] == _webhooks.DEFAULT_TEMPLATE
    error_of(http.post("/webhooks", json=body, headers=server.headers("admin")), 409, "webhook_exists")
    listed = http.get("/webhooks", headers=server.headers("read")).json()
    assert body["name"] in [w["name"] for w in listed["items"]] and listed["next_cursor"] is None
    assert made["token"] not in json.dumps(listed)
    name = body["name"]
    for method, path in [("PATCH", f"/webhooks/by-name/{name}"), ("POST", f"/webhooks/by-name/{name}/rotate"),
                         ("DELETE", f"/webhooks/by-name/{name}")]:
        error_of(http.request(method, path, json={} if method == "PATCH" else None, headers=server.headers("read")),
                 403)
    rotated = http.post(f"/webhooks/by-name/{name}/rotate", headers=server.headers("admin"))
    assert rotated.status_code == 200 and rotated.json()["token"] != made["token"]
    old = httpx.post(server.url + made["path"], json={}, headers={"Authorization": f"Bearer {made['token']}"},
                     timeout=30)
    error_of(old, 401)
    new = httpx.post(server.url + made["path"], json={}, timeout=30,
                     headers={"Authorization": f"Bearer {rotated.json()['token']}"})
    assert new.status_code == 202
    error_of(http.get("/webhooks/by-name/nope", headers=server.headers("read")), 404, "webhook_not_found")
    error_of(http.patch("/webhooks/by-name/nope", json={"enabled": True}, headers=server.headers("admin")), 404)
    error_of(http.post("/webhooks", json={"name": "bad name"}, headers=server.headers("admin")), 422)
    events = http.get("/events", params={"kind": "webhook.*", "resource": f"webhook/{name}"},
                      headers=server.headers("read")).json()["items"]
    assert [e["kind"] for e in events] == ["webhook.created", "webhook.updated"]


@pytest.fixture
def remote(server: ServerHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This process as a client machine of ``server`` (its own database must stay absent)."""
    unused = tmp_path / "never-created.db"
    reset_state()
    monkeypatch.setenv("PLAIT_HOME", str(tmp_path / "client-home"))
    monkeypatch.setenv("PLAIT_DATABASE_URL", f"sqlite:///{unused}")
    monkeypatch.setenv("PLAIT_API_URL", server.api_url)
    monkeypatch.setenv("PLAIT_API_KEY", server.admin_key)
    yield unused
    reset_state()
    assert not unused.exists(), "a webhook command opened a local database instead of asking the server"


@pytest.mark.slow
def test_the_functions_and_commands_go_through_the_server(server: ServerHandle, remote: Path) -> None:
    from plait.client import ApiError

    name = unique("remote")
    created = json.loads(run("create", name, "--template", GITHUB, "--json").output)
    url = created["url"]
    assert url == f"{server.url}/api/v1/webhooks/{created['webhook']['slug']}"
    shown = run("rotate", name).output
    assert f"URL    {url}" in shown or url in shown
    token = shown.split("Token")[1].split()[0]
    answer = httpx.post(url, json=PUSH, headers={"X-Plait-Webhook-Token": token}, timeout=30)
    assert answer.status_code == 202, answer.text
    assert _webhooks.get_webhook(name)["last_called_at"] is not None
    assert json.loads(run("disable", name, "--json").output)["enabled"] is False
    assert httpx.post(url, json=PUSH, headers={"X-Plait-Webhook-Token": token}, timeout=30).status_code == 404
    assert name in [w["name"] for w in _webhooks.list_webhooks()]
    with pytest.raises(ApiError) as refused:
        _webhooks.create_webhook(unique("bad"), "{{ a +")
    assert refused.value.status == 400 and "line 1, column 7" in str(refused.value)
    assert _webhooks.delete_webhook(name)["name"] == name
    result = CliRunner().invoke(webhook_group, ["inspect", name])
    assert result.exit_code == 1 and "no webhook named" in result.output
