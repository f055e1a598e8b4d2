"""Deployment triggers (the automations a deployment owns) through ``plait.yaml`` and
``Flow.deploy(triggers=...)`` on the local store: created, unchanged, updated, kept when
the key is left out, removed by an empty list, deleted with the deployment; a bad trigger
refused naming the file, the deployment and the trigger before anything is saved."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from plait.automations import list_automations
from plait.deployments import DeploymentsFileError, apply_file

FLOWS = textwrap.dedent('''
    from plait import flow


    @flow
    def upstream(table: str = "orders") -> str:
        return table


    @flow
    def downstream(table: str = "none") -> str:
        return table
''')


def project(root: Path, triggers: str | None) -> Path:
    (root / "flows.py").write_text(FLOWS)
    entry = "  - name: down\n    entrypoint: flows.py:downstream\n"
    if triggers is not None:
        entry += "    triggers:" + (("\n" + textwrap.indent(triggers, "      ")) if triggers else "") + "\n"
    path = root / "plait.yaml"
    path.write_text("deployments:\n  - name: up\n    entrypoint: flows.py:upstream\n" + entry)
    return path


def owned() -> list[dict[str, object]]:
    return [a for a in list_automations() if str(a.get("source") or "").startswith("deployment:")]


def test_triggers_in_plait_yaml_follow_the_file(plait_env: str, tmp_path: Path) -> None:
    one = "- deployment: upstream/up\n  parameters: {table: '{{ flow_run.parameters.table }}'}\n"
    path = project(tmp_path, one)
    assert dict(apply_file(path))["downstream/down"] == "created"
    [made] = owned()
    assert made["name"] == "downstream/down: trigger 1"
    assert made["trigger"]["expect"] == ["flow-run.completed"]  # type: ignore[index]
    assert made["actions"][0]["parameters"] == {"table": "{{ flow_run.parameters.table }}"}  # type: ignore[index]
    assert dict(apply_file(path))["downstream/down"] == "unchanged"
    project(tmp_path, one.replace("{table:", "{\"table\":").replace("'{{", "'x-{{") + "  states: [failed]\n")
    assert dict(apply_file(path))["downstream/down"] == "updated"
    assert owned()[0]["trigger"]["expect"] == ["flow-run.failed"]  # type: ignore[index]
    project(tmp_path, None)  # the key left out: kept, as schedules are
    assert dict(apply_file(path))["downstream/down"] == "unchanged" and len(owned()) == 1
    project(tmp_path, "")  # `triggers:` with nothing: removed
    assert dict(apply_file(path))["downstream/down"] == "updated" and owned() == []


def test_a_bad_trigger_is_refused_before_anything_is_saved(plait_env: str, tmp_path: Path) -> None:
    path = project(tmp_path, "- deployment: upstream\n")
    with pytest.raises(DeploymentsFileError, match=r"plait.yaml: deployment 'down'.*trigger 1: deployment is "
                                                   r"'flow/name'"):
        apply_file(path)
    project(tmp_path, "- expect: [flow-run.completed]\n  whithin: 10m\n")
    with pytest.raises(DeploymentsFileError, match="unknown field.*whithin"):
        apply_file(path)
    assert owned() == []


def test_deleting_a_deployment_deletes_its_triggers(plait_env: str, tmp_path: Path) -> None:
    from plait.deployments._model import control_plane

    path = project(tmp_path, "- deployment: upstream/up\n")
    apply_file(path)
    assert len(owned()) == 1
    control_plane().delete_deployment("downstream/down")
    assert owned() == []
