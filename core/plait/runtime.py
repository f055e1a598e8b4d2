"""Where am I? The current flow run and task run, for code running inside them.

    from plait import runtime
    runtime.flow_run.id, runtime.flow_run.parameters, runtime.task_run.name

Outside a run every attribute is None (parameters: an empty dict).
"""

from __future__ import annotations

from typing import Any

from plait._context import flow_run_var, task_run_var

__all__ = ["flow_run", "task_run"]


class _FlowRunView:
    """Read-only view of the current flow run."""

    @property
    def id(self) -> str | None:
        ctx = flow_run_var.get()
        return ctx.flow_run.id if ctx else None

    @property
    def name(self) -> str | None:
        ctx = flow_run_var.get()
        return ctx.flow_run.name if ctx else None

    @property
    def flow_name(self) -> str | None:
        ctx = flow_run_var.get()
        return ctx.flow.name if ctx else None

    @property
    def parameters(self) -> dict[str, Any]:
        ctx = flow_run_var.get()
        return dict(ctx.parameters) if ctx else {}

    @property
    def parent_flow_run_id(self) -> str | None:
        ctx = flow_run_var.get()
        return ctx.flow_run.parent_flow_run_id if ctx else None

    @property
    def run_count(self) -> int:
        ctx = flow_run_var.get()
        return ctx.flow_run.run_count if ctx else 0

    @property
    def tags(self) -> list[str]:
        ctx = flow_run_var.get()
        return list(ctx.flow_run.tags) if ctx else []


class _TaskRunView:
    """Read-only view of the current task run."""

    @property
    def id(self) -> str | None:
        ctx = task_run_var.get()
        return ctx.task_run.id if ctx else None

    @property
    def name(self) -> str | None:
        ctx = task_run_var.get()
        return ctx.task_run.name if ctx else None

    @property
    def task_name(self) -> str | None:
        ctx = task_run_var.get()
        return ctx.task.name if ctx else None

    @property
    def parameters(self) -> dict[str, Any]:
        ctx = task_run_var.get()
        return dict(ctx.parameters) if ctx else {}

    @property
    def run_count(self) -> int:
        ctx = task_run_var.get()
        return ctx.task_run.run_count if ctx else 0

    @property
    def flow_run_id(self) -> str | None:
        ctx = task_run_var.get()
        return ctx.task_run.flow_run_id if ctx else None


flow_run = _FlowRunView()
task_run = _TaskRunView()
