"""The local recorder: journals what the engine reports, then writes it in batches.

The engine calls ``add_*`` on its hot path. Each call appends one line to the process's
journal (``plait._journal``) and, under a lock held for microseconds, buffers the record in
memory; the journal's lines reach the disk whenever a run starts or ends, so what the
engine produced survives ``kill -9`` before the next task begins. Runs are kept as the
*live* ``FlowRun``/``TaskRun`` objects in a dirty map and read at flush time, so a run that
changes state five times between two flushes costs one row write. ``flush()`` writes the
batch in one transaction through ``plait._store.runs.RunWriter`` and then deletes the
journal segments it covered; a background thread flushes every ``recorder_flush_interval``
seconds (or early once ``recorder_batch_size`` records wait) and keeps Running flow runs'
heartbeats fresh.

One bad record never costs the others: when the database refuses a batch because of a
value in it, the batch is written again record by record and only the refused records are
dropped (and logged). A database that is down keeps everything buffered (and journaled)
for the next try.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from plait._batch import BatchRows, clean_json, clean_text
from plait._journal import (
    Journal,
    artifact_record,
    artifact_update_record,
    edge_record,
    flow_record,
    log_record,
    result_record,
    state_record,
    task_record,
)
from plait._runs import FlowRun, TaskRun, utcnow
from plait._sinks import DatabaseSink, RunSink
from plait._store.database import Database
from plait.exceptions import PlaitError
from plait.settings import PlaitSettings, get_settings
from plait.states import FINAL_TYPES, State, StateType

__all__ = [
    "Recorder", "DatabaseRecorder", "get_recorder", "reset_recorder", "running_flow_run_ids", "current_journal_dir",
]

logger = logging.getLogger("plait.recorder")

_TYPE_VALUE = {t: t.value for t in StateType}  # Enum.value is a slow descriptor
# A task run reaching one of these makes the journal write what it holds, so every record
# made before a task ended is on disk before the next one starts (a flow run's every state
# does too).
_SYNC_TYPES = FINAL_TYPES


def _flow_row(run: FlowRun, now: datetime, heartbeat_interval: float) -> dict[str, Any]:
    state = run.state
    return {
        "id": run.id,
        "flow_name": clean_text(run.flow_name),
        "name": clean_text(run.name),
        "parameters": clean_json(run.parameters),
        "tags": clean_json(list(run.tags)),
        "state_type": _TYPE_VALUE[state.type],
        "state_name": clean_text(state.name),
        "state_message": clean_text(state.message),
        "parent_flow_run_id": run.parent_flow_run_id,
        "parent_task_run_id": run.parent_task_run_id,
        "run_count": run.run_count,
        "created": run.created,
        "start_time": run.start_time,
        "end_time": run.end_time,
        "pid": run.pid,
        "hostname": run.hostname,
        "heartbeat_at": now,  # any write by the owning process proves it is alive
        "heartbeat_interval": heartbeat_interval,
    }


def _task_row(run: TaskRun) -> dict[str, Any]:
    # Free text is cleaned (messages, parameters); names come from code, and a bad one costs
    # only its own row (the writer stores the rest of the batch without it).
    state = run.state
    return {
        "id": run.id,
        "flow_run_id": run.flow_run_id,
        "task_name": run.task_name,
        "task_key": run.task_key,
        "name": run.name,
        "dynamic_key": run.dynamic_key,
        "parameters": clean_json(run.parameters),
        "tags": run.tags,
        "state_type": _TYPE_VALUE[state.type],
        "state_name": state.name,
        "state_message": clean_text(state.message),
        "run_count": run.run_count,
        "cache_key": run.cache_key,
        "result_ref": run.result_ref,
        "created": run.created,
        "start_time": run.start_time,
        "end_time": run.end_time,
    }


@dataclass(slots=True)
class _Batch:
    """Everything reported since the last flush. Runs are the live objects, by id."""

    flows: dict[str, FlowRun] = field(default_factory=dict)
    tasks: dict[str, TaskRun] = field(default_factory=dict)
    # (run id, "flow"|"task", owning flow run id, state)
    states: list[tuple[str, str, str | None, State]] = field(default_factory=list)
    edges: list[dict[str, Any]] = field(default_factory=list)
    logs: list[tuple[Any, ...]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)  # rows as plait.artifacts made them
    artifact_updates: list[dict[str, Any]] = field(default_factory=list)
    segments: list[Path] = field(default_factory=list)  # journal segments holding these records
    count: int = 0


def _merge(older: _Batch, newer: _Batch) -> _Batch:
    """``older`` followed by ``newer``, order kept."""
    older.flows.update(newer.flows)  # the same live objects; nothing to merge
    older.tasks.update(newer.tasks)
    older.states += newer.states
    older.edges += newer.edges
    older.logs += newer.logs
    older.results += newer.results
    older.artifacts += newer.artifacts
    older.artifact_updates += newer.artifact_updates
    older.segments += newer.segments
    older.count += newer.count
    return older


@dataclass(slots=True)
class _Unsent:
    """A batch handed to the sink and not yet accepted: retried as it is, under the same id,
    before anything newer is sent (a server that stored it but whose answer was lost then
    answers from its record of the id: exactly once, in order)."""

    id: str
    batch: _Batch
    rows: BatchRows


class Recorder:
    """A ``plait._runs.Recorder`` writing to a ``RunSink`` in batches.

    Args:
        sink: Where batches go (a local store, a plait server).
        journal: Where every record goes first (None: records live in memory until flushed).
        flush_interval: Seconds between background flushes (default: settings).
        batch_size: Buffered records that trigger an early flush (default: settings).
        heartbeat_interval: Seconds between heartbeats of Running flow runs (default: settings).
        exit_wait: Seconds ``close`` keeps retrying a sink that cannot take the last batch
            before leaving it in the journal for the next process (0: one try).
        before_start: Called on the background thread before its first flush (a remote
            recorder delivers what earlier processes left in the spool).
    """

    def __init__(
        self,
        sink: RunSink,
        *,
        journal: Journal | None = None,
        flush_interval: float | None = None,
        batch_size: int | None = None,
        heartbeat_interval: float | None = None,
        exit_wait: float = 0.0,
        before_start: Callable[[Recorder], None] | None = None,
    ) -> None:
        if flush_interval is None or batch_size is None or heartbeat_interval is None:
            settings = get_settings()
            flush_interval = flush_interval or settings.recorder_flush_interval
            batch_size = batch_size or settings.recorder_batch_size
            heartbeat_interval = heartbeat_interval or settings.heartbeat_interval
        self.sink = sink
        self.journal = journal
        self.flush_interval = float(flush_interval)
        self.batch_size = int(batch_size)
        self.heartbeat_interval = float(heartbeat_interval)
        self.exit_wait = float(exit_wait)
        self.destination = ""  # what get_recorder made it for
        self._before_start = before_start
        self.pid = os.getpid()
        self.closed = False

        self._lock = threading.Lock()  # guards _batch, _running and the journal
        self._flush_lock = threading.Lock()  # one flush at a time, from any thread
        self._batch = _Batch()
        self._unsent: _Unsent | None = None  # guarded by _flush_lock
        self._running: dict[str, FlowRun] = {}  # Running flow runs, for heartbeats
        self._stored: dict[str, str] = {}  # flow run id -> state type this recorder last stored
        self._inserted_tasks: set[str] = set()
        self._taken: set[str] = set()  # flow runs someone else ended while we ran them
        # Flow runs not ended yet; once per flush cycle the sink is asked which of them
        # someone asked to stop. ``cancelling`` is read by the engine at every task boundary
        # (a set lookup): it is one set object for the recorder's life, changed in place.
        self._live: dict[str, FlowRun] = {}
        self.cancelling: set[str] = set()
        # Runs a launcher named (PLAIT_FLOW_RUN_ID), as the store held them, for the engine
        # to adopt; entrypoints of top-level runs, written with their first row.
        self._launched: dict[str, dict[str, Any] | None] = {}
        self._entrypoints: dict[str, str] = {}
        self._extras: frozenset[str] = getattr(sink, "flow_extras", frozenset())
        # Task runs not ended yet, with the states they reached since the last flush: a task
        # is journaled as one record when it ends (its earlier states wait here meanwhile).
        self._open: dict[str, tuple[TaskRun, list[State]]] = {}

        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._atexit_registered = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.sink.label!r}, pending={self.pending})"

    # -- hot path: journal and buffer only -----------------------------------------------
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
            self._live[run.id] = run
            if self.journal is not None:
                self.journal.append(flow_record(run, self.heartbeat_interval))
            if run.state.type is StateType.RUNNING:
                self._running[run.id] = run
            self._added(batch)

    def add_task_run(self, run: TaskRun) -> None:
        """Buffer a new task run."""
        with self._lock:
            batch = self._batch
            batch.tasks[run.id] = run
            if self.journal is not None:
                self._open[run.id] = (run, [])
            self._added(batch)

    def add_state(self, run: FlowRun | TaskRun, state: State) -> None:
        """Buffer ``state`` in the run's history and mark the run for rewriting."""
        with self._lock:
            batch = self._batch
            journal = self.journal
            if run.__class__ is TaskRun:
                task: TaskRun = run  # type: ignore[assignment]
                batch.states.append((task.id, "task", task.flow_run_id, state))
                batch.tasks[task.id] = task
                if journal is not None:
                    if state.type in _SYNC_TYPES:
                        states = self._open.pop(task.id, (task, []))[1]
                        states.append(state)
                        journal.append(task_record(task, states))
                        journal.sync()
                    else:
                        self._open.setdefault(task.id, (task, []))[1].append(state)
            else:
                flow: FlowRun = run  # type: ignore[assignment]
                batch.states.append((flow.id, "flow", flow.id, state))
                batch.flows[flow.id] = flow
                if state.type is StateType.RUNNING:
                    self._running[flow.id] = flow
                else:
                    self._running.pop(flow.id, None)
                    if state.type in FINAL_TYPES:
                        self._live.pop(flow.id, None)
                        self.cancelling.discard(flow.id)
                if journal is not None:
                    journal.append(state_record(flow, state))
                    journal.sync()
            self._added(batch)

    def add_edge(self, upstream_id: str, downstream_id: str, kind: str, parameter: str | None) -> None:
        """Buffer a dependency edge between two task runs."""
        row = {"upstream_id": upstream_id, "downstream_id": downstream_id, "kind": kind, "parameter": parameter}
        with self._lock:
            batch = self._batch
            batch.edges.append(row)
            if self.journal is not None:
                self.journal.append(edge_record(upstream_id, downstream_id, kind, parameter))
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
            if self.journal is not None:
                self.journal.append(log_record(flow_run_id, task_run_id, level, logger, message, timestamp))
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
            if self.journal is not None:
                self.journal.append(result_record(row))
            self._added(batch)

    def add_artifact(self, row: dict[str, Any], *, update: bool = False) -> None:
        """Buffer a new artifact, or (``update``) a progress update of one: rows as
        ``plait.artifacts`` builds them. Journaled and synced at once: artifacts are few,
        and one made just before a ``kill -9`` must survive it."""
        with self._lock:
            batch = self._batch
            (batch.artifact_updates if update else batch.artifacts).append(row)
            if self.journal is not None:
                self.journal.append(artifact_update_record(row) if update else artifact_record(row))
                self.journal.sync()
            self._added(batch)

    @property
    def pending(self) -> int:
        """Records buffered and not yet written."""
        unsent = self._unsent
        return self._batch.count + (unsent.batch.count if unsent is not None else 0)

    def running_flow_run_ids(self) -> set[str]:
        """Ids of flow runs this recorder last saw Running (they get heartbeats)."""
        with self._lock:
            return set(self._running)

    def stored_flow_run_state(self, flow_run_id: str) -> StateType | None:
        """The state the database holds for ``flow_run_id`` (None: no such run).

        This is how a flow learns about the run a launcher named (``PLAIT_FLOW_RUN_ID``):
        what the store holds of it is kept for the engine to adopt (``launched_run``).

        Raises:
            PlaitError: The destination cannot be read.
        """
        fetch = getattr(self.sink, "stored_flow_run", None)
        if fetch is None:
            return self.sink.stored_flow_run_state(flow_run_id)
        row = fetch(flow_run_id)
        with self._lock:
            self._launched[flow_run_id] = row
        return StateType(row["state_type"]) if row is not None else None

    def launched_run(self, flow_run_id: str) -> tuple[bool, dict[str, Any] | None]:
        """Whether a launcher named this run (``PLAIT_FLOW_RUN_ID``), and what the store held
        of it then (None: nothing yet). Answers once; no I/O."""
        with self._lock:
            if flow_run_id not in self._launched:
                return False, None
            return True, self._launched.pop(flow_run_id)

    def note_entrypoint(self, flow_run_id: str, entrypoint: str) -> None:
        """Where a top-level run's flow is (``/abs/path.py:function``), written with its row."""
        if "entrypoint" in self._extras:
            with self._lock:
                self._entrypoints[flow_run_id] = entrypoint

    def pause(self, flow_run_id: str, schema: dict[str, Any] | None, deadline: datetime) -> str:
        """Tell the destination what the Paused run ``flow_run_id`` waits for (its state was
        written first, by ``flush``). Returns the stored state type.

        Raises:
            PlaitError: The destination cannot be written.
        """
        try:
            return self.sink.pause(flow_run_id, schema, deadline)
        except PlaitError:
            raise
        except Exception as exc:
            raise self.sink.failure(exc, "record the pause of a flow run in") from None

    def pause_status(self, flow_run_id: str) -> dict[str, Any]:
        """``{state_type, state_name, resume_input}`` as the destination holds them.

        Raises:
            PlaitError: The destination cannot be read.
        """
        try:
            return self.sink.pause_status(flow_run_id)
        except PlaitError:
            raise
        except Exception as exc:
            raise self.sink.failure(exc, "read the state of a paused flow run from") from None

    def check_cancelling(self) -> set[str]:
        """Ask the sink which live flow runs are Cancelling; add them to ``cancelling``.

        Returns:
            The ids newly found Cancelling.
        """
        with self._flush_lock:
            stored = self._stored
            with self._lock:
                ids = [i for i in self._live if i in stored and i not in self.cancelling]
        if not ids:
            return set()
        try:
            found = self.sink.cancelling(ids) & set(ids)
        except Exception as exc:  # the next cycle asks again
            logger.debug("could not ask %s which runs are cancelling: %s", self.sink.label, exc)
            return set()
        if found:
            with self._lock:
                found &= set(self._live)  # not the ones that ended meanwhile
                self.cancelling.update(found)
            for run_id in sorted(found):
                logger.info("flow run %s is cancelling: it stops at its next task boundary", run_id)
        return found

    # -- writing -----------------------------------------------------------------------
    def flush(self) -> None:
        """Write everything buffered so far.

        Raises:
            PlaitError: The write failed (a ``DatabaseError`` for a local store); every
                record stays buffered, and journaled, for the next try.
        """
        self._flush(heartbeat=False)

    def _flush(self, heartbeat: bool) -> None:
        with self._flush_lock:
            if self._unsent is not None:  # an earlier batch first, as it was
                self._send(self._unsent)
            with self._lock:
                batch, self._batch = self._batch, _Batch()
                if self.journal is not None:
                    for _, states in self._open.values():
                        states.clear()  # stored with this batch; the journal need not repeat them
                    batch.segments += self.journal.rotate()
                beating = [i for i in self._running if i in self._stored] if heartbeat else []
            if not (batch.count or beating):
                return
            try:
                rows = self._rows(batch, beating)
            except Exception:
                with self._lock:  # keep the records, ahead of whatever arrived meanwhile
                    self._batch = _merge(batch, self._batch)
                raise
            self._send(_Unsent(uuid.uuid4().hex, batch, rows))

    def _send(self, unsent: _Unsent) -> None:
        # Caller holds _flush_lock.
        self._unsent = unsent
        try:
            taken = self._write(unsent)
        except Exception as exc:
            raise self.sink.failure(exc, "write run history to") from None
        self._unsent = None
        rows = unsent.rows
        for row in rows.new_flows + rows.old_flows:
            if row["id"] not in taken:
                self._stored[row["id"]] = row["state_type"]
        self._inserted_tasks.update(r["id"] for r in rows.new_tasks)
        self._note_taken(taken)
        Journal.discard(unsent.batch.segments)

    def _rows(self, batch: _Batch, beating: list[str]) -> BatchRows:
        """Snapshot the live runs of one batch as rows."""
        now = utcnow()
        rows = BatchRows(now=now)
        hb = self.heartbeat_interval
        for run in batch.flows.values():
            row = _flow_row(run, now, hb)
            expect = self._stored.get(run.id)
            if self._entrypoints and run.id in self._entrypoints:
                # written as a new row even if an earlier flush beat the engine to it: the
                # upsert keeps the run's name and stored columns and fills in the entrypoint
                row["entrypoint"] = self._entrypoints.pop(run.id)
                expect = None
            if expect is None:
                rows.new_flows.append(row)
            else:
                row["expect"] = expect
                rows.old_flows.append(row)
        inserted = self._inserted_tasks
        for task in batch.tasks.values():
            (rows.old_tasks if task.id in inserted else rows.new_tasks).append(_task_row(task))
        rows.states = [
            {
                "run_id": run_id, "run_kind": kind, "flow_run_id": owner, "type": _TYPE_VALUE[s.type],
                "name": s.name, "message": clean_text(s.message), "timestamp": s.timestamp,
            }
            for run_id, kind, owner, s in batch.states
        ]
        rows.edges = batch.edges
        rows.logs = [
            {
                "flow_run_id": f, "task_run_id": t, "level": level, "logger": name,
                "message": clean_text(message), "timestamp": ts,
            }
            for f, t, level, name, message, ts in batch.logs
        ]
        rows.results = batch.results
        rows.artifacts = batch.artifacts
        rows.artifact_updates = batch.artifact_updates
        rows.heartbeats = [i for i in beating if i not in batch.flows]  # dirty ones get it in their row
        return rows

    def _write(self, unsent: _Unsent) -> set[str]:
        taken, dropped, reason = self.sink.write(unsent.id, unsent.rows)
        if dropped:
            logger.error("%d record(s) of run history were refused by %s and dropped; the rest was stored (%s)",
                         dropped, self.sink.label, reason)
        return taken

    def _note_taken(self, taken: set[str]) -> None:
        for run_id in taken - self._taken:
            logger.warning(
                "flow run %s was ended by someone else (e.g. crash detection) while this process ran it; "
                "its further states are not recorded", run_id,
            )
            with self._lock:
                self._running.pop(run_id, None)
                self._live.pop(run_id, None)
        self._taken |= taken

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
        if self._before_start is not None:
            self._before_start(self)
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
                self.check_cancelling()
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
                logger.warning("writing run history to %s works again", self.sink.label)
                failing = False

    def close(self) -> None:
        """Stop the background writer and flush what is left.

        Raises:
            PlaitError: The final flush failed (records stay buffered, and journaled
                for the next reader to recover).
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
        try:
            self._last_flush()
        finally:
            if self.journal is not None and self.pid == os.getpid():
                with self._lock:
                    self.journal.close()

    def _last_flush(self) -> None:
        # A server may be restarting: keep trying for exit_wait seconds, then leave the
        # records in the journal (the spool) for the next plait process to deliver.
        deadline = time.monotonic() + self.exit_wait
        while True:
            try:
                self.flush()
                return
            except PlaitError:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                time.sleep(min(0.5, left))

    def _at_exit(self) -> None:
        if os.getpid() != self.pid:
            return  # a forked child inherited the handler; the parent writes these records
        _close_quietly(self, "at exit")


class DatabaseRecorder(Recorder):
    """A ``Recorder`` writing to a local store."""

    def __init__(self, db: Database, **options: Any) -> None:
        super().__init__(DatabaseSink(db), **options)
        self.db = db



# -- the process-wide recorder ---------------------------------------------------------
_recorder: Recorder | None = None
_recorder_lock = threading.Lock()


def _destination(settings: PlaitSettings) -> str:
    """Where records go under ``settings``: a plait server's API, or a database."""
    return f"api {settings.api_url}" if settings.api_url else f"db {settings.effective_database_url}"


def _usable(rec: Recorder | None, destination: str) -> bool:
    return rec is not None and rec.pid == os.getpid() and not rec.closed and rec.destination == destination


def get_recorder() -> Recorder:
    """The process-wide recorder for the current settings, started: to the plait server at
    ``api_url`` when one is set, else to ``effective_database_url``.

    A new one replaces it when the destination changed, after ``reset_recorder()``/``close()``
    and in a forked child (the parent's buffers, journal and thread are the parent's business).

    Raises:
        PlaitError: The database cannot be opened (``DatabaseError``), or the API settings
            are unusable.
    """
    global _recorder
    settings = get_settings()
    destination = _destination(settings)
    rec = _recorder
    if _usable(rec, destination):
        return rec  # type: ignore[return-value]
    with _recorder_lock:
        rec = _recorder
        if _usable(rec, destination):
            return rec  # type: ignore[return-value]
        if rec is not None and rec.pid == os.getpid() and not rec.closed:
            _close_quietly(rec)
        if settings.api_url:
            rec = _remote_recorder(settings)
        else:
            db = Database.open(settings.effective_database_url)
            rec = DatabaseRecorder(db, journal=_open_journal(settings.home, db.url_digest))
        rec.destination = destination
        rec.start()
        _recorder = rec
        return rec


def _remote_recorder(settings: PlaitSettings) -> Recorder:
    from plait._api import ApiSession
    from plait._api.sink import ApiRunSink

    sink = ApiRunSink(ApiSession.from_settings())
    return Recorder(sink, journal=_open_journal(settings.home, sink.digest), exit_wait=settings.spool_exit_wait,
                    before_start=_deliver_spool)


def _deliver_spool(rec: Recorder) -> None:
    """What earlier processes left for this server: delivered before this one's records."""
    from plait._spool import deliver_spool

    try:
        deliver_spool(rec.sink, get_settings().home)
    except PlaitError as exc:
        logger.debug("spool not delivered yet: %s", exc)


def _open_journal(home: Path, digest: str) -> Journal | None:
    try:
        return Journal(home, digest)
    except OSError as exc:  # e.g. a read-only home: record anyway, without crash safety
        logger.warning("cannot keep a run journal under %s (%s); records are kept in memory until "
                       "written, and a killed process may lose its last second of history", home, exc)
        return None


def current_journal_dir() -> Path | None:
    """This process's journal directory, if its recorder has one."""
    rec = _recorder
    if rec is None or rec.pid != os.getpid() or rec.closed or rec.journal is None:
        return None
    return rec.journal.dir


def reset_recorder() -> None:
    """Close (flushing) and forget the process-wide recorder; the next get makes a new one."""
    global _recorder
    with _recorder_lock:
        rec, _recorder = _recorder, None
    if rec is not None and rec.pid == os.getpid():
        _close_quietly(rec)


def _close_quietly(rec: Recorder, when: str = "") -> None:
    try:
        rec.close()
    except PlaitError as exc:
        where = f" {when}" if when else ""
        if rec.journal is not None and rec.exit_wait:
            logger.error("run history not delivered to %s%s (%s); %d record(s) wait in the spool at %s and the "
                         "next plait process using this PLAIT_HOME delivers them (or run `plait spool flush`)",
                         rec.sink.label, where, exc, rec.pending, rec.journal.dir)
        else:
            logger.error("run history not saved%s: %s", where, exc)


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
