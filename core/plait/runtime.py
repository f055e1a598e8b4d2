"""Where am I? The current flow run and task run, for code running inside them.

    from plait import runtime
    runtime.flow_run.id, runtime.flow_run.parameters, runtime.task_run.name
    runtime.deployment.name  # "nightly" in a run of a deployment (a worker's, serve's)

Outside a run every attribute is None (parameters: an empty dict); so is every attribute of
``deployment`` in a flow run that no deployment created.
"""

from __future__ import annotations

from typing import Any

from plait._context import flow_run_var, task_run_var

__all__ = ["flow_run", "task_run", "deployment"]


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


class _DeploymentView:
    """Read-only view of the deployment whose run the current flow run is; its name and
    defaults are read from the store (or the server) once per process, when first asked."""

    @property
    def id(self) -> str | None:
        ctx = flow_run_var.get()
        return ctx.deployment_id if ctx else None

    @property
    def flow_run_id(self) -> str | None:
        ctx = flow_run_var.get()
        return ctx.flow_run.id if ctx and ctx.deployment_id else None

    @property
    def name(self) -> str | None:
        found = self._stored()
        return found.get("name") if found else None

    @property
    def parameters(self) -> dict[str, Any]:
        """The deployment's default parameters (the run's own: ``flow_run.parameters``)."""
        found = self._stored()
        return dict(found.get("parameters") or {}) if found else {}

    @property
    def version(self) -> str | None:
        found = self._stored()
        return found.get("version") if found else None

    def _stored(self) -> dict[str, Any] | None:
        deployment_id = self.id
        if deployment_id is None:
            return None
        if deployment_id not in _deployments:
            from plait.deployments import DeploymentNotFound, get_deployment

            try:
                _deployments[deployment_id] = get_deployment(deployment_id)
            except DeploymentNotFound:  # deleted since it created the run: only its id is known
                _deployments[deployment_id] = None
        return _deployments[deployment_id]


_deployments: dict[str, dict[str, Any] | None] = {}

flow_run = _FlowRunView()
task_run = _TaskRunView()
deployment = _DeploymentView()
