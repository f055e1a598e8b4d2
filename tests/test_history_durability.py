"""History that loses nothing: the journal against kill -9, text no database accepts, a
record the database refuses, and crash detection that never ends a live run."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from plait._recorder import DatabaseRecorder
from plait._recovery import detect_crashed
from plait._runs import HOSTNAME, FlowRun, TaskRun, advance
from plait._store import history
from plait._store.database import Database
from plait._store.models import FLOW_RUNS
from plait._store.runs import end_flow_runs
from plait.states import State, StateType

ROOT = Path(__file__).resolve().parents[1]
PLAIT = [sys.executable, "-m", "plait.cli"]

# A flow of many quick tasks. After each task call returns (its Completed state is reported)
# the flow appends the task's index to a side file: what the side file holds must be
# recorded as Completed however the process dies.
KILLABLE = textwrap.dedent(
    """
    import os, sys
    from plait import flow, task, get_run_logger

    SIDE = sys.argv[1]

    @task
    def step(i):
        get_run_logger().info("step %d", i)
        return i

    @flow
    def many():
        fd = os.open(SIDE, os.O_CREAT | os.O_WRONLY | os.O_APPEND)
        for i in range(100_000):
            step(i)
            os.write(fd, f"{i}\\n".encode())

    many()
    """
)


def _env(home: Path, url: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PLAIT_HOME": str(home), "PLAIT_DATABASE_URL": url, "PLAIT_LOG_TO_CONSOLE": "false"}
    env.pop("PLAIT_FLOW_RUN_ID", None)
    env.update(extra)
    return env


def _side(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [int(line) for line in path.read_text().split("\n") if line.strip()]


def _flow_run_ls(env: dict[str, str]) -> list[dict[str, Any]]:
    done = subprocess.run([*PLAIT, "flow-run", "ls", "--json", "--limit", "5"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _kill_after(script: Path, side: Path, env: dict[str, str], tasks: int) -> int:
    """Start the flow, SIGKILL it once ``tasks`` tasks are done (0: as soon as the flow run
    exists, i.e. its first records are journaled)."""
    proc = subprocess.Popen([sys.executable, str(script), str(side)], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    journal = Path(env["PLAIT_HOME"]) / "journal"
    try:
        while True:
            started = journal.exists() and any(b"\n" in seg.read_bytes() for seg in journal.glob("*/*.jsonl"))
            if (tasks == 0 and started) or (tasks and len(_side(side)) >= tasks):
                break
            assert proc.poll() is None, "the flow ended before it was killed"
            assert time.monotonic() < deadline, "the flow never got far enough"
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.pid


@pytest.mark.slow
def test_kill_9_at_random_points_loses_no_completed_task(database_url: str, tmp_path: Path) -> None:
    url = database_url
    script = tmp_path / "many.py"
    script.write_text(KILLABLE)
    rng = random.Random(8)
    # the writer never flushes on its own here: everything recorded comes from the journal
    env = _env(tmp_path / "home", url, PLAIT_RECORDER_FLUSH_INTERVAL="3600")
    figures = []
    for trial, tasks in enumerate([0, 1, *(rng.randint(2, 400) for _ in range(6))]):
        side = tmp_path / f"side-{trial}.txt"
        pid = _kill_after(script, side, env, tasks)
        runs = _flow_run_ls(env)
        assert runs[0]["state_type"] == "CRASHED", runs[0]
        assert f"process {pid} " in runs[0]["state_message"]
        detail = history.get_flow_run(Database.open(url), runs[0]["id"])
        completed = {t["name"] for t in detail["task_runs"] if t["state_type"] == "COMPLETED"}
        done = {f"step-{i}" for i in _side(side)}
        assert done <= completed, f"trial {trial}: completed tasks missing: {sorted(done - completed)[:5]}"
        assert len(completed) - len(done) <= 1  # the task finished just before the kill, unwritten by the flow
        others = {t["state_type"] for t in detail["task_runs"] if t["name"] not in completed}
        assert others <= {"CRASHED"}
        logs = history.get_logs(Database.open(url), runs[0]["id"])
        assert {f"step {i}" for i in _side(side)} <= {row["message"] for row in logs}
        figures.append((len(done), len(completed)))
    assert not any((tmp_path / "home" / "journal").iterdir())  # replayed journals are removed
    print("kill -9 trials (side file, recorded Completed):", figures)
    Database.dispose_all()


def test_a_run_killed_before_anything_was_written_is_listed_as_crashed(plait_env: str, tmp_path: Path) -> None:
    script = tmp_path / "many.py"
    script.write_text(KILLABLE)
    env = _env(tmp_path / "home", plait_env, PLAIT_RECORDER_FLUSH_INTERVAL="3600")
    _kill_after(script, tmp_path / "side.txt", env, 0)
    db = Database.open(plait_env)
    with db.engine.connect() as conn:  # the database never heard of the run ...
        assert conn.execute(select(FLOW_RUNS.c.id)).all() == []
    [run] = _flow_run_ls(env)  # ... yet it is listed, from the dead process's journal
    assert (run["flow_name"], run["state_type"]) == ("many", "CRASHED")


# -- text no database accepts, and records a database refuses ---------------------------------
SURROGATES = textwrap.dedent(
    """
    from plait import flow, get_run_logger, task

    @task
    def shout():
        get_run_logger().warning("bad \\ud800 text")
        raise ValueError("broken \\udcff message")

    @flow
    def odd(word):
        get_run_logger().info("fine line")
        shout()

    @flow
    def healthy():
        return 1

    try:
        odd("\\ud83d")
    except ValueError:
        pass
    assert healthy() == 1  # a flow after the bad one still records
    """
)


def test_lone_surrogates_are_stored_replaced_and_cost_no_other_record(plait_harness: Any, tmp_path: Path) -> None:
    # In a child process: text with lone surrogates cannot travel through pytest's own
    # reporting (its workers exchange reports as UTF-8), only through plait's history.
    script = tmp_path / "odd.py"
    script.write_text(SURROGATES)
    env = _env(plait_harness.home, plait_harness.database_url)
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    runs = {r["flow_name"]: r for r in plait_harness.flow_runs()}
    assert runs["healthy"]["state_type"] == "COMPLETED"
    detail = plait_harness.flow_run(runs["odd"]["id"])
    assert detail["state_message"] == "ValueError: broken \ufffd message"
    assert detail["parameters"] == {"word": "\ufffd"}
    messages = [row["message"] for row in plait_harness.logs(runs["odd"]["id"])]
    assert "fine line" in messages and "bad \ufffd text" in messages


def test_a_refused_record_costs_only_itself(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    db = Database.open(database_url)
    rec = DatabaseRecorder(db, flush_interval=60, batch_size=10**6, heartbeat_interval=60)
    run = FlowRun(id="refused-1", flow_name="f", name="n", parameters={}, state=State(StateType.PENDING))
    rec.add_flow_run(run)
    rec.add_state(run, run.state)
    now = datetime.now(UTC)
    rec.add_log(run.id, None, logging.INFO, "x", "before", now)
    rec.add_log(run.id, None, 2**70, "x", "a level no integer column holds", now)  # refused on both backends
    rec.add_log(run.id, None, logging.INFO, "x", "after", now + timedelta(seconds=1))
    caplog.set_level(logging.ERROR, logger="plait.recorder")
    rec.flush()
    assert rec.pending == 0
    assert [r["message"] for r in history.get_logs(db, run.id)] == ["before", "after"]
    assert history.get_flow_run(db, run.id)["states"][0]["type"] == "PENDING"
    assert any("1 record(s) of run history were refused" in r.getMessage() for r in caplog.records)


# -- crash detection never ends a live run ------------------------------------------------------
LIVE = textwrap.dedent(
    """
    import sys, time
    from plait import flow

    @flow
    def slow():
        open(sys.argv[1], "w").close()
        time.sleep(float(sys.argv[2]))
        return 1

    slow()
    """
)


def test_a_live_run_is_never_crashed_nor_moved_from_crashed(plait_env: str, tmp_path: Path) -> None:
    script = tmp_path / "live.py"
    script.write_text(LIVE)
    started = tmp_path / "started"
    env = _env(tmp_path / "home", plait_env, PLAIT_HEARTBEAT_INTERVAL="0.2", PLAIT_RECORDER_FLUSH_INTERVAL="0.05")
    proc = subprocess.Popen([sys.executable, str(script), str(started), "3"], env=env)
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        db = Database.open(plait_env)
        time.sleep(0.3)  # its row is written
        long_ago = datetime.now(UTC) - timedelta(hours=3)
        with db.engine.begin() as conn:  # as if the heartbeat were hours late
            conn.execute(FLOW_RUNS.update().values(heartbeat_at=long_ago))
        assert detect_crashed(db, crash_after=1) == []  # same host, process alive: not crashed
        [row] = history.list_flow_runs(db)
        assert row["state_type"] == "RUNNING"
        # Someone ends it anyway (an operator, a detector on another host): the live
        # process must not move it on from Crashed when it completes.
        assert end_flow_runs(db, {row["id"]: "ended by hand"}) == [row["id"]]
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    got = history.get_flow_run(db, row["id"])
    assert got["state_type"] == "CRASHED" and got["state_message"] == "ended by hand"
    assert [s["type"] for s in got["states"]] == ["PENDING", "RUNNING", "CRASHED"]


def _remote_run(db: Database, run_id: str, silent: float, interval: float) -> None:
    rec = DatabaseRecorder(db, flush_interval=60, batch_size=10**6, heartbeat_interval=interval)
    run = FlowRun(id=run_id, flow_name="f", name="n", parameters={}, state=State(StateType.PENDING),
                  hostname="another-host", pid=4242)
    rec.add_flow_run(run)
    rec.add_state(run, run.state)
    rec.add_state(run, advance(run, State(StateType.RUNNING)))
    rec.flush()
    with db.engine.begin() as conn:
        conn.execute(
            FLOW_RUNS.update().where(FLOW_RUNS.c.id == run_id)
            .values(heartbeat_at=datetime.now(UTC) - timedelta(seconds=silent))
        )


def test_a_run_on_another_host_is_crashed_after_two_of_its_heartbeat_intervals(plait_env: str) -> None:
    db = Database.open(plait_env)
    _remote_run(db, "late", silent=2.5, interval=1.0)
    _remote_run(db, "on-time", silent=1.5, interval=1.0)
    _remote_run(db, "slow-beater", silent=2.5, interval=30.0)  # its own interval is long
    assert detect_crashed(db) == ["late"]
    got = history.get_flow_run(db, "late")
    assert got["state_type"] == "CRASHED" and "two heartbeat intervals of 1s" in got["state_message"]


def test_a_reused_pid_does_not_keep_a_dead_run_alive(plait_env: str, tmp_path: Path) -> None:
    # The dead process's pid now belongs to a live process (here: this one's parent), but
    # its journal lock is free: the run is Crashed.
    db = Database.open(plait_env)
    home = Path(os.environ["PLAIT_HOME"])
    journal = home / "journal" / f"{HOSTNAME}-{os.getppid()}-deadbeef"
    journal.mkdir(parents=True)
    (journal / "lock").touch()
    (journal / "meta.json").write_text(json.dumps({"database": db.url_digest}))
    rec = DatabaseRecorder(db, flush_interval=60, batch_size=10**6, heartbeat_interval=60)
    run = FlowRun(id="reused", flow_name="f", name="n", parameters={}, state=State(StateType.PENDING),
                  pid=os.getppid())
    rec.add_flow_run(run)
    rec.add_state(run, run.state)
    rec.flush()
    assert detect_crashed(db) == ["reused"]


def test_flow_run_id_naming_an_ended_run_is_refused(plait_harness: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from plait import flow
    from plait.exceptions import PlaitError

    @flow
    def once() -> int:
        return 1

    state = once(return_state=True)
    [run] = plait_harness.flow_runs()
    monkeypatch.setenv("PLAIT_FLOW_RUN_ID", run["id"])
    with pytest.raises(PlaitError, match=r"names a flow run that already ended \(Completed\).*Unset PLAIT_FLOW_RUN_ID"):
        once()
    assert state.is_completed()
    after = plait_harness.flow_run(run["id"])
    assert [s["type"] for s in after["states"]] == ["PENDING", "RUNNING", "COMPLETED"]


def test_a_run_state_cannot_be_assigned() -> None:
    run = TaskRun(id="t", flow_run_id=None, task_name="x", task_key="m.x", name="x-0", parameters={},
                  state=State(StateType.PENDING))
    with pytest.raises(AttributeError, match="cannot be assigned"):
        run.state = State(StateType.COMPLETED)  # type: ignore[misc]
    from plait.states import IllegalTransition

    with pytest.raises(IllegalTransition):
        advance(run, State(StateType.COMPLETED))  # Pending -> Completed is not in the table
    assert run.state.is_pending()


def test_stored_history_never_moves_on_from_a_final_state(database_url: str) -> None:
    db = Database.open(database_url)
    rec = DatabaseRecorder(db, flush_interval=60, batch_size=10**6, heartbeat_interval=60)
    run = FlowRun(id="ended", flow_name="f", name="n", parameters={}, state=State(StateType.PENDING))
    rec.add_flow_run(run)
    rec.add_state(run, run.state)
    rec.add_state(run, advance(run, State(StateType.RUNNING)))
    rec.flush()
    end_flow_runs(db, {"ended": "gone"})
    rec.add_state(run, advance(run, State(StateType.COMPLETED)))
    rec.flush()
    with db.engine.connect() as conn:
        types = conn.execute(text("select type from states where run_id = 'ended' order by id")).scalars().all()
    assert types == ["PENDING", "RUNNING", "CRASHED"]


def test_a_task_ending_after_a_flush_is_replayed_whole_and_once(database_url: str, tmp_path: Path) -> None:
    """A task is journaled as one record when it ends; its states stored by an earlier
    flush are not repeated, and a replay of the journal adds only what the store lacks."""
    from plait._journal import Journal, decode_segments
    from plait._recovery import recover_journals

    db = Database.open(database_url)
    home = tmp_path / "home"
    journal = Journal(home, db.url_digest)
    rec = DatabaseRecorder(db, journal=journal, flush_interval=60, batch_size=10**6, heartbeat_interval=60)
    flow = FlowRun(id="span-flow", flow_name="f", name="n", parameters={}, state=State(StateType.PENDING))
    rec.add_flow_run(flow)
    rec.add_state(flow, flow.state)
    task = TaskRun(id="span-task", flow_run_id=flow.id, task_name="t", task_key="t-1", name="t-0",
                   parameters={"x": 1}, state=State(StateType.PENDING))
    rec.add_task_run(task)
    rec.add_state(task, task.state)
    rec.add_state(task, advance(task, State(StateType.RUNNING)))
    rec.flush()  # Pending and Running are stored; the journal starts afresh
    rec.add_state(task, advance(task, State(StateType.COMPLETED)))
    [record] = decode_segments(sorted(journal.dir.glob("*.jsonl")))["states"]
    assert record["type"] == "COMPLETED"  # only the state the store lacks
    # the process dies here: the journal is all that knows the task completed
    assert journal._lock_fd is not None
    os.close(journal._lock_fd)  # as the kernel does for a killed process
    journal._lock_fd = None
    assert recover_journals(db, home) == {os.getpid()}
    detail = history.get_flow_run(db, flow.id)
    [stored] = detail["task_runs"]
    assert stored["state_type"] == "COMPLETED"
    assert [s["type"] for s in stored["states"]] == ["PENDING", "RUNNING", "COMPLETED"]
