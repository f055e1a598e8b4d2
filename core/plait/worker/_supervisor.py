"""The runs a worker or a ``serve`` process has in flight: start, watch, cancel, stop.

Each claimed flow run gets a thread that runs it through its infrastructure block (which
blocks until the child process ends). The owner's loop calls ``note_cancelling()`` with the
ids the control plane says are Cancelling and ``supervise()`` a few times a second:

- a Cancelling run is given ``cancel_grace`` seconds to stop by itself (the engine checks at
  each task boundary and ends the run Cancelled); after that the supervisor moves it to
  Cancelled and terminates its process group (SIGTERM, SIGKILL after ``kill_grace``);
- ``stop_all()`` (shutdown after its grace) ends every run still going as Crashed and
  terminates its process the same way.

The final state is read back from the control plane when the block returns: a run the
infrastructure left unfinished is ended Crashed, so nothing stays Running forever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from plait._masking import mask
from plait.states import StateType
from plait.worker._launch import (
    WorkerError,
    build_block,
    fetch_code,
    find_run_process,
    infrastructure_class,
    merge_job_variables,
    resolve_entrypoint,
    terminate_process_group,
)
from plait.worker._loop import call_quietly

__all__ = ["RunSupervisor", "is_final"]

logger = logging.getLogger("plait.worker")


def is_final(state_type: object) -> bool:
    """Whether a stored state type (``"COMPLETED"``...) ends a run."""
    try:
        return StateType(str(state_type)).is_final
    except ValueError:
        return False


def _title(state_type: str) -> str:
    try:
        return StateType(state_type).title
    except ValueError:
        return state_type.title()


@dataclass
class _Active:
    flow_run: dict[str, Any]
    thread: threading.Thread | None = None
    started: float = field(default_factory=time.monotonic)
    cancel_seen: float | None = None  # when the control plane first said Cancelling
    stopping: str | None = None  # the state the supervisor is ending it with, once it acts

    @property
    def id(self) -> str:
        return str(self.flow_run["id"])

    @property
    def label(self) -> str:
        deployment = self.flow_run.get("deployment") or {}
        if deployment:
            name = f"{deployment.get('flow_name')}/{deployment.get('name')}"
        else:
            name = str(self.flow_run.get("flow_name"))
        return f"flow run {self.id} ({name})"


class RunSupervisor:
    """Runs claimed flow runs in threads and enforces cancellation and shutdown.

    Args:
        control: The control plane (``plait.deployments._control.control_plane()``).
        runner: Who runs them, for messages ("worker 'w1' of pool 'p'").
        kind_for: The infrastructure kind (work pool type) for a claimed run.
        pool_variables: The work pool's current base job variables (the lowest layer).
        cancel_grace: Seconds a Cancelling run may take to stop by itself.
        kill_grace: Seconds between SIGTERM and SIGKILL of a run's process group.
    """

    def __init__(
        self,
        control: Any,
        *,
        runner: str,
        kind_for: Callable[[Mapping[str, Any]], str],
        pool_variables: Callable[[], Mapping[str, Any] | None] = lambda: None,
        cancel_grace: float = 2.0,
        kill_grace: float = 3.0,
    ) -> None:
        self.control = control
        self.runner = runner
        self.kind_for = kind_for
        self.pool_variables = pool_variables
        self.cancel_grace = cancel_grace
        self.kill_grace = kill_grace
        self.tally: Counter[str] = Counter()
        self._active: dict[str, _Active] = {}
        self._lock = threading.Lock()

    # -- what is in flight ----------------------------------------------------------------------
    def active_ids(self) -> list[str]:
        """Ids of the runs still in flight (their thread has not returned)."""
        return [run_id for run_id, active in self._active.items() if active.thread and active.thread.is_alive()]

    def __len__(self) -> int:
        return len(self.active_ids())

    def start(self, flow_run: dict[str, Any]) -> None:
        """Run a claimed flow run (with its ``"deployment"``) in a new thread (once: a run
        already in flight is not started again)."""
        active = _Active(dict(flow_run))
        if active.id in self.active_ids():
            return
        active.thread = threading.Thread(
            target=self._execute, args=(active,), name=f"plait-run-{active.id[:8]}", daemon=True
        )
        self._active[active.id] = active
        logger.info("%s: claimed %s", self.runner, active.label)
        active.thread.start()

    # -- cancellation and shutdown ------------------------------------------------------------
    def note_cancelling(self, flow_run_ids: Iterable[str]) -> None:
        """Note which in-flight runs the control plane says are Cancelling."""
        now = time.monotonic()
        for run_id in flow_run_ids:
            active = self._active.get(str(run_id))
            if active is not None and active.cancel_seen is None:
                active.cancel_seen = now
                self.log(active.id, logging.INFO,
                         f"cancel requested; {self.runner} gives the flow {self.cancel_grace:g}s to stop at a task "
                         "boundary before it stops the process")

    def check_cancels(self) -> None:
        """Ask the control plane which in-flight runs are Cancelling (none asked when idle)."""
        ids = self.active_ids()
        if ids:
            self.note_cancelling(call_quietly(self.runner, "checking for cancelled runs", self.control.cancelling_among,
                                              ids, default=set()) or ())

    def supervise(self) -> None:
        """Forget finished runs; stop Cancelling runs whose grace is over."""
        now = time.monotonic()
        for run_id, active in list(self._active.items()):
            if active.thread is not None and not active.thread.is_alive():
                del self._active[run_id]
                continue
            waited = None if active.cancel_seen is None else now - active.cancel_seen
            if waited is not None and active.stopping is None and waited >= self.cancel_grace:
                self._stop(active, "CANCELLED", f"cancelled: the flow did not stop within {self.cancel_grace:g}s of "
                                                f"the cancel request, so {self.runner} stopped its process")

    def stop_all(self, reason: str) -> None:
        """End every run still in flight as Crashed (``reason`` says why) and stop its process."""
        for active in list(self._active.values()):
            if active.stopping is None and active.thread is not None and active.thread.is_alive():
                self._stop(active, "CRASHED", f"crashed: {reason} before the run finished")

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until no run is in flight, at most ``timeout`` seconds; True when none is."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.supervise()
            if not self._active:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def _stop(self, active: _Active, state_type: str, message: str) -> None:
        active.stopping = state_type
        threading.Thread(
            target=self._terminate, args=(active, state_type, message), name=f"plait-stop-{active.id[:8]}",
            daemon=True,
        ).start()

    def _terminate(self, active: _Active, state_type: str, message: str) -> None:
        # End the run first: the block, seeing its process killed, then finds it final and
        # keeps that verdict instead of calling it Crashed by a signal.
        recorded = self._recorded(active.id)
        if recorded is None or not is_final(recorded.get("state_type")):
            self.end(active.flow_run, state_type, message)
        try:
            pid = find_run_process(active.id, recorded)
        except Exception as exc:
            self.log(active.id, logging.WARNING, f"cannot look for the run's process: {exc}")
            return
        if pid is None:
            self.log(active.id, logging.WARNING, "no process of this run was found to stop (it may have just ended)")
            return
        self.log(active.id, logging.INFO, f"stopping process {pid}: SIGTERM, SIGKILL after {self.kill_grace:g}s")
        self.log(active.id, logging.INFO, terminate_process_group(pid, self.kill_grace))

    # -- one run --------------------------------------------------------------------------------
    def _execute(self, active: _Active) -> None:
        flow_run = active.flow_run
        deployment = dict(flow_run.get("deployment") or {})
        reported: tuple[str, str] | None = None
        try:
            kind = self.kind_for(flow_run)
            cls = infrastructure_class(kind)
            variables = merge_job_variables(
                self.pool_variables(), deployment.get("job_variables"), flow_run.get("job_variables")
            )
            code = fetch_code(deployment)
            try:
                entrypoint = resolve_entrypoint(str(deployment.get("entrypoint") or ""), code.directory)
                if not entrypoint:
                    raise WorkerError(f"{active.label} has no entrypoint to run; deploy it again")
                block, ignored = build_block(cls, variables, code.directory)
                self.log(active.id, logging.INFO, f"{self.runner} runs {entrypoint} on {kind!r} infrastructure "
                                                  f"(code: {code.source})")
                if ignored:
                    takes = ", ".join(sorted(cls.model_fields))
                    self.log(active.id, logging.WARNING,
                             f"job variables {', '.join(ignored)} do not apply to {kind!r} infrastructure (it takes "
                             f"{takes}); ignored")
                result = block.run(
                    entrypoint, dict(flow_run.get("parameters") or {}), flow_run_id=active.id
                )
                reported = (str(result.state_type), str(result.message or ""))
            finally:
                code.cleanup()
        except WorkerError as exc:
            self.end(flow_run, "FAILED", f"failed: {exc}")
        except Exception as exc:
            logger.exception("%s: %s could not be run", self.runner, active.label)
            self.end(flow_run, "CRASHED", f"crashed: {self.runner} could not run it: {type(exc).__name__}: {exc}")
        self._settle(active, reported)

    def _settle(self, active: _Active, reported: tuple[str, str] | None) -> None:
        """Read back how the run ended; end it Crashed if the infrastructure left it unfinished."""
        recorded = self._recorded(active.id)
        state = str(recorded.get("state_type")) if recorded else None
        if state is None or not is_final(state):
            said = f" (the infrastructure reported {_title(reported[0])}: {reported[1]})" if reported else ""
            left = _title(state) if state else "unrecorded"
            self.end(active.flow_run, "CRASHED", f"crashed: its process ended but the run was left {left}{said}")
            recorded = self._recorded(active.id)
            state = str(recorded.get("state_type")) if recorded else "CRASHED"
        with self._lock:
            self.tally[state] += 1
        seconds = time.monotonic() - active.started
        message = (recorded or {}).get("state_message") or ""
        logger.info("%s: %s ended %s after %.1fs%s", self.runner, active.label, _title(state), seconds,
                    f": {mask(str(message))}" if message and state != "COMPLETED" else "")

    def _recorded(self, flow_run_id: str) -> dict[str, Any] | None:
        try:
            row = self.control.get_flow_run(flow_run_id)
        except Exception as exc:
            logger.warning("%s: cannot read flow run %s: %s", self.runner, flow_run_id, mask(str(exc)))
            return None
        return dict(row) if row else None

    # -- writing --------------------------------------------------------------------------------
    def log(self, flow_run_id: str, level: int, message: str) -> None:
        """Log a message here and store it with the flow run's logs."""
        from plait.infrastructure import record_infrastructure_log

        message = mask(message)
        shown = message.removeprefix(self.runner).lstrip(" :")  # the console line names the runner already
        logger.log(level, "%s: flow run %s: %s", self.runner, flow_run_id, shown)
        try:
            record_infrastructure_log(flow_run_id, level, message)
        except Exception as exc:  # the run goes on without this line in its logs
            logger.warning("cannot store a log line of flow run %s: %s", flow_run_id, mask(str(exc)))

    def end(self, flow_run: Mapping[str, Any], state_type: str, message: str) -> bool:
        """End a flow run in ``state_type`` unless it already ended; True when this wrote it.

        With its unfinished task runs and subflows, through the control plane (the local
        store, or the server's ``POST /flow-runs/{id}/end``).
        """
        run_id = str(flow_run["id"])
        message = mask(message)
        self.log(run_id, logging.WARNING if state_type != "CANCELLED" else logging.INFO, message)
        try:
            return bool(self.control.end_flow_run(
                run_id, state_type, message, flow_name=str(flow_run.get("flow_name") or "unknown"),
                parameters=dict(flow_run.get("parameters") or {}),
            ))
        except Exception as exc:
            logger.error("%s: cannot end flow run %s as %s: %s", self.runner, run_id, state_type, mask(str(exc)))
            return False
