"""``plait automation create | ls | inspect | enable | disable | delete | actions``, through
click's CliRunner against a real store (SQLite and PostgreSQL via ``plait_env``) and against
a real server (``PLAIT_API_URL``), where the client machine opens no database; the console
script in a subprocess for the registration.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from plait.cli import cli
from plait.cli.automations import automation_group, describe_trigger

PLAIT = Path(sys.executable).with_name("plait")

ONE = """\
name: dbt-after-load
description: refresh the models when the raw load completes
trigger:
  expect: flow-run.completed
  match: {payload.flow_name: raw-load}
  for_each: [deployment]
actions:
  - type: run-deployment
    deployment: dbt/refresh
    parameters: {table: "{{ flow_run.parameters.table }}"}
"""

TWO = """\
automations:
  - name: overrun
    trigger: {posture: proactive, after: flow-run.running, expect: flow-run.completed, within: 2h,
              for_each: [flow_run_id]}
    actions:
      - type: cancel-flow-run
  - name: shout
    trigger: {expect: "warehouse.*", threshold: 3, within: 10m}
    actions:
      - type: call-webhook
        url: "https://hooks.example.com/in?token={{ secret('hook-token') }}"
        headers: {Authorization: "Bearer {{ secret('api-key') }}"}
"""

PASTED = """\
name: pasted
trigger: {expect: warehouse.loaded}
actions:
  - type: call-webhook
    url: https://hooks.example.com/in?token=tok-12345678
    headers: {Authorization: Bearer sk-live-abcdef}
"""

BROKEN_SECOND = """\
automations:
  - name: fine
    trigger: {expect: flow-run.failed}
    actions: [{type: pause-work-pool, work_pool: etl}]
  - name: broken
    trigger: {expect: flow-run.failed, within: soon}
    actions: [{type: pause-work-pool}]
"""


@pytest.fixture(autouse=True, scope="module")
def _commands() -> None:
    """The group on ``plait``, as plait.cli._app registers it (done here too, so these tests
    run whatever the order of registration; the console-script test checks the real one)."""
    if automation_group.name not in cli.commands:
        cli.add_command(automation_group)


def invoke(*args: str, ok: bool = True, input: str | None = None) -> Result:
    result = CliRunner().invoke(cli, list(args), input=input)
    assert "Traceback" not in result.output
    if ok:
        assert result.exit_code == 0, f"plait {' '.join(args)} exited {result.exit_code}:\n{result.output}"
    else:
        assert result.exit_code != 0, f"plait {' '.join(args)} succeeded:\n{result.output}"
    return result


def as_json(*args: str) -> Any:
    return json.loads(invoke(*args, "--json").output)


def write(tmp_path: Path, text: str, name: str = "automation.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def rule(database_url: str) -> str:
    from plait._store.database import Database
    from plait._store.rules import NotificationRule, insert_rule

    name = f"ops-{uuid.uuid4().hex[:6]}"
    insert_rule(NotificationRule(id=str(uuid.uuid4()), name=name, block="slack-webhook/ops", flow_name="*",
                                 tags=[], states=["FAILED"], created=datetime.now(UTC)), Database.open(database_url))
    return name


# -- plain helpers ----------------------------------------------------------------------------------
def test_triggers_read_as_one_line() -> None:
    assert describe_trigger({"type": "event", "posture": "reactive", "expect": ["flow-run.completed"],
                             "match": {"payload.flow_name": "load"}, "for_each": ["deployment"],
                             "threshold": 1, "within": 0}) == (
        "reactive: flow-run.completed where payload.flow_name=load per deployment")
    assert describe_trigger({"type": "event", "posture": "reactive", "expect": ["a.b", "c.d"], "threshold": 3,
                             "within": 600.0}) == "reactive: a.b, c.d 3 times within 10m"
    assert describe_trigger({"type": "event", "posture": "proactive", "expect": ["flow-run.completed"],
                             "after": ["flow-run.running"], "threshold": 1, "within": 7200.0}) == (
        "proactive: no flow-run.completed within 2h after flow-run.running")
    assert describe_trigger({"type": "compound", "require": "any", "within": 90.0, "triggers": [
        {"type": "event", "expect": ["a.b"]}, {"type": "event", "expect": []}]}) == (
        "any of (reactive: a.b; reactive: any event) within 90s")
    assert describe_trigger(None) == "-"


# -- against the local store ------------------------------------------------------------------------
def test_create_ls_inspect_enable_disable_delete(plait_env: str, tmp_path: Path) -> None:
    created = invoke("automation", "create", "-f", write(tmp_path, ONE)).output
    assert created.strip() == ("Created automation dbt-after-load: reactive: flow-run.completed where "
                               "payload.flow_name=raw-load per deployment.")
    again = as_json("automation", "create", "-f", write(tmp_path, ONE))
    assert [r["outcome"] for r in again] == ["unchanged"]
    two = invoke("automation", "create", "--file", write(tmp_path, TWO, "two.yaml")).output
    assert "Created automation overrun: proactive: no flow-run.completed within 2h after flow-run.running" in two
    assert "Created automation shout: reactive: warehouse.* 3 times within 10m." in two

    listing = invoke("automation", "ls").output.splitlines()
    assert listing[0].split() == ["AUTOMATION", "ENABLED", "TRIGGER", "ACTIONS", "SOURCE"]
    assert [line.split()[0] for line in listing[1:]] == ["dbt-after-load", "overrun", "shout"]
    assert "run-deployment dbt/refresh" in listing[1]
    rows = as_json("automation", "ls")
    assert [r["name"] for r in rows] == ["dbt-after-load", "overrun", "shout"]
    assert rows[0]["trigger"]["for_each"] == ["deployment"] and rows[0]["source"] is None

    shown = invoke("automation", "inspect", "dbt-after-load").output
    for text in ("Automation   dbt-after-load", "Enabled      yes", "1. run-deployment dbt/refresh",
                 '   parameters: {"table": "{{ flow_run.parameters.table }}"}', "Recent actions", "(no actions yet)"):
        assert text in shown, shown
    detail = as_json("automation", "inspect", rows[0]["id"])
    assert detail["name"] == "dbt-after-load" and detail["recent_actions"] == []

    assert invoke("automation", "disable", "shout").output.strip() == "Disabled automation shout."
    assert as_json("automation", "inspect", "shout")["enabled"] is False
    assert as_json("automation", "enable", "shout")["enabled"] is True
    assert invoke("automation", "actions", "shout").output.strip() == "(no actions yet)"
    assert as_json("automation", "actions", "shout", "--status", "failed") == []

    invoke("automation", "delete", "overrun", input="n\n", ok=False)
    assert invoke("automation", "delete", "overrun", input="y\n").output.strip().endswith("Deleted automation overrun.")
    assert as_json("automation", "delete", "shout", "--yes")["name"] == "shout"
    assert [r["name"] for r in as_json("automation", "ls")] == ["dbt-after-load"]


def test_secrets_in_actions_are_never_shown(plait_env: str, tmp_path: Path) -> None:
    invoke("automation", "create", "-f", write(tmp_path, TWO))
    for args in (("automation", "inspect", "shout"), ("automation", "inspect", "shout", "--json"),
                 ("automation", "ls"), ("automation", "ls", "--json")):
        output = invoke(*args).output
        assert "sk-live-abcdef" not in output and "tok-12345678" not in output, args
    action = as_json("automation", "inspect", "shout")["actions"][0]
    assert action["headers"] == {"Authorization": "***"} and action["url"].endswith("token=***")


def test_a_credential_written_into_an_action_is_refused(plait_env: str, tmp_path: Path) -> None:
    failed = invoke("automation", "create", "-f", write(tmp_path, PASTED), ok=False).output
    assert "actions.0.headers.Authorization: a credential written as it is" in failed
    assert "actions.0.url: holds a password or token" in failed and "secret('NAME')" in failed
    assert "sk-live-abcdef" not in failed and "tok-12345678" not in failed
    assert as_json("automation", "ls") == []


def test_a_bad_file_saves_nothing_and_says_where(plait_env: str, tmp_path: Path) -> None:
    failed = invoke("automation", "create", "-f", write(tmp_path, BROKEN_SECOND), ok=False).output
    assert "automation 2" in failed and "trigger.within" in failed and "broken" in failed
    assert as_json("automation", "ls") == []
    missing = invoke("automation", "create", "-f", str(tmp_path / "nope.yaml"), ok=False).output
    assert "does not exist" in missing
    bad_yaml = invoke("automation", "create", "-f", write(tmp_path, "name: [unclosed", "bad.yaml"), ok=False).output
    assert "not valid YAML" in bad_yaml
    twice = write(tmp_path, "automations:\n" + "".join(
        "  - {name: same, trigger: {expect: a.b}, actions: [{type: cancel-flow-run}]}\n" for _ in range(2)), "2.yaml")
    assert "more than one automation named 'same'" in invoke("automation", "create", "-f", twice, ok=False).output
    assert "holds list" in invoke("automation", "create", "-f", write(tmp_path, "- 1\n", "l.yaml"), ok=False).output
    assert as_json("automation", "ls") == []


def test_unknown_keys_and_read_only_automations_are_refused_clearly(plait_env: str, tmp_path: Path) -> None:
    from plait._store.automations import replace_source_automations
    from plait._store.database import get_database
    from plait._store.deployments import save_deployment
    from plait.automations import parse_automation

    invoke("automation", "create", "-f", write(tmp_path, ONE))
    unknown = invoke("automation", "inspect", "dbt-after-lod", ok=False).output
    assert "no automation named 'dbt-after-lod'" in unknown and "dbt-after-load" in unknown

    name = rule(plait_env)
    shown = [r for r in as_json("automation", "ls") if r["name"] == name]
    assert shown and shown[0]["source"] == "notification-rule" and shown[0]["read_only"] is True
    assert "Read-only" in invoke("automation", "inspect", name).output
    assert as_json("automation", "actions", name) == []
    for args in (("disable", name), ("delete", name, "--yes")):
        refused = invoke("automation", *args, ok=False).output
        assert "notification rule" in refused and "plait notification" in refused

    db = get_database()
    deployment, _ = save_deployment(db, {"flow_name": "etl", "name": "nightly", "entrypoint": "flows/etl.py:etl"})
    replace_source_automations(db, f"deployment:{deployment['id']}",
                               [parse_automation({"name": "after-etl", "trigger": {"expect": "flow-run.completed"},
                                                  "actions": [{"type": "cancel-flow-run"}]}).to_json()])
    assert as_json("automation", "disable", "after-etl")["enabled"] is False
    refused = invoke("automation", "delete", "after-etl", "--yes", ok=False).output
    assert "etl/nightly" in refused and "plait deploy" in refused
    replaced = write(tmp_path, "{name: after-etl, trigger: {expect: a.b}, actions: [{type: cancel-flow-run}]}\n",
                     "r.yaml")
    assert "etl/nightly" in invoke("automation", "create", "-f", replaced, ok=False).output


def test_the_group_is_registered_in_the_plait_script(tmp_path: Path) -> None:
    env = {**os.environ, "PLAIT_HOME": str(tmp_path), "PLAIT_DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}"}
    for args in (["automation", "create"], ["automation", "ls"], ["automation", "actions"]):
        done = subprocess.run([str(PLAIT), *args, "--help"], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"plait {' '.join(args)}: {done.stderr}"


# -- against a server -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from plait.testing._server import running_server

    root = tmp_path_factory.mktemp("cli-automations")
    with running_server(f"sqlite:///{root / 'plait.db'}", root / "server") as handle:
        handle.database_url = f"sqlite:///{root / 'plait.db'}"  # type: ignore[attr-defined]
        yield handle


@pytest.fixture
def remote(server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """This process as a client machine of ``server``: its own database must stay absent."""
    from plait.testing import reset_state

    unused = tmp_path / "never-created.db"
    reset_state()
    monkeypatch.setenv("PLAIT_HOME", str(tmp_path / "client-home"))
    monkeypatch.setenv("PLAIT_DATABASE_URL", f"sqlite:///{unused}")
    monkeypatch.setenv("PLAIT_API_URL", server.api_url)
    monkeypatch.setenv("PLAIT_API_KEY", server.admin_key)
    yield server
    reset_state()
    assert not unused.exists(), "a command opened a local database instead of asking the server"


@pytest.mark.slow
def test_the_commands_work_through_the_server(remote: Any, tmp_path: Path) -> None:
    created = as_json("automation", "create", "-f", write(tmp_path, TWO))
    assert [(r["automation"]["name"], r["outcome"]) for r in created] == [("overrun", "created"), ("shout", "created")]
    assert [r["outcome"] for r in as_json("automation", "create", "-f", write(tmp_path, TWO))] == ["unchanged"] * 2
    name = rule(remote.database_url)
    listed = {r["name"]: r for r in as_json("automation", "ls")}
    assert {"overrun", "shout", name} <= set(listed) and listed[name]["source"] == "notification-rule"
    table = invoke("automation", "ls").output
    assert "overrun" in table and "notification-rule" in table and "sk-live-abcdef" not in table

    shown = invoke("automation", "inspect", "shout").output
    assert "Automation   shout" in shown and "sk-live-abcdef" not in shown and "Authorization" in shown
    assert as_json("automation", "disable", "shout")["enabled"] is False
    assert invoke("automation", "enable", "shout").output.strip() == "Enabled automation shout."
    assert as_json("automation", "actions", "shout", "--limit", "5") == []

    refused = invoke("automation", "delete", name, "--yes", ok=False).output
    assert "notification rule" in refused
    failed = invoke("automation", "create", "-f", write(tmp_path, BROKEN_SECOND, "bad.yaml"), ok=False).output
    assert "trigger.within" in failed
    assert "broken" not in {r["name"] for r in as_json("automation", "ls")}
    assert "no automation named 'nothing-here'" in invoke("automation", "inspect", "nothing-here", ok=False).output
    assert as_json("automation", "delete", "overrun", "--yes")["name"] == "overrun"
    assert "overrun" not in {r["name"] for r in as_json("automation", "ls")}
