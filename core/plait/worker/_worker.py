"""``Worker``: polls a work pool, claims its due runs and runs them on the pool's infrastructure.

A heartbeat thread beats every ``heartbeat_interval`` (the answer names this worker's
Cancelling runs), whatever the loop is doing; the loop, a few ticks a second:

- every ``heartbeat_interval``, re-reads the pool and, on a local store, reaps dead workers
  (see below);
- claim every ``poll_interval`` while there is room under ``limit`` (claims are atomic in the
  store: two workers never start the same run; a claim whose answer was lost on the way is
  answered again at the next one, as the worker says which runs it holds);
- every second, ask which in-flight runs are Cancelling; the supervisor gives each
  ``cancel_grace`` seconds to stop by itself, then ends it Cancelled and kills its process
  group (SIGTERM, SIGKILL after ``kill_grace``).

Dead workers: a worker silent for two of its heartbeat intervals is dead; its claimed runs
become Crashed and, when their deployment has ``retries`` left, are scheduled again. With a
server (``PLAIT_API_URL``) the server's ``worker-reaper`` service does this. On a local
store there is no server, so every worker reaps the others (a worker cannot
reap itself: with one worker on a local store, its runs are reaped when a worker starts
again).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from plait._masking import mask
from plait.worker._launch import WorkerError, infrastructure_class
from plait.worker._loop import (
    CANCEL_CHECK_SECONDS,
    TICK_SECONDS,
    LoopControl,
    Pacer,
    call_quietly,
    is_local_control,
)
from plait.worker._supervisor import RunSupervisor

__all__ = ["Worker"]

logger = logging.getLogger("plait.worker")

_MAX_CLAIM = 10  # runs claimed at once when the worker has no limit


def default_worker_name() -> str:
    """``<hostname>-<pid>``: unique among the workers of a pool on this host."""
    return f"{socket.gethostname()}-{os.getpid()}"


class Worker:
    """Runs the flow runs of one work pool.

    Args:
        pool: The work pool's name (it must exist: ``plait work-pool create NAME --type process``).
        name: This worker's name in the pool (default ``<hostname>-<pid>``).
        limit: Most runs in flight at once (default: no limit; at most 10 claimed per poll).
        queues: Only claim from these queues of the pool (default: all, by priority).
        poll_interval: Seconds between claims.
        heartbeat_interval: Seconds between heartbeats; after two silent intervals the
            worker counts as dead and its runs are Crashed.
        cancel_grace: Seconds a Cancelling run may take to stop at a task boundary before
            its process is stopped.
        kill_grace: Seconds between SIGTERM and SIGKILL of a run's process group.
        shutdown_grace: On SIGTERM/SIGINT (or ``stop()``), seconds the runs in flight may
            take to finish; the rest are then ended Crashed and stopped.
        control: The control plane (default ``plait.deployments._control.control_plane()``:
            the server ``PLAIT_API_URL`` names, else the local store).

    Raises:
        ValueError: An interval or limit is not positive.
    """

    def __init__(
        self,
        pool: str,
        *,
        name: str | None = None,
        limit: int | None = None,
        queues: Sequence[str] | None = None,
        poll_interval: float = 2.0,
        heartbeat_interval: float = 5.0,
        cancel_grace: float = 2.0,
        kill_grace: float = 3.0,
        shutdown_grace: float = 30.0,
        control: Any = None,
    ) -> None:
        for label, value in (("poll_interval", poll_interval), ("heartbeat_interval", heartbeat_interval)):
            if value <= 0:
                raise ValueError(f"{label} must be positive, got {value}")
        for label, value in (("cancel_grace", cancel_grace), ("kill_grace", kill_grace),
                             ("shutdown_grace", shutdown_grace)):
            if value < 0:
                raise ValueError(f"{label} must be zero or more, got {value}")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        if not pool or not pool.strip():
            raise ValueError("give the name of a work pool")
        self.pool = pool.strip()
        self.name = name or default_worker_name()
        self.limit = limit
        self.queues = list(queues) if queues else None
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.cancel_grace = cancel_grace
        self.kill_grace = kill_grace
        self.shutdown_grace = shutdown_grace
        self._control = control
        self.worker_id: str | None = None
        self.loop = LoopControl()
        self._pool_row: dict[str, Any] = {}
        self._supervisor: RunSupervisor | None = None

    @property
    def label(self) -> str:
        return f"worker {self.name!r} of pool {self.pool!r}"

    @property
    def control(self) -> Any:
        if self._control is None:
            from plait.deployments._control import control_plane

            self._control = control_plane()
        return self._control

    def stop(self, *, now: bool = False) -> None:
        """Ask a running ``run()`` to stop (thread-safe): claim nothing more, let the runs
        in flight finish within ``shutdown_grace`` (``now``: end them at once)."""
        self.loop.stop(now=now)

    # -- the pool ---------------------------------------------------------------------------------
    def check_pool(self) -> dict[str, Any]:
        """The work pool's row, with its infrastructure class checked.

        Raises:
            WorkerError: The pool does not exist, or no installed plugin provides its type.
        """
        row = self.control.get_work_pool(self.pool)
        if not row:
            raise WorkerError(
                f"work pool {self.pool!r} does not exist; create it with "
                f"`plait work-pool create {self.pool} --type process`"
            )
        infrastructure_class(str(row.get("type")))
        self._pool_row = dict(row)
        return self._pool_row

    def _kind_for(self, flow_run: Mapping[str, Any]) -> str:
        return str(self._pool_row.get("type") or "process")

    def _pool_variables(self) -> Mapping[str, Any] | None:
        variables = self._pool_row.get("base_job_variables")
        return variables if isinstance(variables, Mapping) else None

    # -- the loop ---------------------------------------------------------------------------------
    def run(self, *, once: bool = False) -> dict[str, int]:
        """Poll, claim and run until stopped (SIGTERM/SIGINT in the main thread, or ``stop()``).

        Args:
            once: Claim the runs due now (up to ``limit``), wait for them, and return.

        Returns:
            How many runs this worker ran, by final state type (``{"COMPLETED": 3}``).

        Raises:
            WorkerError: The pool does not exist or its infrastructure is not installed.
        """
        pool = self.check_pool()
        control = self.control
        local = is_local_control(control)
        supervisor = RunSupervisor(
            control, runner=self.label, kind_for=self._kind_for,
            pool_variables=self._pool_variables, cancel_grace=self.cancel_grace, kill_grace=self.kill_grace,
        )
        self._supervisor = supervisor
        where = "the local store" if local else "the plait server"
        logger.info("%s started: %s infrastructure, polling %s every %gs (limit %s)", self.label, pool.get("type"),
                    where, self.poll_interval, self.limit or "none")
        housekeeping, poll = Pacer(self.heartbeat_interval), Pacer(self.poll_interval)
        cancels = Pacer(CANCEL_CHECK_SECONDS)
        # Heartbeats have their own thread: a loop slowed by a busy machine or a claim waiting
        # on a lock must not make a live worker look dead (a reaper would crash its runs).
        self._beat(supervisor)
        beating = threading.Event()
        beater = threading.Thread(target=self._beat_until, args=(supervisor, beating), name="plait-heartbeat",
                                  daemon=True)
        beater.start()
        with self.loop.signals(self.label):
            while not self.loop.stopping.is_set():
                if housekeeping.due():
                    self._housekeeping(reap=local)
                if cancels.due():
                    supervisor.check_cancels()
                if self.worker_id and poll.due():
                    claimed = self._claim(supervisor)
                    if once:
                        break
                    if claimed and self._room(supervisor) > 0:
                        poll.soon()  # there may be more due runs than one claim takes
                supervisor.supervise()
                self.loop.sleep(TICK_SECONDS)
            try:
                self._drain(supervisor, cancels, wait_forever=once and not self.loop.stopping.is_set())
            finally:
                beating.set()
                beater.join(timeout=5)
        tally = dict(supervisor.tally)
        summary = ", ".join(f"{n} {state.title()}" for state, n in sorted(tally.items())) or "no runs"
        logger.info("%s stopped%s: %s", self.label, f" ({self.loop.reason})" if self.loop.reason else "", summary)
        return tally

    def _room(self, supervisor: RunSupervisor) -> int:
        if self.limit is None:
            return _MAX_CLAIM
        return self.limit - len(supervisor)

    def _beat(self, supervisor: RunSupervisor) -> None:
        """One heartbeat: learn this worker's id and which of its runs are Cancelling."""
        answer = call_quietly(self.label, "heartbeat", self.control.worker_heartbeat, self.pool, self.name,
                              hostname=socket.gethostname(), pid=os.getpid(),
                              heartbeat_interval=self.heartbeat_interval)
        if answer:
            self.worker_id = str(answer.get("worker_id") or self.worker_id or "") or None
            supervisor.note_cancelling(answer.get("cancelling") or ())

    def _beat_until(self, supervisor: RunSupervisor, done: threading.Event) -> None:
        while not done.wait(self.heartbeat_interval):
            self._beat(supervisor)

    def _housekeeping(self, *, reap: bool) -> None:
        """Each heartbeat interval: re-read the pool (its job variables may change) and, on a
        local store, reap dead workers."""
        row = call_quietly(self.label, "reading the work pool", self.control.get_work_pool, self.pool)
        if row:
            self._pool_row = dict(row)
        if reap:
            crashed = call_quietly(self.label, "reaping dead workers", self._reap, default=[])
            if crashed:
                logger.warning("%s: runs of dead workers marked Crashed: %s", self.label, ", ".join(crashed))

    def _reap(self) -> list[str]:
        """On a local store no server reaps dead workers: each worker does it for the others."""
        reap = getattr(self.control, "reap_dead_workers", None)
        if callable(reap):
            return list(reap())
        from plait._store import scheduling

        db = getattr(self.control, "db", None)
        if db is None:
            from plait._store.database import get_database

            db = get_database()
        return list(scheduling.reap_dead_workers(db))

    def _claim(self, supervisor: RunSupervisor) -> int:
        room = self._room(supervisor)
        if room <= 0 or self.worker_id is None:
            return 0
        worker_id = self.worker_id
        # holding: a claim whose answer was lost on the way is answered again (not stranded Pending)
        claimed = call_quietly(self.label, "claiming runs", self.control.claim_runs, self.pool, worker_id,
                               limit=room, queues=self.queues, holding=supervisor.active_ids(), default=[])
        for flow_run in claimed or ():
            supervisor.start(dict(flow_run))
        return len(claimed or ())

    def _drain(self, supervisor: RunSupervisor, cancels: Pacer, *, wait_forever: bool) -> None:
        """Let the runs in flight finish (obeying cancels; the heartbeat thread goes on) until
        the grace ends."""
        if len(supervisor):
            grace = "" if wait_forever else f" for up to {self.shutdown_grace:g}s"
            logger.info("%s: waiting%s for %d run(s) in flight", self.label, grace, len(supervisor))
        deadline = time.monotonic() + self.shutdown_grace
        while len(supervisor) and not self.loop.hurry.is_set():
            if not wait_forever and time.monotonic() >= deadline:
                break
            if cancels.due():
                supervisor.check_cancels()
            supervisor.supervise()
            time.sleep(TICK_SECONDS)
        if len(supervisor):
            why = self.loop.reason or "stop"
            supervisor.stop_all(mask(f"{self.label} shut down ({why})"))
            # the heartbeat thread goes on while the processes are stopped: no reaper acts meanwhile
            deadline = time.monotonic() + self.kill_grace + 10.0
            while len(supervisor) and time.monotonic() < deadline:
                supervisor.supervise()
                time.sleep(TICK_SECONDS)
