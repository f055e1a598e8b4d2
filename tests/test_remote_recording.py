"""Recording to a plait server from another process, through an outage: the flow never
fails or blocks because the server is down, its records wait in the spool under
PLAIT_HOME, and once the server is back one plait command delivers them, in order and
exactly once.

The flow runs in a subprocess whose only configuration is PLAIT_API_URL and PLAIT_API_KEY
(plus its own PLAIT_HOME): it has no database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from plait.client import ApiError, PlaitClient
from plait.testing._server import ServerHandle, running_server

pytestmark = pytest.mark.slow

TASKS = 6
FLOW = textwrap.dedent(f'''
    import os, time
    from pathlib import Path
    from plait import flow, get_run_logger, task

    resume = Path(os.environ["RESUME_FILE"])

    @task
    def step(i: int) -> int:
        get_run_logger().info("step %d done", i)
        return i

    @flow(name="outage-flow")
    def outage() -> int:
        total = 0
        for i in range({TASKS}):
            if i == {TASKS // 2}:
                # the test stops the server here, then lets the flow go on
                (resume.parent / "halfway").touch()
                while not resume.exists():
                    time.sleep(0.05)
            total += step(i)
        get_run_logger().warning("all steps done")
        return total

    print("result", outage(), flush=True)
''')


def flow_env(home: Path, server: ServerHandle, resume: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env.update(
        PLAIT_HOME=str(home), PLAIT_API_URL=server.api_url, PLAIT_API_KEY=server.run_key, RESUME_FILE=str(resume),
        PLAIT_RECORDER_FLUSH_INTERVAL="0.2", PLAIT_SPOOL_EXIT_WAIT="1", PLAIT_API_TIMEOUT="2",
        PLAIT_LOG_TO_CONSOLE="false",
        # nothing may be written here: a process recording to a server has no database
        PLAIT_DATABASE_URL=f"sqlite:///{home / 'must-not-exist.db'}",
    )
    env.update(extra)
    return env


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """``check()``'s first truthy answer; fails naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except ApiError:
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.1)


def one_run(client: PlaitClient) -> dict[str, Any] | None:
    runs = client.flow_runs(flow="outage-flow").items
    return client.flow_run(runs[0]["id"]) if runs else None


def plait_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "plait.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def assert_complete_history(client: PlaitClient) -> None:
    runs = client.flow_runs(flow="outage-flow").items
    assert len(runs) == 1, runs
    run = client.flow_run(runs[0]["id"])
    assert run["state_type"] == "COMPLETED", run["state_type"]
    assert [s["type"] for s in run["states"]] == ["PENDING", "RUNNING", "COMPLETED"]
    tasks = sorted(run["task_runs"], key=lambda t: t["name"])
    assert [t["name"] for t in tasks] == [f"step-{i}" for i in range(TASKS)]
    for t in tasks:
        assert t["state_type"] == "COMPLETED", t
        assert [s["type"] for s in t["states"]] == ["PENDING", "RUNNING", "COMPLETED"], t
    messages = [line["message"] for line in client.iter_logs(flow_run=run["id"])]
    steps = [m for m in messages if m.startswith("step ")]
    assert steps == [f"step {i} done" for i in range(TASKS)]  # each once, in order
    assert messages.count("all steps done") == 1


def test_stop_the_server_mid_flow_then_one_command_delivers_everything(database_url: str, tmp_path: Path) -> None:
    home, resume = tmp_path / "flow-home", tmp_path / "resume"
    with running_server(database_url, tmp_path / "server") as server:
        env = flow_env(home, server, resume)
        process = subprocess.Popen([sys.executable, "-c", FLOW], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        try:
            with PlaitClient(server.api_url, server.read_key) as client:
                # the first half reaches the server while the flow runs
                wait_for("the first half of the flow on the server", lambda: (resume.parent / "halfway").exists()
                         and (run := one_run(client)) is not None
                         and sum(t["state_type"] == "COMPLETED" for t in run["task_runs"]) == TASKS // 2)
            server.stop()
            resume.touch()
            out, err = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 0, err
        assert f"result {sum(range(TASKS))}" in out  # the outage did not fail the flow
        assert not (home / "must-not-exist.db").exists()

        waiting = json.loads(plait_cli(env, "spool", "status", "--json").stdout)
        assert waiting and all(not row["alive"] for row in waiting)
        assert sum(row["records"] for row in waiting) > 0

        server.start()
        shown = plait_cli({**env, "PLAIT_API_KEY": server.run_key}, "flow-run", "ls", "--json")
        assert shown.returncode == 0, shown.stderr
        rows = json.loads(shown.stdout)
        assert [(r["flow_name"], r["state_type"], r["task_run_count"]) for r in rows] == [
            ("outage-flow", "COMPLETED", TASKS)]
        assert json.loads(plait_cli(env, "spool", "status", "--json").stdout) == []
        with PlaitClient(server.api_url, server.read_key) as client:
            assert_complete_history(client)
        again = plait_cli(env, "spool", "flush", "--json")
        assert json.loads(again.stdout)["records"] == 0


def test_a_server_down_from_the_start_never_fails_the_flow(tmp_path: Path) -> None:
    home, resume = tmp_path / "flow-home", tmp_path / "resume"
    resume.touch()  # no pause
    with running_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "server") as server:
        server.stop()
        env = flow_env(home, server, resume)
        done = subprocess.run([sys.executable, "-c", FLOW], env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr
        assert f"result {sum(range(TASKS))}" in done.stdout
        assert json.loads(plait_cli(env, "spool", "status", "--json").stdout)
        server.start()
        flushed = plait_cli(env, "spool", "flush", "--json")
        assert flushed.returncode == 0, flushed.stderr
        assert json.loads(flushed.stdout)["records"] > 0
        with PlaitClient(server.api_url, server.read_key) as client:
            assert_complete_history(client)


def test_recording_to_a_running_server(database_url: str, tmp_path: Path) -> None:
    home, resume = tmp_path / "flow-home", tmp_path / "resume"
    resume.touch()
    with running_server(database_url, tmp_path / "server") as server:
        env = flow_env(home, server, resume)
        done = subprocess.run([sys.executable, "-c", FLOW], env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr
        with PlaitClient(server.api_url, server.read_key) as client:
            assert_complete_history(client)
        assert json.loads(plait_cli(env, "spool", "status", "--json").stdout) == []
        assert not (home / "must-not-exist.db").exists()
