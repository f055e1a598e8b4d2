"""on_crashed hooks of a run whose process died (kill -9, a timeout) are called by whoever
noticed the crash: the Process block that launched it (a worker's, serve's, `plait run`'s),
as Prefect's runner does. A run that crashed inside its own process calls them itself."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from plait import plugins

FLOWS = '''
import json, os, pathlib, signal, time
from plait import flow

OUT = pathlib.Path(__file__).with_name("hooks.jsonl")


def note(flow, run, state):
    with OUT.open("a") as f:
        f.write(json.dumps({"flow": flow.name, "run": run.id, "name": run.name, "state": state.type.value,
                            "message": state.message, "parameters": run.parameters}) + "\\n")


def broken(flow, run, state):
    raise RuntimeError("the pager is down")


@flow(on_crashed=[note])
def doomed(day: str) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@flow(on_crashed=[broken, note])
def doomed_with_broken_hook() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@flow(on_crashed=[note])
def slow() -> None:
    time.sleep(60)


@flow
def plain() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@flow(on_crashed=[note])
def fine() -> int:
    return 1
'''


@pytest.fixture
def flows_file(tmp_path: Path) -> Path:
    path = tmp_path / "crashing.py"
    path.write_text(textwrap.dedent(FLOWS))
    return path


@pytest.fixture
def Process():  # noqa: N802 - the block under test
    from plait_blocks.process import Process as cls

    if "process" not in plugins.infrastructure_kinds():
        import types

        from plait.hookspecs import hookimpl

        module = types.ModuleType("plait_test_crash_hooks_plugin")
        module.plait_register_infrastructure = hookimpl(lambda register: register("process", cls))  # type: ignore[attr-defined]
        plugins.register_plugin("test-crash-hooks", module)
        yield cls
        plugins.unregister_plugin("test-crash-hooks")
        return
    yield cls


def calls(flows_file: Path) -> list[dict]:
    out = flows_file.with_name("hooks.jsonl")
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def test_a_killed_run_s_hooks_are_called_by_its_launcher(plait_harness, Process, flows_file: Path) -> None:
    result = Process(stream_output=False).run(f"{flows_file}:doomed", {"day": "2026-12-01"})
    assert result.state_type == "CRASHED"
    [call] = calls(flows_file)
    assert call["run"] == result.flow_run_id and call["state"] == "CRASHED"
    assert "killed by SIGKILL" in call["message"]
    assert call["parameters"] == {"day": "2026-12-01"}
    assert call["name"] == plait_harness.flow_run(result.flow_run_id)["name"]
    logs = [row["message"] for row in plait_harness.logs(result.flow_run_id)]
    assert "called 1 on_crashed hook of flow 'doomed'" in logs


def test_a_hook_that_raises_is_logged_with_the_run_and_the_next_one_runs(
    plait_harness, Process, flows_file: Path
) -> None:
    result = Process(stream_output=False).run(f"{flows_file}:doomed_with_broken_hook")
    assert result.state_type == "CRASHED"
    assert [c["flow"] for c in calls(flows_file)] == ["doomed-with-broken-hook"]
    logs = " ".join(row["message"] for row in plait_harness.logs(result.flow_run_id))
    assert "the pager is down" in logs and "the run stays Crashed" in logs
    assert plait_harness.flow_run(result.flow_run_id)["state_type"] == "CRASHED"


def test_a_timed_out_run_s_hooks_are_called(plait_harness, Process, flows_file: Path) -> None:
    result = Process(stream_output=False, timeout_seconds=1.5).run(f"{flows_file}:slow")
    assert result.state_type == "CRASHED"
    [call] = calls(flows_file)
    assert "timed out" in call["message"]


def test_no_hooks_no_calls_and_a_completed_run_calls_none(plait_harness, Process, flows_file: Path) -> None:
    result = Process(stream_output=False).run(f"{flows_file}:plain")
    assert result.state_type == "CRASHED"
    logs = [row["message"] for row in plait_harness.logs(result.flow_run_id)]
    assert "flow 'plain' has no on_crashed hooks" in logs
    assert Process(stream_output=False).run(f"{flows_file}:fine").state_type == "COMPLETED"
    assert calls(flows_file) == []
