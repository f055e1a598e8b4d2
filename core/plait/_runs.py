"""Run records and the recorder interface.

The engine keeps one mutable ``FlowRun`` / ``TaskRun`` object per run and tells a
``Recorder`` about every state, log line, dependency edge and result. A recorder must never
make the hot path wait: the local recorder buffers and writes in batches; a remote recorder
(later) will send the same records to a plait server.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from plait.states import State

HOSTNAME = socket.gethostname()


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(slots=True, eq=False)
class FlowRun:
    """One execution of a flow. ``parameters`` holds a JSON-safe rendering of the call."""

    id: str
    flow_name: str
    name: str
    parameters: dict[str, Any]
    state: State
    tags: list[str] = field(default_factory=list)
    parent_flow_run_id: str | None = None
    parent_task_run_id: str | None = None
    run_count: int = 0
    created: datetime = field(default_factory=utcnow)
    start_time: datetime | None = None
    end_time: datetime | None = None
    pid: int = field(default_factory=os.getpid)
    hostname: str = HOSTNAME


@dataclass(slots=True, eq=False)
class TaskRun:
    """One execution of a task; ``flow_run_id`` is None for a task called outside a flow."""

    id: str
    flow_run_id: str | None
    task_name: str
    task_key: str
    name: str
    parameters: dict[str, Any]
    state: State
    dynamic_key: int = 0
    tags: list[str] = field(default_factory=list)
    run_count: int = 0
    cache_key: str | None = None
    result_ref: str | None = None
    created: datetime = field(default_factory=utcnow)
    start_time: datetime | None = None
    end_time: datetime | None = None


class Recorder(Protocol):
    """Where the engine reports what happens. Every method must return quickly."""

    def add_flow_run(self, run: FlowRun) -> None:
        """A new flow run exists (its first state is reported through ``add_state``)."""

    def add_task_run(self, run: TaskRun) -> None:
        """A new task run exists."""

    def add_state(self, run: FlowRun | TaskRun, state: State) -> None:
        """``run.state`` became ``state``; keep the state in the run's history."""

    def add_edge(self, upstream_id: str, downstream_id: str, kind: str, parameter: str | None) -> None:
        """Task run ``downstream_id`` depends on ``upstream_id`` (kind: "data" or "wait_for")."""

    def add_log(
        self,
        flow_run_id: str | None,
        task_run_id: str | None,
        level: int,
        logger: str,
        message: str,
        timestamp: datetime,
    ) -> None:
        """A log line emitted by a run."""

    def add_result(
        self,
        task_run_id: str,
        storage: str,
        path: str,
        serializer: str,
        cache_key: str | None,
        expires_at: datetime | None,
    ) -> None:
        """A task run's result was persisted at ``storage`` + ``path``."""

    def flush(self) -> None:
        """Write everything buffered so far, synchronously."""

    def close(self) -> None:
        """Flush and stop background work."""


class NullRecorder:
    """Records nothing; used when history is switched off."""

    def add_flow_run(self, run: FlowRun) -> None: ...
    def add_task_run(self, run: TaskRun) -> None: ...
    def add_state(self, run: FlowRun | TaskRun, state: State) -> None: ...
    def add_edge(self, upstream_id: str, downstream_id: str, kind: str, parameter: str | None) -> None: ...
    def add_log(self, *args: Any) -> None: ...
    def add_result(self, *args: Any) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...
