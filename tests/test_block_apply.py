"""Blocks files (blocks as code): TOML and YAML, ${env:NAME}, $block references, idempotent
re-apply, and all-or-nothing validation. Run on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import textwrap
import types
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pydantic import Field, SecretStr

from plait import plugins
from plait.blocks import ApplyResult, Block, apply_blocks_file, list_documents
from plait.exceptions import BlockError, BlocksFileError
from plait.hookspecs import hookimpl


class ApiCredentials(Block):
    """Credentials of an HTTP API."""

    user: str = Field(description="Account name.")
    token: SecretStr = Field(description="API token.")


class ApiClient(Block):
    """Where and how to call an HTTP API."""

    url: str = Field(description="Base URL.")
    timeout: float = Field(default=10.0, description="Seconds per request.")
    credentials: ApiCredentials = Field(description="Who calls.")
    tags: list[str] = Field(default_factory=list, description="Labels.")


PLUGIN = types.SimpleNamespace(__name__="test_apply_plugin")


@hookimpl
def _register(register: Any) -> None:
    register(ApiCredentials)
    register(ApiClient)


PLUGIN.plait_register_blocks = _register


@pytest.fixture(autouse=True)
def registered() -> Any:
    plugins.register_plugin("test-apply", PLUGIN)
    yield
    plugins.unregister_plugin("test-apply")


@pytest.fixture
def env(plait_env: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("PLAIT_ENCRYPTION_KEY", raising=False)
    return plait_env


def actions(results: list[ApplyResult]) -> list[tuple[str, str, str]]:
    return [(r.slug, r.name, r.action) for r in results]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


TOML = """
    [[blocks]]
    type = "api-credentials"
    name = "robot"
    values = { user = "robot", token = "${env:API_TOKEN}" }

    [[blocks]]
    type = "api-client"
    name = "orders"

    [blocks.values]
    url = "https://${env:API_HOST}/v1"
    timeout = "${env:API_TIMEOUT}"
    credentials = { "$block" = "api-credentials/robot" }
    tags = ["orders", "literal-$${env:NOT_EXPANDED}"]
"""

YAML = """
    blocks:
      - type: api-credentials
        name: robot
        values:
          user: robot
          token: ${env:API_TOKEN}
      - type: api-client
        name: orders
        values:
          url: https://${env:API_HOST}/v1
          timeout: ${env:API_TIMEOUT}
          credentials: {$block: api-credentials/robot}
          tags: [orders, "literal-$${env:NOT_EXPANDED}"]
"""


@pytest.mark.parametrize("name,text", [("blocks.toml", TOML), ("blocks.yaml", YAML), ("blocks.yml", YAML)])
def test_apply_creates_then_is_idempotent_then_updates(
    env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, text: str
) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    monkeypatch.setenv("API_TOKEN", token)
    monkeypatch.setenv("API_HOST", "api.example.com")
    monkeypatch.setenv("API_TIMEOUT", "2.5")
    path = write(tmp_path, name, text)

    assert actions(apply_blocks_file(path, dry_run=True)) == [
        ("api-credentials", "robot", "created"), ("api-client", "orders", "created")]
    assert list_documents() == []  # a dry run writes nothing

    assert actions(apply_blocks_file(path)) == [
        ("api-credentials", "robot", "created"), ("api-client", "orders", "created")]
    client = ApiClient.load("orders")
    assert client.url == "https://api.example.com/v1" and client.timeout == 2.5
    assert client.tags == ["orders", "literal-${env:NOT_EXPANDED}"]
    assert client.credentials.token.get_secret_value() == token
    assert client.credentials._document_name == "robot"  # referenced, not copied
    assert len(list_documents(include_anonymous=True)) == 2

    # Re-applying the same file changes nothing, and says so.
    assert actions(apply_blocks_file(path)) == [
        ("api-credentials", "robot", "unchanged"), ("api-client", "orders", "unchanged")]

    # A new secret value is detected (compared decrypted); the client still references it.
    monkeypatch.setenv("API_TOKEN", token + "-rotated")
    assert actions(apply_blocks_file(path)) == [
        ("api-credentials", "robot", "updated"), ("api-client", "orders", "unchanged")]
    assert ApiClient.load("orders").credentials.token.get_secret_value() == token + "-rotated"

    monkeypatch.setenv("API_TIMEOUT", "5")
    assert actions(apply_blocks_file(path)) == [
        ("api-credentials", "robot", "unchanged"), ("api-client", "orders", "updated")]
    assert ApiClient.load("orders").timeout == 5.0
    # Stored encrypted, like any save.
    assert token not in json.dumps(_raw_data())


def _raw_data() -> list[Any]:
    from sqlalchemy import select

    from plait._store.database import get_database
    from plait._store.models import BLOCK_DOCUMENTS

    with get_database().engine.connect() as conn:
        return [r[0] for r in conn.execute(select(BLOCK_DOCUMENTS.c.data))]


def test_an_unset_variable_stops_everything(env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKEN", "tok-123456")
    monkeypatch.delenv("API_HOST", raising=False)
    monkeypatch.delenv("API_TIMEOUT", raising=False)
    path = write(tmp_path, "blocks.toml", TOML)
    with pytest.raises(BlocksFileError) as info:
        apply_blocks_file(path)
    text = str(info.value)
    assert str(path) in text
    assert "API_HOST (block api-client/orders, field 'url')" in text
    assert "API_TIMEOUT (block api-client/orders, field 'timeout')" in text
    assert "nothing was written" in text
    assert list_documents(include_anonymous=True) == []  # not even the first block


def test_an_invalid_block_names_file_block_and_field_and_writes_nothing(
    env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"tok-{uuid.uuid4().hex}"
    path = write(tmp_path, "blocks.yaml", f"""
        blocks:
          - type: api-credentials
            name: robot
            values: {{user: robot, token: {secret}}}
          - type: api-client
            name: orders
            values:
              url: https://api.example.com
              timeout: soon
              credentials: {{$block: api-credentials/robot}}
    """)
    with pytest.raises(BlocksFileError) as info:
        apply_blocks_file(path)
    text = str(info.value)
    assert text.startswith(f"{path}: block #2 'api-client/orders' is not a valid ApiClient: field 'timeout': ")
    assert "valid number" in text and secret not in text
    assert list_documents(include_anonymous=True) == []

    missing = write(tmp_path, "missing.toml", """
        [[blocks]]
        type = "api-credentials"
        name = "robot"
        values = { user = "robot" }
    """)
    with pytest.raises(BlocksFileError, match=r"block #1 'api-credentials/robot' is not a valid ApiCredentials: field 'token': Field required"):
        apply_blocks_file(missing)


def test_references_to_saved_blocks_and_inline_nested_blocks(env: str, tmp_path: Path) -> None:
    ApiCredentials(user="saved", token="tok-saved-123").save("saved")
    path = write(tmp_path, "blocks.toml", """
        [[blocks]]
        type = "api-client"
        name = "uses-saved"
        values = { url = "https://a", credentials = { "$block" = "api-credentials/saved" } }

        [[blocks]]
        type = "api-client"
        name = "inline"
        values = { url = "https://b", credentials = { user = "inline", token = "tok-inline-123" } }
    """)
    assert [r.action for r in apply_blocks_file(path)] == ["created", "created"]
    assert ApiClient.load("uses-saved").credentials._document_name == "saved"
    inline = ApiClient.load("inline")
    assert inline.credentials.user == "inline" and inline.credentials._document_name.startswith("anonymous-")
    assert [r.action for r in apply_blocks_file(path)] == ["unchanged", "unchanged"]
    assert len(list_documents(include_anonymous=True)) == 4


def test_reference_errors(env: str, tmp_path: Path) -> None:
    later = write(tmp_path, "later.toml", """
        [[blocks]]
        type = "api-client"
        name = "orders"
        values = { url = "https://a", credentials = { "$block" = "api-credentials/robot" } }

        [[blocks]]
        type = "api-credentials"
        name = "robot"
        values = { user = "robot", token = "tok-123456" }
    """)
    with pytest.raises(BlocksFileError, match="defined later in the file; move it above"):
        apply_blocks_file(later)
    unknown = write(tmp_path, "unknown.toml", """
        [[blocks]]
        type = "api-client"
        name = "orders"
        values = { url = "https://a", credentials = { "$block" = "api-credentials/robott" } }
    """)
    with pytest.raises(BlocksFileError, match=r"field 'credentials'.*no saved block 'api-credentials/robott'"):
        apply_blocks_file(unknown)
    bad_type = write(tmp_path, "type.yaml", """
        blocks:
          - {type: api-clinet, name: orders, values: {}}
    """)
    with pytest.raises(BlocksFileError, match="did you mean 'api-client'"):
        apply_blocks_file(bad_type)
    assert list_documents(include_anonymous=True) == []


@pytest.mark.parametrize(
    "name,text,message",
    [
        ("b.json", "{}", "unsupported file type '.json'"),
        ("b.toml", "blocks = [", "not valid TOML"),
        ("b.yaml", "blocks: [", "not valid YAML"),
        ("b.yaml", "blocks: {}", "expected a top-level list `blocks`"),
        ("b.yaml", "blocks:\n  - {type: api-client, name: Bad Name}", "invalid block name 'Bad Name'"),
        ("b.yaml", "blocks:\n  - {type: api-client, name: x, value: {}}", "unknown key(s) 'value'"),
        ("b.yaml", "blocks:\n  - {type: api-client, name: x}\n  - {type: api-client, name: x}", "defined twice"),
        ("b.yaml", "blocks:\n  - {type: api-client, name: x, values: {url: '${env:}'}}", "does not name an environment variable"),
    ],
)
def test_malformed_files(env: str, tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BlocksFileError) as info:
        apply_blocks_file(path)
    assert message in str(info.value) and str(path) in str(info.value)
    assert isinstance(info.value, BlockError)


def test_a_missing_file(env: str, tmp_path: Path) -> None:
    with pytest.raises(BlocksFileError, match="no such file"):
        apply_blocks_file(tmp_path / "nope.toml")


def test_apply_with_the_wrong_key_changes_nothing(env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAIT_ENCRYPTION_KEY", Fernet.generate_key().decode())
    path = write(tmp_path, "blocks.yaml", """
        blocks:
          - {type: api-credentials, name: robot, values: {user: robot, token: tok-original}}
    """)
    apply_blocks_file(path)
    before = _raw_data()
    monkeypatch.setenv("PLAIT_ENCRYPTION_KEY", Fernet.generate_key().decode())
    with pytest.raises(BlocksFileError, match="cannot decrypt the secrets of block 'api-credentials/robot'"):
        apply_blocks_file(path)
    assert _raw_data() == before
