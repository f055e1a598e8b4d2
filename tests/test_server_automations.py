"""Automations and custom events over the API, against a real uvicorn server (``plait server
start`` in a subprocess) on SQLite and PostgreSQL: saving (created / unchanged / updated),
listing, getting by name or id, enabling, disabling, deleting, the actions an automation
took, notification rules shown read-only, automations a deployment manages, scopes, error
shapes, masking, and ``POST /events`` (reserved kinds refused, labels stored, limits),
through httpx, ``PlaitClient`` and ``AsyncPlaitClient``.

One server per backend for the module; each test uses its own names.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from pydantic import Field, SecretStr

from plait.blocks import CredentialsBlock
from plait.blocks._payloads import block_payload
from plait.client import ApiAuthError, ApiError, ApiNotFound, AsyncPlaitClient, PlaitClient
from plait.testing import throwaway_postgres_database
from plait.testing._server import ServerHandle, running_server

pytestmark = pytest.mark.slow

API = "/api/v1"
NEVER = "h2-test.never-happens"  # no test emits it: the server's evaluator never fires these automations


class H2Login(CredentialsBlock):
    """A login whose password the server learns (and then masks everywhere)."""

    user: str = Field(description="Who logs in.")
    password: SecretStr = Field(description="The password.")


@dataclass
class Served:
    server: ServerHandle
    database_url: str


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("automations-server")
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{home / 'plait.db'}"
        else:
            url = stack.enter_context(throwaway_postgres_database("plait_srv_automations"))
        env = {"PLAIT_ENCRYPTION_KEY": Fernet.generate_key().decode()}
        yield Served(stack.enter_context(running_server(url, home / "server", env=env)), url)


@pytest.fixture
def server(served: Served) -> ServerHandle:
    return served.server


@pytest.fixture
def http(server: ServerHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url + API, timeout=30) as client:
        yield client


def client(server: ServerHandle, scope: str = "admin") -> PlaitClient:
    return PlaitClient(server.api_url, {"admin": server.admin_key, "run": server.run_key,
                                        "read": server.read_key}[scope], timeout=30)


def store(served: Served) -> Any:
    from plait._store.database import Database

    return Database.open(served.database_url)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def spec(name: str, **changes: Any) -> dict[str, Any]:
    return {
        "name": name,
        "description": "pause the pool when the warehouse says so",
        "trigger": {"expect": [NEVER], "match": {"team": "data"}, "threshold": 2, "within": "10m",
                    "for_each": ["team"]},
        "actions": [{"type": "pause-work-pool", "work_pool": "nowhere"}],
        **changes,
    }


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "detail"}, body
    if code is not None:
        assert body["error"]["code"] == code, body
    assert "Traceback" not in response.text
    return dict(body["error"])


def save_secret(server: ServerHandle, http: httpx.Client) -> str:
    """A secret the server now knows (a saved block's password)."""
    secret = f"pw-{uuid.uuid4().hex}"
    saved = http.put(f"/blocks/documents/h2-login/{unique('login')}", headers=server.headers("run"),
                     json=block_payload(H2Login(user="etl", password=secret)))
    assert saved.status_code in (200, 201), saved.text
    return secret


# -- automations ------------------------------------------------------------------------------------
def test_automations_are_saved_listed_got_enabled_disabled_and_deleted(server: ServerHandle,
                                                                     http: httpx.Client) -> None:
    name = unique("pause-on-alert")
    with client(server) as admin, client(server, "read") as reader:
        created = http.post("/automations", json=spec(name), headers=server.headers("admin"))
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["outcome"] == "created"
        row = body["automation"]
        assert (row["name"], row["enabled"], row["source"]) == (name, True, None)
        assert row["trigger"]["within"] == 600.0 and row["trigger"]["type"] == "event"
        assert row["trigger"]["posture"] == "reactive" and row["actions"][0]["type"] == "pause-work-pool"
        assert row["created"].endswith("+00:00")

        again = http.post("/automations", json=spec(name), headers=server.headers("admin"))
        assert again.status_code == 200 and again.json()["outcome"] == "unchanged"
        changed = admin.save_automation(spec(name, description="changed"))
        assert changed["outcome"] == "updated" and changed["automation"]["description"] == "changed"

        listed = {r["name"]: r for r in reader.list_automations()}
        assert listed[name]["id"] == row["id"]
        for key in (name, row["id"]):
            got = reader.get_automation(key)
            assert got["id"] == row["id"] and got["recent_actions"] == []

        assert admin.disable_automation(name)["enabled"] is False
        assert reader.get_automation(name)["enabled"] is False
        assert admin.enable_automation(row["id"])["enabled"] is True

        for call in (lambda: reader.save_automation(spec(name)), lambda: reader.disable_automation(name)):
            with pytest.raises(ApiAuthError) as refused:
                call()
            assert refused.value.status == 403
        with client(server, "run") as runner, pytest.raises(ApiAuthError):
            runner.delete_automation(name)  # needs admin

        deleted = admin.delete_automation(name)
        assert deleted["name"] == name
        for call in (lambda: admin.delete_automation(name), lambda: reader.get_automation(name),
                     lambda: admin.enable_automation(name), lambda: reader.automation_actions(name)):
            with pytest.raises(ApiNotFound):
                call()
    missing = assert_error(http.get(f"/automations/{name}", headers=server.headers("read")), 404,
                           "automation_not_found")
    assert name in missing["message"] and "plait automation ls" in missing["message"]


def test_a_name_with_a_slash_is_one_automation(server: ServerHandle, http: httpx.Client) -> None:
    name = f"{unique('team')}/alerts"
    with client(server) as admin:
        admin.save_automation(spec(name))
        assert admin.get_automation(name)["name"] == name
        assert admin.disable_automation(name)["enabled"] is False
        assert admin.automation_actions(name) == []
    for path in (f"/automations/{name.replace('/', '%2F')}", f"/automations/{name}"):
        got = http.get(path, headers=server.headers("read"))
        assert got.status_code == 200 and got.json()["name"] == name, got.text
    assert http.get(f"/automations/{name}/actions", headers=server.headers("read")).json() == {
        "items": [], "next_cursor": None}
    assert http.delete(f"/automations/{name}", headers=server.headers("admin")).json()["name"] == name


def test_invalid_automations_are_refused_naming_the_field(server: ServerHandle, http: httpx.Client) -> None:
    headers = server.headers("admin")
    bad_window = assert_error(http.post("/automations", json=spec(unique("x"), trigger={"within": "soon"}),
                                        headers=headers), 422, "invalid_automation")
    assert "trigger.within" in bad_window["message"]
    bad_action = assert_error(http.post("/automations", json=spec(unique("x"), actions=[{"type": "explode"}]),
                                        headers=headers), 422, "invalid_automation")
    assert "actions.0.type" in bad_action["message"] and "run-deployment" in bad_action["message"]
    no_actions = assert_error(http.post("/automations", json=spec(unique("x"), actions=[]), headers=headers), 422)
    assert "actions" in no_actions["message"]
    assert_error(http.post("/automations", json=["not", "an", "object"], headers=headers), 422)
    assert_error(http.post("/automations", json=spec("a\x00b"), headers=headers), 422)
    assert_error(http.get("/automations/a%00b", headers=server.headers("read")), 422)
    assert_error(http.get("/automations/x/actions", params={"status": "exploded"}, headers=headers), 422)
    assert_error(http.post("/automations", json=spec(unique("x"))), 401)
    with client(server) as admin, pytest.raises(ApiError) as refused:
        admin.save_automation(spec(unique("x"), trigger={"posture": "proactive", "expect": [NEVER]}))
    assert refused.value.status == 422 and "window" in refused.value.message


def test_a_bad_template_in_an_action_is_refused_with_its_position(server: ServerHandle, http: httpx.Client) -> None:
    pytest.importorskip("plait.automations._templates")
    action = {"type": "call-webhook", "url": "http://127.0.0.1:9/x", "body": "line one\n{{ event.kind }"}
    error = assert_error(http.post("/automations", json=spec(unique("tpl"), actions=[action]),
                                   headers=server.headers("admin")), 422, "invalid_automation")
    assert "actions.0.body" in error["message"] and "line 2" in error["message"]


def test_answers_mask_secrets_and_webhook_credentials(served: Served, http: httpx.Client) -> None:
    server = served.server
    secret = save_secret(server, http)
    name = unique("masked")
    pasted = {"type": "call-webhook", "url": "https://hooks.example.com/in?token=tok-12345678",
              "headers": {"Authorization": "Bearer sk-live-abcdef"}}
    refused = assert_error(http.post("/automations", json=spec(name, actions=[pasted]),
                                     headers=server.headers("admin")), 422, "invalid_automation")
    assert "actions.0.headers.Authorization" in refused["message"] and "actions.0.url" in refused["message"]
    assert "sk-live-abcdef" not in str(refused) and "tok-12345678" not in str(refused)
    action = {"type": "call-webhook", "url": "https://hooks.example.com/in?token={{ secret('hook') }}",
              "headers": {"Authorization": "Bearer {{ secret('api') }}", "X-Team": "data"}, "body": f"pw={secret}"}
    with client(server) as admin:
        saved = admin.save_automation(spec(name, description=f"uses {secret}", actions=[action]))
    for answer in (saved["automation"], http.get(f"/automations/{name}", headers=server.headers("read")).json()):
        text = str(answer)
        assert secret not in text
        shown = answer["actions"][0]
        assert shown["headers"] == {"Authorization": "***", "X-Team": "data"}
        assert shown["url"] == "https://hooks.example.com/in?token=***"
        assert answer["description"] == "uses ***"
    # the store keeps the templates that read secret blocks, and no secret the server knows
    from plait._store.automations import get_automation

    stored = get_automation(store(served), name)
    assert stored["actions"][0]["headers"]["Authorization"] == "Bearer {{ secret('api') }}"
    assert stored["actions"][0]["body"] == "pw=***" and stored["description"] == "uses ***"


def test_the_actions_an_automation_took_are_listed_newest_first(served: Served, http: httpx.Client) -> None:
    from plait._store.automations import commit_pass

    server = served.server
    secret = save_secret(server, http)
    name = unique("acted")
    with client(server) as admin:
        row = admin.save_automation(spec(name))["automation"]
    db = store(served)
    base = datetime.now(UTC)
    firing = str(uuid.uuid4())
    actions = []
    for position, (status, error) in enumerate([("done", None), ("failed", f"the pool said {secret}")]):
        actions.append({
            "id": str(uuid.uuid4()), "automation_id": row["id"], "automation_name": name, "firing_id": firing,
            "position": position, "action": {"type": "pause-work-pool", "work_pool": "nowhere"},
            "context": {"event": {"id": "ev-1", "kind": NEVER}}, "chain": [], "flow_run_id": None,
            "status": status, "started": base, "finished": base + timedelta(seconds=1), "error": error,
            "result": {"paused": True} if status == "done" else None,
        })
    assert commit_pass(db, unique("h2-test-cursor"), seen=None, seq=0, actions=actions) is not None

    with client(server, "read") as reader:
        listed = reader.automation_actions(name)
        assert [a["status"] for a in listed] == ["failed", "done"]
        failed = listed[0]
        assert failed["error"] == "the pool said ***" and secret not in str(listed)
        assert (failed["type"], failed["event_kind"], failed["automation_name"]) == ("pause-work-pool", NEVER, name)
        assert [a["status"] for a in reader.automation_actions(name, status="done")] == ["done"]
        assert len(reader.automation_actions(name, limit=1)) == 1
        recent = reader.get_automation(row["id"])["recent_actions"]
        assert [a["id"] for a in recent] == [a["id"] for a in listed]
    with client(server) as admin:
        admin.delete_automation(name)
    # a deleted automation's actions are still found by its name
    kept = http.get(f"/automations/{name}/actions", headers=server.headers("read"))
    assert kept.status_code == 200 and len(kept.json()["items"]) == 2


def test_notification_rules_are_listed_as_read_only_automations(served: Served, http: httpx.Client) -> None:
    from plait._store.rules import NotificationRule, insert_rule

    server = served.server
    rule_name = unique("ops-alerts")
    rule_id = str(uuid.uuid4())
    insert_rule(NotificationRule(id=rule_id, name=rule_name, block="slack-webhook/ops", flow_name="etl-*",
                                 tags=["prod"], states=["FAILED", "CRASHED"], enabled=True,
                                 created=datetime.now(UTC)), store(served))
    with client(server, "read") as reader:
        listed = {r["name"]: r for r in reader.list_automations()}
        shown = listed[rule_name]
        assert (shown["id"], shown["source"], shown["read_only"], shown["enabled"]) == (
            rule_id, "notification-rule", True, True)
        assert shown["trigger"]["expect"] == ["flow-run.failed", "flow-run.crashed"]
        assert shown["trigger"]["match"] == {"payload.flow_name": "etl-*"}
        assert shown["actions"][0]["type"] == "send-notification"
        assert shown["actions"][0]["block"] == "slack-webhook/ops"
        assert "prod" in shown["description"]
        assert reader.get_automation(rule_name)["recent_actions"] == []
        assert reader.get_automation(rule_id)["name"] == rule_name
        assert reader.automation_actions(rule_name) == []
    for method, path in (("POST", f"/automations/{rule_name}/disable"), ("POST", f"/automations/{rule_id}/enable"),
                         ("DELETE", f"/automations/{rule_name}")):
        error = assert_error(http.request(method, path, headers=server.headers("admin")), 409, "automation_read_only")
        assert "notification rule" in error["message"] and "plait notification" in error["message"]


def test_an_automation_a_deployment_manages_is_only_enabled_or_disabled_here(served: Served,
                                                                           http: httpx.Client) -> None:
    from plait._store.automations import replace_source_automations
    from plait.automations import parse_automation

    server = served.server
    flow = unique("etl")
    with client(server) as admin:
        deployment = admin.save_deployment({"flow_name": flow, "name": "nightly",
                                            "entrypoint": "/srv/flows/etl.py:etl"})["deployment"]
        name = unique("after-etl")
        replace_source_automations(store(served), f"deployment:{deployment['id']}",
                                   [parse_automation(spec(name)).to_json()])
        assert admin.get_automation(name)["source"] == f"deployment:{deployment['id']}"
        assert admin.disable_automation(name)["enabled"] is False
        assert admin.enable_automation(name)["enabled"] is True
    for response in (http.post("/automations", json=spec(name), headers=server.headers("admin")),
                     http.delete(f"/automations/{name}", headers=server.headers("admin"))):
        error = assert_error(response, 409, "automation_read_only")
        assert f"{flow}/nightly" in error["message"] and "plait deploy" in error["message"]


def test_the_async_client_manages_automations(server: ServerHandle) -> None:
    name = unique("async")

    async def main() -> None:
        async with AsyncPlaitClient(server.api_url, server.admin_key, timeout=30) as admin:
            saved = await admin.save_automation(spec(name))
            assert saved["outcome"] == "created"
            assert name in {r["name"] for r in await admin.list_automations()}
            assert (await admin.get_automation(name))["id"] == saved["automation"]["id"]
            assert (await admin.disable_automation(name))["enabled"] is False
            assert (await admin.enable_automation(name))["enabled"] is True
            assert await admin.automation_actions(name, status="failed", limit=5) == []
            assert (await admin.delete_automation(name))["name"] == name
            with pytest.raises(ApiNotFound):
                await admin.get_automation(name)

    asyncio.run(main())


# -- custom events ----------------------------------------------------------------------------------
def test_an_event_of_ones_own_is_stored_with_its_labels(server: ServerHandle, http: httpx.Client) -> None:
    table = unique("analytics.orders")
    with client(server, "run") as runner, client(server, "read") as reader:
        stored = runner.emit_event("warehouse.table.refreshed", {"id": table, "team": "data"}, {"rows": 1200})
        assert stored["kind"] == "warehouse.table.refreshed" and stored["resource"] == table
        assert stored["labels"] == {"team": "data"} and stored["payload"] == {"rows": 1200}
        assert isinstance(stored["seq"], int) and stored["occurred"].endswith("+00:00")
        page = reader.events(kind="warehouse.table.refreshed", resource=table)
        assert [e.seq for e in page.items] == [stored["seq"]]
        listed = http.get("/events", params={"resource": table}, headers=server.headers("read")).json()["items"]
        assert listed[0]["labels"] == {"team": "data"}

        when = datetime(2024, 6, 1, 3, 0, tzinfo=UTC)
        past = runner.emit_event("warehouse.table.refreshed", {"id": table}, occurred=when)
        assert past["occurred"].startswith("2024-06-01T03:00:00") and past.get("labels") is None
        with pytest.raises(ApiAuthError):
            reader.emit_event("warehouse.table.refreshed", {"id": table})

    async def emit() -> dict[str, Any]:
        async with AsyncPlaitClient(server.api_url, server.run_key, timeout=30) as runner:
            return await runner.emit_event("warehouse.table.checked", {"id": table}, {"ok": True})

    assert asyncio.run(emit())["kind"] == "warehouse.table.checked"


@pytest.mark.parametrize("kind", [
    "flow-run.state-changed", "flow-run.completed", "task-run.failed", "deployment.paused", "work-pool.deleted",
    "block.saved", "logs.written", "api-key.created", "concurrency-limit.reset", "automation.triggered",
    "automation.action.executed", "webhook.received",
])
def test_plaits_own_kinds_cannot_be_forged(server: ServerHandle, http: httpx.Client, kind: str) -> None:
    response = http.post("/events", json={"event": kind, "resource": {"id": "flow-run/x"}},
                         headers=server.headers("admin"))
    error = assert_error(response, 400, "reserved_event_kind")
    assert "reserved for plait" in error["message"] and kind in error["message"]


def test_bad_events_are_refused_naming_the_problem(served: Served, http: httpx.Client) -> None:
    server = served.server
    headers = server.headers("run")

    def post(body: Any) -> httpx.Response:
        return http.post("/events", json=body, headers=headers)

    for body, where in [
        ({"event": "Warehouse.Refreshed", "resource": {"id": "t"}}, "event"),
        ({"event": "refreshed", "resource": {"id": "t"}}, "event"),
        ({"event": "warehouse.refreshed", "resource": {}}, "id"),
        ({"event": "warehouse.refreshed", "resource": {"id": ""}}, "id"),
        ({"event": "warehouse.refreshed", "resource": {"id": "t", "rows": 3}}, "resource"),
        ({"event": "warehouse.refreshed", "resource": {"id": "t", "bad key!": "x"}}, "bad key!"),
        ({"event": "warehouse.refreshed", "resource": {"id": "t"}, "payload": [1]}, "payload"),
        ({"event": "warehouse.refreshed", "resource": {"id": "t"}, "payload": {"a": "x\x00y"}}, "payload"),
        ({"event": "warehouse.refreshed", "resource": {"id": "t"}, "surprise": 1}, "surprise"),
        ({"event": "warehouse.refreshed", "resource": {"id": "t"},
          "occurred": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}, "occurred"),
    ]:
        error = assert_error(post(body), 422)
        assert where in str(error), (body, error)
    big = assert_error(post({"event": "warehouse.refreshed", "resource": {"id": "t"},
                             "payload": {"blob": "x" * (64 * 1024)}}), 413, "event_too_large")
    assert "64" in big["message"] or "65536" in big["message"]
    assert_error(http.post("/events", json={"event": "warehouse.refreshed", "resource": {"id": "t"}}), 401)


def test_secrets_in_an_events_payload_and_labels_are_masked_before_storing(served: Served,
                                                                          http: httpx.Client) -> None:
    from plait._store.events import list_events

    server = served.server
    secret = save_secret(server, http)
    resource = unique("warehouse")
    with client(server, "run") as runner:
        stored = runner.emit_event("warehouse.login.used", {"id": resource, "dsn": f"pw={secret}"},
                                   {"note": f"logged in with {secret}", "nested": [{"pw": secret}]})
    assert secret not in str(stored)
    assert stored["payload"] == {"note": "logged in with ***", "nested": [{"pw": "***"}]}
    assert stored["labels"] == {"dsn": "pw=***"}
    rows = list_events(store(served), resource=resource)["items"]
    assert len(rows) == 1 and secret not in str(rows)


# -- webhooks through the clients (the routes are plait.server.routes.webhooks') -------------------
def test_the_clients_manage_webhooks(server: ServerHandle) -> None:
    name = unique("hook")
    with client(server) as admin, client(server, "read") as reader:
        made = admin.create_webhook(name, description="pushes")
        token, path = made["token"], made["path"]
        assert made["webhook"]["name"] == name and path == made["webhook"]["path"]
        assert token not in str(reader.list_webhooks()) and token not in str(reader.get_webhook(name))
        assert name in {w["name"] for w in reader.list_webhooks()}
        assert admin.update_webhook(name, enabled=False)["enabled"] is False
        rotated = admin.rotate_webhook(name)
        assert rotated["token"] != token and rotated["webhook"]["name"] == name
        with pytest.raises(ApiAuthError):
            reader.rotate_webhook(name)

    async def main() -> None:
        async with AsyncPlaitClient(server.api_url, server.admin_key, timeout=30) as admin:
            assert (await admin.get_webhook(name))["enabled"] is False
            assert (await admin.update_webhook(name, enabled=True))["enabled"] is True
            assert name in {w["name"] for w in await admin.list_webhooks()}
            assert (await admin.delete_webhook(name))["name"] == name
            with pytest.raises(ApiNotFound):
                await admin.get_webhook(name)

    asyncio.run(main())
