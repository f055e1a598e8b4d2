"""Blocks and configuration through a real plait server: block types and schemas, saving by
schema (the server has no class for the test's block types), secrets masked unless a key
with scope run asks, nested blocks, deleting, the rows shared with ``Block.save``, bad
input, notification rules, the collections registry and the plugin diagnostics. One server
per database (SQLite, PostgreSQL) for the whole module."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from pydantic import Field, SecretBytes, SecretStr

from plait.blocks import Block, CredentialsBlock, SecretDict
from plait.blocks._payloads import block_from_document, block_payload, mark_saved
from plait.testing import reset_state, throwaway_postgres_database
from plait.testing._server import running_server

pytestmark = pytest.mark.slow


# -- block types the server has no class for ---------------------------------------------------------
class ApiCredentials(CredentialsBlock):
    """Credentials of the API test service."""

    user: str = Field(description="Who logs in.")
    password: SecretStr = Field(description="The user's password.")
    certificate: SecretBytes | None = Field(default=None, description="A client certificate.")
    options: SecretDict | None = Field(default=None, description="Extra connection arguments.")


class ApiWarehouse(Block):
    """A warehouse the flows use."""

    host: str = Field(description="Host name.")
    port: int = Field(default=5432, description="TCP port.")
    credentials: ApiCredentials = Field(description="How to log in.")
    replicas: list[ApiCredentials] = Field(default_factory=list, description="Read replicas' logins.")


def canary(label: str = "canary") -> str:
    return f"{label}-{uuid.uuid4().hex}"


def unique(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}"


def warehouse(secret: str, **kwargs: Any) -> ApiWarehouse:
    return ApiWarehouse(
        host=kwargs.pop("host", "db.example.com"),
        credentials=ApiCredentials(user="etl", password=secret, certificate=secret.encode() + b"\x00\xff",
                                   options={"token": secret + "-opt"}),
        **kwargs,
    )


# -- the server ---------------------------------------------------------------------------------------
@dataclass
class Api:
    """Calls to one server under /api/v1 with the key of a scope (None: no key)."""

    client: httpx.Client
    keys: dict[str, str]

    def call(self, method: str, path: str, *, key: str | None = "admin", **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if key:
            headers["Authorization"] = f"Bearer {self.keys[key]}"
        return self.client.request(method, "/api/v1" + path, headers=headers, **kwargs)

    def put_block(self, slug: str, name: str, block: Block, key: str = "run", **params: Any) -> httpx.Response:
        return self.call("PUT", f"/blocks/documents/{slug}/{name}", key=key, json=block_payload(block), params=params)


@dataclass
class Served:
    api: Api
    database_url: str
    encryption_key: str


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("server-home")
    key = Fernet.generate_key().decode()
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{home / 'plait.db'}"
        else:
            url = stack.enter_context(throwaway_postgres_database("plait_srv_blocks"))
        handle = stack.enter_context(running_server(url, home, env={"PLAIT_ENCRYPTION_KEY": key}))
        client = stack.enter_context(httpx.Client(base_url=handle.url, timeout=60))
        keys = {"admin": handle.admin_key, "run": handle.run_key, "read": handle.read_key}
        yield Served(Api(client, keys), url, key)


@pytest.fixture
def api(served: Served) -> Api:
    return served.api


@pytest.fixture
def local(served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    """This process on the server's database with the server's key (as `plait` on the server host)."""
    reset_state()
    monkeypatch.setenv("PLAIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PLAIT_DATABASE_URL", served.database_url)
    monkeypatch.setenv("PLAIT_ENCRYPTION_KEY", served.encryption_key)
    yield served
    reset_state()


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "detail"} <= set(body["error"]), body
    error: dict[str, Any] = body["error"]
    return error


def stored_rows(database_url: str, name: str) -> list[dict[str, Any]]:
    """The raw block_documents rows of ``name`` and of every anonymous document."""
    from sqlalchemy import create_engine, select

    from plait._store.models import BLOCK_DOCUMENTS

    table = BLOCK_DOCUMENTS
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(table.c.name, table.c.data)).all()  # type: ignore[attr-defined]
    finally:
        engine.dispose()
    return [{"name": r.name, "data": r.data} for r in rows if r.name == name or r.name.startswith("anonymous-")]


# -- saving and reading ---------------------------------------------------------------------------------
def test_a_block_saved_by_schema_reads_back_masked_with_its_nested_blocks_inline(api: Api) -> None:
    secret, name = canary(), unique("wh")
    saved = api.put_block("api-warehouse", name, warehouse(secret))
    assert saved.status_code == 201, saved.text
    assert secret not in saved.text
    for response in (saved, api.call("GET", f"/blocks/documents/api-warehouse/{name}", key="read")):
        assert response.status_code in (200, 201), response.text
        assert secret not in response.text and secret[:20] not in response.text
        doc = response.json()
        assert (doc["slug"], doc["name"], doc["type_name"], doc["secrets_included"]) == (
            "api-warehouse", name, "Api Warehouse", False
        )
        assert doc["schema_checksum"] == ApiWarehouse.schema_checksum()
        assert doc["data"]["host"] == "db.example.com" and doc["data"]["port"] == 5432
        nested = doc["data"]["credentials"]["$block"]
        assert nested["slug"] == "api-credentials" and nested["name"].startswith("anonymous-")
        assert nested["data"] == {"user": "etl", "password": "***", "certificate": "***", "options": "***"}
        assert doc["data"]["replicas"] == []


def test_secrets_are_answered_only_to_a_key_with_scope_run_that_asks(api: Api) -> None:
    secret, name = canary(), unique("wh")
    block = warehouse(secret, replicas=[ApiCredentials(user="ro", password=secret + "-replica")])
    assert api.put_block("api-warehouse", name, block).status_code == 201
    path = f"/blocks/documents/api-warehouse/{name}"

    refused = api.call("GET", path, key="read", params={"include_secrets": "true"})
    assert refused.status_code == 403, refused.text
    assert error_of(refused)["code"] == "forbidden" and "scope 'run'" in error_of(refused)["message"]
    assert secret not in refused.text
    assert api.call("GET", path, key=None, params={"include_secrets": "true"}).status_code == 401

    answered = api.call("GET", path, key="run", params={"include_secrets": "true"})
    assert answered.status_code == 200, answered.text
    assert answered.headers["cache-control"] == "no-store"
    doc = answered.json()
    assert doc["secrets_included"] is True
    creds = doc["data"]["credentials"]["$block"]["data"]
    assert creds["password"] == secret and creds["options"] == {"token": secret + "-opt"}
    assert doc["data"]["replicas"][0]["$block"]["data"]["password"] == secret + "-replica"
    # what a remote Block.load builds from it is the block that was saved, bytes included
    loaded = block_from_document(doc, ApiWarehouse)
    assert loaded == block
    assert loaded.credentials.certificate is not None
    assert loaded.credentials.certificate.get_secret_value() == secret.encode() + b"\x00\xff"
    assert loaded._document_name == name and loaded.credentials._document_name.startswith("anonymous-")


def test_a_taken_name_needs_overwrite_and_replacing_drops_the_old_nested_documents(api: Api) -> None:
    name = unique("wh")
    assert api.put_block("api-warehouse", name, warehouse(canary())).status_code == 201

    def anonymous() -> set[str]:
        listed = api.call("GET", "/blocks/documents", params={"type": "api-credentials", "include_anonymous": "true"})
        return {e["name"] for e in listed.json()["items"] if e["name"].startswith("anonymous-")}

    before = anonymous()
    taken = api.put_block("api-warehouse", name, warehouse(canary(), host="other"))
    assert taken.status_code == 409 and error_of(taken)["code"] == "block_exists"
    assert "overwrite=true" in error_of(taken)["message"]

    replaced = api.put_block("api-warehouse", name, warehouse(canary(), host="other"), overwrite="true")
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["data"]["host"] == "other"
    after = anonymous()
    assert len(after) == len(before) and after != before  # the old nested credentials went with it
    assert api.call("GET", f"/blocks/documents/api-warehouse/{name}").json()["data"]["host"] == "other"


def test_a_replacement_may_keep_a_stored_secret_it_never_saw(api: Api) -> None:
    secret, name = canary(), unique("creds")
    path = f"/blocks/documents/api-credentials/{name}"
    first = block_payload(ApiCredentials(user="etl", password=secret, options={"token": secret + "-opt"}))
    assert api.call("PUT", path, key="run", json=first).status_code == 201
    # what a form that was shown only "***" sends back: the user changed, the secrets kept
    edited = {**first, "data": {**first["data"], "user": "loader", "password": {"$keep": True},
                                "options": {"$keep": True}}}
    saved = api.call("PUT", path, key="run", json=edited, params={"overwrite": "true"})
    assert saved.status_code == 200, saved.text
    assert secret not in saved.text
    stored = api.call("GET", path, key="run", params={"include_secrets": "true"}).json()["data"]
    assert stored["user"] == "loader" and stored["password"] == secret and stored["options"] == {"token": secret + "-opt"}
    # only a secret the saved block holds can be kept
    for field, params in (("user", {"overwrite": "true"}), ("certificate", {"overwrite": "true"})):
        refused = api.call("PUT", path, key="run", json={**first, "data": {**first["data"], field: {"$keep": True}}},
                           params=params)
        assert refused.status_code == 422, refused.text
        assert f"data.{field}" in error_of(refused)["message"] and "$keep" in error_of(refused)["message"]
    fresh = api.call("PUT", f"/blocks/documents/api-credentials/{unique('new')}", key="run",
                     json={**first, "data": {**first["data"], "password": {"$keep": True}}})
    assert fresh.status_code == 422 and "send its value" in error_of(fresh)["message"]


def test_nested_saved_blocks_are_referenced_and_cannot_be_deleted_while_used(api: Api) -> None:
    creds_name, wh_name, secret = unique("login"), unique("wh"), canary()
    creds = ApiCredentials(user="shared", password=secret)
    saved = api.put_block("api-credentials", creds_name, creds)
    assert saved.status_code == 201
    mark_saved(creds, saved.json())
    assert creds._document_name == creds_name

    short_form = block_payload(ApiWarehouse(host="h", credentials=creds))
    short_form["data"]["replicas"] = [{"$block": f"api-credentials/{creds_name}"}]
    response = api.call("PUT", f"/blocks/documents/api-warehouse/{wh_name}", key="run", json=short_form)
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    assert data["credentials"]["$block"]["name"] == creds_name  # by reference, not a copy
    assert data["credentials"]["$block"]["id"] == data["replicas"][0]["$block"]["id"] == saved.json()["id"]

    in_use = api.call("DELETE", f"/blocks/documents/api-credentials/{creds_name}")
    assert in_use.status_code == 409 and error_of(in_use)["code"] == "block_in_use"
    assert f"api-warehouse/{wh_name}" in error_of(in_use)["message"]
    for scope in ("read", "run"):
        assert api.call("DELETE", f"/blocks/documents/api-warehouse/{wh_name}", key=scope).status_code == 403

    deleted = api.call("DELETE", f"/blocks/documents/api-warehouse/{wh_name}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["deleted"]["name"] == wh_name and deleted.json()["deleted"]["slug"] == "api-warehouse"
    assert api.call("DELETE", f"/blocks/documents/api-credentials/{creds_name}").status_code == 200
    gone = api.call("GET", f"/blocks/documents/api-credentials/{creds_name}", key="read")
    # the last block of a type not installed on the server takes its type with it
    assert gone.status_code == 404 and error_of(gone)["code"] in ("block_not_found", "block_type_not_found")


def test_the_server_writes_the_rows_block_save_writes(api: Api, local: Served) -> None:
    # saved through the API, loaded from the database with the class
    secret, name = canary(), unique("wh")
    block = warehouse(secret)
    assert api.put_block("api-warehouse", name, block).status_code == 201
    assert ApiWarehouse.load(name) == block
    for row in stored_rows(local.database_url, name):
        assert secret not in json.dumps(row["data"])  # encrypted at rest
    # saved with Block.save, read through the API
    other_secret, other = canary(), unique("wh")
    warehouse(other_secret, port=6543).save(other)
    masked = api.call("GET", f"/blocks/documents/api-warehouse/{other}", key="read")
    assert masked.status_code == 200 and other_secret not in masked.text
    assert masked.json()["data"]["port"] == 6543
    revealed = api.call("GET", f"/blocks/documents/api-warehouse/{other}", key="run", params={"include_secrets": "1"})
    assert block_from_document(revealed.json(), ApiWarehouse) == ApiWarehouse.load(other)


# -- applying several blocks at once (what `plait block apply` sends) ----------------------------------------
def _apply_item(name: str, block: Block) -> dict[str, Any]:
    return {**block_payload(block), "name": name}


def test_apply_saves_blocks_in_order_in_one_request_and_says_created_or_updated(api: Api) -> None:
    creds_name, wh_name, secret = unique("login"), unique("wh"), canary()
    creds = ApiCredentials(user="etl", password=secret)
    creds._document_name = creds_name  # as a blocks file's earlier block: nested by its name
    body = {"blocks": [_apply_item(creds_name, creds), _apply_item(wh_name, ApiWarehouse(host="h", credentials=creds))]}
    response = api.call("POST", "/blocks/apply", key="run", json=body)
    assert response.status_code == 200, response.text
    assert secret not in response.text
    items = response.json()["items"]
    assert [(i["action"], i["document"]["slug"], i["document"]["name"]) for i in items] == [
        ("created", "api-credentials", creds_name), ("created", "api-warehouse", wh_name)]
    assert items[0]["document"]["data"]["password"] == "***" and items[0]["document"]["secrets_included"] is False
    # the warehouse references the credentials saved just before it, in the same request
    assert items[1]["document"]["data"]["credentials"]["$block"]["id"] == items[0]["document"]["id"]

    body["blocks"][1] = _apply_item(wh_name, ApiWarehouse(host="other", credentials=creds))
    again = api.call("POST", "/blocks/apply", key="run", json=body)
    assert again.status_code == 200, again.text
    assert [i["action"] for i in again.json()["items"]] == ["updated", "updated"]
    revealed = api.call("GET", f"/blocks/documents/api-warehouse/{wh_name}", key="run",
                        params={"include_secrets": "true"}).json()
    assert revealed["data"]["host"] == "other"
    assert revealed["data"]["credentials"]["$block"]["data"]["password"] == secret
    assert api.call("POST", "/blocks/apply", key="run", json={"blocks": []}).json() == {"items": []}


def test_apply_writes_nothing_when_one_block_cannot_be_saved(api: Api) -> None:
    first, second, secret = unique("first"), unique("second"), canary()
    broken = _without(_payload(secret), "host")
    for blocks in (
        [_apply_item(first, warehouse(secret)), {**broken, "name": second}],  # refused before the transaction
        [_apply_item(first, warehouse(secret)),  # refused inside it: the reference is to no saved block
         {**_payload(secret), "name": second, "data": {**_payload(secret)["data"],
                                                       "credentials": {"$block": "api-credentials/nope"}}}],
    ):
        response = api.call("POST", "/blocks/apply", key="run", json={"blocks": blocks})
        assert response.status_code == 422, response.text
        error = error_of(response)
        assert error["code"] == "invalid_block" and error["message"].startswith(f"blocks[1] 'api-warehouse/{second}': ")
        assert secret not in response.text
        for name in (first, second):  # neither block was saved
            assert api.call("GET", f"/blocks/documents/api-warehouse/{name}").status_code == 404


def test_apply_refuses_a_block_listed_twice_a_missing_slug_and_a_read_key(api: Api) -> None:
    name, secret = unique("wh"), canary()
    twice = api.call("POST", "/blocks/apply", key="run",
                     json={"blocks": [_apply_item(name, warehouse(secret)), _apply_item(name, warehouse(secret))]})
    assert twice.status_code == 422 and "listed twice (first as blocks[0])" in error_of(twice)["message"]
    no_slug = _apply_item(name, warehouse(secret))
    no_slug["type"].pop("slug")
    missing = api.call("POST", "/blocks/apply", key="run", json={"blocks": [no_slug]})
    assert missing.status_code == 422 and "type.slug is required" in error_of(missing)["message"]
    bad_name = api.call("POST", "/blocks/apply", key="run", json={"blocks": [_apply_item("Not A Name", warehouse(secret))]})
    assert bad_name.status_code == 422 and "blocks[0]" in error_of(bad_name)["message"]
    read = api.call("POST", "/blocks/apply", key="read", json={"blocks": [_apply_item(name, warehouse(secret))]})
    assert read.status_code == 403 and "scope 'run'" in error_of(read)["message"]
    for response in (twice, missing, bad_name, read):
        assert secret not in response.text
    assert api.call("GET", f"/blocks/documents/api-warehouse/{name}").status_code == 404


# -- types and listings ---------------------------------------------------------------------------------
def test_block_types_are_those_installed_on_the_server_and_those_of_saved_blocks(api: Api) -> None:
    assert api.put_block("api-warehouse", unique("wh"), warehouse(canary())).status_code == 201
    listed = api.call("GET", "/blocks/types", key="read")
    assert listed.status_code == 200, listed.text
    types = {t["slug"]: t for t in listed.json()["items"]}
    assert types["webhook"]["installed"] is True and "notify" in types["webhook"]["capabilities"]
    assert types["webhook"]["plugin"] == "plait_blocks"
    mine = types["api-warehouse"]
    assert mine["installed"] is False and mine["name"] == "Api Warehouse"
    assert mine["secret_fields"] == ApiWarehouse.secret_fields()
    assert mine["description"] == "A warehouse the flows use."

    one = api.call("GET", "/blocks/types/api-warehouse", key="read").json()
    assert one["json_schema"] == ApiWarehouse.model_json_schema()
    assert one["schema_checksum"] == ApiWarehouse.schema_checksum()
    webhook = api.call("GET", "/blocks/types/webhook", key="read").json()
    assert "url" in webhook["json_schema"]["properties"] and webhook["secret_fields"] == ["url", "headers"]

    missing = api.call("GET", "/blocks/types/api-warehous", key="read")
    assert missing.status_code == 404 and error_of(missing)["code"] == "block_type_not_found"
    assert "api-warehouse" in error_of(missing)["message"]  # did you mean


def test_listing_documents_filters_by_type_and_leaves_nested_ones_out(api: Api) -> None:
    name = unique("wh")
    assert api.put_block("api-warehouse", name, warehouse(canary())).status_code == 201
    everything = api.call("GET", "/blocks/documents", key="read").json()["items"]
    assert name in {e["name"] for e in everything}
    assert not any(e["name"].startswith("anonymous-") for e in everything)
    only = api.call("GET", "/blocks/documents", key="read", params={"type": "api-warehouse"}).json()
    assert only["next_cursor"] is None and {e["slug"] for e in only["items"]} == {"api-warehouse"}
    entry = next(e for e in only["items"] if e["name"] == name)
    assert set(entry) == {"name", "slug", "type_name", "id", "created", "updated"}
    unknown = api.call("GET", "/blocks/documents", key="read", params={"type": "no-such-type"})
    assert unknown.status_code == 404 and error_of(unknown)["code"] == "block_type_not_found"


# -- bad input --------------------------------------------------------------------------------------------
def _payload(secret: str) -> dict[str, Any]:
    return block_payload(warehouse(secret))


def _without(payload: dict[str, Any], key: str) -> dict[str, Any]:
    payload["data"].pop(key)
    return payload


BAD_PAYLOADS = [
    ("unknown field", lambda p: {**p, "data": {**p["data"], "colour": "blue"}}, "invalid_block", "no field 'colour'"),
    ("missing field", lambda p: _without(p, "host"), "invalid_block", "field 'host' is required"),
    ("checksum", lambda p: {**p, "type": {**p["type"], "schema_checksum": "sha256:00"}}, "invalid_block",
     "schema_checksum"),
    ("slug", lambda p: {**p, "type": {**p["type"], "slug": "other-type"}}, "invalid_block", "differs"),
    ("reference", lambda p: {**p, "data": {**p["data"], "credentials": {"$block": "api-credentials/nope"}}},
     "invalid_block", "no saved block 'api-credentials/nope'"),
    ("nested form", lambda p: {**p, "data": {**p["data"], "credentials": {"$block": 7}}}, "invalid_block",
     "a nested block is"),
    ("fake secret", lambda p: {**p, "data": {**p["data"], "host": {"$secret": "gAAAA"}}}, "invalid_block",
     "cannot hold it"),
    ("no schema", lambda p: {**p, "type": {k: v for k, v in p["type"].items() if k != "json_schema"}},
     "validation_error", "type.json_schema"),
    ("data type", lambda p: {**p, "data": ["a"]}, "validation_error", "'data'"),
    ("extra part", lambda p: {**p, "values": {}}, "validation_error", "values"),
]


@pytest.mark.parametrize("label, change, code, words", BAD_PAYLOADS, ids=[b[0] for b in BAD_PAYLOADS])
def test_bad_payloads_get_a_422_naming_the_problem_and_never_echo_a_secret(
    api: Api, label: str, change: Any, code: str, words: str
) -> None:
    secret = canary()
    response = api.call("PUT", f"/blocks/documents/api-warehouse/{unique('bad')}", key="run",
                        json=change(_payload(secret)))
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == code and words in error["message"], error
    assert secret not in response.text


def test_bad_names_bodies_and_ids_are_4xx(api: Api) -> None:
    secret = canary()
    bad_name = api.call("PUT", "/blocks/documents/api-warehouse/Not%20A%20Name", key="run", json=_payload(secret))
    assert bad_name.status_code == 422 and "invalid block name" in error_of(bad_name)["message"]
    bad_slug = api.call("PUT", "/blocks/documents/-x-/fine", key="run", json=_payload(secret))
    assert bad_slug.status_code == 422 and "slug" in error_of(bad_slug)["message"]
    reserved = api.call("PUT", "/blocks/documents/api-warehouse/anonymous-1", key="run", json=_payload(secret))
    assert reserved.status_code == 422 and "reserved" in error_of(reserved)["message"]
    not_json = api.call("PUT", "/blocks/documents/api-warehouse/fine", key="run", content=b"{nope",
                        headers={"Content-Type": "application/json"})
    assert not_json.status_code == 422 and error_of(not_json)["code"] == "validation_error"
    assert api.call("PUT", f"/blocks/documents/api-warehouse/{unique('r')}", key="read",
                    json=_payload(secret)).status_code == 403
    assert api.call("GET", "/blocks/documents/api-warehouse/" + "x" * 300).status_code == 422
    assert api.call("GET", "/blocks/documents/api-warehouse/a%00b").status_code == 422  # PostgreSQL refuses NUL
    assert api.call("GET", "/blocks/documents", params={"type": "a\x00"}).status_code == 422
    nul_type = _payload(secret)
    nul_type["type"]["description"] = "a\x00b"
    nul = api.call("PUT", f"/blocks/documents/api-warehouse/{unique('n')}", key="run", json=nul_type)
    assert nul.status_code == 422 and "type.description" in error_of(nul)["message"]
    # "\ud800" is valid JSON but no UTF-8: refused, never stored (it could not be answered back)
    surrogate_name = unique("s")
    text = json.dumps(_payload(secret)).replace('"db.example.com"', '"\\ud800"')
    surrogate = api.call("PUT", f"/blocks/documents/api-warehouse/{surrogate_name}", key="run",
                         content=text.encode(), headers={"Content-Type": "application/json"})
    assert surrogate.status_code == 422 and "surrogate" in error_of(surrogate)["message"]
    assert api.call("GET", f"/blocks/documents/api-warehouse/{surrogate_name}").status_code == 404
    assert api.call("GET", "/blocks/types", key=None).status_code == 401
    for response in (bad_name, bad_slug, reserved):
        assert secret not in response.text


# -- notification rules ------------------------------------------------------------------------------------
def test_notification_rules_are_created_listed_and_deleted(api: Api, local: Served) -> None:
    from plait import notifications
    from plait_blocks import JSON, Webhook

    hook, token = unique("ops"), canary("token")
    assert api.put_block("webhook", hook, Webhook(url=f"https://hooks.example.com/{token}")).status_code == 201
    rule_name = unique("rule")
    created = api.call("POST", "/notification-rules",
                       json={"block": f"webhook/{hook}", "flow_name": "etl-*", "tags": ["prod"], "name": rule_name})
    assert created.status_code == 201, created.text
    rule = created.json()
    assert (rule["block"], rule["block_slug"], rule["block_name"]) == (f"webhook/{hook}", "webhook", hook)
    assert rule["states"] == ["FAILED", "CRASHED"] and rule["tags"] == ["prod"] and rule["enabled"] is True
    assert token not in created.text
    # what `plait notification ls` on the server host sees
    assert rule["id"] in {r["id"] for r in notifications.list_rules()}
    listed = api.call("GET", "/notification-rules", key="read").json()
    assert rule["id"] in {r["id"] for r in listed["items"]} and listed["next_cursor"] is None

    by_name = api.call("POST", "/notification-rules", json={"block": hook, "states": ["completed"]})
    assert by_name.status_code == 201 and by_name.json()["states"] == ["COMPLETED"]
    taken = api.call("POST", "/notification-rules", json={"block": hook, "name": rule_name})
    assert taken.status_code == 409 and error_of(taken)["code"] == "rule_exists"
    bad_state = api.call("POST", "/notification-rules", json={"block": hook, "states": ["exploded"]})
    assert bad_state.status_code == 422 and "unknown state 'exploded'" in error_of(bad_state)["message"]
    assert error_of(bad_state)["detail"][0]["field"] == "states"
    config = unique("cfg")
    assert api.put_block("json", config, JSON(value={"a": 1})).status_code == 201
    cannot = api.call("POST", "/notification-rules", json={"block": f"json/{config}"})
    assert cannot.status_code == 422 and "lacks the 'notify' capability" in error_of(cannot)["message"]
    missing = api.call("POST", "/notification-rules", json={"block": "webhook/nope"})
    assert missing.status_code == 404 and error_of(missing)["code"] == "block_not_found"
    # a run key may add rules (a job sets up its own announcements), a read key may not
    assert api.call("POST", "/notification-rules", key="read", json={"block": hook}).status_code == 403
    assert api.call("POST", "/notification-rules", json={"block": hook, "colour": 1}).status_code == 422

    assert api.call("DELETE", f"/notification-rules/{rule['id']}", key="run").status_code == 403
    deleted = api.call("DELETE", f"/notification-rules/{rule['id']}")
    assert deleted.status_code == 200 and deleted.json()["name"] == rule_name
    again = api.call("DELETE", f"/notification-rules/{rule['id']}")
    assert again.status_code == 404 and error_of(again)["code"] == "rule_not_found"
    assert rule["id"] not in {r["id"] for r in api.call("GET", "/notification-rules").json()["items"]}


# -- collections and plugins ---------------------------------------------------------------------------------
def test_collections_answer_the_registry_and_what_the_server_has_installed(api: Api) -> None:
    from plait.registry import load_registry

    response = api.call("GET", "/collections", key="read")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["registry"] == load_registry().registry.model_dump(mode="json")
    statuses = {s["name"]: s for s in body["statuses"]}
    assert set(body["registry"]["collections"]) <= set(statuses)
    assert all(s["status"] in {"installed", "not installed", "outdated", "incompatible", "unlisted"}
               for s in statuses.values())


def test_plugins_answer_the_diagnostics_of_plait_plugins_ls(api: Api) -> None:
    response = api.call("GET", "/plugins", key="read")
    assert response.status_code == 200, response.text
    plugins = {p["name"]: p for p in response.json()["plugins"]}
    assert plugins["plait_blocks"]["default"] is True
    assert "webhook" in plugins["plait_blocks"]["declares"]["block_types"]
    assert isinstance(response.json()["diagnoses"], list)
    refused = api.call("GET", "/plugins", key="read", params={"load": "true"})
    assert refused.status_code == 403 and "scope 'admin'" in error_of(refused)["message"]
    loaded = api.call("GET", "/plugins", params={"load": "true"})
    assert loaded.status_code == 200
    assert all(p["status"] != "not imported" for p in loaded.json()["plugins"])


def test_saving_and_deleting_a_block_are_events_without_its_secrets(api: Api) -> None:
    secret, name = canary(), unique("wh")
    assert api.put_block("api-warehouse", name, warehouse(secret)).status_code == 201
    assert api.put_block("api-warehouse", name, warehouse(secret, port=1), overwrite="true").status_code == 200
    assert api.call("DELETE", f"/blocks/documents/api-warehouse/{name}").status_code == 200
    events = api.call("GET", "/events", key="read", params={"resource": f"block/api-warehouse/{name}"})
    assert events.status_code == 200, events.text
    assert secret not in events.text
    seen = [(e["kind"], e["payload"].get("action")) for e in events.json()["items"]]
    assert seen == [("block.saved", "created"), ("block.saved", "updated"), ("block.deleted", None)]
