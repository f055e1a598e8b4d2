"""The run-history store against real databases (SQLite file and PostgreSQL server)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, inspect, select, text

from plait._recorder import DatabaseRecorder, get_recorder, reset_recorder
from plait._recovery import detect_crashed
from plait._runs import FlowRun, TaskRun, advance
from plait._store import history as queries
from plait._store.database import HEAD_REVISION, Database, alembic_config, get_database
from plait._store.models import FLOW_RUNS, LOGS, METADATA, RESULTS, STATES, TASK_RUNS
from plait.exceptions import DatabaseError
from plait.states import State, StateType

CANARY = "s3cr3t-canary"
TABLES = {
    "flow_runs", "task_runs", "states", "task_run_edges", "logs", "results", "alembic_version",
    "block_types", "block_schemas", "block_documents", "block_document_references",
    "notification_rules", "events", "api_keys", "ingested_batches", "flow_run_tags", "service_leases",
    "work_pools", "work_queues", "workers", "deployments", "deployment_schedules",
    "concurrency_limits", "concurrency_slots",
    "automations", "automation_buckets", "automation_actions", "service_cursors", "webhooks", "variables",
    "artifacts",
}


# -- helpers ----------------------------------------------------------------------------
def _flow(run_id: str, **kwargs: Any) -> FlowRun:
    kwargs.setdefault("state", State(StateType.PENDING))
    kwargs.setdefault("parameters", {"n": 1})
    return FlowRun(id=run_id, flow_name=kwargs.pop("flow_name", "etl"), name=f"{run_id}-name", **kwargs)


def _task(run_id: str, flow_run_id: str | None, task_name: str = "extract", **kwargs: Any) -> TaskRun:
    kwargs.setdefault("state", State(StateType.PENDING))
    kwargs.setdefault("parameters", {})
    return TaskRun(
        id=run_id, flow_run_id=flow_run_id, task_name=task_name, task_key=f"mod.{task_name}",
        name=f"{task_name}-{run_id}", **kwargs,
    )


def _move(rec: DatabaseRecorder, run: FlowRun | TaskRun, state_type: StateType, message: str = "") -> None:
    """What the engine does on a transition: set the live run's state, then report it."""
    if state_type is StateType.RUNNING:
        run.run_count += 1
    rec.add_state(run, advance(run, State(state_type, message)))


def _recorder(db: Database, **kwargs: Any) -> DatabaseRecorder:
    kwargs.setdefault("flush_interval", 60)
    kwargs.setdefault("batch_size", 1_000_000)
    kwargs.setdefault("heartbeat_interval", 60)
    return DatabaseRecorder(db, **kwargs)


def _count(db: Database, table: Any) -> int:
    with db.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(table))


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- migrations -------------------------------------------------------------------------
def test_head_revision_constant_matches_the_scripts() -> None:
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD_REVISION


def test_migrations_create_every_table_matching_the_models(database_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    db = Database.open(database_url)
    assert db.current_revision() == HEAD_REVISION
    with db.engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) == TABLES
        assert {ix["name"] for ix in inspect(conn).get_indexes("flow_runs")} == {
            # keyset order (created, id) behind every filter the API offers
            "ix_flow_runs_created_id", "ix_flow_runs_flow_name_created_id", "ix_flow_runs_state_type_created_id",
            "ix_flow_runs_parent_flow_run_id_created_id", "ix_flow_runs_deployment_id_created_id",
            "ix_flow_runs_work_pool_name_state_type_expected_start_time",
            "ix_flow_runs_deployment_id_state_type_expected_start_time", "ix_flow_runs_idempotency_key",
        }
        # The hand-written migration and the models describe the same schema.
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), METADATA)
    assert diff == []


def test_open_is_cached_and_migrating_twice_is_a_no_op(database_url: str) -> None:
    first = Database.open(database_url)
    assert Database.open(database_url) is first
    Database.dispose_all()
    second = Database.open(database_url)
    assert second is not first
    second.migrate()
    assert second.current_revision() == HEAD_REVISION


def test_first_open_from_two_threads_at_once(database_url: str) -> None:
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def open_it() -> None:
        barrier.wait()
        try:
            Database(database_url).dispose()  # uncached: each thread migrates for itself
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert Database.open(database_url).current_revision() == HEAD_REVISION


def test_first_open_from_several_processes_at_once(database_url: str, tmp_path: Path) -> None:
    go = tmp_path / "go"
    script = textwrap.dedent(
        f"""
        import os, time
        while not os.path.exists({str(go)!r}):
            time.sleep(0.005)
        from plait._store.database import Database
        Database({database_url!r})
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE) for _ in range(4)]
    time.sleep(0.5)  # let every interpreter start and import before the gate opens
    go.touch()
    outcomes = [(p.wait(timeout=120), p.stderr.read().decode()) for p in procs]  # type: ignore[union-attr]
    assert [rc for rc, _ in outcomes] == [0, 0, 0, 0], outcomes
    assert Database.open(database_url).current_revision() == HEAD_REVISION


def test_a_database_from_a_newer_plait_is_refused(database_url: str) -> None:
    db = Database.open(database_url)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    Database.dispose_all()
    with pytest.raises(DatabaseError, match="newer than this plait"):
        Database.open(database_url)


# -- recorder round trip ----------------------------------------------------------------
def test_recorder_round_trip(database_url: str) -> None:
    db = Database.open(database_url)
    rec = _recorder(db)
    flow = _flow("flow-1", tags=["nightly"], parameters={"day": "2024-01-01", "n": 3})
    rec.add_flow_run(flow)
    rec.add_state(flow, flow.state)
    _move(rec, flow, StateType.RUNNING)

    extract = _task("task-a", flow.id, "extract")
    load = _task("task-b", flow.id, "load", dynamic_key=1)
    notify = _task("task-c", flow.id, "notify")
    for task in (extract, load, notify):
        rec.add_task_run(task)
        rec.add_state(task, task.state)
    rec.add_edge(extract.id, load.id, "data", "rows")
    rec.add_edge(notify.id, load.id, "wait_for", None)
    rec.flush()  # runs are now inserted; what follows must become updates

    _move(rec, extract, StateType.RUNNING)
    _move(rec, extract, StateType.RETRYING, "boom; retrying in 0s")
    _move(rec, extract, StateType.RUNNING)
    _move(rec, extract, StateType.COMPLETED)
    extract.result_ref = "file:///tmp/store/task-a"
    extract.cache_key = "ck-1"
    rec.add_result(extract.id, "file:///tmp/store", "task-a", "pickle", "ck-1", None)
    _move(rec, notify, StateType.RUNNING)
    _move(rec, notify, StateType.COMPLETED)
    _move(rec, load, StateType.RUNNING)
    _move(rec, load, StateType.FAILED, "ValueError: bad rows")
    t0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    rec.add_log(flow.id, None, logging.INFO, "plait.flow", "flow started", t0)
    rec.add_log(flow.id, extract.id, logging.WARNING, "plait.task", "retrying", t0 + timedelta(seconds=1))
    rec.add_log(flow.id, load.id, logging.ERROR, "plait.task", "bad\x00rows", t0 + timedelta(seconds=2))

    sub = _flow("flow-1-sub", parent_flow_run_id=flow.id, parent_task_run_id=load.id, flow_name="child")
    rec.add_flow_run(sub)
    rec.add_state(sub, sub.state)
    _move(rec, sub, StateType.RUNNING)
    _move(rec, sub, StateType.COMPLETED)
    rec.add_log(sub.id, None, logging.DEBUG, "plait.flow", "in the subflow", t0 + timedelta(seconds=3))
    _move(rec, flow, StateType.FAILED, "1 task failed")
    rec.flush()
    assert rec.pending == 0

    got = queries.get_flow_run(db, "flow-1")
    assert got["id"] == "flow-1" and got["flow_name"] == "etl" and got["tags"] == ["nightly"]
    assert got["parameters"] == {"day": "2024-01-01", "n": 3}
    assert (got["state_type"], got["state_message"], got["run_count"]) == ("FAILED", "1 task failed", 1)
    assert [s["type"] for s in got["states"]] == ["PENDING", "RUNNING", "FAILED"]
    assert got["end_time"] is not None and got["duration_seconds"] >= 0
    assert got["subflows"] == [
        {"id": "flow-1-sub", "name": "flow-1-sub-name", "flow_name": "child", "state_type": "COMPLETED",
         "state_name": "Completed", "parent_task_run_id": "task-b"}
    ]
    tasks = {t["id"]: t for t in got["task_runs"]}
    assert set(tasks) == {"task-a", "task-b", "task-c"}
    a, b = tasks["task-a"], tasks["task-b"]
    assert [s["type"] for s in a["states"]] == ["PENDING", "RUNNING", "RETRYING", "RUNNING", "COMPLETED"]
    assert a["states"][2]["message"] == "boom; retrying in 0s"
    assert (a["run_count"], a["retries"], a["cache_key"]) == (2, 1, "ck-1")
    assert a["result_ref"] == "file:///tmp/store/task-a"
    assert (b["state_type"], b["state_message"], b["retries"], b["dynamic_key"]) == (
        "FAILED", "ValueError: bad rows", 0, 1,
    )
    assert b["upstream"] == [
        {"id": "task-a", "task_name": "extract", "kind": "data", "parameter": "rows"},
        {"id": "task-c", "task_name": "notify", "kind": "wait_for", "parameter": None},
    ]
    assert tasks["task-c"]["upstream"] == []
    stamps = [s["timestamp"] for s in a["states"]]
    assert stamps == sorted(stamps) and stamps[0].endswith("+00:00")

    logs = queries.get_logs(db, "flow-1")
    assert [(x["level"], x["task_name"], x["task_run_name"], x["message"]) for x in logs] == [
        ("INFO", None, None, "flow started"),
        ("WARNING", "extract", "extract-task-a", "retrying"),
        ("ERROR", "load", "load-task-b", "bad\\x00rows"),  # NUL made visible, not a poisoned batch
        ("DEBUG", None, None, "in the subflow"),
    ]
    assert logs[3]["flow_run_id"] == "flow-1-sub"
    assert logs[0]["timestamp"] == "2024-01-01T12:00:00+00:00"
    with db.engine.connect() as conn:
        result = conn.execute(select(RESULTS)).one()
    assert (result.task_run_id, result.storage, result.path, result.cache_key) == (
        "task-a", "file:///tmp/store", "task-a", "ck-1",
    )
    assert result.created.tzinfo is not None


def test_a_run_written_by_another_recorder_is_updated_not_duplicated(database_url: str) -> None:
    # E.g. a forked child, or a re-run: this recorder has never inserted the row itself.
    db = Database.open(database_url)
    flow = _flow("shared")
    first = _recorder(db)
    first.add_flow_run(flow)
    first.add_state(flow, flow.state)
    first.flush()
    second = _recorder(db)
    _move(second, flow, StateType.RUNNING)
    second.flush()
    got = queries.get_flow_run(db, "shared")
    assert got["state_type"] == "RUNNING" and got["run_count"] == 1
    assert [s["type"] for s in got["states"]] == ["PENDING", "RUNNING"]
    assert _count(db, FLOW_RUNS) == 1


def test_odd_values_do_not_poison_a_batch(database_url: str) -> None:
    db = Database.open(database_url)
    rec = _recorder(db)
    when = datetime(2024, 2, 3, tzinfo=UTC)
    flow = _flow("odd", parameters={"when": when, "path": Path("/x")}, state=State(StateType.PENDING, "a\x00b"))
    rec.add_flow_run(flow)
    rec.add_state(flow, flow.state)
    rec.flush()
    got = queries.get_flow_run(db, "odd")
    assert got["parameters"] == {"when": str(when), "path": "/x"}
    assert got["state_message"] == "a\\x00b"


def test_task_runs_outside_a_flow_are_listed(database_url: str) -> None:
    db = Database.open(database_url)
    rec = _recorder(db)
    loose = _task("loose-1", None, "adhoc")
    rec.add_task_run(loose)
    rec.add_state(loose, loose.state)
    _move(rec, loose, StateType.RUNNING)
    _move(rec, loose, StateType.COMPLETED)
    rec.flush()
    [row] = queries.get_task_runs_without_flow(db)
    assert (row["id"], row["state_type"], row["retries"]) == ("loose-1", "COMPLETED", 0)


def test_hot_path_never_touches_the_database(database_url: str) -> None:
    db = Database.open(database_url)
    checkouts: list[object] = []
    event.listen(db.engine, "checkout", lambda *args: checkouts.append(args))
    rec = _recorder(db)
    flow = _flow("quiet")
    rec.add_flow_run(flow)
    for i in range(500):
        task = _task(f"q-{i}", flow.id)
        rec.add_task_run(task)
        rec.add_state(task, task.state)
        rec.add_log(flow.id, task.id, logging.INFO, "x", "y", task.created)
        rec.add_edge(flow.id, task.id, "data", None)
    assert checkouts == [] and rec.pending == 2001
    rec.flush()
    assert len(checkouts) == 1  # the whole batch in one connection / transaction


# -- background writing -----------------------------------------------------------------
def test_background_thread_writes_without_an_explicit_flush(database_url: str) -> None:
    db = Database.open(database_url)
    rec = _recorder(db, flush_interval=0.05, heartbeat_interval=0.1)
    rec.start()
    try:
        flow = _flow("bg-1")
        rec.add_flow_run(flow)
        rec.add_state(flow, flow.state)
        _move(rec, flow, StateType.RUNNING)
        assert _wait_for(lambda: _count(db, STATES) == 2)

        def heartbeat() -> datetime | None:
            with db.engine.connect() as conn:
                return conn.scalar(select(FLOW_RUNS.c.heartbeat_at).where(FLOW_RUNS.c.id == "bg-1"))

        first = heartbeat()
        assert first is not None
        assert _wait_for(lambda: (heartbeat() or first) > first), "no heartbeat for a Running flow run"
    finally:
        rec.close()
    assert not any(t.name == "plait-recorder" and t.is_alive() for t in threading.enumerate())


def test_a_full_buffer_wakes_the_writer_early(database_url: str) -> None:
    db = Database.open(database_url)
    rec = _recorder(db, flush_interval=3600, batch_size=50)
    rec.start()
    try:
        flow = _flow("early")
        rec.add_flow_run(flow)
        for i in range(60):
            rec.add_log(flow.id, None, logging.INFO, "x", f"line {i}", flow.created)
        assert _wait_for(lambda: _count(db, LOGS) == 60)
    finally:
        rec.close()


def test_close_flushes_what_is_left(database_url: str) -> None:
    db = Database.open(database_url)
    rec = _recorder(db)
    rec.start()
    flow = _flow("closing")
    rec.add_flow_run(flow)
    rec.add_state(flow, flow.state)
    rec.close()
    assert queries.get_flow_run(db, "closing")["states"][0]["type"] == "PENDING"


# -- failures ---------------------------------------------------------------------------
def _hide_table(db: Database, name: str, hidden: bool) -> None:
    old, new = (name, f"{name}_hidden") if hidden else (f"{name}_hidden", name)
    with db.engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))


def test_a_failed_flush_keeps_every_record(database_url: str) -> None:
    db = Database.open(database_url)
    rec = _recorder(db)
    flow = _flow("keep-1")
    rec.add_flow_run(flow)
    rec.add_state(flow, flow.state)
    task = _task("keep-t", flow.id)
    rec.add_task_run(task)
    rec.add_state(task, task.state)
    rec.add_edge("other", task.id, "data", "x")
    rec.add_log(flow.id, None, logging.INFO, "x", "before the failure", flow.created)
    _hide_table(db, "logs", hidden=True)
    with pytest.raises(DatabaseError) as info:
        rec.flush()
    assert db.url_masked in str(info.value)
    assert rec.pending == 6
    # Nothing was half-written: the batch is one transaction.
    assert _count(db, FLOW_RUNS) == 0 and _count(db, STATES) == 0

    _move(rec, task, StateType.RUNNING)  # records arriving meanwhile queue behind the kept ones
    rec.add_log(flow.id, task.id, logging.INFO, "x", "after the failure", flow.created)
    _hide_table(db, "logs", hidden=False)
    rec.flush()
    got = queries.get_flow_run(db, "keep-1")
    [t] = got["task_runs"]
    assert [s["type"] for s in t["states"]] == ["PENDING", "RUNNING"] and t["state_type"] == "RUNNING"
    assert t["upstream"] == [{"id": "other", "task_name": None, "kind": "data", "parameter": "x"}]
    messages = [x["message"] for x in queries.get_logs(db, "keep-1")]
    assert messages == ["before the failure", "after the failure"]


def test_background_thread_survives_failures_and_catches_up(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = Database.open(database_url)
    _hide_table(db, "states", hidden=True)
    rec = _recorder(db, flush_interval=0.05)
    caplog.set_level(logging.ERROR, logger="plait.recorder")
    rec.start()
    try:
        flow = _flow("survivor")
        rec.add_flow_run(flow)
        rec.add_state(flow, flow.state)
        assert _wait_for(lambda: any("Cannot write" in r.getMessage() for r in caplog.records))
        assert rec.pending == 2 and rec._thread is not None and rec._thread.is_alive()
        _hide_table(db, "states", hidden=False)
        assert _wait_for(lambda: rec.pending == 0)
    finally:
        rec.close()
    assert [s["type"] for s in queries.get_flow_run(db, "survivor")["states"]] == ["PENDING"]


def _assert_clean_error(exc: DatabaseError, masked: str) -> None:
    message = str(exc)
    rendered = "".join(traceback.format_exception(exc))
    assert message.startswith(f"Cannot open the plait database at {masked}: ")
    assert "Check PLAIT_DATABASE_URL (or PLAIT_HOME" in message
    assert CANARY not in message and CANARY not in rendered
    assert exc.__cause__ is None and exc.__suppress_context__


def test_unreachable_postgres_gives_a_clear_error_without_the_password() -> None:
    url = f"postgresql+psycopg://plait:{CANARY}@127.0.0.1:1/plait"
    with pytest.raises(DatabaseError) as info:
        Database.open(url)
    _assert_clean_error(info.value, "postgresql+psycopg://plait:***@127.0.0.1:1/plait")
    assert "refused" in str(info.value).lower()


def test_unknown_host_and_bad_urls_give_clear_errors() -> None:
    url = f"postgresql://plait:{CANARY}@no-such-host.invalid:5432/plait"
    with pytest.raises(DatabaseError) as info:
        Database.open(url)
    _assert_clean_error(info.value, "postgresql://plait:***@no-such-host.invalid:5432/plait")
    for bad in ("no url at all", f"postgresql://u:{CANARY}@host:notaport/db"):
        with pytest.raises(DatabaseError, match="not a valid SQLAlchemy URL") as info:
            Database.open(bad)
        assert CANARY not in str(info.value)
    with pytest.raises(DatabaseError, match="driver") as info:
        Database.open(f"nosuchdb+nodriver://u:{CANARY}@h/db")
    assert CANARY not in str(info.value)


@pytest.mark.parametrize("where", ["proc", "under_a_file"])
def test_unwritable_sqlite_location_gives_a_clear_error(where: str, tmp_path: Path) -> None:
    if where == "proc":
        path = Path("/proc/plait-test-nowhere/plait.db")
    else:
        (tmp_path / "a_file").write_text("not a directory")
        path = tmp_path / "a_file" / "plait.db"
    url = f"sqlite:///{path}"
    with pytest.raises(DatabaseError) as info:
        Database.open(url)
    _assert_clean_error(info.value, url)
    assert str(path.parent) in str(info.value)


def test_a_directory_where_the_sqlite_file_should_be(tmp_path: Path) -> None:
    (tmp_path / "plait.db").mkdir()
    url = f"sqlite:///{tmp_path / 'plait.db'}"
    with pytest.raises(DatabaseError, match="unable to open database file") as info:
        Database.open(url)
    _assert_clean_error(info.value, url)


# -- scale ------------------------------------------------------------------------------
def test_twenty_thousand_task_runs_in_one_flush(database_url: str) -> None:
    db = Database.open(database_url)
    rec = _recorder(db)
    flow = _flow("big")
    rec.add_flow_run(flow)
    rec.add_state(flow, flow.state)
    for i in range(20_000):
        task = _task(f"big-{i:05d}", flow.id, dynamic_key=i)
        rec.add_task_run(task)
        rec.add_state(task, task.state)
        _move(rec, task, StateType.RUNNING)
        _move(rec, task, StateType.COMPLETED)
        if i:
            rec.add_edge(f"big-{i - 1:05d}", task.id, "data", "x")
    rec.flush()
    assert _count(db, TASK_RUNS) == 20_000
    assert _count(db, STATES) == 60_001
    [row] = queries.list_flow_runs(db)
    assert row["task_run_count"] == 20_000
    got = queries.get_flow_run(db, "big")
    assert len(got["task_runs"]) == 20_000
    assert all(t["state_type"] == "COMPLETED" and len(t["states"]) == 3 for t in got["task_runs"])
    assert got["task_runs"][-1]["upstream"][0]["id"] == "big-19998"


# -- crash detection --------------------------------------------------------------------
def test_a_run_whose_process_died_is_crashed_with_its_unfinished_tasks(database_url: str) -> None:
    db = Database.open(database_url)
    rec = _recorder(db)
    dead = _flow("dead-1", pid=_dead_pid())
    alive = _flow("alive-1")  # this process, fresh heartbeat
    for flow in (dead, alive):
        rec.add_flow_run(flow)
        rec.add_state(flow, flow.state)
        _move(rec, flow, StateType.RUNNING)
    running, done, waiting = (_task(f"dead-t{i}", dead.id) for i in range(3))
    for task in (running, done, waiting):
        rec.add_task_run(task)
        rec.add_state(task, task.state)
    _move(rec, running, StateType.RUNNING)
    _move(rec, done, StateType.RUNNING)
    _move(rec, done, StateType.COMPLETED)
    rec.flush()

    assert detect_crashed(db, crash_after=3600) == ["dead-1"]
    got = queries.get_flow_run(db, "dead-1")
    assert got["state_type"] == "CRASHED" and got["end_time"] is not None
    assert f"process {dead.pid} on host {dead.hostname} is gone" in got["state_message"]
    assert [s["type"] for s in got["states"]] == ["PENDING", "RUNNING", "CRASHED"]
    tasks = {t["id"]: t for t in got["task_runs"]}
    assert tasks["dead-t0"]["state_type"] == "CRASHED"
    assert tasks["dead-t0"]["states"][-1]["type"] == "CRASHED"
    assert tasks["dead-t2"]["state_type"] == "CRASHED"
    assert tasks["dead-t1"]["state_type"] == "COMPLETED"
    assert [s["type"] for s in tasks["dead-t1"]["states"]] == ["PENDING", "RUNNING", "COMPLETED"]
    assert queries.get_flow_run(db, "alive-1")["state_type"] == "RUNNING"
    assert detect_crashed(db, crash_after=3600) == []  # idempotent


def test_a_silent_run_is_crashed_after_crash_after(plait_env: str) -> None:
    db = Database.open(plait_env)
    rec = _recorder(db)
    quiet = _flow("quiet-1", hostname="elsewhere", pid=1)
    chatty = _flow("chatty-1", hostname="elsewhere", pid=1)
    mine = _flow("mine-1")
    for flow in (quiet, chatty, mine):
        rec.add_flow_run(flow)
        rec.add_state(flow, flow.state)
        _move(rec, flow, StateType.RUNNING)
    rec.flush()
    live = get_recorder()  # the process recorder knows mine-1 as Running
    live.add_flow_run(mine)
    live.add_state(mine, mine.state)
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    with db.engine.begin() as conn:
        conn.execute(
            FLOW_RUNS.update()
            .where(FLOW_RUNS.c.id.in_(["quiet-1", "mine-1"]))
            .values(heartbeat_at=long_ago)
        )
    assert detect_crashed(db, crash_after=60) == ["quiet-1"]
    got = queries.get_flow_run(db, "quiet")
    assert got["state_type"] == "CRASHED" and "silent for" in got["state_message"]
    assert queries.get_flow_run(db, "chatty-1")["state_type"] == "RUNNING"
    assert queries.get_flow_run(db, "mine-1")["state_type"] == "RUNNING"


# -- queries ----------------------------------------------------------------------------
def test_resolve_flow_run_id_by_prefix(database_url: str) -> None:
    db = Database.open(database_url)
    rec = _recorder(db)
    for run_id in ("abc111", "abc222", "def333", "x_y"):
        flow = _flow(run_id)
        rec.add_flow_run(flow)
    rec.flush()
    assert queries.resolve_flow_run_id(db, "abc1") == "abc111"
    assert queries.resolve_flow_run_id(db, "def333") == "def333"
    with pytest.raises(LookupError, match=r"'abc' matches 2 flow runs; give more characters"):
        queries.resolve_flow_run_id(db, "abc")
    with pytest.raises(LookupError, match=r"no flow run matches 'zzz'; run `plait flow-run ls`"):
        queries.resolve_flow_run_id(db, "zzz")
    with pytest.raises(LookupError, match="no flow run matches"):
        queries.resolve_flow_run_id(db, "x%")  # LIKE wildcards are literal
    with pytest.raises(LookupError):
        queries.get_logs(db, "ab")


def test_list_flow_runs_filters_and_orders(database_url: str) -> None:
    db = Database.open(database_url)
    rec = _recorder(db)
    base = datetime(2024, 5, 1, tzinfo=UTC)
    runs = [("etl", StateType.COMPLETED), ("etl", StateType.FAILED), ("report", None)]
    for i, (name, final) in enumerate(runs):
        flow = _flow(f"run-{i}", flow_name=name, created=base + timedelta(minutes=i))
        rec.add_flow_run(flow)
        _move(rec, flow, StateType.RUNNING)
        if final:
            _move(rec, flow, final)
    rec.flush()
    assert [r["id"] for r in queries.list_flow_runs(db)] == ["run-2", "run-1", "run-0"]
    assert [r["id"] for r in queries.list_flow_runs(db, state="failed")] == ["run-1"]
    assert [r["id"] for r in queries.list_flow_runs(db, flow_name="etl", limit=1)] == ["run-1"]
    row = queries.list_flow_runs(db, state="Completed")[0]
    assert row["duration_seconds"] is not None and row["task_run_count"] == 0
    assert set(row) >= {"id", "flow_name", "name", "state_type", "state_name", "state_message", "start_time",
                        "end_time", "duration_seconds", "task_run_count", "parent_flow_run_id", "tags"}
    with pytest.raises(ValueError, match="unknown state 'done'"):
        queries.list_flow_runs(db, state="done")


# -- process-wide handles ---------------------------------------------------------------
def test_get_database_and_get_recorder_follow_the_settings(plait_env: str, monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    db = get_database()
    assert db is Database.open(plait_env)
    rec = get_recorder()
    assert get_recorder() is rec and rec.db is db
    flow = _flow("followed")
    rec.add_flow_run(flow)
    monkeypatch.setenv("PLAIT_DATABASE_URL", f"sqlite:///{tmp_path}/other.db")
    other = get_recorder()
    assert other is not rec and rec.closed  # the old one was closed, and so flushed
    assert queries.resolve_flow_run_id(db, "followed") == "followed"
    reset_recorder()
    assert other.closed and get_recorder() is not other


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_its_own_recorder(plait_env: str) -> None:
    parent = get_recorder()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            child = get_recorder()
            code = 0 if child is not parent and child.pid == os.getpid() else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert get_recorder() is parent
