"""Retry from failure: a flow run killed with SIGKILL after 150 of its 200 tasks is retried
(same id, ``_store.control.retry_flow_run``) and re-run as a worker would re-run it
(``PLAIT_FLOW_RUN_ID``); the task runs that completed in the first attempt are not executed
again: exactly 50 task bodies run, and the flow's value is the same as an unbroken run's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from plait._store.database import Database

SCRIPT = textwrap.dedent(
    """
    import os, time
    from pathlib import Path
    from plait import flow, task

    BODIES = Path(os.environ["BODIES_FILE"])
    HOLD = Path(os.environ["HOLD_FILE"])

    @task
    def step(i: int, total: int) -> int:
        with BODIES.open("a") as out:  # one line per body that runs
            out.write(f"{i}\\n")
        if i == 150 and HOLD.exists():  # the first attempt is killed here
            time.sleep(600)
        return total + i

    @flow
    def long_job(n: int = 200) -> int:
        total = 0
        for i in range(n):
            total = step(i, total)
        return total

    if __name__ == "__main__":
        print("RESULT", long_job(), flush=True)
    """
)


def _bodies(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def _launch(script: Path, env: dict[str, str], flow_run_id: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(script)], env={**env, "PLAIT_FLOW_RUN_ID": flow_run_id},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_after_150(proc: subprocess.Popen[str], bodies: Path) -> None:
    deadline = time.monotonic() + 120
    try:
        while len(_bodies(bodies)) < 151:  # 150 tasks done, the 151st is holding
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the first attempt never reached its 151st task"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _flow_run(db: Database, flow_run_id: str) -> dict[str, Any]:
    from plait._store.history import get_flow_run

    return get_flow_run(db, flow_run_id)


def _prepare(tmp_path: Path, database_url: str) -> tuple[Path, Path, Path, dict[str, str]]:
    script = tmp_path / "long_job.py"
    script.write_text(SCRIPT)
    bodies, hold = tmp_path / "bodies.txt", tmp_path / "hold"
    hold.touch()
    env = {**os.environ, "PLAIT_HOME": os.environ["PLAIT_HOME"], "PLAIT_DATABASE_URL": database_url,
           "BODIES_FILE": str(bodies), "HOLD_FILE": str(hold)}
    env.pop("PLAIT_API_URL", None)
    return script, bodies, hold, env


def _crash_and_retry(db: Database, flow_run_id: str, proc: subprocess.Popen[str], bodies: Path, hold: Path,
                     script: Path, env: dict[str, str], *, from_entrypoint: bool = False,
                     ) -> tuple[dict[str, Any], list[int]]:
    from plait._recovery import detect_crashed
    from plait._store.control import retry_flow_run

    _kill_after_150(proc, bodies)
    assert detect_crashed(db) == [flow_run_id]  # its journal replayed: 150 Completed task runs
    crashed = _flow_run(db, flow_run_id)
    assert crashed["state_type"] == "CRASHED" and crashed["run_count"] == 1
    assert Counter(t["state_type"] for t in crashed["task_runs"])["COMPLETED"] == 150
    first = _bodies(bodies)
    assert first == list(range(151))

    hold.unlink()
    scheduled = retry_flow_run(db, flow_run_id)
    assert scheduled["state_type"] == "SCHEDULED" and scheduled["run_count"] == 1
    if from_entrypoint:  # as the Process block of a worker runs it: the file loaded as an entrypoint
        again = subprocess.run([sys.executable, "-m", "plait.infrastructure", f"{script}:long_job"],
                               env={**env, "PLAIT_FLOW_RUN_ID": flow_run_id}, capture_output=True, text=True,
                               timeout=120)
        assert again.returncode == 0, again.stderr
    else:  # as `python long_job.py` with the id a launcher gives
        proc = _launch(script, env, flow_run_id)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "RESULT 19900" in out  # sum(range(200)): reused values flowed on as computed ones
    return _flow_run(db, flow_run_id), _bodies(bodies)[len(first):]


def test_kill_9_after_150_of_200_tasks_then_retry_runs_exactly_50_bodies(
    plait_env: str, tmp_path: Path
) -> None:
    script, bodies, hold, env = _prepare(tmp_path, plait_env)
    flow_run_id = str(uuid.uuid4())  # a launcher names the run (Process, a worker, serve)
    proc = _launch(script, env, flow_run_id)
    db = Database.open(plait_env)
    run, second = _crash_and_retry(db, flow_run_id, proc, bodies, hold, script, env)

    assert second == list(range(150, 200))  # exactly 50 bodies: the held one and the 49 after it
    assert run["state_type"] == "COMPLETED" and run["run_count"] == 2
    assert [s["type"] for s in run["states"]] == [
        "PENDING", "RUNNING", "CRASHED", "SCHEDULED", "PENDING", "RUNNING", "COMPLETED",
    ]
    from plait._store.runs import stored_flow_run

    stored = stored_flow_run(db, flow_run_id)
    assert stored is not None and stored["entrypoint"] == f"{script}:long_job"  # what a CLI retry runs
    kinds = Counter((t["state_type"], t["state_name"]) for t in run["task_runs"])
    assert kinds[("CACHED", "Reused")] == 150
    assert kinds[("COMPLETED", "Completed")] == 200  # 150 in the first attempt, 50 in the second
    reused = [t for t in run["task_runs"] if t["state_name"] == "Reused"]
    assert all("earlier attempt" in t["state_message"] for t in reused)


def test_a_deployment_run_retried_after_a_crash_keeps_its_deployment(plait_env: str, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from plait._store.deployment_runs import create_flow_run
    from plait._store.deployments import save_deployment

    script, bodies, hold, env = _prepare(tmp_path, plait_env)
    db = Database.open(plait_env)
    deployment, _ = save_deployment(db, {"flow_name": "long-job", "name": "nightly",
                                         "entrypoint": f"{script}:long_job"})
    created, _ = create_flow_run(db, deployment, parameters={}, expected_start_time=datetime.now(UTC),
                                 idempotency_key="nightly-1")
    proc = _launch(script, env, created["id"])
    run, second = _crash_and_retry(db, created["id"], proc, bodies, hold, script, env, from_entrypoint=True)

    # the first attempt ran as `python long_job.py`, the retry loaded long_job.py as an
    # entrypoint: the task keys agree, so the 150 results are found
    assert second == list(range(150, 200))
    assert run["state_type"] == "COMPLETED" and run["name"] == created["name"]
    from plait._store.runs import stored_flow_run

    stored = stored_flow_run(db, created["id"])
    assert stored is not None and stored["deployment_id"] == deployment["id"]
    assert stored["entrypoint"] == f"{script}:long_job"


def test_retry_refuses_a_run_that_did_not_fail(plait_env: str, tmp_path: Path) -> None:
    from plait import flow
    from plait._store.control import retry_flow_run

    @flow
    def fine() -> int:
        return 1

    state = fine(return_state=True)
    from plait._recording import current_recorder

    current_recorder().flush()
    db = Database.open(plait_env)
    from plait._store.history import list_flow_runs

    [run] = list_flow_runs(db)
    assert state.is_completed()
    with pytest.raises(ValueError, match=r"is Completed; only a Failed or Crashed run can be retried"):
        retry_flow_run(db, run["id"])
    with pytest.raises(LookupError, match="no flow run with id 'nope'"):
        retry_flow_run(db, "nope")


FLAKY = textwrap.dedent(
    """
    import os
    from pathlib import Path
    from plait import flow, task

    BODIES = Path(os.environ["BODIES_FILE"])
    UP = Path(os.environ["UP_FILE"])

    @task
    def step(i: int, total: int) -> int:
        with BODIES.open("a") as out:
            out.write(f"{i}\\n")
        if i == 15 and not UP.exists():
            raise RuntimeError("the warehouse is down")
        return total + i

    @flow
    def flaky(n: int = 20) -> int:
        total = 0
        for i in range(n):
            total = step(i, total)
        return total

    if __name__ == "__main__":
        state = flaky(return_state=True)
        print("FINAL", state.type.value, flush=True)
    """
)


def test_a_failed_run_recorded_to_a_server_is_retried_without_redoing_its_tasks(
    database_url: str, tmp_path: Path
) -> None:
    import httpx

    from plait.testing import running_server

    script = tmp_path / "flaky.py"
    script.write_text(FLAKY)
    bodies, up = tmp_path / "bodies.txt", tmp_path / "up"
    flow_run_id = str(uuid.uuid4())
    with running_server(database_url, tmp_path / "server") as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
        env.update(PLAIT_API_URL=server.api_url, PLAIT_API_KEY=server.run_key, PLAIT_HOME=str(tmp_path / "client"),
                   BODIES_FILE=str(bodies), UP_FILE=str(up), PLAIT_FLOW_RUN_ID=flow_run_id)
        first = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
        assert "FINAL FAILED" in first.stdout, first.stderr
        assert _bodies(bodies) == list(range(16))
        with httpx.Client(base_url=server.api_url + "/v1",
                          headers={"Authorization": f"Bearer {server.run_key}"}) as api:
            retried = api.post(f"/flow-runs/{flow_run_id}/retry")
            assert retried.status_code == 200 and retried.json()["state_type"] == "SCHEDULED", retried.text
            up.touch()
            second = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                                    timeout=120)
            assert "FINAL COMPLETED" in second.stdout, second.stderr
            run = api.get(f"/flow-runs/{flow_run_id}").json()
    assert _bodies(bodies)[16:] == list(range(15, 20))  # the failed task and the four after it, nothing else
    assert run["state_type"] == "COMPLETED" and run["run_count"] == 2
    assert Counter(t["state_name"] for t in run["task_runs"])["Reused"] == 15
