"""Concurrency and rate limits: ``plait.concurrency()``, ``plait.rate_limit()`` and the slots
tagged task runs hold.

A limit is a name the store knows (``plait concurrency-limit create db 2``). A task run
whose tags name active limits holds one slot of each while its body runs; ``with
plait.concurrency("db", occupy=k)`` holds k slots for the block; ``plait.rate_limit("api")``
takes slots that are never given back but drain at the limit's ``slot_decay_per_second``.
A name with no limit constrains nothing.

- ``_backends``: ``LocalLimits`` over the store (``plait._store.concurrency``) and
  ``RemoteLimits`` over a plait server (``plait._api``), with the same methods and shapes;
  ``limits_backend()`` picks one by the settings (``PLAIT_API_URL`` set: the server).
- ``_waiting``: one generator, ``acquire_steps``, holds every decision of a wait (poll,
  back off from 50 ms to 1 s with jitter, log once, free what dead processes of this host
  hold, time out); ``drive`` performs its I/O in the calling thread and ``drive_async`` in
  a worker thread, so an event loop never blocks. It also keeps who holds what, so that a
  holder (a task run, a with-block) that already holds a slot of a limit takes no second
  one: a task tagged "db" may call ``concurrency("db")`` without waiting for itself.
- Here: the public functions, and the engine's side: ``might_hold`` (no I/O) tells the
  engine whether a tagged task run may have slots to take, ``task_slots`` which ones, from
  a per-process list of the active limits read at most every two seconds; a task without
  tags never gets here.
"""
from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from plait._context import FlowRunContext
from plait._limits._backends import (
    ACTIVE,
    Limits,
    LocalLimits,
    RemoteLimits,
    Row,
    close_sessions,
    forget_active_limits,
    limits_backend,
)
from plait._limits._waiting import (
    HOLDINGS,
    MAX_NAME_LENGTH,
    Holding,
    Want,
    acquire_steps,
    block_holder,
    current_owner,
    drive,
    drive_async,
    flow_label,
    forget_warnings,
    held_here,
    holder,
    holder_gone,
    logger,
    release,
    run_logger,
)
from plait._runs import TaskRun
from plait.exceptions import PlaitError

__all__ = [
    "Limits",
    "LocalLimits",
    "RemoteLimits",
    "limits_backend",
    "forget_active_limits",
    "reset_limits",
    "holder_gone",
    "concurrency",
    "ConcurrencySlots",
    "rate_limit",
    "rate_limit_async",
    "might_hold",
    "task_slots",
    "task_slots_async",
    "TaskSlots",
]

_ACTIVE_TTL = 2.0  # how old the cached list of active limits may get
_MAX_NAMES = 50


def reset_limits() -> None:
    """Forget what this process keeps about limits: the cached list of active limits, the
    connections to plait servers, and which missing names it warned about."""
    forget_active_limits()
    close_sessions()
    forget_warnings()


# -- the public API ------------------------------------------------------------------------
def _names(names: str | Sequence[str]) -> tuple[str, ...]:
    items = [names] if isinstance(names, str) else list(names)
    if not items:
        raise ValueError("give at least one concurrency limit name, e.g. concurrency('db')")
    if len(items) > _MAX_NAMES:
        raise ValueError(f"at most {_MAX_NAMES} limit names at once, got {len(items)}")
    for name in items:
        if not isinstance(name, str):
            raise TypeError(f"concurrency limit names are strings, got {name!r}")
        if (not name.strip() or name != name.strip() or len(name) > MAX_NAME_LENGTH
                or any(ord(c) < 32 or ord(c) == 127 for c in name)):
            raise ValueError(f"{name!r} is not a concurrency limit name: 1-{MAX_NAME_LENGTH} characters, no "
                             "control characters, no spaces at its start or end")
    return tuple(dict.fromkeys(items))


def _occupy(occupy: int) -> int:
    if isinstance(occupy, bool) or not isinstance(occupy, int) or occupy < 1:
        raise ValueError(f"occupy must be a whole number >= 1, got {occupy!r}")
    return occupy


def _timeout(seconds: float | None) -> float | None:
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
        raise ValueError(f"timeout_seconds must be a number of seconds >= 0 (or None: wait as long as it takes), "
                         f"got {seconds!r}")
    return float(seconds)


@dataclass
class _Entry:
    """One entry into a ``ConcurrencySlots`` block: where its slots are and who holds them."""

    backend: Limits | None = None
    slot_ids: list[str] = field(default_factory=list)
    holding: Holding | None = None
    token: contextvars.Token[tuple[Holding, ...]] | None = None
    log: Any = logger


class ConcurrencySlots:
    """The slots ``plait.concurrency()`` holds for a ``with`` (or ``async with``) block.

    Attributes:
        names: The limit names asked for.
        occupy: Slots of each.
        slot_ids: The slots held inside the block (empty outside it, and when every name
            was already held by this holder or is no limit).
    """

    def __init__(self, names: tuple[str, ...], occupy: int, timeout: float | None, strict: bool) -> None:
        self.names, self.occupy, self.timeout, self.strict = names, occupy, timeout, strict
        self.slot_ids: list[str] = []
        self._entries: list[_Entry] = []

    def __repr__(self) -> str:
        return f"concurrency({list(self.names)!r}, occupy={self.occupy})"

    def _want(self) -> Want | None:
        names = tuple(n for n in self.names if not held_here(n))
        if not names:
            return None
        holder, log = block_holder()
        return Want(names, self.occupy, "concurrency", holder, self.timeout, self.strict, log)

    def _hold(self, entry: _Entry, want: Want | None = None, answer: Row | None = None) -> ConcurrencySlots:
        if want is not None and answer is not None:
            entry.slot_ids = [str(s) for s in answer.get("slot_ids") or ()]
            entry.holding = Holding(frozenset(n for n in want.names if n not in want.missing), current_owner())
            entry.token = HOLDINGS.set((*HOLDINGS.get(), entry.holding))
            entry.log = want.log
        self._entries.append(entry)
        self.slot_ids = entry.slot_ids
        return self

    def _leave(self) -> _Entry:
        entry = self._entries.pop()
        if entry.holding is not None:
            entry.holding.held = False
        if entry.token is not None:
            try:
                HOLDINGS.reset(entry.token)
            except ValueError:  # left in another context than entered: the holding is marked
                pass
        self.slot_ids = self._entries[-1].slot_ids if self._entries else []
        return entry

    def __enter__(self) -> ConcurrencySlots:
        want = self._want()
        if want is None:
            return self._hold(_Entry())
        backend = limits_backend()
        return self._hold(_Entry(backend), want, drive(acquire_steps(backend, want)))

    def __exit__(self, *exc: object) -> None:
        entry = self._leave()
        if entry.backend is not None:
            release(entry.backend, entry.slot_ids, entry.log)

    async def __aenter__(self) -> ConcurrencySlots:
        want = self._want()
        if want is None:
            return self._hold(_Entry())
        backend = await asyncio.to_thread(limits_backend)
        return self._hold(_Entry(backend), want, await drive_async(acquire_steps(backend, want)))

    async def __aexit__(self, *exc: object) -> None:
        entry = self._leave()
        if entry.backend is not None and entry.slot_ids:
            await asyncio.to_thread(release, entry.backend, entry.slot_ids, entry.log)


def concurrency(
    names: str | Sequence[str], occupy: int = 1, *, timeout_seconds: float | None = None, strict: bool = False
) -> ConcurrencySlots:
    """Hold ``occupy`` slots of each named concurrency limit for a ``with`` or ``async with``
    block, waiting until they all fit.

    ``async with`` never blocks the event loop. Inside a holder of a limit (a task run
    tagged with it, an outer block of the same thread), asking for it again takes nothing.
    The slots are given back when the block ends, also on an exception, and freed if the
    process dies.

    Args:
        names: One limit name or several (all or nothing).
        occupy: Slots of each limit to hold (>= 1).
        timeout_seconds: Wait at most this long (None: as long as it takes; 0: do not wait).
        strict: A name that is no limit is an error (default: a warning, once per process
            and name, and no wait).

    Raises:
        ConcurrencySlotTimeout: The slots did not fit within ``timeout_seconds``.
        ConcurrencyLimitMissing: ``strict`` and a name is no limit.
        ValueError: A bad name or value, or ``occupy`` is more than a limit has.
    """
    return ConcurrencySlots(_names(names), _occupy(occupy), _timeout(timeout_seconds), bool(strict))


def _rate_want(names: str | Sequence[str], occupy: int, timeout_seconds: float | None, strict: bool) -> Want:
    holder, log = block_holder()
    holder["label"] = holder["label"].replace("concurrency()", "rate_limit()", 1)
    return Want(_names(names), _occupy(occupy), "rate", holder, _timeout(timeout_seconds), bool(strict), log)


def rate_limit(
    names: str | Sequence[str], occupy: int = 1, *, timeout_seconds: float | None = None, strict: bool = False
) -> None:
    """Take ``occupy`` slots of each named limit that never come back but drain at its
    ``slot_decay_per_second``: at most ``limit`` at once, then that many per second.
    Blocks until the bucket has room.

    Args:
        names: One limit name or several (all or nothing); each needs
            ``plait concurrency-limit create NAME N --per-second R``.
        occupy: Slots of each to take (>= 1).
        timeout_seconds: Wait at most this long (None: as long as it takes).
        strict: A name that is no limit is an error (default: a warning, once per process).

    Raises:
        ConcurrencySlotTimeout: No room within ``timeout_seconds``.
        ConcurrencyLimitMissing: ``strict`` and a name is no limit.
        ValueError: A limit has no ``slot_decay_per_second``, or a bad value.
    """
    want = _rate_want(names, occupy, timeout_seconds, strict)
    drive(acquire_steps(limits_backend(), want))


async def rate_limit_async(
    names: str | Sequence[str], occupy: int = 1, *, timeout_seconds: float | None = None, strict: bool = False
) -> None:
    """``rate_limit`` for async code: waits without blocking the event loop.

    Raises:
        ConcurrencySlotTimeout: No room within ``timeout_seconds``.
        ConcurrencyLimitMissing: ``strict`` and a name is no limit.
        ValueError: A limit has no ``slot_decay_per_second``, or a bad value.
    """
    want = _rate_want(names, occupy, timeout_seconds, strict)
    backend = await asyncio.to_thread(limits_backend)
    await drive_async(acquire_steps(backend, want))


# -- the engine ----------------------------------------------------------------------------
_old_server_warned = False
_read_failing = False


def _store_key() -> tuple[str, str]:
    """Which store or server the settings name (no I/O)."""
    from plait.settings import get_settings

    settings = get_settings()
    return ("remote", settings.api_url) if settings.api_url else ("local", settings.effective_database_url)


def _fresh(entry: tuple[float, frozenset[str]] | None) -> frozenset[str] | None:
    if entry is not None and time.monotonic() - entry[0] < _ACTIVE_TTL:
        return entry[1]
    return None


def might_hold(tags: Sequence[str]) -> bool:
    """Whether a task run with these tags may have slots to take: False only when the active
    limits read less than two seconds ago name none of them. No I/O, no settings: the
    engine asks this of every tagged task run."""
    names = _fresh(ACTIVE.current)
    return names is None or (bool(names) and not names.isdisjoint(tags))


def _active_now() -> frozenset[str]:
    """The names of the active limits of the store the settings name, read again when the
    ones known are older than ``_ACTIVE_TTL`` seconds (one reader at a time; the others
    wait for its answer).

    An outage never fails a flow: while the store or server does not answer, the names read
    last are used (none, if nothing was read before), and the outage is logged once."""
    global _old_server_warned, _read_failing
    key = _store_key()
    hit = ACTIVE.by_store.get(key)
    if hit is not None and _fresh(hit) is not None:  # read for this store by another thread
        ACTIVE.current = hit
        return hit[1]
    with ACTIVE.lock:
        hit = ACTIVE.by_store.get(key)
        if hit is not None and _fresh(hit) is not None:
            ACTIVE.current = hit
            return hit[1]
        from plait._api import ApiNotFound

        try:
            names = frozenset(limits_backend().active())
        except ApiNotFound:  # a server older than concurrency limits: nothing to hold
            if not _old_server_warned:
                _old_server_warned = True
                logger.warning("the plait server has no concurrency limits (an older version); task tags limit "
                               "nothing")
            names = frozenset()
        except PlaitError as exc:
            if not _read_failing:
                _read_failing = True
                logger.warning("could not read the concurrency limits (%s); until they can be read, task tags "
                               "limit %s", exc, "nothing" if hit is None or not hit[1] else
                               "what they limited before (" + ", ".join(sorted(hit[1])) + ")")
            names = hit[1] if hit is not None else frozenset()
        else:
            if _read_failing:
                _read_failing = False
                logger.info("the concurrency limits can be read again")
        ACTIVE.by_store[key] = ACTIVE.current = (time.monotonic(), names)
        return names


class TaskSlots:
    """The slots one attempt of a tagged task run holds while its body runs.

    ``take`` waits for them (``take_async`` without blocking the loop), ``give_back``
    returns them; in between, the task run counts as their holder (reentrancy).
    """

    def __init__(self, names: tuple[str, ...], run: TaskRun, flow_ctx: FlowRunContext | None) -> None:
        self.names, self.run, self.flow_ctx = names, run, flow_ctx
        self.slot_ids: list[str] = []
        self._backend: Limits | None = None
        self._holding: Holding | None = None
        self._token: contextvars.Token[tuple[Holding, ...]] | None = None

    def __repr__(self) -> str:
        return f"TaskSlots({list(self.names)!r} for task run {self.run.name!r})"

    def _want(self) -> Want:
        run, flow_ctx = self.run, self.flow_ctx
        flow = flow_label(flow_ctx, run.flow_run_id)
        label = f"task run {run.name!r}" + (f" of {flow}" if flow else "")
        stop = flow_ctx.cancel_requested if flow_ctx is not None else None  # its stop set fills later
        return Want(self.names, 1, "concurrency", holder(label, run.flow_run_id, run.id), None, False,
                     run_logger(run.flow_run_id, run.id, f"Task run {run.name!r}"), quiet_missing=True,
                     should_stop=stop,
                     stop_message=f"not run: {flow or 'its flow run'} was cancelled while it waited for a "
                                  f"slot of concurrency limit {self.names[0]!r}")

    def _hold(self, backend: Limits, answer: Row) -> None:
        self._backend = backend
        self.slot_ids = [str(s) for s in answer.get("slot_ids") or ()]
        self._holding = Holding(frozenset(self.names), current_owner(), self.run.id)
        self._token = HOLDINGS.set((*HOLDINGS.get(), self._holding))

    def _leave(self) -> list[str]:
        if self._holding is not None:
            self._holding.held = False
        if self._token is not None:
            try:
                HOLDINGS.reset(self._token)
            except ValueError:  # given back in another context than taken: the holding is marked
                pass
        self._holding = self._token = None
        slot_ids, self.slot_ids = self.slot_ids, []
        return slot_ids

    def take(self) -> None:
        """Wait until the slots are held.

        Raises:
            CancelledRun: The flow run was cancelled while it waited.
            DatabaseError, ApiError: The limits cannot be reached.
        """
        backend = limits_backend()
        self._hold(backend, drive(acquire_steps(backend, self._want())))

    async def take_async(self) -> None:
        """``take`` without blocking the event loop."""
        backend = await asyncio.to_thread(limits_backend)
        self._hold(backend, await drive_async(acquire_steps(backend, self._want())))

    def give_back(self) -> None:
        """Give the slots back (a failure is logged, never raised)."""
        slot_ids = self._leave()
        if self._backend is not None:
            release(self._backend, slot_ids, logger)

    async def give_back_async(self) -> None:
        slot_ids = self._leave()
        if self._backend is not None and slot_ids:
            await asyncio.to_thread(release, self._backend, slot_ids, logger)


def _task_slots(run: TaskRun, flow_ctx: FlowRunContext | None, active: frozenset[str]) -> TaskSlots | None:
    names = tuple(sorted({t for t in run.tags if t in active and not held_here(t)}))
    return TaskSlots(names, run, flow_ctx) if names else None


def task_slots(run: TaskRun, flow_ctx: FlowRunContext | None) -> TaskSlots | None:
    """The slots a tagged task run must hold around its body: one of each active limit its
    tags name that its holder does not hold already; None when there are none. Reads the
    active limits when the ones known are older than two seconds (an outage makes it use
    what it read last: it never fails the task run).
    """
    active = _fresh(ACTIVE.current)
    if active is None:
        active = _active_now()
    return _task_slots(run, flow_ctx, active) if active else None


async def task_slots_async(run: TaskRun, flow_ctx: FlowRunContext | None) -> TaskSlots | None:
    """``task_slots`` for an async task run: the limits are read in a worker thread."""
    active = _fresh(ACTIVE.current)
    if active is None:
        active = await asyncio.to_thread(_active_now)
    return _task_slots(run, flow_ctx, active) if active else None
