"""Saved blocks: save/load/overwrite/delete/list, nested blocks by reference, secrets
encrypted at rest and masked, the encryption key, schema changes, helpful errors, from_env,
and the block conformance suite. Database tests run on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
import types
import uuid
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography.fernet import Fernet
from pydantic import Field, SecretBytes, SecretStr, field_validator

from plait import plugins
from plait._logging import scrub
from plait.blocks import (
    Block,
    CredentialsBlock,
    SecretDict,
    block_to_dict,
    block_types,
    get_block_class,
    list_documents,
    load_document,
)
from plait.exceptions import (
    BlockError,
    BlockNotFound,
    BlockSchemaMismatch,
    BlockValidationError,
    PlaitError,
)
from plait.hookspecs import hookimpl
from plait.testing import BLOCK_CONFORMANCE_CHECKS, assert_block_conforms


# -- block types used by the tests ------------------------------------------------------------------
class TestCredentials(CredentialsBlock):
    """Credentials for the test service."""

    __test__ = False  # not a pytest test class
    user: str = Field(description="Who logs in.")
    password: SecretStr = Field(description="The user's password.")
    options: SecretDict | None = Field(default=None, description="Extra connection arguments (secret).")
    certificate: SecretBytes | None = Field(default=None, description="A client certificate (secret).")

    code_example: ClassVar[str] = 'TestCredentials(user="robot", password="...").save("prod")'


class TestDatabase(Block):
    """A database the flows use."""

    __test__ = False
    host: str = Field(description="Host name.")
    port: int = Field(default=5432, description="TCP port.")
    credentials: TestCredentials = Field(description="How to log in.")
    replicas: list[TestCredentials] = Field(default_factory=list, description="Read replicas' logins.")

    code_example: ClassVar[str] = 'TestDatabase.load("warehouse").host'


class Evolving(Block):
    """Version 1 of a block whose schema will change."""

    block_type_slug: ClassVar[str] = "evolving"
    host: str = Field(description="Host.")
    port: int = Field(description="Port.")
    zone: str = Field(default="eu-1", description="Zone.")
    token: SecretStr = Field(description="Token.")


PLUGIN = types.SimpleNamespace(__name__="test_blocks_plugin")


@hookimpl
def _register(register: Any) -> None:
    register(TestCredentials)
    register(TestDatabase)
    register(Evolving)


PLUGIN.plait_register_blocks = _register


@pytest.fixture(autouse=True)
def registered() -> Any:
    plugins.register_plugin("test-blocks", PLUGIN)
    yield
    plugins.unregister_plugin("test-blocks")


@pytest.fixture
def env(plait_env: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """This test's database (SQLite and PostgreSQL) and PLAIT_HOME; the key file default."""
    monkeypatch.delenv("PLAIT_ENCRYPTION_KEY", raising=False)
    return plait_env


def canary(label: str = "secret") -> str:
    return f"{label}-{uuid.uuid4().hex}"


def creds(password: str | None = None, **kwargs: Any) -> TestCredentials:
    return TestCredentials(user=kwargs.pop("user", "robot"), password=password or canary(), **kwargs)


def raw_documents() -> list[dict[str, Any]]:
    from sqlalchemy import select

    from plait._store.database import get_database
    from plait._store.models import BLOCK_DOCUMENTS

    table = BLOCK_DOCUMENTS
    with get_database().engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(select(table).order_by(table.c.name))]


def raw_references() -> list[dict[str, Any]]:
    from sqlalchemy import select

    from plait._store.database import get_database
    from plait._store.models import BLOCK_DOCUMENT_REFERENCES

    with get_database().engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(select(BLOCK_DOCUMENT_REFERENCES))]


def set_raw_data(doc_id: str, data: dict[str, Any]) -> None:
    from plait._store.database import get_database
    from plait._store.models import BLOCK_DOCUMENTS

    table = BLOCK_DOCUMENTS
    with get_database().engine.begin() as conn:
        conn.execute(table.update().where(table.c.id == doc_id).values(data=data))


# -- save, load, overwrite, delete, list ----------------------------------------------------------------
def test_save_and_load_round_trip(env: str) -> None:
    original = creds(options={"sslmode": "require", "token": canary("opt")}, certificate=b"\x00\xffcert")
    doc_id = original.save("prod")
    assert isinstance(doc_id, str) and len(doc_id) == 36
    assert original._document_name == "prod" and original._document_id == doc_id

    loaded = TestCredentials.load("prod")
    assert loaded == original and loaded is not original
    assert loaded.password.get_secret_value() == original.password.get_secret_value()
    assert loaded.options.get_secret_value() == original.options.get_secret_value()
    assert loaded.certificate.get_secret_value() == b"\x00\xffcert"
    assert (loaded._document_id, loaded._document_name) == (doc_id, "prod")

    by_slug = Block.load("test-credentials/prod")
    assert type(by_slug) is TestCredentials and by_slug == original
    assert TestCredentials.load("test-credentials/prod") == original
    assert CredentialsBlock.load("test-credentials/prod") == original
    assert load_document("prod") == original and load_document("test-credentials/prod") == original


def test_overwrite_is_explicit_and_keeps_the_document(env: str) -> None:
    first_id = creds(user="first").save("prod")
    with pytest.raises(BlockError, match=r"block 'test-credentials/prod' already exists; pass overwrite=True \(or --overwrite\)"):
        creds(user="second").save("prod")
    assert TestCredentials.load("prod").user == "first"
    assert creds(user="second").save("prod", overwrite=True) == first_id
    assert TestCredentials.load("prod").user == "second"
    assert len(raw_documents()) == 1


@pytest.mark.parametrize("name", ["Prod", "my block", "-prod", ".x", "a/b", "", "anonymous-1", "x" * 201])
def test_invalid_names_are_refused_with_the_rule(env: str, name: str) -> None:
    with pytest.raises(BlockError) as info:
        creds().save(name)
    text = str(info.value)
    assert ("lowercase letters, digits" in text) or ("reserved" in text) or ("too long" in text)
    assert raw_documents() == []


def test_list_and_delete(env: str) -> None:
    creds().save("a")
    creds().save("b.two")
    TestDatabase(host="db", credentials=creds()).save("warehouse")
    rows = TestCredentials.list()
    assert [r["name"] for r in rows] == ["a", "b.two"]
    assert set(rows[0]) == {"name", "slug", "type_name", "id", "created", "updated"}
    assert rows[0]["slug"] == "test-credentials" and rows[0]["type_name"] == "Test Credentials"
    json.dumps(rows)  # JSON-safe: times are ISO strings
    assert {r["name"] for r in Block.list()} == {"a", "b.two", "warehouse"}
    assert {r["name"] for r in list_documents()} == {"a", "b.two", "warehouse"}
    assert [r["name"] for r in list_documents(slug="test-database")] == ["warehouse"]
    every = list_documents(include_anonymous=True)
    assert len(every) == 4 and sum(r["name"].startswith("anonymous-") for r in every) == 1

    TestCredentials.delete("a")
    Block.delete("test-credentials/b.two")
    assert TestCredentials.list() == []
    with pytest.raises(BlockNotFound, match="see `plait block ls`"):
        TestCredentials.load("a")
    with pytest.raises(BlockNotFound):
        TestCredentials.delete("a")
    TestDatabase.delete("warehouse")
    assert raw_documents() == [] and raw_references() == []  # its anonymous login went with it


def test_block_load_needs_slug_and_name(env: str) -> None:
    creds().save("prod")
    with pytest.raises(BlockError, match=r"Block.load\(\) needs 'slug/name'"):
        Block.load("prod")
    with pytest.raises(BlockError, match="not a TestDatabase"):
        TestDatabase.load("test-credentials/prod")


def test_equality_ignores_whether_a_block_was_saved(env: str) -> None:
    block = creds(password="pw-123456")
    twin = TestCredentials(user="robot", password="pw-123456")
    block.save("x")
    assert block == twin and TestCredentials.load("x") == twin
    assert TestCredentials(user="robot", password="other-pw") != twin


# -- nested blocks -------------------------------------------------------------------------------
def test_a_saved_nested_block_is_referenced(env: str) -> None:
    login = creds(user="loader")
    login_id = login.save("loader")
    TestDatabase(host="db.internal", credentials=login).save("warehouse")

    docs = {d["name"]: d for d in raw_documents()}
    assert set(docs) == {"loader", "warehouse"}  # no copy of the login
    assert docs["warehouse"]["data"]["credentials"] == {"$ref": login_id}
    [ref] = raw_references()
    assert (ref["parent_document_id"], ref["field_name"], ref["child_document_id"]) == (
        docs["warehouse"]["id"], "credentials", login_id)

    # It is a reference: changing the saved login changes what the database block loads.
    creds(user="loader-v2").save("loader", overwrite=True)
    warehouse = TestDatabase.load("warehouse")
    assert warehouse.credentials.user == "loader-v2"
    assert warehouse.credentials._document_name == "loader"

    with pytest.raises(BlockError, match=r"'test-credentials/loader' is used by block 'test-database/warehouse' \(field 'credentials'\)"):
        TestCredentials.delete("loader")
    TestDatabase.delete("warehouse")
    TestCredentials.delete("loader")


def test_an_unsaved_nested_block_becomes_anonymous(env: str) -> None:
    password = canary()
    replica = creds(user="replica")
    TestDatabase(host="db", credentials=creds(user="inline", password=password), replicas=[replica]).save("warehouse")
    assert [d["name"] for d in list_documents()] == ["warehouse"]
    anonymous = [d for d in list_documents(include_anonymous=True) if d["name"].startswith("anonymous-")]
    assert len(anonymous) == 2 and all(d["slug"] == "test-credentials" for d in anonymous)

    loaded = TestDatabase.load("warehouse")  # the whole nested block comes back
    assert loaded.credentials.user == "inline"
    assert loaded.credentials.password.get_secret_value() == password
    assert [r.user for r in loaded.replicas] == ["replica"]
    assert loaded == TestDatabase(host="db", credentials=creds(user="inline", password=password), replicas=[replica])

    # Overwriting replaces the anonymous documents; nothing is left behind.
    loaded.credentials.user = "inline-v2"
    loaded.save("warehouse", overwrite=True)
    assert TestDatabase.load("warehouse").credentials.user == "inline-v2"
    assert len([d for d in list_documents(include_anonymous=True) if d["name"].startswith("anonymous-")]) == 2
    TestDatabase.delete("warehouse")
    assert raw_documents() == []


def test_a_loaded_nested_block_keeps_pointing_at_its_document(env: str) -> None:
    creds(user="shared").save("shared")
    one = TestDatabase(host="a", credentials=TestCredentials.load("shared"))
    one.save("one")
    TestDatabase(host="b", credentials=TestDatabase.load("one").credentials).save("two")
    assert len(raw_documents()) == 3  # both reference "shared"
    assert {r["child_document_id"] for r in raw_references()} == {TestCredentials.load("shared")._document_id}


# -- secrets -------------------------------------------------------------------------------------
def test_secrets_are_encrypted_at_rest(env: str) -> None:
    password, option, cert = canary("pw"), canary("opt"), canary("cert")
    creds(password=password, options={"token": option, "nested": {"deep": option}}, certificate=cert.encode()).save("prod")
    TestDatabase(host="db", credentials=creds(password=password)).save("warehouse")

    documents = raw_documents()
    stored = json.dumps([d["data"] for d in documents])
    for value in (password, option, cert):
        assert value not in stored
    data = next(d["data"] for d in documents if d["name"] == "prod")
    assert data["user"] == "robot"  # non-secret values stay readable
    for name in ("password", "options", "certificate"):
        assert set(data[name]) == {"$secret"}
    if env.startswith("sqlite"):
        db_file = Path(env.removeprefix("sqlite:///"))
        for suffix in ("", "-wal"):
            path = Path(f"{db_file}{suffix}")
            if path.exists():
                content = path.read_bytes()
                assert password.encode() not in content and option.encode() not in content


def test_secrets_are_masked_unless_revealed(env: str) -> None:
    password, option = canary("pw"), canary("opt")
    block = TestDatabase(host="db", credentials=creds(password=password, options={"token": option}))
    for text in (repr(block), str(block), block.model_dump_json(), json.dumps(block_to_dict(block))):
        assert password not in text and option not in text
    masked = block_to_dict(block)
    assert masked["credentials"]["password"] == "***" and masked["credentials"]["options"] == "***"
    assert masked["credentials"]["certificate"] is None and masked["host"] == "db"
    revealed = block_to_dict(block, reveal_secrets=True)
    assert revealed["credentials"]["password"] == password
    assert revealed["credentials"]["options"] == {"token": option}
    json.dumps(revealed)


def _forget_secrets(*values: str) -> None:
    from plait import _logging

    _logging._SECRETS[:] = [s for s in _logging._SECRETS if s not in values]


def test_loaded_secrets_are_scrubbed_from_logs(env: str) -> None:
    password, option = canary("pw"), canary("opt")
    creds(password=password, options={"token": option}).save("prod")
    assert scrub(f"saved {password}") == "saved ***"  # saving registers them
    _forget_secrets(password, option)  # as in a fresh process
    assert scrub(password) == password

    TestCredentials.load("prod")
    assert scrub(f"connecting with {password} and {option}") == "connecting with *** and ***"
    # A nested block's secrets are registered by loading its parent too.
    TestDatabase(host="h", credentials=TestCredentials.load("prod")).save("db")
    _forget_secrets(password, option)
    Block.load("test-database/db")
    assert scrub(option) == "***"


def test_a_wrong_key_is_refused_and_changes_nothing(env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    right, wrong = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("PLAIT_ENCRYPTION_KEY", right)
    password = canary()
    TestDatabase(host="db", credentials=creds(password=password)).save("warehouse")
    before = raw_documents()

    monkeypatch.setenv("PLAIT_ENCRYPTION_KEY", wrong)
    for load in (lambda: TestDatabase.load("warehouse"), lambda: Block.load("test-database/warehouse")):
        with pytest.raises(BlockError) as info:
            load()
        text = str(info.value)
        assert "cannot decrypt the secrets of block" in text and "Nothing was changed." in text
        assert "PLAIT_ENCRYPTION_KEY or $PLAIT_HOME/encryption.key" in text
        assert password not in text
    with pytest.raises(BlockError, match="already exists"):
        TestDatabase(host="db", credentials=creds()).save("warehouse")
    assert raw_documents() == before

    monkeypatch.setenv("PLAIT_ENCRYPTION_KEY", right)
    assert TestDatabase.load("warehouse").credentials.password.get_secret_value() == password


def test_an_invalid_key_is_explained(env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAIT_ENCRYPTION_KEY", "not-a-key")
    with pytest.raises(BlockError, match="not a valid Fernet key"):
        creds().save("prod")
    assert raw_documents() == []


def test_the_key_file_is_created_once_with_mode_0600(env: str, caplog: pytest.LogCaptureFixture) -> None:
    home = Path(os.environ["PLAIT_HOME"])
    key_file = home / "encryption.key"
    assert not key_file.exists()
    creds(password="first-password").save("one")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_bytes()
    Fernet(key.strip())  # a real Fernet key
    creds().save("two")
    assert key_file.read_bytes() == key  # reused, never regenerated
    assert TestCredentials.load("one").password.get_secret_value() == "first-password"

    key_file.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="plait.blocks"):
        TestCredentials.load("one")
    assert any("chmod 600" in r.getMessage() for r in caplog.records)


def test_concurrent_first_use_agrees_on_one_key(tmp_path: Path) -> None:
    from plait.blocks._crypto import _create_key_file

    path = tmp_path / "home" / "encryption.key"
    barrier = threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        _create_key_file(path)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    Fernet(path.read_bytes().strip())
    assert [p.name for p in path.parent.iterdir()] == ["encryption.key"]  # no temporary files left


# -- schema changes ------------------------------------------------------------------------------
def test_a_compatible_schema_change_loads(env: str) -> None:
    Evolving(host="h", port=5432, token="t0ken-value").save("e")

    class EvolvingV2(Block):
        """Version 2: one more optional field."""

        block_type_slug: ClassVar[str] = "evolving"
        host: str = Field(description="Host.")
        port: int = Field(description="Port.")
        zone: str = Field(default="eu-1", description="Zone.")
        token: SecretStr = Field(description="Token.")
        timeout: float = Field(default=30.0, description="Seconds.")

    assert EvolvingV2.schema_checksum() != Evolving.schema_checksum()
    loaded = EvolvingV2.load("e")
    assert (loaded.host, loaded.port, loaded.timeout) == ("h", 5432, 30.0)
    assert loaded.token.get_secret_value() == "t0ken-value"
    loaded.save("e", overwrite=True)  # saved again with the new schema
    assert raw_documents()[0]["schema_checksum"] == EvolvingV2.schema_checksum()


def test_an_incompatible_schema_change_names_the_fields(env: str) -> None:
    Evolving(host="h", port=5432, token="t0ken-value").save("e")

    class EvolvingV3(Block):
        """Version 3: breaking changes."""

        block_type_slug: ClassVar[str] = "evolving"
        host: str = Field(description="Host.")
        port: str = Field(description="Port, now a service name.")
        region: str = Field(description="Region.")
        token: SecretStr = Field(description="Token.")

    with pytest.raises(BlockSchemaMismatch) as info:
        EvolvingV3.load("e")
    text = str(info.value)
    assert text.startswith("block 'evolving/e' was saved with an older schema of EvolvingV3; changed fields: ")
    for part in ("added required 'region'", "removed 'zone'", "'port' changed type integer → string",
                 "save(..., overwrite=True), or re-apply your blocks file"):
        assert part in text
    assert "t0ken-value" not in text
    assert Evolving.load("e").port == 5432  # nothing was changed


# -- errors ---------------------------------------------------------------------------------------
def test_unknown_types_and_names_suggest_close_matches(env: str) -> None:
    creds().save("production")
    with pytest.raises(BlockNotFound) as info:
        Block.load("test-credentails/production")
    assert "'test-credentials'" in str(info.value) and "plait block types" in str(info.value)
    with pytest.raises(BlockNotFound) as info:
        TestCredentials.load("prodution")
    assert "did you mean 'production'" in str(info.value) and "see `plait block ls`" in str(info.value)
    with pytest.raises(BlockNotFound, match="did you mean 'production'"):
        Block.load("test-credentials/productoin")
    with pytest.raises(BlockNotFound) as info:
        get_block_class("test-databse")
    assert "'test-database'" in str(info.value) and isinstance(info.value, LookupError)
    with pytest.raises(BlockNotFound, match="did you mean 'production'"):
        load_document("productio")


def test_a_bare_name_used_by_two_types_is_ambiguous(env: str) -> None:
    creds().save("main")
    TestDatabase(host="h", credentials=creds()).save("main")
    with pytest.raises(BlockError, match="test-credentials/main.*test-database/main"):
        load_document("main")
    assert type(load_document("test-database/main")) is TestDatabase


def test_invalid_saved_values_name_the_field(env: str) -> None:
    password = canary()
    doc_id = TestDatabase(host="db", credentials=creds(password=password)).save("warehouse")
    data = next(d["data"] for d in raw_documents() if d["id"] == doc_id)
    set_raw_data(doc_id, {**data, "port": "not-a-port"})
    with pytest.raises(BlockValidationError) as info:
        TestDatabase.load("warehouse")
    text = str(info.value)
    assert "field 'port'" in text and "valid integer" in text and "test-database/warehouse" in text
    assert password not in text
    assert isinstance(info.value, ValueError) and isinstance(info.value, PlaitError)


def test_block_types_come_from_the_plugins(env: str) -> None:
    types_ = {t["slug"]: t for t in block_types()}
    entry = types_["test-credentials"]
    assert entry == {
        "slug": "test-credentials",
        "name": "Test Credentials",
        "description": "Credentials for the test service.",
        "capabilities": ["credentials"],
        "secret_fields": ["password", "options", "certificate"],
        "plugin": "test-blocks",
    }
    assert types_["test-database"]["secret_fields"] == [
        "credentials.password", "credentials.options", "credentials.certificate",
        "replicas.password", "replicas.options", "replicas.certificate",
    ]
    assert get_block_class("test-database") is TestDatabase


# -- from the environment -------------------------------------------------------------------------
def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    password = canary()
    monkeypatch.setenv("SVC_USER", "robot")
    monkeypatch.setenv("SVC_PASSWORD", password)
    monkeypatch.setenv("SVC_OPTIONS", '{"sslmode": "require"}')
    block = TestCredentials.from_env("SVC_")
    assert block.user == "robot" and block.password.get_secret_value() == password
    assert block.options.get_secret_value() == {"sslmode": "require"}
    assert scrub(password) == "***"

    monkeypatch.setenv("WH_HOST", "db.internal")
    monkeypatch.setenv("WH_PORT", "6543")
    monkeypatch.setenv("WH_CREDENTIALS__USER", "loader")
    monkeypatch.setenv("WH_CREDENTIALS__PASSWORD", password)
    database = TestDatabase.from_env("WH_")
    assert (database.port, database.credentials.user) == (6543, "loader")

    monkeypatch.delenv("SVC_PASSWORD")
    with pytest.raises(BlockValidationError, match=r"field 'password': Field required \(set SVC_PASSWORD\)"):
        TestCredentials.from_env("SVC_")
    monkeypatch.setenv("WH_PORT", "not-a-number")
    with pytest.raises(BlockValidationError) as info:
        TestDatabase.from_env("WH_")
    assert "WH_PORT" in str(info.value) and "not-a-number" not in str(info.value)


# -- the conformance suite ------------------------------------------------------------------------
def test_a_good_block_conforms() -> None:
    assert_block_conforms(TestCredentials, creds(options={"token": "abc-123-xyz"}, certificate=b"cert-bytes"))
    assert_block_conforms(TestDatabase, TestDatabase(host="db", credentials=creds(), replicas=[creds()]))
    assert "save-load-round-trip" in BLOCK_CONFORMANCE_CHECKS and "secrets-masked" in BLOCK_CONFORMANCE_CHECKS


def test_a_block_without_field_descriptions_fails_clearly() -> None:
    class Sloppy(Block):
        """A block with undocumented fields."""

        code_example: ClassVar[str] = 'Sloppy(url="https://x").save("s")'
        url: str
        retries: int = 3

    with pytest.raises(AssertionError) as info:
        assert_block_conforms(Sloppy, Sloppy(url="https://example.com"))
    text = str(info.value)
    assert "Sloppy fails 1 of 8 block conformance checks" in text
    assert "[field-descriptions] field(s) without a description: url, retries" in text
    assert "Fix: declare each field as" in text


def test_the_conformance_suite_catches_secret_mistakes() -> None:
    class Leaky(Block):
        password: str = Field(description="Typed as plain text.")

    with pytest.raises(AssertionError) as info:
        assert_block_conforms(Leaky, Leaky(password="hunter2-hunter2"))
    text = str(info.value)
    for check in ("[description]", "[code-example]", "[secret-fields]"):
        assert check in text
    assert "type them SecretStr" in text

    class Revealing(Block):
        """Shows its secret in repr."""

        code_example: ClassVar[str] = "Revealing(token='x')"
        token: SecretStr = Field(description="Token.")

        def __repr__(self) -> str:
            return f"Revealing({self.token.get_secret_value()})"

    with pytest.raises(AssertionError, match=r"\[secrets-masked\] a secret value shows in repr\(\)"):
        assert_block_conforms(Revealing, Revealing(token="tok-123456"))


def test_the_conformance_suite_stays_offline() -> None:
    import socket

    class Phoning(Block):
        """Connects while validating."""

        code_example: ClassVar[str] = "Phoning(host='example.com')"
        host: str = Field(description="Host.")

        @field_validator("host")
        @classmethod
        def _reachable(cls, host: str) -> str:
            try:  # careless: swallows every error, so only the suite's guard can notice
                socket.create_connection((host, 443), timeout=1).close()
            except Exception:
                pass
            return host

    example = Phoning.model_construct(host="example.com")  # built without validating (no I/O here)
    with pytest.raises(AssertionError) as info:
        assert_block_conforms(Phoning, example, checks=["example-validates"])
    assert "[example-validates] the block tried to resolve 'example.com'" in str(info.value)
    assert "do no network I/O" in str(info.value)


# -- the store underneath ---------------------------------------------------------------------
def test_the_blocks_store_hands_out_plain_records(env: str) -> None:
    from dataclasses import is_dataclass

    from plait._store.blocks import BlockDocument, BlockReference, session, transact

    login_id = creds(user="loader").save("loader")
    TestDatabase(host="db", credentials=TestCredentials.load("loader"), replicas=[creds()]).save("warehouse")
    with session(action="read blocks from") as tx:
        doc = tx.get_by_name("test-database", "warehouse")
        assert type(doc) is BlockDocument and is_dataclass(doc)
        assert doc.data["credentials"] == {"$ref": login_id} and doc.data["host"] == "db"
        refs = sorted(tx.references_of(doc.id), key=lambda r: r.field_name)
        assert [type(r) for r in refs] == [BlockReference, BlockReference]
        assert [(r.field_name, r.child_id == login_id) for r in refs] == [("credentials", True), ("replicas", False)]
        assert [r.parent_id for r in tx.users_of(login_id)] == [doc.id]
        assert tx.path_between([login_id], doc.id) is None  # references only point down
        assert [r.child_id for r in tx.path_between([doc.id], login_id)] == [login_id]
        assert tx.schema(doc.schema_checksum).json_schema == TestDatabase.model_json_schema()
        assert {"test-credentials", "test-database"} <= tx.slugs()
    # A unit of work that raises changes nothing.
    with pytest.raises(RuntimeError, match="changed my mind"):
        def work(tx: Any) -> None:
            tx.delete_document(login_id)
            raise RuntimeError("changed my mind")

        transact(work, action="delete a block from", write=True)
    assert TestDatabase.load("warehouse").credentials.user == "loader"


def test_database_errors_name_the_database_without_its_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from plait._store.database import Database
    from plait.exceptions import DatabaseError

    Database.dispose_all()
    monkeypatch.setenv("PLAIT_HOME", str(tmp_path))
    monkeypatch.setenv("PLAIT_DATABASE_URL", "postgresql+psycopg://robot:pw-canary-77@127.0.0.1:1/plait")
    for attempt in (lambda: TestCredentials.load("prod"), lambda: creds().save("prod"), list_documents):
        with pytest.raises(DatabaseError) as info:
            attempt()
        text = str(info.value)
        assert "127.0.0.1:1/plait" in text and "pw-canary-77" not in text and "robot:***@" in text
    Database.dispose_all()
