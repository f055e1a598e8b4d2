"""Every CLI command works against a plait server as it works against a local store.

With ``PLAIT_API_URL`` set, the commands that read or write the store go through the
server: the client machine has no database (the test points ``PLAIT_DATABASE_URL`` at a
file that must never be created) and no encryption key of its own. Commands about the
client machine itself (settings, installed plugins and block types, its spool) answer
from it, as they do locally.
"""

from __future__ import annotations

import json
import textwrap
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from pydantic import Field, SecretStr

from plait import plugins
from plait.blocks import ApplyResult, Block, NotificationBlock, apply_blocks_file
from plait.cli import cli
from plait.client import PlaitClient
from plait.exceptions import BlocksFileError
from plait.hookspecs import hookimpl
from plait.testing import reset_state

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from plait.testing._server import running_server

    root = tmp_path_factory.mktemp("cli-remote")
    with running_server(f"sqlite:///{root / 'plait.db'}", root / "server") as handle:
        yield handle


@pytest.fixture
def remote(server: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This process as a client machine of ``server``; yields the database path that must
    stay absent."""
    unused = tmp_path / "never-created.db"
    reset_state()
    monkeypatch.setenv("PLAIT_HOME", str(tmp_path / "client-home"))
    monkeypatch.setenv("PLAIT_DATABASE_URL", f"sqlite:///{unused}")
    monkeypatch.setenv("PLAIT_API_URL", server.api_url)  # type: ignore[attr-defined]
    monkeypatch.setenv("PLAIT_API_KEY", server.admin_key)  # type: ignore[attr-defined]
    yield unused
    reset_state()
    assert not unused.exists(), "a command opened a local database instead of asking the server"


def invoke(*args: str, input: str | None = None) -> Result:
    result = CliRunner().invoke(cli, list(args), input=input)
    assert result.exit_code == 0, f"plait {' '.join(args)} exited {result.exit_code}:\n{result.output}"
    assert "Traceback" not in result.output
    return result


def client(server: object) -> PlaitClient:
    return PlaitClient(server.api_url, server.admin_key, timeout=30)  # type: ignore[attr-defined]


def test_block_commands_write_and_read_through_the_server(server: object, remote: Path, tmp_path: Path) -> None:
    invoke("block", "create", "webhook", "cli-hook", "--set", "url=https://hooks.example.com/S3CR3T-T0KEN")
    with client(server) as api:
        names = [b["name"] for b in api.block_documents()]
    assert "cli-hook" in names

    pytest.importorskip("plait_sqlalchemy")  # a block type with a test_connection() that can pass here
    blocks_file = tmp_path / "blocks.yaml"
    blocks_file.write_text(
        "blocks:\n"
        "  - type: local-file-system\n"
        "    name: cli-files\n"
        f"    values: {{basepath: {json.dumps(str(tmp_path / 'files'))}}}\n"
        "  - type: database-credentials\n"
        "    name: cli-db\n"
        f"    values: {{driver: sqlite, database: {json.dumps(str(tmp_path / 'probe.db'))}}}\n"
    )
    dry = invoke("block", "apply", str(blocks_file), "--dry-run", "--json")
    assert [(r["name"], r["action"]) for r in json.loads(dry.output)] == [("cli-files", "created"),
                                                                          ("cli-db", "created")]
    with client(server) as api:
        assert not {"cli-files", "cli-db"} & {b["name"] for b in api.block_documents()}  # a dry run writes nothing
    applied = invoke("block", "apply", str(blocks_file), "--json")
    assert [r["action"] for r in json.loads(applied.output)] == ["created", "created"]
    again = invoke("block", "apply", str(blocks_file), "--json")
    assert [r["action"] for r in json.loads(again.output)] == ["unchanged", "unchanged"]

    listing = invoke("block", "ls", "--json")
    assert {"cli-hook", "cli-files", "cli-db"} <= {row["name"] for row in json.loads(listing.output)}
    shown = invoke("block", "inspect", "webhook/cli-hook")
    assert "S3CR3T" not in shown.output  # the url is a secret: masked
    assert invoke("block", "test", "database-credentials/cli-db").output.strip() == "ok"
    # as locally: a type without test_connection() says so (exit 1), no traceback
    untestable = CliRunner().invoke(cli, ["block", "test", "local-file-system/cli-files"])
    assert untestable.exit_code == 1 and "has no test_connection()" in untestable.output

    invoke("block", "delete", "webhook/cli-hook", "--yes")
    with client(server) as api:
        assert "cli-hook" not in [b["name"] for b in api.block_documents()]


def test_notification_rules_through_the_server(server: object, remote: Path) -> None:
    invoke("block", "create", "webhook", "cli-alerts", "--set", "url=https://hooks.example.com/alerts")
    invoke("notification", "create", "--block", "webhook/cli-alerts", "--flow", "etl-*", "--name", "cli-rule")
    listing = invoke("notification", "ls", "--json")
    assert [r["name"] for r in json.loads(listing.output)] == ["cli-rule"]
    invoke("notification", "delete", "cli-rule")
    assert json.loads(invoke("notification", "ls", "--json").output) == []


def test_commands_about_the_client_machine_answer_from_it(server: object, remote: Path) -> None:
    shown = invoke("config", "show")
    assert "api_url" in shown.output and server.admin_key not in shown.output  # type: ignore[attr-defined]
    assert "plait-blocks" in invoke("plugins", "ls").output or "plait_blocks" in invoke("plugins", "ls").output
    assert "webhook" in invoke("block", "types").output
    invoke("spool", "status")
    version = invoke("version")
    assert server.admin_key not in version.output  # type: ignore[attr-defined]


def test_history_commands_through_the_server(server: object, remote: Path) -> None:
    listing = invoke("flow-run", "ls")
    assert "Traceback" not in listing.output


# -- blocks files through the server -------------------------------------------------------------
class RemoteCredentials(Block):
    """Credentials of an HTTP API (a type the server has no class for)."""

    user: str = Field(description="Account name.")
    token: SecretStr = Field(description="API token.")


class RemoteClient(Block):
    """Where and how to call an HTTP API."""

    url: str = Field(description="Base URL.")
    timeout: float = Field(default=10.0, description="Seconds per request.")
    credentials: RemoteCredentials = Field(description="Who calls.")


class RemoteRelay(NotificationBlock):
    """Hands messages on to another notification block (another relay, say)."""

    channel: str = Field(description="Label of this hop.")
    next: NotificationBlock | None = Field(default=None, description="The block to hand messages to.")


PLUGIN = types.SimpleNamespace(__name__="test_cli_remote_plugin")


@hookimpl
def _register(register: Any) -> None:
    register(RemoteCredentials)
    register(RemoteClient)
    register(RemoteRelay)


PLUGIN.plait_register_blocks = _register


@pytest.fixture
def registered(remote: Path) -> Iterator[Path]:
    """``remote`` with this module's block types installed in this (client) process only."""
    plugins.register_plugin("test-cli-remote", PLUGIN)
    yield remote
    plugins.unregister_plugin("test-cli-remote")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def saved(server: object, slug: str, name: str) -> dict[str, Any] | None:
    """The document on the server, secrets included, or None."""
    from plait._api import ApiNotFound

    with client(server) as api:
        try:
            return api.block_document(slug, name, include_secrets=True)
        except ApiNotFound:
            return None


def plan(results: list[ApplyResult]) -> list[tuple[str, str]]:
    return [(r.name, r.action) for r in results]


def test_a_blocks_file_applies_through_the_server_as_it_does_locally(
    server: object, registered: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    robot, orders, token = f"robot-{uuid.uuid4().hex[:8]}", f"orders-{uuid.uuid4().hex[:8]}", f"tok-{uuid.uuid4().hex}"
    monkeypatch.setenv("REMOTE_TOKEN", token)  # the client's environment, not the server's
    path = write(tmp_path, "blocks.toml", f"""
        [[blocks]]
        type = "remote-credentials"
        name = "{robot}"
        values = {{ user = "robot", token = "${{env:REMOTE_TOKEN}}" }}

        [[blocks]]
        type = "remote-client"
        name = "{orders}"
        values = {{ url = "https://api.example.com", credentials = {{ "$block" = "remote-credentials/{robot}" }} }}

        [[blocks]]
        type = "remote-client"
        name = "{orders}-inline"
        values = {{ url = "https://api.example.com", credentials = {{ user = "x", token = "${{env:REMOTE_TOKEN}}" }} }}
    """)
    inline = f"{orders}-inline"  # its credentials are nested without a name of their own
    assert plan(apply_blocks_file(path, dry_run=True)) == [(robot, "created"), (orders, "created"),
                                                           (inline, "created")]
    assert saved(server, "remote-credentials", robot) is None  # a dry run writes nothing

    applied = invoke("block", "apply", str(path))
    assert token not in applied.output and "created" in applied.output
    creds = saved(server, "remote-credentials", robot)
    assert creds is not None and creds["data"]["token"] == token  # substituted here, encrypted there
    client_doc = saved(server, "remote-client", orders)
    assert client_doc is not None
    assert client_doc["data"]["credentials"]["$block"]["id"] == creds["id"]  # by reference, not a copy

    assert plan(apply_blocks_file(path)) == [(robot, "unchanged"), (orders, "unchanged"), (inline, "unchanged")]
    # a changed secret is a change (the comparison reads the saved secrets, nested ones too)
    monkeypatch.setenv("REMOTE_TOKEN", token + "-rotated")
    assert plan(apply_blocks_file(path, dry_run=True)) == [(robot, "updated"), (orders, "unchanged"),
                                                           (inline, "updated")]
    again = invoke("block", "apply", str(path), "--json")
    assert [r["action"] for r in json.loads(again.output)] == ["updated", "unchanged", "updated"]
    assert token not in again.output
    assert saved(server, "remote-credentials", robot)["data"]["token"] == token + "-rotated"  # type: ignore[index]

    # a reference to a block saved on the server (not in the file) resolves
    other = f"other-{uuid.uuid4().hex[:8]}"
    second = write(tmp_path, "second.yaml", f"""
        blocks:
          - type: remote-client
            name: {other}
            values: {{url: "https://b.example.com", credentials: {{$block: remote-credentials/{robot}}}}}
    """)
    assert plan(apply_blocks_file(second)) == [(other, "created")]
    assert RemoteClient.load(other).credentials.token.get_secret_value() == token + "-rotated"

    missing = write(tmp_path, "missing.yaml", f"""
        blocks:
          - type: remote-client
            name: never-{other}
            values: {{url: "https://c.example.com", credentials: {{$block: remote-credentials/nobody}}}}
    """)
    with pytest.raises(BlocksFileError, match="no saved block 'remote-credentials/nobody'"):
        apply_blocks_file(missing)
    assert saved(server, "remote-client", f"never-{other}") is None


def test_a_file_with_one_invalid_block_writes_nothing_on_the_server(
    server: object, registered: Path, tmp_path: Path
) -> None:
    good, bad, secret = f"good-{uuid.uuid4().hex[:8]}", f"bad-{uuid.uuid4().hex[:8]}", f"s3cr3t-{uuid.uuid4().hex}"
    path = write(tmp_path, "blocks.yaml", f"""
        blocks:
          - type: remote-credentials
            name: {good}
            values: {{user: u, token: {secret}}}
          - type: remote-client
            name: {bad}
            values: {{url: "https://x.example.com", timeout: soon, credentials: {{$block: remote-credentials/{good}}}}}
    """)
    failed = CliRunner().invoke(cli, ["block", "apply", str(path)])
    assert failed.exit_code == 1 and "Traceback" not in failed.output
    assert f"block #2 'remote-client/{bad}'" in failed.output and "timeout" in failed.output
    assert secret not in failed.output
    assert saved(server, "remote-credentials", good) is None and saved(server, "remote-client", bad) is None


def test_a_cycle_with_blocks_saved_on_the_server_is_refused(server: object, registered: Path, tmp_path: Path) -> None:
    a, b = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    first = write(tmp_path, "first.yaml", f"""
        blocks:
          - {{type: remote-relay, name: {a}, values: {{channel: a}}}}
          - {{type: remote-relay, name: {b}, values: {{channel: b, next: {{$block: remote-relay/{a}}}}}}}
    """)
    assert plan(apply_blocks_file(first)) == [(a, "created"), (b, "created")]
    before = saved(server, "remote-relay", a)
    closing = write(tmp_path, "closing.yaml", f"""
        blocks:
          - {{type: remote-relay, name: {a}, values: {{channel: a, next: {{$block: remote-relay/{b}}}}}}}
    """)
    for dry_run in (True, False):
        with pytest.raises(BlocksFileError) as info:
            apply_blocks_file(closing, dry_run=dry_run)
        assert f"block #1 'remote-relay/{a}', field 'next': applying the file would make a cycle" in str(info.value)
        assert f"remote-relay/{a} field 'next' → remote-relay/{b} field 'next' → remote-relay/{a}" in str(info.value)
    assert saved(server, "remote-relay", a) == before  # unchanged on the server


def test_apply_with_a_read_key_says_it_needs_a_run_key(
    server: object, registered: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"readonly-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PLAIT_API_KEY", server.read_key)  # type: ignore[attr-defined]
    reset_state()
    path = write(tmp_path, "blocks.yaml", f"""
        blocks:
          - {{type: remote-relay, name: {name}, values: {{channel: x}}}}
    """)
    for args in (["block", "apply", str(path)], ["block", "apply", str(path), "--dry-run"]):
        refused = CliRunner().invoke(cli, args)
        assert refused.exit_code == 1 and "Traceback" not in refused.output
        assert "needs an API key with scope 'run'" in refused.output and "has scope 'read'" in refused.output
        assert "Nothing was written" in refused.output
        assert server.read_key not in refused.output  # type: ignore[attr-defined]
    assert saved(server, "remote-relay", name) is None
