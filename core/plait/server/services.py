"""The server's background services: loops that each act only while holding a lease.

Several servers may serve one PostgreSQL database. Each runs every service loop, but a
loop does its work only while its server holds the service's lease in the store
(``plait._store.leases``), so exactly one server acts at a time; when that server stops
(the lease is released) or dies (it stops renewing), another takes over within one lease.

Services now:

- ``crash-detector`` (``plait._recovery.detect_crashed`` every few seconds): runs silent for
  two of their heartbeat intervals are marked Crashed, counted from no earlier than this
  server's start;
- ``scheduler`` (``plait.schedules.plan`` every ``scheduler_interval`` seconds): the
  scheduled runs of every active schedule of every unpaused deployment, up to
  ``scheduler_horizon`` seconds ahead and ``scheduler_max_runs`` per deployment, one per
  slot (a unique key per slot: two passes, or two servers, never make a second);
- ``late-runs`` (``mark_late``): Scheduled runs not started ``late_grace`` seconds after
  their time become Late;
- ``worker-reaper`` (``reap_dead_workers``, at the crash detector's pace): a worker silent
  for two of its heartbeat intervals is dead; the runs it claimed are Crashed and, as
  their deployment's ``retries`` allow, scheduled again;
- ``automations``: new events through every enabled automation's trigger, and the actions
  that fired. It runs in a child process of the server (``plait.automations._runner``,
  under the same kind of lease), so that templates, webhook calls and the action log never
  compete with the API for this interpreter; it is started again if it dies.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from plait._masking import mask
from plait._runs import HOSTNAME, utcnow
from plait._store.database import Database
from plait.exceptions import DatabaseError

__all__ = ["Services", "Service", "CRASH_DETECTOR", "SCHEDULER", "LATE_RUNS", "WORKER_REAPER", "AUTOMATIONS"]

logger = logging.getLogger("plait.server")

CRASH_DETECTOR = "crash-detector"
SCHEDULER = "scheduler"
LATE_RUNS = "late-runs"
WORKER_REAPER = "worker-reaper"
AUTOMATIONS = "automations"
_CHILD_STOP_SECONDS = 30.0  # the evaluator finishes the actions under way, then records them


@dataclass(frozen=True)
class Service:
    """One loop: ``work(db)`` every ``interval`` seconds while holding the lease ``name``."""

    name: str
    interval: float
    work: Callable[[Database], object]

    @property
    def ttl(self) -> float:
        # long enough that a busy pass or a slow renewal does not hand the lease over
        return max(3 * self.interval, 10.0)


def _crash_detector(started: datetime) -> Callable[[Database], object]:
    def detect(db: Database) -> object:
        from plait._recovery import detect_crashed

        # Every run by its heartbeat, never by a pid of this host: clients record from their
        # own processes, which may have ended with their last records (the final state) still
        # in a spool this server has not received. Silence counts from this server's start:
        # while it was down it heard nothing, and that silence is not the runs'.
        return detect_crashed(db, by_process=False, heard_since=started)

    return detect


def _scheduler(horizon: float, max_runs: int) -> Callable[[Database], object]:
    def plan(db: Database) -> object:
        from datetime import timedelta

        from plait.schedules import plan as plan_runs

        made = plan_runs(db, now=utcnow(), horizon=timedelta(seconds=horizon), max_runs=max_runs)
        if made:
            logger.debug("scheduler: %d new scheduled run(s)", made)
        return made

    return plan


def _late_runs(grace: float) -> Callable[[Database], object]:
    def mark(db: Database) -> object:
        from plait._store.scheduling import mark_late

        return mark_late(db, grace_seconds=grace)

    return mark


def _reap_workers(db: Database) -> object:
    from plait._store.scheduling import reap_dead_workers

    crashed = reap_dead_workers(db)
    if crashed:
        logger.warning("worker-reaper: %d flow run(s) of workers that stopped heartbeating marked Crashed",
                       len(crashed))
    return crashed


def _available(module: str) -> bool:
    """Whether a part the services need is installed (the loop of a part not built is left out)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class Services:
    """The service loops of one server process (started and stopped by the app's lifespan).

    Args:
        db: The store.
        crash_interval: Seconds between two crash-detection passes (and worker-reaper passes).
        scheduler_interval: Seconds between two scheduler passes (default: the setting
            ``scheduler_interval``).

    The scheduler's horizon and run count and the late grace period are the settings
    ``scheduler_horizon``, ``scheduler_max_runs`` and ``late_grace``.
    """

    def __init__(self, db: Database, *, crash_interval: float = 5.0, scheduler_interval: float | None = None) -> None:
        from plait.settings import get_settings

        if not crash_interval > 0:
            raise ValueError(f"crash_interval must be positive seconds, not {crash_interval!r}")
        settings = get_settings()
        every = settings.scheduler_interval if scheduler_interval is None else scheduler_interval
        if not every > 0:
            raise ValueError(f"scheduler_interval must be positive seconds, not {every!r}")
        self.db = db
        # unique per process start: a restarted server must not think it still holds a lease
        self.holder = f"{HOSTNAME}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.services = [Service(CRASH_DETECTOR, crash_interval, _crash_detector(utcnow()))]
        if _available("plait.schedules"):
            self.services.append(Service(SCHEDULER, every,
                                         _scheduler(settings.scheduler_horizon, settings.scheduler_max_runs)))
        if _available("plait._store.scheduling"):
            # a run turns Late within a third of the grace period after it should have (at most 5 s)
            late_every = min(5.0, max(0.5, settings.late_grace / 3))
            self.services.append(Service(LATE_RUNS, late_every, _late_runs(settings.late_grace)))
            # a dead worker is found within two of its heartbeats plus at most a second
            self.services.append(Service(WORKER_REAPER, min(crash_interval, 1.0), _reap_workers))
        self.evaluates = _available("plait.automations._runner")
        self.evaluator: subprocess.Popen[bytes] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._held: set[str] = set()

    def start(self) -> None:
        """Start every loop on the running event loop."""
        if self._tasks:
            return
        self._tasks = [asyncio.create_task(self._loop(s), name=f"plait-{s.name}") for s in self.services]
        if self.evaluates:
            self._start_evaluator()
            self._tasks.append(asyncio.create_task(self._watch_evaluator(), name=f"plait-{AUTOMATIONS}"))

    def _start_evaluator(self) -> None:
        from plait.automations._runner import PARENT_VARIABLE

        env = {**os.environ, **self.db.child_environment(), PARENT_VARIABLE: str(os.getpid())}
        self.evaluator = subprocess.Popen([sys.executable, "-m", "plait.automations._runner"], env=env,
                                          stdin=subprocess.DEVNULL)

    async def _watch_evaluator(self) -> None:
        started = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            child = self.evaluator
            if child is None or child.poll() is None:
                continue
            logger.warning("the automation evaluator stopped (exit status %s); starting it again", child.returncode)
            if time.monotonic() - started < 10:
                await asyncio.sleep(5.0)  # it dies at once: do not spin
            started = time.monotonic()
            self._start_evaluator()

    async def stop(self) -> None:
        """Stop the loops and give up the leases this server holds."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        child, self.evaluator = self.evaluator, None
        if child is not None and child.poll() is None:
            child.terminate()  # it finishes and records the actions under way, gives its lease up
            try:
                await asyncio.to_thread(child.wait, _CHILD_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                logger.warning("the automation evaluator did not stop within %gs; killing it", _CHILD_STOP_SECONDS)
                child.kill()
                await asyncio.to_thread(child.wait)
        for name in sorted(self._held):
            try:
                await asyncio.to_thread(self._release, name)
            except DatabaseError as exc:
                logger.warning("could not release the %s lease: %s", name, exc)
        self._held.clear()

    def _release(self, name: str) -> None:
        from plait._store.leases import release_lease

        release_lease(self.db, name, self.holder)

    def _acquire(self, service: Service) -> bool:
        from plait._store.leases import acquire_lease

        return acquire_lease(self.db, service.name, self.holder, service.ttl)

    async def _loop(self, service: Service) -> None:
        failing = False
        while True:
            try:
                if await asyncio.to_thread(self._acquire, service):
                    if service.name not in self._held:
                        logger.info("this server (%s) now runs %s", self.holder, service.name)
                    self._held.add(service.name)
                    await asyncio.to_thread(service.work, self.db)
                elif service.name in self._held:
                    logger.info("another server took over %s", service.name)
                    self._held.discard(service.name)
                if failing:
                    logger.info("%s works again", service.name)
                failing = False
            except DatabaseError as exc:
                if not failing:  # once per outage, not every few seconds
                    logger.warning("%s: %s (retrying every %gs)", service.name, exc, service.interval)
                failing = True
            except Exception:
                import traceback

                logger.error("%s failed (it runs again in %gs):\n%s", service.name, service.interval,
                             mask(traceback.format_exc()))
            await asyncio.sleep(service.interval)
