"""The local recorder: buffers what the engine reports and writes it in batches.

The engine calls ``add_*`` on its hot path, so those methods only append to in-memory
buffers under a lock: no database I/O, no SQLAlchemy objects. Runs are kept as the *live*
``FlowRun``/``TaskRun`` objects in a dirty map and read at flush time, so a run that changes
state five times between two flushes costs one row write. ``flush()`` writes everything in
one transaction with Core ``executemany``; a background thread calls it every
``recorder_flush_interval`` seconds (or early once ``recorder_batch_size`` records wait) and
keeps Running flow runs' ``heartbeat_at`` fresh so a dead process is recognisable.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.sql import Insert, Update

from plait._runs import FlowRun, TaskRun, utcnow
from plait._store.database import Database, _json_dumps
from plait._store.models import (
    _sqlite_bind,
    FlowRunModel,
    LogModel,
    ResultModel,
    StateModel,
    TaskRunEdgeModel,
    TaskRunModel,
)
from plait.exceptions import DatabaseError
from plait.settings import get_settings
from plait.states import State, StateType

__all__ = ["DatabaseRecorder", "get_recorder", "reset_recorder", "running_flow_run_ids"]

logger = logging.getLogger("plait.recorder")

_FLOWS = FlowRunModel.__table__
_TASKS = TaskRunModel.__table__
_STATES = StateModel.__table__
_EDGES = TaskRunEdgeModel.__table__
_LOGS = LogModel.__table__
_RESULTS = ResultModel.__table__

# Columns a flush rewrites for a run it already inserted; the rest never change.
_FLOW_MUTABLE = (
    "state_type", "state_name", "state_message", "run_count",
    "start_time", "end_time", "heartbeat_at",
)
_TASK_MUTABLE = (
    "state_type", "state_name", "state_message", "run_count",
    "cache_key", "result_ref", "start_time", "end_time",
)
_TYPE_VALUE = {t: t.value for t in StateType}  # Enum.value is a slow descriptor


def _clean(text: str | None) -> str | None:
    # PostgreSQL rejects NUL in text; one bad log line must not block every later flush.
    if text and "\x00" in text:
        return text.replace("\x00", "\\x00")
    return text


def _flow_row(run: FlowRun, now: datetime) -> dict[str, Any]:
    state = run.state
    return {
        "id": run.id,
        "flow_name": run.flow_name,
        "name": run.name,
        "parameters": run.parameters,
        "tags": list(run.tags),
        "state_type": _TYPE_VALUE[state.type],
        "state_name": state.name,
        "state_message": _clean(state.message),
        "parent_flow_run_id": run.parent_flow_run_id,
        "parent_task_run_id": run.parent_task_run_id,
        "run_count": run.run_count,
        "created": run.created,
        "start_time": run.start_time,
        "end_time": run.end_time,
        "pid": run.pid,
        "hostname": run.hostname,
        "heartbeat_at": now,  # any write by the owning process proves it is alive
    }


def _task_row(run: TaskRun) -> dict[str, Any]:
    state = run.state
    return {
        "id": run.id,
        "flow_run_id": run.flow_run_id,
        "task_name": run.task_name,
        "task_key": run.task_key,
        "name": run.name,
        "dynamic_key": run.dynamic_key,
        "parameters": run.parameters,
        "tags": list(run.tags),
        "state_type": _TYPE_VALUE[state.type],
        "state_name": state.name,
        "state_message": _clean(state.message),
        "run_count": run.run_count,
        "cache_key": run.cache_key,
        "result_ref": run.result_ref,
        "created": run.created,
        "start_time": run.start_time,
        "end_time": run.end_time,
    }


# SQLite fast path for the rows that grow with the number of task runs (three states and
# one run row per task): plain DB-API executemany with tuples skips SQLAlchemy's per-row
# parameter processing, which dominated a flush. Values are encoded exactly as the column
# types would (timestamps via the models' SQLite format, JSON via the engine's serializer).
_TASK_COLUMNS = (
    "id", "flow_run_id", "task_name", "task_key", "name", "dynamic_key", "parameters", "tags",
    "state_type", "state_name", "state_message", "run_count", "cache_key", "result_ref",
    "created", "start_time", "end_time",
)
_TASK_JSON = frozenset({"parameters", "tags"})
_TASK_TIMES = frozenset({"created", "start_time", "end_time"})
_SQLITE_TASK_UPSERT = (
    f"INSERT INTO task_runs ({', '.join(_TASK_COLUMNS)}) VALUES ({', '.join('?' * len(_TASK_COLUMNS))}) "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _TASK_COLUMNS if c not in ("id", "created"))
)
_SQLITE_STATE_INSERT = "INSERT INTO states (run_id, run_kind, type, name, message, timestamp) VALUES (?, ?, ?, ?, ?, ?)"


def _sqlite_insert_tasks(conn: Any, rows: list[dict[str, Any]]) -> None:
    encoders = [
        _json_dumps if c in _TASK_JSON else _sqlite_bind if c in _TASK_TIMES else None for c in _TASK_COLUMNS
    ]
    params = [
        tuple(row[c] if enc is None else enc(row[c]) for c, enc in zip(_TASK_COLUMNS, encoders))
        for row in rows
    ]
    conn.exec_driver_sql(_SQLITE_TASK_UPSERT, params)


def _sqlite_insert_states(conn: Any, rows: list[dict[str, Any]]) -> None:
    conn.exec_driver_sql(_SQLITE_STATE_INSERT, [
        (r["run_id"], r["run_kind"], r["type"], r["name"], r["message"], _sqlite_bind(r["timestamp"]))
        for r in rows
    ])


def _update_rows(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{"b_id": row["id"], **{c: row[c] for c in columns}} for row in rows]


def _run_insert(db: Database, table: Any) -> Insert:
    """INSERT for new runs; an upsert where the backend has one.

    The inserted-id set is only this recorder's memory: a run first written by another
    recorder (a forked child, a re-run of a crashed flow) must not fail the whole batch.
    """
    name = db.dialect
    if name in ("sqlite", "postgresql"):
        if name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        stmt = insert(table)
        columns = [c.name for c in table.c if c.name not in ("id", "created")]
        return stmt.on_conflict_do_update(
            index_elements=[table.c.id], set_={c: stmt.excluded[c] for c in columns}
        )
    return table.insert()


@dataclass(slots=True)
class _Batch:
    """Everything reported since the last flush. Runs are the live objects, by id."""

    flows: dict[str, FlowRun] = field(default_factory=dict)
    tasks: dict[str, TaskRun] = field(default_factory=dict)
    states: list[tuple[str, str, State]] = field(default_factory=list)
    edges: list[dict[str, Any]] = field(default_factory=list)
    logs: list[tuple[Any, ...]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0

    def put_back_before(self, newer: _Batch) -> _Batch:
        """This (failed) batch followed by ``newer``, order kept."""
        self.flows.update(newer.flows)  # the same live objects; nothing to merge
        self.tasks.update(newer.tasks)
        self.states += newer.states
        self.edges += newer.edges
        self.logs += newer.logs
        self.results += newer.results
        self.count += newer.count
        return self


class DatabaseRecorder:
    """A ``plait._runs.Recorder`` writing to a ``Database`` in batches.

    Args:
        db: Where to write.
        flush_interval: Seconds between background flushes (default: settings).
        batch_size: Buffered records that trigger an early flush (default: settings).
        heartbeat_interval: Seconds between heartbeats of Running flow runs (default: settings).
    """

    def __init__(
        self,
        db: Database,
        *,
        flush_interval: float | None = None,
        batch_size: int | None = None,
        heartbeat_interval: float | None = None,
    ) -> None:
        if flush_interval is None or batch_size is None or heartbeat_interval is None:
            settings = get_settings()
            flush_interval = flush_interval or settings.recorder_flush_interval
            batch_size = batch_size or settings.recorder_batch_size
            heartbeat_interval = heartbeat_interval or settings.heartbeat_interval
        self.db = db
        self.flush_interval = float(flush_interval)
        self.batch_size = int(batch_size)
        self.heartbeat_interval = float(heartbeat_interval)
        self.pid = os.getpid()
        self.closed = False

        self._lock = threading.Lock()  # guards _batch and _running; held for microseconds
        self._flush_lock = threading.Lock()  # one flush at a time, from any thread
        self._batch = _Batch()
        self._running: dict[str, FlowRun] = {}  # Running flow runs, for heartbeats
        self._inserted_flows: set[str] = set()
        self._inserted_tasks: set[str] = set()

        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._atexit_registered = False

        self._flow_insert = _run_insert(db, _FLOWS)
        self._task_insert = _run_insert(db, _TASKS)
        self._flow_update: Update = _FLOWS.update().where(_FLOWS.c.id == bindparam("b_id"))
        self._task_update: Update = _TASKS.update().where(_TASKS.c.id == bindparam("b_id"))

    def __repr__(self) -> str:
        return f"DatabaseRecorder({self.db.url_masked!r}, pending={self.pending})"

    # -- hot path: buffer only ---------------------------------------------------------
    def _added(self, batch: _Batch) -> None:
        # Caller holds self._lock. Wake the writer; never wait for it.
        batch.count += 1
        if batch.count >= self.batch_size and not self._wake.is_set():
            self._wake.set()

    def add_flow_run(self, run: FlowRun) -> None:
        """Buffer a new flow run (written with its state at the next flush)."""
        with self._lock:
            batch = self._batch
            batch.flows[run.id] = run
            if run.state.type is StateType.RUNNING:
                self._running[run.id] = run
            self._added(batch)

    def add_task_run(self, run: TaskRun) -> None:
        """Buffer a new task run."""
        with self._lock:
            batch = self._batch
            batch.tasks[run.id] = run
            self._added(batch)

    def add_state(self, run: FlowRun | TaskRun, state: State) -> None:
        """Buffer ``state`` in the run's history and mark the run for rewriting."""
        with self._lock:
            batch = self._batch
            if isinstance(run, TaskRun):
                batch.states.append((run.id, "task", state))
                batch.tasks[run.id] = run
            else:
                batch.states.append((run.id, "flow", state))
                batch.flows[run.id] = run
                if state.type is StateType.RUNNING:
                    self._running[run.id] = run
                else:
                    self._running.pop(run.id, None)
            self._added(batch)

    def add_edge(self, upstream_id: str, downstream_id: str, kind: str, parameter: str | None) -> None:
        """Buffer a dependency edge between two task runs."""
        row = {
            "upstream_id": upstream_id, "downstream_id": downstream_id, "kind": kind, "parameter": parameter,
        }
        with self._lock:
            batch = self._batch
            batch.edges.append(row)
            self._added(batch)

    def add_log(
        self,
        flow_run_id: str | None,
        task_run_id: str | None,
        level: int,
        logger: str,
        message: str,
        timestamp: datetime,
    ) -> None:
        """Buffer a log line."""
        with self._lock:
            batch = self._batch
            batch.logs.append((flow_run_id, task_run_id, level, logger, message, timestamp))
            self._added(batch)

    def add_result(
        self,
        task_run_id: str,
        storage: str,
        path: str,
        serializer: str,
        cache_key: str | None,
        expires_at: datetime | None,
    ) -> None:
        """Buffer an entry of the results index."""
        row = {
            "task_run_id": task_run_id, "storage": storage, "path": path, "serializer": serializer,
            "cache_key": cache_key, "expires_at": expires_at, "created": utcnow(),
        }
        with self._lock:
            batch = self._batch
            batch.results.append(row)
            self._added(batch)

    @property
    def pending(self) -> int:
        """Records buffered and not yet written."""
        return self._batch.count

    def running_flow_run_ids(self) -> set[str]:
        """Ids of flow runs this recorder last saw Running (they get heartbeats)."""
        with self._lock:
            return set(self._running)

    # -- writing -----------------------------------------------------------------------
    def flush(self) -> None:
        """Write everything buffered so far in one transaction.

        Raises:
            DatabaseError: The write failed; every record stays buffered for the next try.
        """
        self._flush(heartbeat=False)

    def _flush(self, heartbeat: bool) -> None:
        with self._flush_lock:
            with self._lock:
                batch, self._batch = self._batch, _Batch()
                beating = [i for i in self._running if i in self._inserted_flows] if heartbeat else []
            if not (batch.count or beating):
                return
            try:
                new_flows, new_tasks = self._write(batch, beating)
            except Exception as exc:
                with self._lock:  # keep the records, ahead of whatever arrived meanwhile
                    self._batch = batch.put_back_before(self._batch)
                raise self.db.error(exc, "write run history to") from None
            self._inserted_flows.update(new_flows)
            self._inserted_tasks.update(new_tasks)

    def _write(self, batch: _Batch, beating: list[str]) -> tuple[list[str], list[str]]:
        """Snapshot the live runs and write one batch; return the ids newly inserted."""
        now = utcnow()
        flow_rows = [_flow_row(run, now) for run in batch.flows.values()]
        new_flow_rows = [r for r in flow_rows if r["id"] not in self._inserted_flows]
        old_flow_rows = [r for r in flow_rows if r["id"] in self._inserted_flows]
        task_rows = [_task_row(run) for run in batch.tasks.values()]
        new_task_rows = [r for r in task_rows if r["id"] not in self._inserted_tasks]
        old_task_rows = [r for r in task_rows if r["id"] in self._inserted_tasks]
        state_rows = [
            {
                "run_id": run_id, "run_kind": kind, "type": _TYPE_VALUE[s.type], "name": s.name,
                "message": _clean(s.message), "timestamp": s.timestamp,
            }
            for run_id, kind, s in batch.states
        ]
        log_rows = [
            {
                "flow_run_id": f, "task_run_id": t, "level": level, "logger": name,
                "message": _clean(message), "timestamp": ts,
            }
            for f, t, level, name, message, ts in batch.logs
        ]
        beating = [i for i in beating if i not in batch.flows]  # dirty ones get it in their row
        sqlite = self.db.dialect == "sqlite"
        with self.db.engine.begin() as conn:
            if new_flow_rows:
                conn.execute(self._flow_insert, new_flow_rows)
            if old_flow_rows:
                conn.execute(self._flow_update, _update_rows(old_flow_rows, _FLOW_MUTABLE))
            if new_task_rows:
                if sqlite:
                    _sqlite_insert_tasks(conn, new_task_rows)
                else:
                    conn.execute(self._task_insert, new_task_rows)
            if old_task_rows:
                conn.execute(self._task_update, _update_rows(old_task_rows, _TASK_MUTABLE))
            if state_rows:
                if sqlite:
                    _sqlite_insert_states(conn, state_rows)
                else:
                    conn.execute(_STATES.insert(), state_rows)
            if batch.edges:
                conn.execute(_EDGES.insert(), batch.edges)
            if log_rows:
                conn.execute(_LOGS.insert(), log_rows)
            if batch.results:
                conn.execute(_RESULTS.insert(), batch.results)
            if beating:
                conn.execute(_FLOWS.update().where(_FLOWS.c.id.in_(beating)).values(heartbeat_at=now))
        return [r["id"] for r in new_flow_rows], [r["id"] for r in new_task_rows]

    # -- background thread -------------------------------------------------------------
    def start(self) -> None:
        """Start the background writer (idempotent) and register a flush at exit."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self.closed = False
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="plait-recorder", daemon=True)
            self._thread.start()
            if not self._atexit_registered:
                atexit.register(self._at_exit)
                self._atexit_registered = True

    def _run(self) -> None:
        next_beat = time.monotonic() + self.heartbeat_interval
        failing = False
        while not self._stop.is_set():
            self._wake.wait(max(0.0, min(self.flush_interval, next_beat - time.monotonic())))
            self._wake.clear()
            if self._stop.is_set():
                return  # close() does the final flush on the caller's thread
            beat = time.monotonic() >= next_beat
            if beat:
                next_beat = time.monotonic() + self.heartbeat_interval
            try:
                self._flush(heartbeat=beat)
            except Exception as exc:  # keep the thread alive; records stay buffered
                if not failing:
                    logger.error("%s; will retry every %.3gs", exc, self.flush_interval)
                else:
                    logger.debug("retry failed: %s", exc)
                failing = True
                # A full buffer keeps setting _wake: pause so a dead database is not hammered.
                self._stop.wait(self.flush_interval)
                continue
            if failing:
                logger.warning("writing run history to %s works again", self.db.url_masked)
                failing = False

    def close(self) -> None:
        """Stop the background writer and flush what is left.

        Raises:
            DatabaseError: The final flush failed (records stay buffered).
        """
        self.closed = True
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(5.0, 2 * self.flush_interval))
        self._thread = None
        if self._atexit_registered:
            atexit.unregister(self._at_exit)
            self._atexit_registered = False
        self.flush()

    def _at_exit(self) -> None:
        if os.getpid() != self.pid:
            return  # a forked child inherited the handler; the parent writes these records
        try:
            self.close()
        except DatabaseError as exc:
            logger.error("run history not saved at exit: %s", exc)


# -- the process-wide recorder ---------------------------------------------------------
_recorder: DatabaseRecorder | None = None
_recorder_lock = threading.Lock()


def _usable(rec: DatabaseRecorder | None, url: str) -> bool:
    return rec is not None and rec.pid == os.getpid() and not rec.closed and rec.db.is_url(url)


def get_recorder() -> DatabaseRecorder:
    """The process-wide recorder for the current ``effective_database_url``, started.

    A new one replaces it when the URL changed, after ``reset_recorder()``/``close()`` and
    in a forked child (the parent's buffers and thread are the parent's business).

    Raises:
        DatabaseError: The database cannot be opened.
    """
    global _recorder
    url = get_settings().effective_database_url
    rec = _recorder
    if _usable(rec, url):
        return rec  # type: ignore[return-value]
    with _recorder_lock:
        rec = _recorder
        if _usable(rec, url):
            return rec  # type: ignore[return-value]
        if rec is not None and rec.pid == os.getpid() and not rec.closed:
            _close_quietly(rec)
        rec = DatabaseRecorder(Database.open(url))
        rec.start()
        _recorder = rec
        return rec


def reset_recorder() -> None:
    """Close (flushing) and forget the process-wide recorder; the next get makes a new one."""
    global _recorder
    with _recorder_lock:
        rec, _recorder = _recorder, None
    if rec is not None and rec.pid == os.getpid():
        _close_quietly(rec)


def _close_quietly(rec: DatabaseRecorder) -> None:
    try:
        rec.close()
    except DatabaseError as exc:
        logger.error("run history not saved: %s", exc)


def running_flow_run_ids() -> set[str]:
    """Flow runs this process is running right now, per its recorder (empty if none)."""
    rec = _recorder
    if rec is None or rec.pid != os.getpid() or rec.closed:
        return set()
    return rec.running_flow_run_ids()


def _after_fork_in_child() -> None:
    global _recorder_lock
    _recorder_lock = threading.Lock()  # it may have been held by a parent thread


os.register_at_fork(after_in_child=_after_fork_in_child)
