"""plait.variables on the local store (SQLite and PostgreSQL): set/get/unset/list, overwrite,
JSON values, validation errors, the async calls, events, and ``${var:name}`` in blocks files
and plait.yaml."""

from __future__ import annotations

import asyncio
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from plait import plugins, variables
from plait.exceptions import BlocksFileError
from plait.hookspecs import hookimpl


@pytest.fixture
def store(plait_env: str) -> str:
    return plait_env


def _events(kind_prefix: str = "variable.") -> list[dict[str, Any]]:
    from plait._store.database import get_database
    from plait._store.events import list_events

    items = list_events(get_database(), limit=1000)["items"]
    return [e for e in items if e["kind"].startswith(kind_prefix)]


# -- the API -----------------------------------------------------------------------------------------
VALUES: list[Any] = [
    "text", "", 0, -7, 2**62, 3.25, True, False, None, [], {}, [1, "two", None, [3.5]],
    {"schema": "analytics", "nested": {"threads": 4, "tags": ["a", "b"], "on": False}}, "ünïcødé ✓",
]


@pytest.mark.parametrize("value", VALUES, ids=[repr(v)[:20] for v in VALUES])
def test_json_values_round_trip(store: str, value: Any) -> None:
    saved = variables.set("config", value)
    assert saved["name"] == "config" and saved["value"] == value and saved["tags"] == []
    got = variables.get("config", default="absent")
    assert got == value and type(got) is type(value)


def test_get_answers_the_default_for_a_missing_variable(store: str) -> None:
    assert variables.get("nothing") is None
    assert variables.get("nothing", default={"x": 1}) == {"x": 1}
    variables.set("something", None)
    assert variables.get("something", default="d") is None  # a stored null is a value, not "missing"


def test_set_refuses_an_existing_name_unless_overwrite(store: str) -> None:
    first = variables.set("schema", "analytics", tags=["team-data"])
    with pytest.raises(ValueError, match=r"variable 'schema' already exists; pass overwrite=True") as caught:
        variables.set("schema", "staging")
    assert isinstance(caught.value, variables.VariableExists)
    assert variables.get("schema") == "analytics"
    again = variables.set("schema", "staging", overwrite=True)
    assert again["value"] == "staging" and again["id"] == first["id"]
    assert again["tags"] == ["team-data"]  # tags left out are kept
    assert again["created"] == first["created"] and again["updated"] >= first["updated"]
    assert variables.set("schema", "x", overwrite=True, tags=[])["tags"] == []
    assert variables.set("fresh", 1, overwrite=True)["value"] == 1  # overwrite on a new name creates it


def test_unset_and_list(store: str) -> None:
    for name in ("b-two", "a_one", "c3"):
        variables.set(name, {"n": name}, tags=["t"])
    assert [v["name"] for v in variables.list()] == ["a_one", "b-two", "c3"]
    assert variables.ls() == variables.list()
    assert variables.unset("b-two") is True
    assert variables.unset("b-two") is False
    assert variables.get("b-two", default="gone") == "gone"
    assert [v["name"] for v in variables.ls()] == ["a_one", "c3"]
    assert variables.inspect("c3") is not None and variables.inspect("b-two") is None


@pytest.mark.parametrize("name", ["Upper", "with space", "dot.name", "slash/x", "", "x" * 256, "é", 5, None])
def test_a_bad_name_is_refused_saying_what_is_allowed(store: str, name: Any) -> None:
    for call in (lambda: variables.set(name, 1), lambda: variables.get(name), lambda: variables.unset(name)):
        with pytest.raises(ValueError, match=r"1 to 255 lower-case letters, digits, '_' or '-'"):
            call()
    assert variables.list() == []


def test_the_longest_name_is_accepted(store: str) -> None:
    name = "a" * 255
    variables.set(name, 1)
    assert variables.get(name) == 1


@pytest.mark.parametrize("value,problem", [
    (object(), "is a object"),
    ({1: "a"}, "the key 1"),
    ({"a": {(1, 2): 3}}, "the key (1, 2)"),
    (float("nan"), "not a JSON number"),
    ([float("inf")], "not a JSON number"),
    ({"when": __import__("datetime").date(2026, 1, 1)}, "the value.when is a date"),
    ("nul\x00char", "NUL character"),
    ("bad \ud800", "unpaired surrogate"),
    ({1, 2}, "is a set"),
    ((1, 2), "is a tuple"),
])
def test_a_value_that_is_not_json_is_refused_naming_the_variable(store: str, value: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=r"variable 'cfg': a value is JSON") as caught:
        variables.set("cfg", value)
    assert problem in str(caught.value)
    assert variables.get("cfg", default="unset") == "unset"


def test_a_value_too_long_or_too_deep_is_refused(store: str) -> None:
    with pytest.raises(ValueError, match=r"variable 'big': its value is 5,003 characters as JSON; at most 5,000"):
        variables.set("big", "x" * 5001)
    variables.set("big", "x" * 4998)  # 5,000 with its quotes
    deep: Any = 1
    for _ in range(70):
        deep = [deep]
    with pytest.raises(ValueError, match="nested more than 64 levels"):
        variables.set("deep", deep)


def test_bad_tags_are_refused(store: str) -> None:
    with pytest.raises(ValueError, match="a list of texts"):
        variables.set("t", 1, tags="one")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="a text of 1 to 255 characters"):
        variables.set("t", 1, tags=[""])
    assert variables.set("t", 1, tags=["a", "b", "a"])["tags"] == ["a", "b"]


def test_concurrent_creators_of_one_name_one_wins(store: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def create(i: int) -> str:
        try:
            variables.set("raced", i)
        except variables.VariableExists:
            return "refused"
        return "created"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(create, range(8)))
    assert outcomes.count("created") == 1 and outcomes.count("refused") == 7
    with ThreadPoolExecutor(8) as pool:
        saved = list(pool.map(lambda i: variables.set("raced", i, overwrite=True)["name"], range(8)))
    assert saved == ["raced"] * 8 and len(variables.list()) == 1


def test_the_async_calls_match_the_sync_ones(store: str) -> None:
    async def main() -> list[Any]:
        made = await variables.aset("asy", {"k": [1]}, tags=["x"])
        with pytest.raises(variables.VariableExists):
            await variables.aset("asy", 2)
        got = await variables.aget("asy")
        missing = await variables.aget("nope", default=5)
        updated = await variables.aset("asy", 2, overwrite=True)
        with pytest.raises(ValueError, match="lower-case"):
            await variables.aget("NOPE")
        return [made["value"], got, missing, updated["tags"], await variables.aunset("asy"),
                await variables.aunset("asy")]

    assert asyncio.run(main()) == [{"k": [1]}, {"k": [1]}, 5, ["x"], True, False]


def test_set_and_unset_emit_events_without_the_value(store: str) -> None:
    variables.set("evt", "secret-looking-value", tags=["t1"])
    variables.set("evt", "other", overwrite=True)
    variables.unset("evt")
    variables.unset("evt")  # nothing to delete: no event
    found = _events()
    assert [(e["kind"], e["resource"]) for e in found] == [
        ("variable.created", "variable/evt"), ("variable.updated", "variable/evt"),
        ("variable.deleted", "variable/evt"),
    ]
    assert all(e["payload"]["name"] == "evt" and e["payload"]["tags"] == ["t1"] for e in found)
    assert "secret-looking-value" not in repr(found)


def test_custom_events_may_not_forge_variable_kinds() -> None:
    from plait.events import is_reserved_kind

    assert is_reserved_kind("variable.created")


# -- ${var:name} in blocks files ---------------------------------------------------------------------


def _register_block() -> Any:
    from plait.blocks import Block

    class VarTargetBlock(Block):
        """A block whose values come from variables."""

        url: str = Field(description="Where.")
        threads: int = Field(default=1, description="How many.")
        options: dict[str, Any] = Field(default_factory=dict, description="Extra.")

    plugin = types.SimpleNamespace(__name__="test_variables_plugin")

    @hookimpl
    def register(register: Any) -> None:
        register(VarTargetBlock)

    plugin.plait_register_blocks = register
    return VarTargetBlock, plugin


@pytest.fixture
def block_cls(store: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("PLAIT_ENCRYPTION_KEY", raising=False)
    cls, plugin = _register_block()
    plugins.register_plugin("test-variables", plugin)
    yield cls
    plugins.unregister_plugin("test-variables")


BLOCKS = """
    blocks:
      - type: var-target-block
        name: from-vars
        values:
          url: https://${var:api_host}/v${var:api_version}
          threads: ${var:threads}
          options:
            all: ${var:options}
            literal: $${var:api_host}
"""


def test_a_blocks_file_takes_variable_values(block_cls: Any, tmp_path: Path) -> None:
    from plait.blocks import apply_blocks_file

    variables.set("api_host", "api.example.com")
    variables.set("api_version", 2)
    variables.set("threads", 8)
    variables.set("options", {"retries": 3, "verbose": True})
    path = tmp_path / "blocks.yaml"
    path.write_text(textwrap.dedent(BLOCKS), encoding="utf-8")
    assert [r.action for r in apply_blocks_file(path)] == ["created"]
    block = block_cls.load("from-vars")
    assert block.url == "https://api.example.com/v2"
    assert block.threads == 8  # the whole value: the variable's number, not its text
    assert block.options == {"all": {"retries": 3, "verbose": True}, "literal": "${var:api_host}"}
    assert [r.action for r in apply_blocks_file(path)] == ["unchanged"]
    variables.set("threads", 16, overwrite=True)
    assert [r.action for r in apply_blocks_file(path)] == ["updated"]
    assert block_cls.load("from-vars").threads == 16


def test_a_blocks_file_names_the_file_block_field_and_missing_variable(block_cls: Any, tmp_path: Path) -> None:
    from plait.blocks import apply_blocks_file, list_documents

    variables.set("api_host", "h")
    path = tmp_path / "blocks.toml"
    path.write_text(textwrap.dedent("""
        [[blocks]]
        type = "var-target-block"
        name = "missing-vars"
        values = { url = "${var:api_host}", threads = "${var:no_such_threads}", options = { a = "${var:gone}" } }
    """), encoding="utf-8")
    with pytest.raises(BlocksFileError) as caught:
        apply_blocks_file(path)
    message = str(caught.value)
    assert str(path) in message and "variable(s) not set" in message
    assert "no_such_threads (block var-target-block/missing-vars, field 'threads')" in message
    assert "gone (block var-target-block/missing-vars, field 'options.a')" in message
    assert "plait variable set NAME VALUE" in message and "nothing was written" in message
    assert list_documents() == []
    path.write_text('[[blocks]]\ntype = "var-target-block"\nname = "bad"\nvalues = { url = "${var:Bad Name}" }\n',
                    encoding="utf-8")
    with pytest.raises(BlocksFileError, match=r"field 'url': '\$\{var:Bad Name\}' does not name a variable"):
        apply_blocks_file(path)


# -- ${var:name} in plait.yaml -------------------------------------------------------------------------
FLOW_FILE = """\
from plait import flow


@flow(name="var-etl")
def etl(days: int = 1, label: str = "daily") -> str:
    return f"{label}:{days}"
"""


@pytest.fixture
def project(store: str, tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "flows").mkdir(parents=True)
    (root / "flows" / "etl.py").write_text(FLOW_FILE)
    return root


def test_plait_yaml_takes_variable_values(project: Path) -> None:
    from plait.deployments import apply_file, get_deployment

    variables.set("etl_days", 7)
    variables.set("etl_label", "weekly")
    variables.set("etl_tags", ["a", "b"])
    path = project / "plait.yaml"
    path.write_text(textwrap.dedent("""\
        deployments:
          - name: by-vars
            entrypoint: flows/etl.py:etl
            parameters: {days: "${var:etl_days}", label: "run-${var:etl_label}"}
            tags: "${var:etl_tags}"
            description: "costs $${var:etl_days}"
    """))
    assert apply_file(path) == [("var-etl/by-vars", "created")]
    saved = get_deployment("var-etl/by-vars")
    assert saved["parameters"] == {"days": 7, "label": "run-weekly"}
    assert saved["tags"] == ["a", "b"] and saved["description"] == "costs ${var:etl_days}"
    assert apply_file(path) == [("var-etl/by-vars", "unchanged")]


def test_plait_yaml_names_the_file_deployment_key_and_missing_variable(project: Path) -> None:
    from plait.deployments import DeploymentNotFound, DeploymentsFileError, apply_file, get_deployment

    path = project / "plait.yaml"
    path.write_text(textwrap.dedent("""\
        deployments:
          - name: by-vars
            entrypoint: flows/etl.py:etl
            parameters: {days: "${var:missing_days}"}
    """))
    with pytest.raises(DeploymentsFileError) as caught:
        apply_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path.resolve()}: deployment 'by-vars': variable(s) not set: ")
    assert "missing_days (key 'parameters.days')" in message and "plait variable set NAME VALUE" in message
    with pytest.raises(DeploymentNotFound):
        get_deployment("var-etl/by-vars")
