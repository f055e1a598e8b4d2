"""``serve()``: one long-lived process that runs its own deployment's runs, no worker needed.

It saves the deployment (no work pool), then loops until Ctrl-C/SIGTERM: on a local store
it also plans the schedules' runs (a server's scheduler does that otherwise), claims the
deployment's due runs and runs each in a subprocess through the ``process`` infrastructure,
exactly as a worker would: same cancellation, same shutdown.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

from plait._masking import mask
from plait.worker._launch import infrastructure_class
from plait.worker._loop import (
    CANCEL_CHECK_SECONDS,
    TICK_SECONDS,
    LoopControl,
    Pacer,
    call_quietly,
    is_local_control,
)
from plait.worker._supervisor import RunSupervisor

__all__ = ["serve", "Server"]

logger = logging.getLogger("plait.worker")

SERVE_INFRASTRUCTURE = "process"
_MAX_CLAIM = 10


def _deployment_of(target: Any, name: str | None, options: dict[str, Any]) -> Any:
    from plait.deployments import Deployment, deployment_from_flow
    from plait.flows import Flow

    if isinstance(target, Deployment):
        if name is not None or options:
            given = ", ".join(["name"] * (name is not None) + sorted(options))
            raise ValueError(f"serve() got a Deployment and also {given}: set those on the Deployment instead")
        deployment = target
    elif isinstance(target, Flow):
        deployment = deployment_from_flow(target, name or target.name, **options)
    else:
        raise TypeError(f"serve() takes a flow or a Deployment, not {type(target).__name__}")
    if deployment.work_pool is not None:
        raise ValueError(
            f"deployment {deployment.full_name!r} names work pool {deployment.work_pool!r}: serve() runs its "
            "runs itself; leave work_pool out, or deploy it and start a worker of that pool"
        )
    return deployment


class Server:
    """The serve loop of one saved deployment (what ``serve()`` runs; usable on its own
    to stop it from another thread with ``stop()``).

    Args:
        deployment: The saved deployment's row (``id``, ``flow_name``, ``name``...).
        limit: Most runs in flight at once (default: no limit).
        poll_interval: Seconds between claims of due runs.
        cancel_grace, kill_grace, shutdown_grace: As for ``Worker``.
        control: The control plane (default: ``control_plane()``).
    """

    def __init__(
        self,
        deployment: dict[str, Any],
        *,
        limit: int | None = None,
        poll_interval: float = 1.0,
        cancel_grace: float = 2.0,
        kill_grace: float = 3.0,
        shutdown_grace: float = 30.0,
        control: Any = None,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval}")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.deployment = deployment
        self.limit = limit
        self.poll_interval = poll_interval
        self.cancel_grace = cancel_grace
        self.kill_grace = kill_grace
        self.shutdown_grace = shutdown_grace
        self.runner_id = f"serve-{socket.gethostname()}-{os.getpid()}"
        self.loop = LoopControl()
        if control is None:
            from plait.deployments._control import control_plane

            control = control_plane()
        self.control = control

    @property
    def label(self) -> str:
        return f"serve of {self.deployment.get('flow_name')}/{self.deployment.get('name')}"

    def stop(self, *, now: bool = False) -> None:
        """Ask ``run()`` to stop (thread-safe); ``now`` skips the shutdown grace."""
        self.loop.stop(now=now)

    def run(self) -> dict[str, int]:
        """Loop until stopped; returns how many runs ended in each final state type."""
        from plait.settings import get_settings

        infrastructure_class(SERVE_INFRASTRUCTURE)  # fail now, not at the first run
        control = self.control
        local = is_local_control(control)
        deployment_id = str(self.deployment["id"])
        supervisor = RunSupervisor(
            control, runner=self.label, kind_for=lambda _run: SERVE_INFRASTRUCTURE,
            cancel_grace=self.cancel_grace, kill_grace=self.kill_grace,
        )
        plan = Pacer(min(get_settings().scheduler_interval, 5.0))
        poll, cancels = Pacer(self.poll_interval), Pacer(CANCEL_CHECK_SECONDS)
        with self.loop.signals(self.label):
            while not self.loop.stopping.is_set():
                if local and plan.due():
                    call_quietly(self.label, "planning scheduled runs", control.plan)
                if cancels.due():
                    supervisor.check_cancels()
                if poll.due():
                    room = _MAX_CLAIM if self.limit is None else self.limit - len(supervisor)
                    if room > 0:
                        claimed = call_quietly(self.label, "claiming runs", control.claim_deployment_runs,
                                               deployment_id, self.runner_id, limit=room,
                                               holding=supervisor.active_ids(), default=[])
                        for flow_run in claimed or ():
                            supervisor.start(dict(flow_run))
                supervisor.supervise()
                self.loop.sleep(TICK_SECONDS)
            self._drain(supervisor, cancels)
        return dict(supervisor.tally)

    def _drain(self, supervisor: RunSupervisor, cancels: Pacer) -> None:
        if len(supervisor):
            logger.info("%s: waiting up to %gs for %d run(s) in flight", self.label, self.shutdown_grace,
                        len(supervisor))
        deadline = time.monotonic() + self.shutdown_grace
        while len(supervisor) and not self.loop.hurry.is_set() and time.monotonic() < deadline:
            if cancels.due():
                supervisor.check_cancels()
            supervisor.supervise()
            time.sleep(TICK_SECONDS)
        if len(supervisor):
            supervisor.stop_all(mask(f"{self.label} shut down ({self.loop.reason or 'stop'})"))
            supervisor.wait(self.kill_grace + 10.0)


def serve(
    flow_or_deployment: Any,
    *,
    name: str | None = None,
    limit: int | None = None,
    poll_interval: float = 1.0,
    cancel_grace: float = 2.0,
    kill_grace: float = 3.0,
    shutdown_grace: float = 30.0,
    **options: Any,
) -> dict[str, int]:
    """Save a deployment and run its runs from this process until Ctrl-C or SIGTERM.

    ``serve(my_flow, name="nightly", cron="0 3 * * *", parameters={"full": True})``: the
    deployment is saved without a work pool (created, updated or unchanged); its scheduled
    runs (planned by this process on a local store, by the server's scheduler otherwise)
    and the runs people request (``plait deployment run``) are each run in a subprocess,
    at most ``limit`` at once. Cancelling a run stops it as a worker would. On Ctrl-C or
    SIGTERM no new run starts; runs in flight get ``shutdown_grace`` seconds, then are
    ended Crashed. A second Ctrl-C skips the wait.

    The flow's file is imported again by each run's subprocess: keep the ``serve()`` call
    under ``if __name__ == "__main__":``.

    Args:
        flow_or_deployment: A flow, or a ``plait.deployments.Deployment`` (then give no
            deployment options).
        name: The deployment's name (default: the flow's name).
        limit: Most runs at once (default: no limit).
        poll_interval: Seconds between claims of due runs.
        cancel_grace: Seconds a Cancelling run may take to stop by itself.
        kill_grace: Seconds between SIGTERM and SIGKILL of a run's process group.
        shutdown_grace: Seconds runs in flight may take to finish after a stop request.
        **options: Deployment options of ``plait.deployments.deployment_from_flow``:
            ``cron``, ``interval``, ``rrule``, ``parameters``, ``tags``, ``retries``...

    Returns:
        How many runs ended in each final state type.

    Raises:
        ValueError: A work pool is named (serve runs the runs itself), or options were
            given with a Deployment.
        DeploymentError / ParameterBindError: The deployment is not valid.
        WorkerError: The process infrastructure is not installed.
    """
    deployment = _deployment_of(flow_or_deployment, name, dict(options))
    row, outcome = deployment.apply()
    _show_worker_logs()
    server = Server(
        row, limit=limit, poll_interval=poll_interval, cancel_grace=cancel_grace, kill_grace=kill_grace,
        shutdown_grace=shutdown_grace,
    )
    schedules = [s for s in row.get("schedules") or [] if s.get("active", True)]
    logger.info("%s: deployment %s; %d active schedule(s); Ctrl-C to stop", server.label, outcome, len(schedules))
    tally = server.run()
    summary = ", ".join(f"{n} {state.title()}" for state, n in sorted(tally.items())) or "no runs"
    logger.info("%s stopped: %s", server.label, summary)
    return tally


def _show_worker_logs() -> None:
    """Make the worker's INFO lines visible on plait's console (its level is unset by default)."""
    from plait._logging import setup_logging

    setup_logging()
    worker_logger = logging.getLogger("plait.worker")
    if worker_logger.level == logging.NOTSET:
        worker_logger.setLevel(logging.INFO)
