"""Run records and the recorder interface.

The engine keeps one mutable ``FlowRun`` / ``TaskRun`` object per run and tells a
``Recorder`` about every state, log line, dependency edge and result. A recorder must never
make the hot path wait: the local recorder journals and writes in batches; a remote recorder
(later) will send the same records to a plait server.

A run's ``state`` is read-only: the only way to change it is ``advance(run, state)``, which
checks the transition table first, so no caller (a plugin included) can put a run into a
state the table forbids.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from typing import Any, Protocol

from plait.states import FINAL_TYPES, State, StateType, check_transition

__all__ = ["FlowRun", "TaskRun", "Recorder", "NullRecorder", "advance", "utcnow", "parse_utc", "HOSTNAME"]

HOSTNAME = socket.gethostname()


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_utc(value: Any) -> Any:
    """ISO 8601 text (a ``Z`` suffix too) as an aware UTC datetime (naive text is taken as
    UTC); anything else, text that is no time included, as it is."""
    if not isinstance(value, str):
        return value
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class _Run:
    """What flow runs and task runs share: a state that only ``advance`` may change."""

    __slots__ = ("_state",)
    _state: State

    @property
    def state(self) -> State:
        """The run's current state (read-only: see ``plait._runs.advance``)."""
        return self._state

    @state.setter
    def state(self, value: State) -> None:
        raise AttributeError(
            "a run's state cannot be assigned; it changes only through the engine, which "
            "checks plait.states.TRANSITIONS (plait._runs.advance)"
        )


def advance(run: FlowRun | TaskRun, state: State) -> State:
    """Move ``run`` to ``state`` if the transition table allows it; keep start/end times.

    Raises:
        IllegalTransition: ``state`` may not follow the run's current state.
    """
    check_transition(run._state, state)
    if state.type is StateType.RUNNING and run.start_time is None:
        run.start_time = state.timestamp
    elif state.type in FINAL_TYPES:
        run.end_time = state.timestamp
    run._state = state
    return state


class FlowRun(_Run):
    """One execution of a flow. ``parameters`` holds a JSON-safe rendering of the call."""

    __slots__ = (
        "id", "flow_name", "name", "parameters", "tags", "parent_flow_run_id",
        "parent_task_run_id", "run_count", "created", "start_time", "end_time", "pid", "hostname",
    )

    def __init__(
        self,
        id: str,  # noqa: A002 - the record's field name
        flow_name: str,
        name: str,
        parameters: dict[str, Any],
        state: State,
        tags: list[str] | None = None,
        parent_flow_run_id: str | None = None,
        parent_task_run_id: str | None = None,
        run_count: int = 0,
        created: datetime | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        pid: int | None = None,
        hostname: str = HOSTNAME,
    ) -> None:
        check_transition(None, state)
        self._state = state
        self.id = id
        self.flow_name = flow_name
        self.name = name
        self.parameters = parameters
        self.tags = tags if tags is not None else []
        self.parent_flow_run_id = parent_flow_run_id
        self.parent_task_run_id = parent_task_run_id
        self.run_count = run_count
        self.created = created or utcnow()
        self.start_time = start_time
        self.end_time = end_time
        self.pid = pid if pid is not None else os.getpid()
        self.hostname = hostname

    def __repr__(self) -> str:
        return f"FlowRun(id={self.id!r}, name={self.name!r}, flow_name={self.flow_name!r}, state={self._state!r})"


class TaskRun(_Run):
    """One execution of a task; ``flow_run_id`` is None for a task called outside a flow."""

    __slots__ = (
        "id", "flow_run_id", "task_name", "task_key", "name", "parameters", "dynamic_key", "tags",
        "run_count", "cache_key", "result_ref", "created", "start_time", "end_time",
    )

    def __init__(
        self,
        id: str,  # noqa: A002 - the record's field name
        flow_run_id: str | None,
        task_name: str,
        task_key: str,
        name: str,
        parameters: dict[str, Any],
        state: State,
        dynamic_key: int = 0,
        tags: list[str] | None = None,
        run_count: int = 0,
        cache_key: str | None = None,
        result_ref: str | None = None,
        created: datetime | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
    ) -> None:
        check_transition(None, state)
        self._state = state
        self.id = id
        self.flow_run_id = flow_run_id
        self.task_name = task_name
        self.task_key = task_key
        self.name = name
        self.parameters = parameters
        self.dynamic_key = dynamic_key
        self.tags = tags if tags is not None else []
        self.run_count = run_count
        self.cache_key = cache_key
        self.result_ref = result_ref
        self.created = created or utcnow()
        self.start_time = start_time
        self.end_time = end_time

    def __repr__(self) -> str:
        return f"TaskRun(id={self.id!r}, name={self.name!r}, state={self._state!r})"


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

    def stored_flow_run_state(self, flow_run_id: str) -> StateType | None:
        """The state the history holds for ``flow_run_id`` (None: no such run)."""

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
    def stored_flow_run_state(self, flow_run_id: str) -> StateType | None:
        return None
    def flush(self) -> None: ...
    def close(self) -> None: ...
