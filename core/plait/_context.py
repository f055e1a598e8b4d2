"""The run contexts: which flow run and task run the current code belongs to."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from plait._runs import FlowRun, Recorder, TaskRun

# Set by a runner that executes task bodies elsewhere (``RemoteTaskRunner``) in the threads
# that drive its task runs: the engine hands the ``Call`` of a task body to it.
body_executor_var: ContextVar[Callable[[Any], Any] | None] = ContextVar("plait_body_executor", default=None)

# The innermost ``with plait.transaction():`` block (``plait.transactions.Transaction``).
transaction_var: ContextVar[Any] = ContextVar("plait_transaction", default=None)

# The tags of ``with plait.tags(...)`` blocks around the current code.
tags_var: ContextVar[tuple[str, ...]] = ContextVar("plait_tags", default=())


@contextmanager
def tags(*names: str) -> Iterator[set[str]]:
    """Add ``names`` to the tags of every flow run and task run started inside the block
    (nested blocks add up); yields the tags in effect.

        with plait.tags("nightly", "finance"):
            load()  # its run, and each of its task runs, is tagged nightly and finance
    """
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise TypeError(f"plait.tags() takes strings, got {bad[0]!r}")
    current = tags_var.get()
    token = tags_var.set(tuple(dict.fromkeys((*current, *names))))
    try:
        yield set(tags_var.get())
    finally:
        tags_var.reset(token)


def run_tags(own: tuple[str, ...]) -> list[str]:
    """A new run's tags: its own, then those of the ``plait.tags`` blocks around it."""
    around = tags_var.get()
    return list(dict.fromkeys((*own, *around))) if around else list(own)


# Values of these types are not tracked by identity: equal values share one object, so an
# identity match would invent dependency edges.
UNTRACKED_TYPES = (type(None), bool, int, float, complex, str, bytes)


@dataclass(slots=True, eq=False)
class FlowRunContext:
    """Everything the engine needs while a flow run's body executes."""

    flow: Any
    flow_run: FlowRun
    parameters: dict[str, Any]
    task_runner: Any
    recorder: Recorder
    log_prints: bool
    persist_results: bool = False
    loop: Any = None  # the event loop of an async flow's body
    results: dict[int, tuple[Any, str]] = field(default_factory=dict)
    futures: list[Any] = field(default_factory=list)
    task_counts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Run control, set by the engine when the run starts: the recorder's set of flow runs
    # someone asked to stop (changed in place by its writer thread), this run's id and its
    # parents' (a cancelled parent stops its subflows), and the task runs of an earlier
    # attempt whose results a retry reuses, by (task_key, dynamic_key).
    stop: AbstractSet[str] = frozenset()
    lineage: tuple[str, ...] = ()
    reuse: dict[tuple[str, int], dict[str, Any]] | None = None
    deployment_id: str | None = None  # the deployment that created the run (plait.runtime.deployment)

    def next_dynamic_key(self, task_key: str) -> int:
        with self.lock:
            n = self.task_counts.get(task_key, 0)
            self.task_counts[task_key] = n + 1
            return n

    def track_result(self, value: Any, task_run_id: str) -> None:
        """Remember which task run produced ``value`` so passing it on records an edge."""
        if not isinstance(value, UNTRACKED_TYPES):
            self.results[id(value)] = (value, task_run_id)

    def cancel_requested(self) -> bool:
        """Whether someone asked this run (or a parent flow run) to stop. No I/O: a set lookup."""
        stop = self.stop
        return bool(stop) and any(run_id in stop for run_id in self.lineage)

    def producer_of(self, value: Any) -> str | None:
        if isinstance(value, UNTRACKED_TYPES):
            return None
        hit = self.results.get(id(value))
        return hit[1] if hit is not None and hit[0] is value else None


@dataclass(slots=True, eq=False)
class TaskRunContext:
    """The task run whose body is executing, with its resolved arguments."""

    task: Any
    task_run: TaskRun
    parameters: dict[str, Any]
    flow_context: FlowRunContext | None
    log_prints: bool

    @property
    def flow_run(self) -> FlowRun | None:
        return self.flow_context.flow_run if self.flow_context else None

    @property
    def flow_parameters(self) -> dict[str, Any] | None:
        return self.flow_context.parameters if self.flow_context else None


flow_run_var: ContextVar[FlowRunContext | None] = ContextVar("plait_flow_run", default=None)
task_run_var: ContextVar[TaskRunContext | None] = ContextVar("plait_task_run", default=None)
