"""Variables through a real plait server (SQLite and PostgreSQL, one server each for the
module): the routes and their scopes, ``plait.variables`` with ``PLAIT_API_URL`` set (sync
and async, the same results and errors as locally), the clients, the CLI, and a blocks
file whose ``${var:name}`` are read from the server."""

from __future__ import annotations

import asyncio
import json
import textwrap
import types
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from pydantic import Field

from plait import plugins, variables
from plait.hookspecs import hookimpl
from plait.testing import reset_state, throwaway_postgres_database
from plait.testing._server import ServerHandle, running_server

pytestmark = pytest.mark.slow


@dataclass
class Served:
    handle: ServerHandle
    client: httpx.Client
    database_url: str

    def call(self, method: str, path: str, *, key: str | None = "admin", **kwargs: Any) -> httpx.Response:
        keys = {"admin": self.handle.admin_key, "run": self.handle.run_key, "read": self.handle.read_key}
        headers = {"Authorization": f"Bearer {keys[key]}"} if key else {}
        return self.client.request(method, "/api/v1" + path, headers=headers, **kwargs)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("server-variables")
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{home / 'plait.db'}"
        else:
            url = stack.enter_context(throwaway_postgres_database("plait_srv_vars"))
        handle = stack.enter_context(running_server(url, home / "server"))
        client = stack.enter_context(httpx.Client(base_url=handle.url, timeout=60))
        yield Served(handle, client, url)


@pytest.fixture
def remote(served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This process as a client of the server (a key of scope run); the local database it
    must never create."""
    unused = tmp_path / "never-created.db"
    reset_state()
    monkeypatch.setenv("PLAIT_HOME", str(tmp_path / "client-home"))
    monkeypatch.setenv("PLAIT_DATABASE_URL", f"sqlite:///{unused}")
    monkeypatch.setenv("PLAIT_API_URL", served.handle.api_url)
    monkeypatch.setenv("PLAIT_API_KEY", served.handle.run_key)
    yield unused
    reset_state()
    assert not unused.exists(), "a call opened a local database instead of asking the server"


def unique(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}"


# -- the routes -----------------------------------------------------------------------------------------
def test_routes_set_get_list_delete(served: Served) -> None:
    name = unique("route")
    put = served.call("PUT", f"/variables/by-name/{name}", key="run", json={"value": {"a": [1, None]}, "tags": ["x"]})
    assert put.status_code == 200, put.text
    made = put.json()
    assert made["name"] == name and made["value"] == {"a": [1, None]} and made["tags"] == ["x"]
    got = served.call("GET", f"/variables/by-name/{name}", key="read")
    assert got.status_code == 200 and got.json() == made
    listed = served.call("GET", "/variables", key="read").json()
    assert listed["next_cursor"] is None and made in listed["items"]
    again = served.call("PUT", f"/variables/by-name/{name}", key="run", json={"value": 2})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "variable_exists" and "overwrite" in again.json()["error"]["message"]
    over = served.call("PUT", f"/variables/by-name/{name}", key="run", json={"value": 2, "overwrite": True})
    assert over.status_code == 200 and over.json()["value"] == 2 and over.json()["tags"] == ["x"]
    deleted = served.call("DELETE", f"/variables/by-name/{name}", key="run")
    assert deleted.status_code == 200 and deleted.json()["value"] == 2
    for method in ("GET", "DELETE"):
        missing = served.call(method, f"/variables/by-name/{name}")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "variable_not_found"


def test_routes_check_scopes_and_input(served: Served) -> None:
    name = unique("scoped")
    assert served.call("GET", "/variables", key=None).status_code == 401
    refused = served.call("PUT", f"/variables/by-name/{name}", key="read", json={"value": 1})
    assert refused.status_code == 403
    assert served.call("DELETE", f"/variables/by-name/{name}", key="read").status_code == 403
    assert served.call("GET", f"/variables/by-name/{name}", key="read").status_code == 404
    for bad_name in ("Upper", "a.b", "x" * 256):
        assert served.call("PUT", f"/variables/by-name/{bad_name}", json={"value": 1}).status_code == 422
    too_long = served.call("PUT", f"/variables/by-name/{name}", json={"value": "x" * 5001})
    assert too_long.status_code == 422 and "at most 5,000" in too_long.json()["error"]["message"]
    nul = served.call("PUT", f"/variables/by-name/{name}", json={"value": {"k": "a\u0000b"}})
    assert nul.status_code == 422 and "NUL" in nul.json()["error"]["message"]
    assert served.call("PUT", f"/variables/by-name/{name}", json={"tags": []}).status_code == 422  # no value
    assert served.call("PUT", f"/variables/by-name/{name}", json={"value": 1, "extra": 1}).status_code == 422
    assert served.call("GET", f"/variables/by-name/{name}").status_code == 404  # nothing was stored


def test_set_and_unset_emit_events_on_the_server(served: Served) -> None:
    name = unique("evt")
    served.call("PUT", f"/variables/by-name/{name}", json={"value": "v"})
    served.call("DELETE", f"/variables/by-name/{name}")
    events = served.call("GET", "/events", params={"resource": f"variable/{name}"}).json()["items"]
    assert [e["kind"] for e in events] == ["variable.created", "variable.deleted"]


# -- plait.variables through the server ---------------------------------------------------------------
def test_the_api_goes_through_the_server(served: Served, remote: Path) -> None:
    name = unique("remote")
    assert variables.get(name, default="none") == "none"
    saved = variables.set(name, {"schema": "analytics"}, tags=["t"])
    assert saved["value"] == {"schema": "analytics"} and saved["tags"] == ["t"]
    # the server's store holds it: the route answers it
    assert served.call("GET", f"/variables/by-name/{name}").json()["value"] == {"schema": "analytics"}
    with pytest.raises(variables.VariableExists, match=r"already exists; pass overwrite=True"):
        variables.set(name, 1)
    assert variables.set(name, 1, overwrite=True)["value"] == 1
    assert variables.get(name) == 1
    assert name in [v["name"] for v in variables.list()]
    with pytest.raises(ValueError, match="lower-case letters"):
        variables.set("Bad", 1)  # checked here before any request
    assert variables.unset(name) is True and variables.unset(name) is False
    assert variables.get(name) is None


def test_the_async_api_goes_through_the_server(served: Served, remote: Path) -> None:
    name = unique("async")

    async def main() -> list[Any]:
        await variables.aset(name, [1, 2])
        with pytest.raises(variables.VariableExists):
            await variables.aset(name, 3)
        await variables.aset(name, [3], overwrite=True)
        got = await variables.aget(name)
        return [got, await variables.aunset(name), await variables.aunset(name), await variables.aget(name, "d")]

    assert asyncio.run(main()) == [[3], True, False, "d"]


def test_a_read_key_may_read_but_not_set(served: Served, remote: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from plait.client import ApiAuthError

    name = unique("readonly")
    variables.set(name, "v")
    monkeypatch.setenv("PLAIT_API_KEY", served.handle.read_key)
    reset_state()
    assert variables.get(name) == "v"
    with pytest.raises(ApiAuthError):
        variables.set(name, "w", overwrite=True)
    with pytest.raises(ApiAuthError):
        variables.unset(name)


def test_the_clients(served: Served) -> None:
    from plait.client import ApiError, ApiNotFound, AsyncPlaitClient, PlaitClient

    name = unique("client")
    with PlaitClient(served.handle.api_url, api_key=served.handle.admin_key) as client:
        made = client.set_variable(name, {"n": 1}, tags=["c"])
        assert client.get_variable(name) == made
        assert made in client.list_variables()
        with pytest.raises(ApiError) as caught:
            client.set_variable(name, 2)
        assert caught.value.status == 409 and caught.value.code == "variable_exists"
        assert client.set_variable(name, 2, overwrite=True)["value"] == 2

    async def main() -> dict[str, Any]:
        async with AsyncPlaitClient(served.handle.api_url, api_key=served.handle.admin_key) as client:
            assert (await client.get_variable(name))["value"] == 2
            assert name in [v["name"] for v in await client.list_variables()]
            deleted = await client.delete_variable(name)
            with pytest.raises(ApiNotFound):
                await client.get_variable(name)
            return deleted

    assert asyncio.run(main())["value"] == 2


def test_the_cli_goes_through_the_server(served: Served, remote: Path) -> None:
    from plait.cli import cli

    name = unique("cli")
    runner = CliRunner()
    done = runner.invoke(cli, ["variable", "set", name, "[1, 2]", "--tag", "x"])
    assert done.exit_code == 0, done.output
    assert served.call("GET", f"/variables/by-name/{name}").json()["value"] == [1, 2]
    again = runner.invoke(cli, ["variable", "set", name, "3"])
    assert again.exit_code == 1 and "pass --overwrite" in again.output
    assert runner.invoke(cli, ["variable", "get", name]).stdout == "[1, 2]\n"
    listed = json.loads(runner.invoke(cli, ["variable", "ls", "--json"]).stdout)
    assert name in [v["name"] for v in listed]
    assert runner.invoke(cli, ["variable", "unset", name]).exit_code == 0
    missing = runner.invoke(cli, ["variable", "inspect", name])
    assert missing.exit_code == 1 and f"no variable named {name!r}" in missing.output


def test_a_blocks_file_reads_its_variables_from_the_server(served: Served, remote: Path, tmp_path: Path) -> None:
    from plait.blocks import Block, apply_blocks_file

    class ServerVarBlock(Block):
        """A block configured from server variables."""

        host: str = Field(description="Host.")
        port: int = Field(description="Port.")

    plugin = types.SimpleNamespace(__name__="test_server_variables_plugin")
    @hookimpl
    def register(register: Any) -> None:
        register(ServerVarBlock)

    plugin.plait_register_blocks = register
    plugins.register_plugin("test-server-variables", plugin)
    try:
        host, port = unique("host"), unique("port")
        variables.set(host, "db.internal")
        variables.set(port, 6543)
        name = unique("from-server-vars")
        path = tmp_path / "blocks.yaml"
        path.write_text(textwrap.dedent(f"""
            blocks:
              - type: server-var-block
                name: {name}
                values: {{host: "${{var:{host}}}", port: "${{var:{port}}}"}}
        """), encoding="utf-8")
        assert [r.action for r in apply_blocks_file(path)] == ["created"]
        block = ServerVarBlock.load(name)
        assert (block.host, block.port) == ("db.internal", 6543)
    finally:
        plugins.unregister_plugin("test-server-variables")
