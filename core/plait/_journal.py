"""The per-process journal: every record the engine reports, on disk before the next task.

The recorder queues each record (a run, a state, an edge, a log line, a result) and the
journal copies what is queued, as one JSON line, into a shared memory mapping of its
current segment file whenever a task run reaches a final state, a flow run changes state,
and at every flush. Those bytes are in the operating system's page cache at once, so they
survive the death of the process — ``kill -9`` included — without a system call, let alone
an ``fsync``. A machine crash can still lose the last lines.

Layout under ``$PLAIT_HOME/journal/``: one directory per recording process,
``<host>-<pid>-<token>/`` holding ``lock`` (held with ``flock`` for the process's whole
life: the kernel drops it when the process dies, however it dies), ``meta.json`` (which
database the records belong to) and numbered segments ``000001.jsonl``. Each flush
closes the current segment; once the batch holding its records is committed to the
database the segment is deleted. A directory whose lock nobody holds belongs to a dead
process: ``plait._recovery`` replays its segments into the store, then removes it.
"""

from __future__ import annotations

import ast
import fcntl
import json
import logging
import mmap
import os
import secrets
import shutil
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from plait._batch import from_micros, micros
from plait._runs import HOSTNAME, FlowRun, TaskRun
from plait.states import State, StateType

__all__ = [
    "Journal",
    "JournalDir",
    "journal_root",
    "list_journals",
    "decode_segments",
    "flow_record",
    "task_record",
    "state_record",
    "edge_record",
    "log_record",
    "result_record",
    "artifact_record",
    "artifact_update_record",
    "Record",
]

logger = logging.getLogger("plait.recorder")

# A line is the Python literal of a list of records (tuples of str, int, float, None and
# the JSON-safe parameters): repr is C code, about twice as fast as json here, it escapes
# newlines and lone surrogates, and ast.literal_eval reads it back without running code.
_encode = repr


_micros = micros
_when = from_micros
_TYPE_VALUE = {t: t.value for t in StateType}  # Enum.value is a slow descriptor


def journal_root(home: Path) -> Path:
    return Path(home).expanduser() / "journal"


# -- records: what the recorder appends ----------------------------------------------------------
# Records are tuples; the journal encodes everything queued at once when it syncs (one
# JSON array per line), which costs far less than encoding record by record.
Record = tuple[Any, ...]


def flow_record(run: FlowRun, heartbeat_interval: float) -> Record:
    return (
        "F", run.id, run.flow_name, run.name, run.parameters, run.tags, run.parent_flow_run_id,
        run.parent_task_run_id, _micros(run.created), run.pid, run.hostname, heartbeat_interval,
    )


def task_record(run: TaskRun, states: list[State]) -> Record:
    """A task run as it is now, with the states it reached since it was last journaled or
    stored: one record per task, written when the task ends (a replay inserts or updates
    its row and adds the states it does not hold yet)."""
    flat: list[Any] = [
        "K", run.id, run.flow_run_id, run.task_name, run.task_key, run.name, run.dynamic_key,
        run.parameters, run.tags, _micros(run.created), run.run_count, _micros(run.start_time),
        _micros(run.end_time), run.cache_key, run.result_ref,
    ]
    for state in states:  # flat: four fields a state, no tuple each
        flat += (_TYPE_VALUE[state.type], state.name, state.message, round(state.timestamp.timestamp() * 1e6))
    return tuple(flat)


def state_record(run: FlowRun, state: State) -> Record:
    """A flow run's state and the fields that change with it, so a replay can rebuild the row."""
    return (
        "f", run.id, state.type.value, state.name, state.message, _micros(state.timestamp), run.run_count,
        _micros(run.start_time), _micros(run.end_time),
    )


def edge_record(upstream_id: str, downstream_id: str, kind: str, parameter: str | None) -> Record:
    return ("e", upstream_id, downstream_id, kind, parameter)


def log_record(
    flow_run_id: str | None, task_run_id: str | None, level: int, name: str, message: str, timestamp: datetime
) -> Record:
    return ("l", flow_run_id, task_run_id, level, name, message, _micros(timestamp))


def result_record(row: dict[str, Any]) -> Record:
    return (
        "r", row["task_run_id"], row["storage"], row["path"], row["serializer"], row["cache_key"],
        _micros(row["expires_at"]), _micros(row["created"]),
    )


def artifact_record(row: dict[str, Any]) -> Record:
    """A new artifact (``plait.artifacts``); its data is JSON-safe (strings, numbers, lists)."""
    return (
        "a", row["id"], row["key"], row["type"], row["description"], row["data"], row["flow_run_id"],
        row["task_run_id"], _micros(row["created"]),
    )


def artifact_update_record(row: dict[str, Any]) -> Record:
    """A progress update of an artifact."""
    return ("u", row["artifact_id"], row["data"], _micros(row["updated"]))


# -- the writing side --------------------------------------------------------------------------
_open_journals: weakref.WeakSet[Journal] = weakref.WeakSet()


class Journal:
    """This process's journal directory. Not thread-safe: the recorder calls it under its lock.

    Args:
        home: PLAIT_HOME; the journal lives in ``home/journal``.
        database: The ``url_digest`` of the database the records are for.
    """

    def __init__(self, home: Path, database: str) -> None:
        root = journal_root(home)
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.pid = os.getpid()
        self.dir = root / f"{HOSTNAME}-{self.pid}-{secrets.token_hex(4)}"
        self.dir.mkdir(mode=0o700)
        self._lock_fd: int | None = os.open(self.dir / "lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        meta = {"database": database, "host": HOSTNAME, "pid": self.pid}
        (self.dir / "meta.json").write_text(json.dumps(meta))
        self._pending: list[Record] = []
        self._segment: _Segment | None = None
        self._full: list[Path] = []  # segments filled up since the last rotate
        self._seq = 0
        _open_journals.add(self)

    def __repr__(self) -> str:
        return f"Journal({str(self.dir)!r})"

    def append(self, record: Record) -> None:
        """Queue one record; it reaches the disk at the next ``sync``."""
        self._pending.append(record)

    def sync(self) -> None:
        """Copy the queued records, as one line, into the current segment's mapped pages."""
        if not self._pending:
            return
        data = (_encode(self._pending) + "\n").encode()
        self._pending = []
        segment = self._segment
        if segment is not None and not segment.fits(len(data)):
            self._full.append(segment.close())
            segment = None
        if segment is None:
            self._seq += 1
            segment = self._segment = _Segment(self.dir / f"{self._seq:06d}.jsonl", len(data))
        segment.write(data)

    def rotate(self) -> list[Path]:
        """Sync and close the current segment; return the segments closed since the last
        rotate (their records are those of the batch being flushed)."""
        self.sync()
        closed, self._full = self._full, []
        if self._segment is not None:
            closed.append(self._segment.close())
            self._segment = None
        return closed

    @staticmethod
    def discard(segments: Iterable[Path]) -> None:
        """Delete segments whose records the database now holds."""
        for segment in segments:
            try:
                segment.unlink()
            except FileNotFoundError:
                pass

    def close(self) -> None:
        """Release the journal: removed when every segment was discarded, else left for
        recovery (its lock is released, so the next reader replays it)."""
        self.rotate()
        if self._lock_fd is None:
            return
        if not any(self.dir.glob("*.jsonl")):
            shutil.rmtree(self.dir, ignore_errors=True)
        os.close(self._lock_fd)
        self._lock_fd = None

    def _forget_after_fork(self) -> None:
        # The child's copies of our mapping and lock; dropping them leaves the parent's be.
        if self._segment is not None:
            self._segment.forget()
        if self._lock_fd is not None:
            try:
                os.close(self._lock_fd)
            except OSError:
                pass
        self._segment = None
        self._lock_fd = None
        self._pending = []
        self._full = []


class _Segment:
    """One segment file, written through a shared memory mapping.

    Copying into a ``MAP_SHARED`` mapping puts the bytes in the kernel's page cache with no
    system call (a ``write`` per task costs little on average, but releasing the GIL for it
    lets other threads and processes in, and some calls then take milliseconds); the kernel
    writes the pages back even after the process is killed. The file is sized ahead and
    trimmed to what was written when closed; a reader ignores the zeros a killed process
    left after its last line.
    """

    SIZE = 1 << 20

    def __init__(self, path: Path, at_least: int) -> None:
        self.path = path
        self.size = max(self.SIZE, at_least)
        self.fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        os.ftruncate(self.fd, self.size)
        self.map = mmap.mmap(self.fd, self.size)
        self.used = 0

    def fits(self, length: int) -> bool:
        return self.used + length <= self.size

    def write(self, data: bytes) -> None:
        end = self.used + len(data)
        self.map[self.used:end] = data
        self.used = end

    def close(self) -> Path:
        self.map.close()
        os.ftruncate(self.fd, self.used)
        os.close(self.fd)
        return self.path

    def forget(self) -> None:
        try:
            self.map.close()
            os.close(self.fd)
        except (OSError, ValueError):
            pass


def _after_fork_in_child() -> None:
    for journal in list(_open_journals):
        journal._forget_after_fork()
    _open_journals.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


# -- the reading side --------------------------------------------------------------------------
@dataclass(frozen=True)
class JournalDir:
    """A journal directory found on disk."""

    path: Path
    host: str
    pid: int

    def meta(self) -> dict[str, Any]:
        try:
            value = json.loads((self.path / "meta.json").read_text())
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    def try_lock(self) -> int | None:
        """An fd holding this directory's lock (its process is dead), or None (alive)."""
        try:
            fd = os.open(self.path / "lock", os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        return fd

    def is_alive(self) -> bool:
        fd = self.try_lock()
        if fd is None:
            return (self.path / "lock").exists()
        os.close(fd)
        return False

    def segments(self) -> list[Path]:
        return sorted(self.path.glob("*.jsonl"))


def list_journals(home: Path, host: str = HOSTNAME) -> list[JournalDir]:
    """The journal directories of processes on ``host`` (oldest names first)."""
    root = journal_root(home)
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return []
    found = []
    for entry in entries:
        name_host, _, rest = entry.name.rpartition("-")  # "<host>-<pid>-<token>"
        name_host, _, pid = name_host.rpartition("-")
        if name_host == host and pid.isdigit() and entry.is_dir():
            found.append(JournalDir(entry, name_host, int(pid)))
    return found


def _records(segments: list[Path]) -> Iterator[list[Any]]:
    for segment in segments:
        try:
            data = segment.read_bytes()
        except OSError:
            continue
        # a killed process leaves the rest of its last, pre-sized segment as zeros
        for line in data.rstrip(b"\0").decode("utf-8", "replace").splitlines():
            try:
                records = ast.literal_eval(line)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue  # a line cut short by the death of the process
            if isinstance(records, list):
                yield from (list(r) for r in records if isinstance(r, tuple) and r)


def decode_segments(segments: list[Path]) -> dict[str, Any]:
    """The records of ``segments`` as rows: ``{flows, tasks, states, edges, logs, results,
    artifacts, artifact_updates}``.

    Runs are keyed by id with their newest snapshot (``_partial`` when the run was created in
    a segment already stored, so only its changing fields are known); states, edges, logs
    and results are in the order they were journaled.
    """
    flows: dict[str, dict[str, Any]] = {}
    tasks: dict[str, dict[str, Any]] = {}
    states: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    logs: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    artifacts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for rec in _records(segments):
        tag = rec[0]
        try:
            if not isinstance(tag, str):
                continue
            if tag == "F":
                flows[rec[1]] = {
                    "id": rec[1], "flow_name": rec[2], "name": rec[3], "parameters": rec[4], "tags": rec[5],
                    "parent_flow_run_id": rec[6], "parent_task_run_id": rec[7], "created": _when(rec[8]),
                    "pid": rec[9], "hostname": rec[10], "heartbeat_interval": rec[11],
                    "state_type": "PENDING", "state_name": "Pending", "state_message": None, "run_count": 0,
                    "start_time": None, "end_time": None, "heartbeat_at": None,
                }
            elif tag == "T":  # a new task run, as journals of plait before 0.2 wrote them
                tasks[rec[1]] = {
                    "id": rec[1], "flow_run_id": rec[2], "task_name": rec[3], "task_key": rec[4], "name": rec[5],
                    "dynamic_key": rec[6], "parameters": rec[7], "tags": rec[8], "created": _when(rec[9]),
                    "state_type": "PENDING", "state_name": "Pending", "state_message": None, "run_count": 0,
                    "cache_key": None, "result_ref": None, "start_time": None, "end_time": None,
                }
                if len(rec) > 10:  # with its first state
                    tasks[rec[1]].update(state_type=rec[10], state_name=rec[11], state_message=rec[12])
                    states.append({
                        "run_id": rec[1], "run_kind": "task", "type": rec[10], "name": rec[11],
                        "message": rec[12], "timestamp": _when(rec[13]), "flow_run_id": rec[2],
                    })
            elif tag == "K":
                task = tasks[rec[1]] = {
                    "id": rec[1], "flow_run_id": rec[2], "task_name": rec[3], "task_key": rec[4], "name": rec[5],
                    "dynamic_key": rec[6], "parameters": rec[7], "tags": rec[8], "created": _when(rec[9]),
                    "run_count": rec[10], "start_time": _when(rec[11]), "end_time": _when(rec[12]),
                    "cache_key": rec[13], "result_ref": rec[14],
                    "state_type": "PENDING", "state_name": "Pending", "state_message": None,
                }
                for i in range(15, len(rec) - 3, 4):
                    task.update(state_type=rec[i], state_name=rec[i + 1], state_message=rec[i + 2])
                    states.append({
                        "run_id": rec[1], "run_kind": "task", "type": rec[i], "name": rec[i + 1],
                        "message": rec[i + 2], "timestamp": _when(rec[i + 3]), "flow_run_id": rec[2],
                    })
            elif tag in ("f", "t"):  # "t": a task's state, as journals of plait before 0.2 wrote them
                runs = flows if tag == "f" else tasks
                run = runs.get(rec[1])
                if run is None:  # created in a segment already stored: only its changes are here
                    run = runs[rec[1]] = {"id": rec[1], "_partial": True}
                when = _when(rec[5])
                run.update(state_type=rec[2], state_name=rec[3], state_message=rec[4], run_count=rec[6],
                           start_time=_when(rec[7]), end_time=_when(rec[8]))
                if tag == "t":
                    run.update(cache_key=rec[9], result_ref=rec[10], flow_run_id=rec[11])
                else:
                    run["heartbeat_at"] = when
                states.append({
                    "run_id": rec[1], "run_kind": "flow" if tag == "f" else "task", "type": rec[2],
                    "name": rec[3], "message": rec[4], "timestamp": when,
                    "flow_run_id": rec[11] if tag == "t" else rec[1],
                })
            elif tag == "e":
                edges.append({"upstream_id": rec[1], "downstream_id": rec[2], "kind": rec[3], "parameter": rec[4]})
            elif tag == "l":
                logs.append({"flow_run_id": rec[1], "task_run_id": rec[2], "level": rec[3], "logger": rec[4],
                             "message": rec[5], "timestamp": _when(rec[6])})
            elif tag == "r":
                results.append({"task_run_id": rec[1], "storage": rec[2], "path": rec[3], "serializer": rec[4],
                                "cache_key": rec[5], "expires_at": _when(rec[6]), "created": _when(rec[7])})
            elif tag == "a":
                created = _when(rec[8])
                artifacts.append({"id": rec[1], "key": rec[2], "type": rec[3], "description": rec[4], "data": rec[5],
                                  "flow_run_id": rec[6], "task_run_id": rec[7], "created": created,
                                  "updated": created})
            elif tag == "u":
                updates.append({"artifact_id": rec[1], "data": rec[2], "updated": _when(rec[3])})
        except (IndexError, TypeError, ValueError):
            logger.warning("skipped a damaged journal record: %.200s", rec)
    return {"flows": flows, "tasks": tasks, "states": states, "edges": edges, "logs": logs, "results": results,
            "artifacts": artifacts, "artifact_updates": updates}
