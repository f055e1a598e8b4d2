"""The Process infrastructure block and the child entry point, with real subprocesses.

Each test writes a flow file to tmp_path and launches it through ``Process.run`` (or
``python -m plait.infrastructure``); the ``plait_harness`` fixture gives the test and the
child one throwaway database (the child inherits PLAIT_HOME and PLAIT_DATABASE_URL).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from plait import plugins
from plait.infrastructure import EntrypointError, load_flow, mark_flow_run, new_flow_run_id

pytestmark = pytest.mark.skipif(os.name != "posix", reason="process groups and signals are POSIX")

FLOWS = '''
import json
import os
import sys
import time

from plait import flow, get_run_logger


@flow
def greet(name: str, times: int = 1) -> str:
    for _ in range(times):
        print(f"hello {name} from print")
    print("a library complains", file=sys.stderr)
    get_run_logger().info("logged through the run logger")
    return f"hi {name}"


@flow
def where(out: str) -> None:
    with open(out, "w") as f:
        json.dump({"cwd": os.getcwd(), "stage": os.environ.get("STAGE")}, f)


@flow
def explode() -> None:
    raise ValueError("the database said no: table missing")


@flow
def sleepy(pid_file: str = "", seconds: float = 60) -> None:
    if pid_file:
        with open(pid_file, "w") as f:
            f.write(str(os.getpid()))
    time.sleep(seconds)


@flow
def parent_of_sleepy(pid_file: str) -> None:
    sleepy(pid_file)


@flow
async def greet_async(name: str) -> str:
    print(f"async hello {name}")
    return name


def not_a_flow():
    pass
'''


@pytest.fixture
def flows_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_flows.py"
    path.write_text(textwrap.dedent(FLOWS))
    return path


@pytest.fixture
def Process():  # noqa: N802 - the class under test
    """The Process block, registered as the built-in plugin registers it."""
    from plait_blocks.process import Process as cls

    if "process" not in plugins.infrastructure_kinds():
        import types

        from plait.hookspecs import hookimpl

        module = types.ModuleType("plait_test_process_plugin")
        module.plait_register_infrastructure = hookimpl(lambda register: register("process", cls))  # type: ignore[attr-defined]
        plugins.register_plugin("test-process", module)
        yield cls
        plugins.unregister_plugin("test-process")
        return
    yield cls


def messages(harness, flow_run_id: str) -> list[str]:
    return [row["message"] for row in harness.logs(flow_run_id)]


# -- the block ------------------------------------------------------------------------------------
def test_registered_as_process_infrastructure(Process) -> None:
    assert plugins.infrastructure_kinds()["process"] is Process
    assert "run-infrastructure" in Process.capabilities
    schema = Process.block_schema()
    for name in ("env", "working_dir", "timeout_seconds", "python", "stream_output"):
        assert schema["json_schema"]["properties"][name]["description"]
    assert Process.code_example and Process.block_description


def test_completed_run_records_state_result_and_printed_output(plait_harness, Process, flows_file, capsys) -> None:
    result = Process().run(f"{flows_file}:greet", {"name": "ada", "times": 2})

    assert result.ok and result.state_type == "COMPLETED" and result.exit_code == 0
    run = plait_harness.flow_run(result.flow_run_id)
    assert run["state_type"] == "COMPLETED"
    assert run["flow_name"] == "greet"
    assert run["parameters"] == {"name": "ada", "times": 2}
    logs = plait_harness.logs(result.flow_run_id)
    printed = [r for r in logs if r["message"] == "hello ada from print"]
    assert len(printed) == 2 and all(r["logger"] == "plait.infrastructure" and r["level"] == "INFO" for r in printed)
    complaint = [r for r in logs if r["message"] == "a library complains"]
    assert len(complaint) == 1 and complaint[0]["level"] == "WARNING"
    # a run log line is stored once, by the child, not again from its console echo
    assert [r["logger"] for r in logs if r["message"] == "logged through the run logger"] == ["plait.runs"]
    out, err = capsys.readouterr()
    assert "hello ada from print" in out  # stream_output echoes
    assert "a library complains" in err and "logged through the run logger" in err
    assert "\x1e" not in out + err


def test_stream_output_off_still_stores(plait_harness, Process, flows_file, capsys) -> None:
    result = Process(stream_output=False).run(f"{flows_file}:greet", {"name": "bo"})
    assert result.state_type == "COMPLETED"
    assert "hello bo from print" in messages(plait_harness, result.flow_run_id)
    out, err = capsys.readouterr()
    assert "hello bo" not in out and "logged through the run logger" not in err


def test_async_flow_and_module_entrypoint(plait_harness, Process, flows_file) -> None:
    result = Process(working_dir=str(flows_file.parent)).run("my_flows:greet_async", {"name": "cy"})
    assert result.state_type == "COMPLETED", result.message
    assert "async hello cy" in messages(plait_harness, result.flow_run_id)


def test_env_and_working_dir_reach_the_child_and_env_values_are_not_logged(
    plait_harness, Process, flows_file, tmp_path
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    out = tmp_path / "where.json"
    block = Process(env={"STAGE": "s3cr3t-stage-value"}, working_dir=str(workdir))
    result = block.run(f"{flows_file}:where", {"out": str(out)})

    assert result.state_type == "COMPLETED", result.message
    seen = json.loads(out.read_text())
    assert Path(seen["cwd"]).resolve() == workdir.resolve()
    assert seen["stage"] == "s3cr3t-stage-value"
    logs = messages(plait_harness, result.flow_run_id)
    assert any("STAGE" in m for m in logs)  # keys are logged...
    assert not any("s3cr3t-stage-value" in m for m in logs)  # ...values never
    assert "s3cr3t-stage-value" not in repr(block)


def test_relative_entrypoint_resolves_from_working_dir(plait_harness, Process, flows_file) -> None:
    result = Process(working_dir=str(flows_file.parent)).run("my_flows.py:greet", {"name": "di"})
    assert result.state_type == "COMPLETED", result.message


def test_failing_flow_is_failed_with_the_original_error(plait_harness, Process, flows_file) -> None:
    result = Process().run(f"{flows_file}:explode")

    assert result.state_type == "FAILED" and result.exit_code == 1 and not result.ok
    assert "the database said no: table missing" in result.message
    run = plait_harness.flow_run(result.flow_run_id)
    assert run["state_type"] == "FAILED"
    assert "ValueError" in run["state_message"] and "table missing" in run["state_message"]


def test_timeout_kills_the_process_group_and_crashes_the_run(plait_harness, Process, flows_file) -> None:
    started = time.monotonic()
    result = Process(timeout_seconds=1.5).run(f"{flows_file}:sleepy", {"seconds": 60})
    elapsed = time.monotonic() - started

    assert elapsed < 15
    assert result.state_type == "CRASHED"
    assert result.details["timed_out"] is True
    assert "timed out after 1.5s" in result.message
    run = plait_harness.flow_run(result.flow_run_id)
    assert run["state_type"] == "CRASHED" and "timed out after 1.5s" in run["state_message"]
    assert run["end_time"] is not None


def test_child_killed_with_sigkill_is_crashed(plait_harness, Process, flows_file, tmp_path) -> None:
    pid_file = tmp_path / "child.pid"
    box: dict = {}
    launcher = threading.Thread(
        target=lambda: box.update(result=Process().run(f"{flows_file}:parent_of_sleepy", {"pid_file": str(pid_file)}))
    )
    launcher.start()
    deadline = time.monotonic() + 60
    # wait until the flow sleeps in its subflow and the child has written both runs
    while not (pid_file.exists() and pid_file.read_text() and len(plait_harness.flow_runs()) == 2):
        assert time.monotonic() < deadline, "the flow never started"
        assert launcher.is_alive(), f"the launcher returned early: {box}"
        time.sleep(0.05)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    launcher.join(30)
    assert not launcher.is_alive()

    result = box["result"]
    assert result.state_type == "CRASHED"
    assert result.exit_code == -signal.SIGKILL and result.details["signal"] == "SIGKILL"
    assert "killed by SIGKILL" in result.message
    run = plait_harness.flow_run(result.flow_run_id)
    assert run["state_type"] == "CRASHED" and "killed by SIGKILL" in run["state_message"]
    [subflow] = run["subflows"]
    sub = plait_harness.flow_run(subflow["id"])
    assert sub["state_type"] == "CRASHED" and "killed by SIGKILL" in sub["state_message"]


def test_missing_flow_fails_clearly_and_is_recorded(plait_harness, Process, flows_file, capsys) -> None:
    result = Process().run(f"{flows_file}:nope", {"x": 1})

    assert result.state_type == "FAILED" and result.exit_code == 2
    assert "'nope'" in result.message and "greet" in result.message  # names it, lists what exists
    run = plait_harness.flow_run(result.flow_run_id)
    assert run["state_type"] == "FAILED" and "'nope'" in run["state_message"]
    assert run["flow_name"] == "nope" and run["parameters"] == {"x": 1}
    assert run["end_time"] is not None
    listed = plait_harness.flow_runs(state="failed")
    assert [r["id"] for r in listed] == [result.flow_run_id]
    assert any("'nope'" in m for m in messages(plait_harness, result.flow_run_id))
    assert "'nope'" in capsys.readouterr().err


def test_missing_file_and_bad_parameters(plait_harness, Process, flows_file, tmp_path) -> None:
    missing = Process().run(f"{tmp_path / 'absent.py'}:greet")
    assert missing.state_type == "FAILED" and missing.exit_code == 2
    assert "absent.py" in missing.message and "does not exist" in missing.message

    unknown = Process().run(f"{flows_file}:greet", {"nam": "typo"})
    assert unknown.state_type == "FAILED" and unknown.exit_code == 2
    assert "greet" in unknown.message and "nam" in unknown.message


def test_bad_interpreter_or_working_dir_fails_without_raising(plait_harness, Process, flows_file, tmp_path) -> None:
    result = Process(python=str(tmp_path / "no-python")).run(f"{flows_file}:greet", {"name": "x"})
    assert result.state_type == "FAILED" and result.exit_code is None
    assert "could not start" in result.message
    assert plait_harness.flow_run(result.flow_run_id)["state_type"] == "FAILED"

    result = Process(working_dir=str(tmp_path / "nowhere")).run(f"{flows_file}:greet", {"name": "x"})
    assert result.state_type == "FAILED" and "nowhere" in result.message


def test_large_parameters_go_through_stdin(plait_harness, Process, flows_file) -> None:
    name = "x" * 200_000  # over Linux's 128 KiB limit for one argument
    result = Process(stream_output=False).run(f"{flows_file}:greet", {"name": name})
    assert result.state_type == "COMPLETED", result.message
    assert f"hello {name} from print" in messages(plait_harness, result.flow_run_id)  # one line


def test_block_validation(Process) -> None:
    with pytest.raises(ValueError, match="PLAIT_DATABASE_URL"):
        Process(env={"PLAIT_DATABASE_URL": "sqlite://"})
    with pytest.raises(ValueError):
        Process(timeout_seconds=0)
    with pytest.raises(ValueError, match="JSON-serializable"):
        Process().run("f.py:x", {"when": object()})


# -- the child entry point and helpers --------------------------------------------------------------
def _child(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "plait.infrastructure", *args],
        cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )


def test_child_exit_codes(plait_harness, flows_file, tmp_path) -> None:
    run_id = new_flow_run_id()
    ok = _child([f"{flows_file}:greet", "--parameters", '{"name": "ed"}'], tmp_path, PLAIT_FLOW_RUN_ID=run_id)
    assert ok.returncode == 0, ok.stderr
    assert "hello ed from print" in ok.stdout
    assert plait_harness.flow_run(run_id)["state_type"] == "COMPLETED"  # the launcher chose the id

    failed = _child([f"{flows_file}:explode"], tmp_path)
    assert failed.returncode == 1

    for args, needle in (
        ([f"{flows_file}:nope"], "has no flow 'nope'"),
        ([f"{flows_file}:not_a_flow"], "not a flow"),
        ([f"{flows_file}:greet", "--parameters", "[1]"], "JSON object"),
        ([f"{flows_file}:greet", "--parameters", "{"], "not valid JSON"),
        (["no_such_module_here:flow"], "no module named 'no_such_module_here'"),
        (["no-colon"], "must look like"),
    ):
        bad = _child(args, tmp_path)
        assert bad.returncode == 2, (args, bad.stderr)
        assert needle in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


def test_load_flow_errors(flows_file, tmp_path) -> None:
    assert load_flow(f"{flows_file}:greet").name == "greet"
    assert load_flow(f"{flows_file}:greet-async").name == "greet-async"  # a flow's own name
    with pytest.raises(EntrypointError, match=r"flows found there: explode, greet, greet_async, parent_of_sleepy, sleepy, where"):
        load_flow(f"{flows_file}:missing")
    with pytest.raises(EntrypointError, match="does not exist"):
        load_flow(f"{tmp_path}/nothing.py:greet")
    with pytest.raises(EntrypointError, match="decorate it with @flow"):
        load_flow(f"{flows_file}:not_a_flow")
    broken = tmp_path / "broken.py"
    broken.write_text("import this_module_does_not_exist_anywhere\n")
    with pytest.raises(EntrypointError, match="importing .*broken.py failed: ModuleNotFoundError"):
        load_flow(f"{broken}:f")


def test_mark_flow_run_leaves_final_runs_alone(plait_harness) -> None:
    run_id = new_flow_run_id()
    assert mark_flow_run(run_id, "CRASHED", "first", flow_name="f") is True
    assert mark_flow_run(run_id, "FAILED", "second") is False
    run = plait_harness.flow_run(run_id)
    assert (run["state_type"], run["state_message"]) == ("CRASHED", "first")
    with pytest.raises(ValueError, match="final state"):
        mark_flow_run(run_id, "RUNNING", "no")
