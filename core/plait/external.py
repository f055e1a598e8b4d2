"""Task runs whose work happened elsewhere: record them as it happens, with its own times.

A collection that drives another system (dbt, a warehouse job, a remote batch service)
learns about units of work as that system reports them. ``ExternalRuns`` records each unit
as a plait task run of the current flow run: started Running at the time the system
reports, finished Completed, Failed or Cancelled ("Skipped") at its own end time, with
dependency edges to other task runs. The records go through the same recorder as the
engine's (journaled first, then written in batches), so they are visible while the work
goes on and survive the death of the process once finished.

    from plait import flow, task
    from plait.external import ExternalRuns
    from plait.states import StateType

    @task
    def load():
        runs = ExternalRuns()                       # bound to this flow run and task run
        extract = runs.start("extract", started_at="2026-01-01T00:00:00Z")
        extract.finish(StateType.COMPLETED, "1,200 rows", finished_at="2026-01-01T00:00:03Z")

An ``ExternalRuns`` may be used from any thread (the external system's callbacks often
arrive on threads of its own): it remembers the flow run, the parent task run and the
recorder of the place it was made.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from plait._callables import jsonable, new_id
from plait._context import flow_run_var, run_tags, task_run_var
from plait._logging import current_run_recorder, run_logger_for
from plait._runs import TaskRun, advance, parse_utc, utcnow
from plait.exceptions import PlaitError
from plait.states import FINAL_TYPES, State, StateType

__all__ = ["ExternalRuns", "ExternalTaskRun", "start_external_task_run", "PARENT_TAG_PREFIX"]

# A task run's parent task run is kept as a tag (task runs have no column for it yet).
PARENT_TAG_PREFIX = "plait.parent-task-run:"
_EDGE_KINDS = ("wait_for", "data")


def _moment(value: datetime | str | None, what: str) -> datetime:
    """An aware UTC datetime from a datetime (naive is taken as UTC), ISO text, or now."""
    if value is None:
        return utcnow()
    moment = parse_utc(value) if isinstance(value, str) else value
    if not isinstance(moment, datetime):
        raise PlaitError(f"{what} must be a datetime or ISO 8601 text, got {value!r}")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _state_type(value: StateType | str) -> StateType:
    try:
        kind = value if isinstance(value, StateType) else StateType(str(value).upper())
    except ValueError:
        kind = None
    if kind is None or kind not in FINAL_TYPES:
        finals = ", ".join(sorted(t.value for t in FINAL_TYPES))
        raise PlaitError(f"an external task run finishes in a final state ({finals}), not {value!r}")
    return kind


class ExternalTaskRun:
    """One recorded task run of external work; made by ``ExternalRuns.start``.

    Attributes:
        id: The task run's id (use it in ``upstream=`` of later runs).
        task_run: The live record (read-only for callers).
    """

    def __init__(self, run: TaskRun, recorder: Any) -> None:
        self.task_run = run
        self.id = run.id
        self._recorder = recorder
        self._lock = threading.Lock()

    @property
    def state(self) -> State:
        return self.task_run.state

    @property
    def logger(self) -> Any:
        """A run logger whose lines are stored with this task run (and shown on the console)."""
        run = self.task_run
        return run_logger_for(run.flow_run_id, run.id, f"Task run {run.name!r}")

    def add_upstream(self, upstream_id: str, kind: str = "wait_for") -> None:
        """Record that this run depended on task run ``upstream_id``."""
        if kind not in _EDGE_KINDS:
            raise PlaitError(f"edge kind must be one of {', '.join(_EDGE_KINDS)}, got {kind!r}")
        self._recorder.add_edge(upstream_id, self.id, kind, None)

    def finish(
        self,
        state_type: StateType | str,
        message: str = "",
        *,
        finished_at: datetime | str | None = None,
        name: str | None = None,
        data: Any = None,
    ) -> State:
        """End the run in a final state at ``finished_at`` (default: now).

        Args:
            state_type: COMPLETED, FAILED, CANCELLED (with ``name="Skipped"`` for work the
                external system skipped), CRASHED or CACHED.
            message: Why, for people (the external system's own message).
            finished_at: When the work ended, by the external system's clock (datetime or
                ISO 8601 text; naive means UTC). Never before the run started.
            name: The state's display name (default: the type's title).
            data: Kept in the final state (not stored).

        Raises:
            PlaitError: The run already ended, or the state is not a final one.
        """
        kind = _state_type(state_type)
        with self._lock:
            run = self.task_run
            if run.state.is_final():
                raise PlaitError(f"external task run {run.name!r} already ended {run.state.name}; it finishes once")
            moment = _moment(finished_at, "finished_at")
            if run.start_time is not None and moment < run.start_time:
                moment = run.start_time  # two clocks a few microseconds apart: never end before the start
            extra = {"data": data} if data is not None else {}
            state = State(kind, message, name=name, timestamp=moment, **extra)
            if run.state.type is StateType.PENDING and kind is StateType.COMPLETED:
                # Pending may not end Completed: it ran, for no measurable time
                advance(run, State(StateType.RUNNING, timestamp=moment))
                self._recorder.add_state(run, run.state)
            advance(run, state)
            self._recorder.add_state(run, state)
            return state


class ExternalRuns:
    """Records external work as task runs of the flow run this object was made in.

    Args:
        flow_run_id: The flow run the task runs belong to (default: the current one).
        parent_task_run_id: The task run that drives the work (default: the current task
            run, if any). It is kept as the tag ``plait.parent-task-run:<id>`` of each run.

    Raises:
        PlaitError: Made outside a flow run with no ``flow_run_id``.
    """

    def __init__(self, flow_run_id: str | None = None, parent_task_run_id: str | None = None) -> None:
        task_ctx = task_run_var.get()
        flow_ctx = flow_run_var.get() or (task_ctx.flow_context if task_ctx is not None else None)
        if flow_run_id is None:
            if flow_ctx is not None:
                flow_run_id = flow_ctx.flow_run.id
            elif task_ctx is not None:
                flow_run_id = task_ctx.task_run.flow_run_id
        if flow_run_id is None:
            raise PlaitError(
                "ExternalRuns() was made outside a flow run; make it inside a @flow or @task, "
                "or give flow_run_id= of the flow run the task runs belong to"
            )
        if parent_task_run_id is None and task_ctx is not None:
            parent_task_run_id = task_ctx.task_run.id
        self.flow_run_id = flow_run_id
        self.parent_task_run_id = parent_task_run_id
        self._flow_ctx = flow_ctx if flow_ctx is not None and flow_ctx.flow_run.id == flow_run_id else None
        self._recorder = current_run_recorder()
        self._tags = run_tags(())
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def _dynamic_key(self, task_key: str) -> int:
        if self._flow_ctx is not None:
            return int(self._flow_ctx.next_dynamic_key(task_key))
        with self._lock:
            n = self._counts.get(task_key, 0)
            self._counts[task_key] = n + 1
            return n

    def start(
        self,
        name: str,
        *,
        started_at: datetime | str | None = None,
        run_name: str | None = None,
        task_key: str | None = None,
        parameters: dict[str, Any] | None = None,
        tags: Iterable[str] = (),
        upstream: Iterable[str | ExternalTaskRun] = (),
        running: bool = True,
    ) -> ExternalTaskRun:
        """Record a new task run ``name``, Running since ``started_at`` (default: now).

        Args:
            name: The task name shown for the run (e.g. ``stg_orders``).
            started_at: When the work started, by the external system's clock.
            run_name: The run's own name (default: ``<name>-<n>``).
            task_key: What identifies the task across runs (default: ``external.<name>``).
            parameters: JSON-safe fields shown as the run's parameters.
            tags: The run's tags (the ``plait.tags`` around it and the parent tag are added).
            upstream: Task runs (ids or ExternalTaskRun) this one waited for.
            running: False records it Pending (work that was never started, e.g. skipped).
        """
        moment = _moment(started_at, "started_at")
        key = task_key or f"external.{name}"
        dynamic_key = self._dynamic_key(key)
        own = list(dict.fromkeys([*tags, *self._tags]))
        if self.parent_task_run_id:
            own.append(PARENT_TAG_PREFIX + self.parent_task_run_id)
        run = TaskRun(
            id=new_id(),
            flow_run_id=self.flow_run_id,
            task_name=name,
            task_key=key,
            name=run_name or f"{name}-{dynamic_key}",
            parameters={k: jsonable(v) for k, v in (parameters or {}).items()},
            state=State(StateType.PENDING, timestamp=moment),
            dynamic_key=dynamic_key,
            tags=own,
            created=moment,
        )
        recorder = self._recorder
        recorder.add_task_run(run)
        recorder.add_state(run, run.state)
        handle = ExternalTaskRun(run, recorder)
        for item in upstream:
            handle.add_upstream(item.id if isinstance(item, ExternalTaskRun) else str(item))
        if running:
            run.run_count = 1
            advance(run, State(StateType.RUNNING, timestamp=moment))
            recorder.add_state(run, run.state)
        return handle


def start_external_task_run(
    name: str,
    *,
    started_at: datetime | str | None = None,
    flow_run_id: str | None = None,
    parent_task_run_id: str | None = None,
    **options: Any,
) -> ExternalTaskRun:
    """``ExternalRuns(flow_run_id, parent_task_run_id).start(name, started_at=..., **options)``."""
    return ExternalRuns(flow_run_id, parent_task_run_id).start(name, started_at=started_at, **options)
