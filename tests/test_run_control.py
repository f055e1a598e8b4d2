"""Control of runs: cancel (a plain ``python flow.py`` recording locally, or to a server,
stops within 5 s at a task boundary and ends Cancelled with its unfinished task runs),
a launched run adopting the run a scheduler created, and pause / resume with input.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from pydantic import BaseModel, field_validator

from plait._store.database import Database

T = TypeVar("T")

CHAIN = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from plait import flow, task

    BODIES = Path(os.environ["BODIES_FILE"])

    @task
    def step(i):
        with BODIES.open("a") as out:
            out.write(f"{i}\\n")
        time.sleep(0.2)
        return i

    @flow
    def chain(n: int = 100):
        for i in range(n):
            step(i)

    if __name__ == "__main__":
        state = chain(int(sys.argv[1]) if len(sys.argv) > 1 else 100, return_state=True)
        print("FINAL", state.type.value, state.message, flush=True)
    """
)
FINAL = ("COMPLETED", "CACHED", "FAILED", "CRASHED", "CANCELLED")


def _wait(check: Callable[[], T | None], what: str, timeout: float = 60.0, every: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(every)


def _script(tmp_path: Path) -> Path:
    script = tmp_path / "chain.py"
    script.write_text(CHAIN)
    return script


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PLAIT_FLOW_RUN_ID"}
    return {**env, "BODIES_FILE": str(tmp_path / "bodies.txt"), **extra}


def _local_run(db: Database, flow_run_id: str | None = None) -> dict[str, Any] | None:
    from plait._store.history import get_flow_run, list_flow_runs

    if flow_run_id is None:
        runs = list_flow_runs(db)
        if not runs:
            return None
        flow_run_id = runs[0]["id"]
    try:
        return get_flow_run(db, flow_run_id)
    except LookupError:
        return None


def _done_tasks(run: dict[str, Any] | None) -> int:
    return sum(t["state_type"] == "COMPLETED" for t in run["task_runs"]) if run else 0


def _assert_cancelled(run: dict[str, Any], n: int) -> None:
    assert run["state_type"] == "CANCELLED", run["state_message"]
    assert run["state_message"] == "cancelled on request"
    types = [s["type"] for s in run["states"]]
    assert types[-2:] == ["CANCELLING", "CANCELLED"], types
    kinds = Counter(t["state_type"] for t in run["task_runs"])
    assert set(kinds) <= {"COMPLETED", "CANCELLED"}, kinds  # nothing left Pending or Running
    assert kinds["CANCELLED"] >= 1 and kinds["COMPLETED"] < n
    cancelled = [t for t in run["task_runs"] if t["state_type"] == "CANCELLED"]
    assert all("was cancelled" in t["state_message"] for t in cancelled)


# -- cancel ------------------------------------------------------------------------------------
def test_cancel_stops_a_local_python_flow_py_within_5_seconds(plait_env: str, tmp_path: Path) -> None:
    from plait._store.scheduling import request_cancel

    proc = subprocess.Popen([sys.executable, str(_script(tmp_path)), "100"], env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        db = Database.open(plait_env)
        run = _wait(lambda: (r := _local_run(db)) and r["state_type"] == "RUNNING" and _done_tasks(r) >= 3 and r,
                    "three task runs of the chain")
        started = time.monotonic()
        assert request_cancel(db, run["id"]) == "CANCELLING"
        ended = _wait(lambda: (r := _local_run(db, run["id"])) and r["state_type"] in FINAL and r,
                      "the run to end", timeout=30)
        elapsed = time.monotonic() - started
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert elapsed < 5, f"the run took {elapsed:.1f}s to stop"
    _assert_cancelled(ended, 100)
    assert proc.returncode == 0 and "FINAL CANCELLED cancelled on request" in out, err
    bodies = (tmp_path / "bodies.txt").read_text().split()
    assert len(bodies) == _done_tasks(ended)  # no body started after the request was seen


def test_cancel_stops_a_run_recording_to_a_server_within_5_seconds(database_url: str, tmp_path: Path) -> None:
    from plait.testing import running_server

    with running_server(database_url, tmp_path / "server") as server:
        env = _env(tmp_path, PLAIT_API_URL=server.api_url, PLAIT_API_KEY=server.run_key,
                   PLAIT_HOME=str(tmp_path / "client"))
        env.pop("PLAIT_DATABASE_URL", None)
        api = httpx.Client(base_url=server.api_url + "/v1", headers={"Authorization": f"Bearer {server.run_key}"})
        proc = subprocess.Popen([sys.executable, str(_script(tmp_path)), "100"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            def remote_run(flow_run_id: str | None = None) -> dict[str, Any] | None:
                if flow_run_id is None:
                    items = api.get("/flow-runs").json().get("items") or []
                    if not items:
                        return None
                    flow_run_id = items[0]["id"]
                answer = api.get(f"/flow-runs/{flow_run_id}")
                return answer.json() if answer.status_code == 200 else None

            run = _wait(lambda: (r := remote_run()) and r["state_type"] == "RUNNING" and _done_tasks(r) >= 3 and r,
                        "three task runs of the chain on the server")
            started = time.monotonic()
            answer = api.post(f"/flow-runs/{run['id']}/cancel")
            assert answer.status_code == 200 and answer.json()["state_type"] == "CANCELLING", answer.text
            ended = _wait(lambda: (r := remote_run(run["id"])) and r["state_type"] in FINAL and r,
                          "the run to end on the server", timeout=30)
            elapsed = time.monotonic() - started
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            api.close()
    assert elapsed < 5, f"the run took {elapsed:.1f}s to stop"
    _assert_cancelled(ended, 100)
    assert proc.returncode == 0 and "FINAL CANCELLED" in out, err


def _deployment_run(db: Database, script: Path, key: str, parent: str | None = None,
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
    from plait._store.deployment_runs import create_flow_run
    from plait._store.deployments import save_deployment

    deployment, _ = save_deployment(db, {"flow_name": "chain", "name": "nightly", "entrypoint": f"{script}:chain",
                                         "parameters": {"n": 3}})
    run, created = create_flow_run(db, deployment, parameters={}, expected_start_time=datetime.now(UTC),
                                   idempotency_key=key, parent_flow_run_id=parent)
    assert created
    return deployment, run


def test_a_claimed_run_cancelled_before_its_process_starts_ends_cancelled_at_once(
    plait_env: str, tmp_path: Path
) -> None:
    from plait._store.scheduling import claim_deployment_runs, request_cancel

    script = _script(tmp_path)
    db = Database.open(plait_env)
    deployment, run = _deployment_run(db, script, "k-cancel")
    [claimed] = claim_deployment_runs(db, deployment["id"], "test-runner", limit=1)
    assert claimed["id"] == run["id"]
    assert request_cancel(db, run["id"]) == "CANCELLING"
    done = subprocess.run([sys.executable, str(script), "3"], env=_env(tmp_path, PLAIT_FLOW_RUN_ID=run["id"]),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "FINAL CANCELLED cancelled before it started" in done.stdout, done.stderr
    ended = _local_run(db, run["id"])
    assert ended is not None and ended["state_type"] == "CANCELLED" and ended["task_runs"] == []
    assert not (tmp_path / "bodies.txt").exists()


def test_a_launched_process_adopts_a_scheduled_run_and_keeps_its_deployment(plait_env: str, tmp_path: Path) -> None:
    from plait._store.runs import stored_flow_run

    script = _script(tmp_path)
    db = Database.open(plait_env)
    parent = str(uuid.uuid4())  # run_deployment() from inside a flow links the run to it
    deployment, run = _deployment_run(db, script, "k-adopt", parent)
    done = subprocess.run([sys.executable, str(script), "3"], env=_env(tmp_path, PLAIT_FLOW_RUN_ID=run["id"]),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "FINAL COMPLETED" in done.stdout, done.stderr
    adopted = _local_run(db, run["id"])
    assert adopted is not None and adopted["state_type"] == "COMPLETED"
    assert adopted["name"] == run["name"] and adopted["run_count"] == 1 and adopted["pid"]
    assert adopted["parent_flow_run_id"] == parent
    assert [s["type"] for s in adopted["states"]] == ["SCHEDULED", "PENDING", "RUNNING", "COMPLETED"]
    assert len(adopted["task_runs"]) == 3
    stored = stored_flow_run(db, run["id"])
    assert stored is not None and stored["deployment_id"] == deployment["id"]
    assert stored["entrypoint"] == f"{script}:chain"
    from plait._store.scheduling import _F  # the columns the recorder never writes

    with db.engine.connect() as conn:
        row = conn.execute(_F.select().where(_F.c.id == run["id"])).one()
    assert row.idempotency_key == "k-adopt" and row.expected_start_time is not None


def test_a_top_level_run_records_its_entrypoint(plait_env: str, tmp_path: Path) -> None:
    from plait._store.history import list_flow_runs
    from plait._store.runs import stored_flow_run

    script = _script(tmp_path)
    done = subprocess.run([sys.executable, str(script), "1"], env=_env(tmp_path), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    db = Database.open(plait_env)
    [run] = list_flow_runs(db)
    stored = stored_flow_run(db, run["id"])
    assert stored is not None and stored["entrypoint"] == f"{script.resolve()}:chain"


def test_the_writer_keeps_a_cancelling_run_cancelling_until_it_ends(plait_env: str) -> None:
    from plait import flow, task
    from plait._recording import current_recorder
    from plait._store.runs import end_flow_runs, stored_flow_run_state
    from plait._store.scheduling import request_cancel
    from plait.states import StateType

    db = Database.open(plait_env)
    seen: dict[str, Any] = {}
    gate = threading.Event()

    @task
    def wait_here() -> None:
        gate.wait(30)

    @flow
    def slow() -> None:
        wait_here()

    thread = threading.Thread(target=lambda: seen.update(state=slow(return_state=True)))
    thread.start()
    recorder = current_recorder()
    run_id = _wait(lambda: next(iter(recorder.running_flow_run_ids()), None), "the flow to run")
    recorder.flush()
    assert request_cancel(db, run_id) == "CANCELLING"
    recorder.flush()  # Running again over Cancelling: kept Cancelling, and the run is not "taken"
    assert stored_flow_run_state(db, run_id) is StateType.CANCELLING
    assert run_id in recorder.check_cancelling() and run_id in recorder.cancelling
    gate.set()
    thread.join(30)
    recorder.flush()
    # the task started before the request finished; the flow had nothing left to start
    assert seen["state"].is_completed()
    assert stored_flow_run_state(db, run_id) is StateType.COMPLETED  # a final state wins

    # A Cancelling run whose process is gone is Cancelled, not Crashed: its cancel is done.
    other = _deployment_run(db, Path("/nowhere.py"), "k-gone")[1]
    from plait._store.scheduling import claim_deployment_runs

    claim_deployment_runs(db, other["deployment_id"], "runner", limit=1)
    request_cancel(db, other["id"])
    assert end_flow_runs(db, {other["id"]: "process 1 is gone"}) == [other["id"]]
    ended = _local_run(db, other["id"])
    assert ended is not None and ended["state_type"] == "CANCELLED"
    assert ended["state_message"] == "cancelled: process 1 is gone"


# -- pause and resume ----------------------------------------------------------------------------
class Approval(BaseModel):
    approved: bool
    note: str = ""


class Shouted(BaseModel):
    word: str

    @field_validator("word")
    @classmethod
    def _upper(cls, value: str) -> str:
        if value != value.upper():
            raise ValueError("say it in capitals")
        return value


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def target() -> None:
        box["state"] = fn()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def _paused_run(db: Database, recorder: Any) -> str:
    from plait._store.control import pause_status
    from plait._store.history import list_flow_runs

    def paused() -> str | None:
        runs = list_flow_runs(db)
        if runs and pause_status(db, runs[0]["id"])["state_type"] == "PAUSED":
            return str(runs[0]["id"])
        return None

    return _wait(paused, "the run to pause")


def test_pause_waits_for_valid_input_and_resume_refuses_a_bad_one(plait_env: str) -> None:
    from plait import flow
    from plait._pause import pause_flow_run
    from plait._recording import current_recorder
    from plait._store.control import resume_flow_run

    @flow
    def gated() -> str:
        got = pause_flow_run(timeout=60, wait_for_input=Approval, poll_interval=0.05)
        return f"{got.approved}:{got.note}"

    db = Database.open(plait_env)
    thread, box = _in_thread(lambda: gated(return_state=True))
    run_id = _paused_run(db, current_recorder())
    with pytest.raises(ValueError, match=r"input does not fit .* \(it waits for Approval\): field 'approved': is "
                                         r"required"):
        resume_flow_run(db, run_id, {})
    with pytest.raises(ValueError, match=r"field 'approved': expected boolean, got a string"):
        resume_flow_run(db, run_id, {"approved": "maybe"})
    row = resume_flow_run(db, run_id, {"approved": True, "note": "ok"})
    assert row["state_type"] == "PENDING" and row["state_name"] == "Resuming"
    thread.join(30)
    assert box["state"].result() == "True:ok"
    with pytest.raises(ValueError, match="is not paused"):
        resume_flow_run(db, run_id, {"approved": True})
    current_recorder().flush()
    run = _local_run(db, run_id)
    assert run is not None
    assert [s["type"] for s in run["states"]] == ["PENDING", "RUNNING", "PAUSED", "PENDING", "RUNNING", "COMPLETED"]


def test_input_the_schema_allows_but_the_model_refuses_pauses_the_run_again(plait_env: str) -> None:
    from plait import flow
    from plait._pause import pause_flow_run
    from plait._recording import current_recorder
    from plait._store.control import pause_status, resume_flow_run

    @flow
    def shout() -> str:
        return pause_flow_run(timeout=60, wait_for_input=Shouted, poll_interval=0.05).word

    db = Database.open(plait_env)
    thread, box = _in_thread(lambda: shout(return_state=True))
    run_id = _paused_run(db, current_recorder())
    resume_flow_run(db, run_id, {"word": "quiet"})  # the schema cannot say "capitals"
    _wait(lambda: (run := _local_run(db, run_id)) and run["state_type"] == "PAUSED"
          and "say it in capitals" in (run["state_message"] or ""), "the run to pause again")
    assert pause_status(db, run_id)["state_type"] == "PAUSED"
    resume_flow_run(db, run_id, {"word": "LOUD"})
    thread.join(30)
    assert box["state"].result() == "LOUD"


def test_a_pause_that_times_out_fails_the_run(plait_env: str) -> None:
    from plait import flow
    from plait._pause import pause_flow_run

    @flow
    def forgotten() -> None:
        pause_flow_run(timeout=0.3, poll_interval=0.05)

    state = forgotten(return_state=True)
    assert state.is_failed()
    assert "was paused for 0.3s and nobody resumed it" in state.message
    assert "plait flow-run resume" in state.message


def test_a_run_cancelled_while_paused_ends_cancelled(plait_env: str) -> None:
    from plait import flow
    from plait._pause import pause_flow_run
    from plait._recording import current_recorder
    from plait._store.scheduling import request_cancel

    @flow
    def parked() -> None:
        pause_flow_run(timeout=60, poll_interval=0.05)

    db = Database.open(plait_env)
    thread, box = _in_thread(lambda: parked(return_state=True))
    run_id = _paused_run(db, current_recorder())
    assert request_cancel(db, run_id) == "CANCELLING"
    thread.join(30)
    assert box["state"].is_cancelled() and box["state"].message == "cancelled on request"
    current_recorder().flush()
    run = _local_run(db, run_id)
    assert run is not None and run["state_type"] == "CANCELLED"


def test_pause_outside_a_flow_is_refused() -> None:
    from plait._pause import pause_flow_run
    from plait.exceptions import PlaitError

    with pytest.raises(PlaitError, match="call it inside a @flow"):
        pause_flow_run(timeout=1)


PAUSING = textwrap.dedent(
    """
    from pydantic import BaseModel
    from plait import flow
    from plait._pause import pause_flow_run

    class Approval(BaseModel):
        approved: bool

    @flow
    def gated() -> bool:
        return pause_flow_run(timeout=60, wait_for_input=Approval, poll_interval=0.1).approved

    if __name__ == "__main__":
        print("RESULT", gated(), flush=True)
    """
)


def test_pause_and_resume_through_a_server(database_url: str, tmp_path: Path) -> None:
    from plait.testing import running_server

    script = tmp_path / "gated.py"
    script.write_text(PAUSING)
    with running_server(database_url, tmp_path / "server") as server:
        env = _env(tmp_path, PLAIT_API_URL=server.api_url, PLAIT_API_KEY=server.run_key,
                   PLAIT_HOME=str(tmp_path / "client"))
        env.pop("PLAIT_DATABASE_URL", None)
        api = httpx.Client(base_url=server.api_url + "/v1", headers={"Authorization": f"Bearer {server.run_key}"})
        proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            def paused() -> str | None:
                items = api.get("/flow-runs").json().get("items") or []
                if not items:
                    return None
                status = api.get(f"/records/pauses/{items[0]['id']}")
                return str(items[0]["id"]) if status.json().get("state_type") == "PAUSED" else None

            run_id = _wait(paused, "the run to pause on the server")
            bad = api.post(f"/flow-runs/{run_id}/resume", json={"input": {"approved": "perhaps"}})
            assert bad.status_code == 422 and "field 'approved'" in bad.json()["error"]["message"], bad.text
            good = api.post(f"/flow-runs/{run_id}/resume", json={"input": {"approved": True}})
            assert good.status_code == 200, good.text
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
            api.close()
    assert proc.returncode == 0 and "RESULT True" in out, err
