"""Waiting for slots: who holds what (for reentrancy), and one generator of decisions.

``acquire_steps`` decides everything — ask, back off from 50 ms to 1 s with jitter, log the
wait once, free the slots of dead processes of this host, mark crashed runs on the local
store, time out, stop for a cancelled flow run — and yields its I/O as actions: ``drive``
performs them in the calling thread, ``drive_async`` in a worker thread, so an event loop
never blocks.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from plait._context import FlowRunContext, flow_run_var, task_run_var
from plait._limits._backends import Limits, Mode, Row, Rows
from plait._runs import HOSTNAME
from plait.exceptions import CancelledRun, ConcurrencyLimitMissing, ConcurrencySlotTimeout, PlaitError

__all__ = [
    "Want", "Holding", "HOLDINGS", "current_owner", "held_here", "holder", "flow_label", "block_holder",
    "run_logger", "holder_gone", "acquire_steps", "forget_warnings", "drive", "drive_async", "release", "logger",
    "MAX_NAME_LENGTH",
]

logger = logging.getLogger("plait.concurrency")

_FIRST_DELAY = 0.05  # seconds between the first polls of a full limit
_MAX_DELAY = 1.0
_CHECK_HOLDERS_EVERY = 1.0  # how often a waiter looks for slots of dead processes of this host
_SWEEP_EVERY = 2.0  # how often a waiter on the local store marks crashed flow runs
MAX_NAME_LENGTH = 200


# -- who holds what --------------------------------------------------------------------------
@dataclass(eq=False)
class Holding:
    """Slots a holder took: the names, who took them (thread and asyncio task), for which
    task run (the engine's), and whether they are still held."""

    names: frozenset[str]
    owner: tuple[int, int]
    task_run_id: str | None = None
    held: bool = True


HOLDINGS: contextvars.ContextVar[tuple[Holding, ...]] = contextvars.ContextVar("plait_limit_holdings", default=())


def current_owner() -> tuple[int, int]:
    """This thread and asyncio task (0 outside one)."""
    try:
        current = asyncio.current_task()
    except RuntimeError:  # no running event loop in this thread
        current = None
    return threading.get_ident(), id(current) if current is not None else 0


def held_here(name: str) -> bool:
    """Whether the current holder already holds a slot of ``name``: a with-block of this
    thread (or asyncio task) around us, or the task run whose body this is."""
    held = HOLDINGS.get()
    if not held:
        return False
    owner = current_owner()
    task_ctx = task_run_var.get()
    task_run_id = task_ctx.task_run.id if task_ctx is not None else None
    return any(
        h.held and name in h.names
        and (h.owner == owner or (h.task_run_id is not None and h.task_run_id == task_run_id))
        for h in held
    )


def holder(label: str, flow_run_id: str | None, task_run_id: str | None) -> dict[str, Any]:
    return {"flow_run_id": flow_run_id, "task_run_id": task_run_id, "hostname": HOSTNAME, "pid": os.getpid(),
            "label": label[:MAX_NAME_LENGTH]}


def flow_label(flow_ctx: FlowRunContext | None, flow_run_id: str | None) -> str:
    if flow_ctx is not None:
        return f"flow run {flow_ctx.flow_run.name!r} ({flow_ctx.flow_run.id[:8]})"
    return f"flow run {flow_run_id[:8]}" if flow_run_id else ""


def block_holder() -> tuple[dict[str, Any], Any]:
    """The holder of a with-block (or a rate limit) here, and the logger to tell about waits."""
    task_ctx = task_run_var.get()
    if task_ctx is not None:
        run = task_ctx.task_run
        where = f"task run {run.name!r}"
        flow = flow_label(task_ctx.flow_context, run.flow_run_id)
        label = f"concurrency() in {where}" + (f" of {flow}" if flow else "")
        return holder(label, run.flow_run_id, run.id), run_logger(run.flow_run_id, run.id, f"Task run {run.name!r}")
    flow_ctx = flow_run_var.get()
    if flow_ctx is not None:
        flow_run = flow_ctx.flow_run
        label = f"concurrency() in {flow_label(flow_ctx, flow_run.id)}"
        return holder(label, flow_run.id, None), run_logger(flow_run.id, None, f"Flow run {flow_run.name!r}")
    import sys

    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    return holder(f"concurrency() in process {os.getpid()} ({script})", None, None), logger


def run_logger(flow_run_id: str | None, task_run_id: str | None, label: str) -> Any:
    from plait._logging import run_logger_for

    return run_logger_for(flow_run_id, task_run_id, label)


def _pid_gone(pid: int) -> bool:
    """Whether process ``pid`` of this host no longer runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists but is someone else's, or we cannot tell: alive
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[-1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def holder_gone(slot: Mapping[str, Any]) -> bool | None:
    """Whether the process holding ``slot`` is gone: known only for holders of this host
    (None for another host's, or one without a pid)."""
    pid = slot.get("pid")
    if slot.get("hostname") != HOSTNAME or not isinstance(pid, int) or pid <= 0:
        return None
    return pid != os.getpid() and _pid_gone(pid)


def _dead_here(slot: Mapping[str, Any]) -> bool:
    return holder_gone(slot) is True


# -- waiting -------------------------------------------------------------------------------
@dataclass
class Want:
    """One request for slots and how to wait for it."""

    names: tuple[str, ...]
    occupy: int
    mode: Mode
    holder: dict[str, Any]
    timeout: float | None
    strict: bool
    log: Any
    quiet_missing: bool = False  # the engine asks only for names it knows as limits
    should_stop: Callable[[], bool] | None = None
    stop_message: str = ""
    missing: list[str] = field(default_factory=list)


class _Io:
    """A call to the backend: in the calling thread, or a worker thread for an event loop."""

    __slots__ = ("fn", "args", "kwargs")

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs

    def run_sync(self) -> Any:
        return self.fn(*self.args, **self.kwargs)

    async def run_async(self) -> Any:
        return await asyncio.to_thread(self.fn, *self.args, **self.kwargs)


class _Pause:
    """A pause between two polls."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def run_sync(self) -> None:
        time.sleep(self.seconds)

    async def run_async(self) -> None:
        await asyncio.sleep(self.seconds)


Steps = Generator["_Io | _Pause", Any, Row]


def drive(steps: Steps) -> Row:
    """Run a wait, performing its actions in this thread; what it answers (the store's
    acquisition answer)."""
    try:
        action = steps.send(None)
        while True:
            try:
                result = action.run_sync()
            except Exception as exc:
                action = steps.throw(exc)
            else:
                action = steps.send(result)
    except StopIteration as stop:
        return cast(Row, stop.value)


async def drive_async(steps: Steps) -> Row:
    """Run a wait from an event loop: its backend calls in a worker thread, its pauses as
    ``asyncio.sleep``."""
    try:
        action = steps.send(None)
        while True:
            try:
                result = await action.run_async()
            except Exception as exc:
                action = steps.throw(exc)
            else:
                action = steps.send(result)
    except StopIteration as stop:
        return cast(Row, stop.value)


_warned_missing: set[str] = set()
_warned_lock = threading.Lock()


def forget_warnings() -> None:
    """Warn again about names that are no limit (tests; after settings changed)."""
    with _warned_lock:
        _warned_missing.clear()


def _missing_message(name: str) -> str:
    return f"no concurrency limit {name!r}; create it with `plait concurrency-limit create {name} N`"


def _note_missing(answer: Mapping[str, Any], want: Want) -> None:
    """Refuse (strict) or warn once per process about names that are no limit."""
    missing = [str(n) for n in answer.get("missing") or ()]
    want.missing = missing
    if not missing or want.quiet_missing:
        return
    if want.strict:
        raise ConcurrencyLimitMissing(
            "; ".join(_missing_message(n) for n in missing) + " (strict=True makes a missing limit an error)")
    with _warned_lock:
        new = [n for n in missing if n not in _warned_missing]
        _warned_missing.update(new)
    for name in new:
        want.log.warning("%s; until then it does not limit anything (warned once per process)",
                         _missing_message(name))


def _holders_text(slots: Sequence[Mapping[str, Any]], most: int = 5) -> str:
    parts = []
    for slot in slots[:most]:
        label = str(slot.get("label") or "a holder")
        pid = f"pid {slot['pid']} on " if slot.get("pid") else ""
        parts.append(f"{label} ({pid}{slot.get('hostname')})")
    if len(slots) > most:
        parts.append(f"{len(slots) - most} more")
    return ", ".join(parts)


def _blocked_text(answer: Mapping[str, Any], want: Want, slots: Sequence[Mapping[str, Any]]) -> str:
    """What is awaited and why: ``a slot of concurrency limit 'db' (2/2 used by ...)``."""
    name = str(answer.get("blocked_by") or want.names[0])
    used = (answer.get("used") or {}).get(name)
    limit = (answer.get("limits") or {}).get(name)
    usage = f"{used:g}/{limit} used" if isinstance(used, (int, float)) and limit is not None else "full"
    if want.mode == "rate":
        return f"room for {want.occupy} in rate limit {name!r} ({usage}, draining)"
    what = "a slot" if want.occupy == 1 else f"{want.occupy} slots"
    holders = f" by {_holders_text(slots)}" if slots else ""
    return f"{what} of concurrency limit {name!r} ({usage}{holders})"


def acquire_steps(backend: Limits, want: Want) -> Steps:
    """Ask for the slots until they fit, the timeout passes or the holder must stop."""
    from plait._api import ApiUnavailable

    start = time.monotonic()
    deadline = None if want.timeout is None else start + want.timeout
    delay = _FIRST_DELAY
    logged = unavailable = False
    checked, swept = float("-inf"), start
    slots: Rows = []
    while True:
        try:
            answer = yield _Io(backend.acquire, want.names, want.occupy, mode=want.mode, holder=want.holder)
        except ApiUnavailable as exc:  # a server restarting: keep waiting, within the timeout
            if deadline is not None and time.monotonic() >= deadline:
                raise
            if not unavailable:
                unavailable = True
                want.log.warning("cannot reach the plait server to take a slot (%s); trying again", exc)
            yield _Pause(min(_MAX_DELAY, delay * random.uniform(0.5, 1.0)))
            delay = min(delay * 2, _MAX_DELAY)
            continue
        if answer.get("acquired"):
            if want.strict and answer.get("missing") and answer.get("slot_ids"):
                yield _Io(backend.release, list(answer["slot_ids"]))
            _note_missing(answer, want)
            return cast(Row, answer)
        _note_missing(answer, want)
        now = time.monotonic()
        blocked = str(answer.get("blocked_by") or "")
        if want.mode == "concurrency" and blocked and now - checked >= _CHECK_HOLDERS_EVERY:
            checked = now
            row = yield _Io(backend.get, blocked)
            slots = list((row or {}).get("slots") or [])
            dead = [str(s["id"]) for s in slots if _dead_here(s)]
            if dead:
                freed = yield _Io(backend.release, dead)
                want.log.info("freed %d slot(s) of concurrency limit %r held by processes of this host that are gone",
                              freed, blocked)
                continue
        if now - swept >= _SWEEP_EVERY:
            swept = now
            yield _Io(backend.sweep)
        if want.should_stop is not None and want.should_stop():
            raise CancelledRun(want.stop_message)
        if deadline is not None and now >= deadline:
            raise ConcurrencySlotTimeout(_timeout_message(answer, want, slots))
        if not logged:
            logged = True
            want.log.info("waiting for %s", _blocked_text(answer, want, slots))
        if want.mode == "rate" and isinstance(answer.get("retry_after"), (int, float)):
            pause = max(float(answer["retry_after"]), 0.001) + random.uniform(0, 0.01)
        else:
            pause = delay * random.uniform(0.5, 1.0)
            delay = min(delay * 2, _MAX_DELAY)
        if deadline is not None:
            pause = max(0.0, min(pause, deadline - now))
        yield _Pause(pause)


def _timeout_message(answer: Mapping[str, Any], want: Want, slots: Sequence[Mapping[str, Any]]) -> str:
    name = str(answer.get("blocked_by") or want.names[0])
    fix = (f"raise the limit with `plait concurrency-limit create {name} N`, free slots nobody holds any more with "
           f"`plait concurrency-limit reset {name}`, or wait longer (timeout_seconds)")
    return f"did not get {_blocked_text(answer, want, slots)} within {want.timeout:g}s; {fix}"


def release(backend: Limits, slot_ids: Sequence[str], log: Any) -> None:
    """Give slots back; a failure is logged (the slots are freed once their flow run ends,
    or by a waiter of this host once this process is gone), never raised."""
    if not slot_ids:
        return
    from plait._api import ApiUnavailable

    for attempt in (1, 2):
        try:
            backend.release(slot_ids)
            return
        except ApiUnavailable as exc:
            if attempt == 2:
                log.warning("could not give back %d concurrency slot(s): %s; they are freed when their flow run "
                            "ends (or `plait concurrency-limit reset NAME`)", len(slot_ids), exc)
            else:
                time.sleep(0.2)
        except PlaitError as exc:
            log.warning("could not give back %d concurrency slot(s): %s; they are freed when their flow run ends "
                        "(or `plait concurrency-limit reset NAME`)", len(slot_ids), exc)
            return
