"""``plait variable ls | get | set | unset | inspect`` on the local store (SQLite and
PostgreSQL), through click's CliRunner and once through the console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from plait import variables
from plait.cli import cli

PLAIT = Path(sys.executable).with_name("plait")


@pytest.fixture
def store(plait_env: str) -> str:
    return plait_env


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def ok(*args: str) -> str:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("text,value", [
    ("42", 42), ("-1.5", -1.5), ("true", True), ("null", None), ('"quoted 42"', "quoted 42"),
    ('{"a": [1, 2]}', {"a": [1, 2]}), ("[1, 2]", [1, 2]), ("hello world", "hello world"), ("{not json", "{not json"),
])
def test_set_reads_json_when_it_parses_else_text(store: str, text: str, value: object) -> None:
    assert ok("variable", "set", "v", text) == "Set variable v.\n"
    assert variables.get("v") == value
    shown = ok("variable", "get", "v")
    assert shown == (value if isinstance(value, str) else json.dumps(value)) + "\n"
    assert json.loads(ok("variable", "get", "v", "--json")) == value


def test_set_refuses_an_existing_name_unless_overwrite_and_takes_tags(store: str) -> None:
    ok("variable", "set", "schema", "analytics", "--tag", "team", "--tag", "prod")
    refused = invoke("variable", "set", "schema", "staging")
    assert refused.exit_code == 1
    assert "Error: variable 'schema' already exists; pass --overwrite to replace its value" in refused.output
    assert variables.get("schema") == "analytics"
    saved = json.loads(ok("variable", "set", "schema", "staging", "--overwrite", "--json"))
    assert saved["value"] == "staging" and saved["tags"] == ["team", "prod"]


def test_ls_inspect_and_unset(store: str) -> None:
    assert "No variables. Set one with `plait variable set NAME VALUE`." in ok("variable", "ls")
    assert json.loads(ok("variable", "ls", "--json")) == []
    ok("variable", "set", "b", '{"x": 1}', "--tag", "t")
    ok("variable", "set", "a", "text")
    table = ok("variable", "ls")
    lines = table.splitlines()
    assert lines[0].split() == ["VARIABLE", "VALUE", "TAGS", "UPDATED"]
    assert lines[1].split()[:3] == ["a", "text", "-"] and lines[2].split()[:3] == ["b", '{"x":', '1}']
    assert [r["name"] for r in json.loads(ok("variable", "ls", "--json"))] == ["a", "b"]
    inspected = ok("variable", "inspect", "b")
    assert "Variable  b" in inspected and "Tags      t" in inspected and '"x": 1' in inspected
    assert json.loads(ok("variable", "inspect", "b", "--json"))["value"] == {"x": 1}
    assert ok("variable", "unset", "b") == "Unset variable b.\n"
    gone = invoke("variable", "unset", "b")
    assert gone.exit_code == 1 and "Error: no variable named 'b'; `plait variable ls` lists them" in gone.output
    for command in ("get", "inspect"):
        missing = invoke("variable", command, "b")
        assert missing.exit_code == 1 and "no variable named 'b'" in missing.output


def test_bad_input_is_one_line_error(store: str) -> None:
    bad = invoke("variable", "set", "Bad", "1")
    assert bad.exit_code == 1
    assert bad.output.strip() == ("Error: a variable's name is 1 to 255 lower-case letters, digits, '_' or '-' "
                                  "(e.g. 'warehouse_schema'), not 'Bad'")
    long = invoke("variable", "set", "big", "x" * 5001)
    assert long.exit_code == 1 and "at most 5,000" in long.output and "Traceback" not in long.output
    assert invoke("variable", "set", "only-name").exit_code == 2  # click's usage error
    typo = invoke("variable", "set", "x", "1", "--overwirte")
    assert typo.exit_code == 2 and variables.get("x") is None


def test_the_console_script(store: str) -> None:
    env = dict(os.environ)
    done = subprocess.run([str(PLAIT), "variable", "set", "from-shell", '{"n": 1}', "--json"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["value"] == {"n": 1}
    assert variables.get("from-shell") == {"n": 1}  # the same store as this process
    got = subprocess.run([str(PLAIT), "variable", "get", "nope"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert got.returncode == 1 and got.stderr.startswith("Error: no variable named 'nope'")
