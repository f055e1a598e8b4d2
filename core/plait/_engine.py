"""The engine: one state machine for flows and tasks, two thin drivers.

``task_steps`` and ``flow_steps`` are generators holding all orchestration decisions
(transitions, retries, caching, timeouts, failure handling). They do no I/O themselves:
they yield *actions* — call the user's function, sleep, wait for upstream futures, touch
result storage, take and give back concurrency slots — and receive the outcome.
``drive_sync`` and ``drive_async`` perform those actions, the only place where sync and
async differ.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Generator
from typing import Any, cast

from plait._context import (
    FlowRunContext,
    TaskRunContext,
    body_executor_var,
    flow_run_var,
    task_run_var,
    transaction_var,
)
from plait._limits import TaskSlots, might_hold, task_slots, task_slots_async
from plait._masking import mask as scrub
from plait._options import RunOptions
from plait._runs import FlowRun, TaskRun, advance
from plait.exceptions import CancelledRun, CrashedRun, PlaitError, SerializationError, UpstreamFailed
from plait.futures import resolve_futures
from plait.states import State, StateType

logger = logging.getLogger("plait.engine")

Steps = Generator[Any, Any, State]


class Outcome:
    """What calling user code produced: a value or an exception."""

    __slots__ = ("value", "error")

    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value = value
        self.error = error


# -- actions -------------------------------------------------------------------------------
class Call:
    """Run the user's function inside its run context, with an optional timeout."""

    __slots__ = ("fn", "args", "kwargs", "timeout", "what", "flow_ctx", "task_ctx")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
        what: str,
        flow_ctx: FlowRunContext | None = None,
        task_ctx: TaskRunContext | None = None,
    ) -> None:
        self.fn, self.args, self.kwargs, self.timeout = fn, args, kwargs, timeout
        self.what, self.flow_ctx, self.task_ctx = what, flow_ctx, task_ctx

    def _enter(self) -> tuple[Any, Any]:
        flow_token = flow_run_var.set(self.flow_ctx) if self.flow_ctx is not None else None
        task_token = task_run_var.set(self.task_ctx)
        return flow_token, task_token

    def _exit(self, tokens: tuple[Any, Any]) -> None:
        task_run_var.reset(tokens[1])
        if tokens[0] is not None:
            flow_run_var.reset(tokens[0])

    def run_sync(self) -> Outcome:
        if self.task_ctx is not None:
            executor = body_executor_var.get()
            if executor is not None:  # a RemoteTaskRunner runs the body elsewhere (processes, Dask)
                return cast(Outcome, executor(self))
        tokens = self._enter()
        try:
            if self.timeout is None:
                return Outcome(self.fn(*self.args, **self.kwargs))
            return Outcome(_call_with_timeout(self.fn, self.args, self.kwargs, self.timeout, self.what))
        except Exception as exc:
            return Outcome(error=exc)
        finally:
            self._exit(tokens)

    async def run_async(self) -> Outcome:
        tokens = self._enter()
        try:
            if self.flow_ctx is not None and self.flow_ctx.loop is None:
                self.flow_ctx.loop = asyncio.get_running_loop()
            coro = self.fn(*self.args, **self.kwargs)
            if self.timeout is None:
                return Outcome(await coro)
            try:
                return Outcome(await asyncio.wait_for(coro, self.timeout))
            except TimeoutError:
                return Outcome(error=TimeoutError(f"{self.what} exceeded its timeout of {self.timeout:g}s"))
        except Exception as exc:
            return Outcome(error=exc)
        finally:
            self._exit(tokens)


def _call_with_timeout(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float, what: str
) -> Any:
    """Run a sync function in a helper thread and give up waiting after ``timeout``.

    Python cannot kill a thread: a timed-out body keeps running in the background, but the
    run is failed at once and the flow moves on.
    """
    import contextvars

    done = threading.Event()
    box: list[Any] = []
    context = contextvars.copy_context()

    def target() -> None:
        try:
            box.append(Outcome(context.run(fn, *args, **kwargs)))
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            box.append(Outcome(error=exc))
        finally:
            done.set()

    threading.Thread(target=target, name=f"plait-timeout-{what}", daemon=True).start()
    if not done.wait(timeout):
        raise TimeoutError(f"{what} exceeded its timeout of {timeout:g}s")
    if box[0].error is not None:
        raise box[0].error
    return box[0].value


class TakeSlots:
    """Wait for the slots of the concurrency limits a tagged task run's tags name
    (``plait._limits``); the outcome's value is the held ``TaskSlots``, or None when no tag
    names an active limit."""

    __slots__ = ("run", "flow_ctx")

    def __init__(self, run: TaskRun, flow_ctx: FlowRunContext | None) -> None:
        self.run, self.flow_ctx = run, flow_ctx

    def run_sync(self) -> Outcome:
        try:
            slots = task_slots(self.run, self.flow_ctx)
            if slots is not None:
                slots.take()
            return Outcome(slots)
        except Exception as exc:
            return Outcome(error=exc)

    async def run_async(self) -> Outcome:
        try:
            slots = await task_slots_async(self.run, self.flow_ctx)
            if slots is not None:
                await slots.take_async()
            return Outcome(slots)
        except Exception as exc:
            return Outcome(error=exc)


class GiveBack:
    """Give back the slots a task run held while its body ran (never fails)."""

    __slots__ = ("slots",)

    def __init__(self, slots: TaskSlots) -> None:
        self.slots = slots

    def run_sync(self) -> None:
        self.slots.give_back()

    async def run_async(self) -> None:
        await self.slots.give_back_async()


class Sleep:
    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def run_sync(self) -> None:
        time.sleep(self.seconds)

    async def run_async(self) -> None:
        await asyncio.sleep(self.seconds)


class Resolve:
    """Wait for the futures among a task's arguments and ``wait_for``; return final states."""

    __slots__ = ("futures",)

    def __init__(self, futures: list[Any]) -> None:
        self.futures = futures

    def run_sync(self) -> list[State]:
        return [f._final_state() for f in self.futures]

    async def run_async(self) -> list[State]:
        return [await f._final_state_async() for f in self.futures]


class Do:
    """Blocking local work the state machine needs (result storage, flushing)."""

    __slots__ = ("fn", "args")

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.fn, self.args = fn, args

    def run_sync(self) -> Outcome:
        try:
            return Outcome(self.fn(*self.args))
        except Exception as exc:
            return Outcome(error=exc)

    async def run_async(self) -> Outcome:
        return self.run_sync()


class WaitAll:
    """Wait until every task submitted in a flow run has finished."""

    __slots__ = ("ctx",)

    def __init__(self, ctx: FlowRunContext) -> None:
        self.ctx = ctx

    def run_sync(self) -> None:
        for future in list(self.ctx.futures):
            future._final_state()

    async def run_async(self) -> None:
        while True:
            pending = [f for f in list(self.ctx.futures) if not f.done()]
            if not pending:
                return
            for future in pending:
                await future._final_state_async()


# -- drivers -------------------------------------------------------------------------------
def drive_sync(steps: Steps) -> State:
    """Run a state machine, performing its actions synchronously."""
    try:
        action = steps.send(None)
        while True:
            try:
                result = action.run_sync()
            except BaseException as exc:  # KeyboardInterrupt, SystemExit: let the machine crash cleanly
                action = steps.throw(exc)
            else:
                action = steps.send(result)
    except StopIteration as stop:
        return cast(State, stop.value)  # what the Steps generator returned (StopIteration is untyped)


async def drive_async(steps: Steps) -> State:
    """Run a state machine, awaiting its actions."""
    try:
        action = steps.send(None)
        while True:
            try:
                result = await action.run_async()
            except BaseException as exc:  # includes CancelledError
                action = steps.throw(exc)
            else:
                action = steps.send(result)
    except StopIteration as stop:
        return cast(State, stop.value)  # what the Steps generator returned (StopIteration is untyped)


# -- shared helpers ------------------------------------------------------------------------
def set_state(run: FlowRun | TaskRun, state: State, recorder: Any) -> State:
    """Move ``run`` to ``state`` (refused unless the transition table allows it) and report it."""
    advance(run, state)
    recorder.add_state(run, state)
    return state


def describe_error(exc: BaseException) -> str:
    """``Type: message`` for state messages and logs, with known secret values masked."""
    text = scrub(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def retry_delay(options: RunOptions, retry_number: int) -> float:
    delay = options.retry_delay(retry_number)
    if options.retry_jitter_factor and delay:
        delay = jittered(delay, options.retry_jitter_factor)
    return delay


def jittered(delay: float, factor: float) -> float:
    """A random delay of mean ``delay``, never above ``delay * (1 + factor)``: an exponential
    draw clamped at that bound, its own mean chosen so that the clamped draws average
    ``delay``. Retries of many runs that failed together spread out, and on average wait
    what was configured (a symmetric spread cut at zero would wait longer)."""
    bound = delay * (1 + factor)
    return min(random.expovariate(1 / (delay * _exponential_scale(factor))), bound)


@functools.lru_cache(maxsize=64)
def _exponential_scale(factor: float) -> float:
    """``k`` such that ``min(X, 1 + factor)`` averages 1 for ``X`` exponential of mean ``k``:
    ``k (1 - exp(-(1 + factor) / k)) = 1``, solved by bisection (the left side grows with k)."""
    bound = 1 + factor
    low, high = 1.0, max(2.0, bound * bound / factor)
    for _ in range(100):
        middle = (low + high) / 2
        if middle * (1 - math.exp(-bound / middle)) < 1:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def wants_retry(options: RunOptions, owner: Any, run: Any, exc: BaseException) -> bool:
    if run.run_count > options.retries:
        return False
    if options.retry_condition is None:
        return True
    candidate = State(StateType.FAILED, describe_error(exc), data=exc)
    try:
        return bool(options.retry_condition(owner, run, candidate))
    except Exception as cond_exc:  # a broken condition must not hide the real failure
        logger.error("retry_condition of %r raised %s; not retrying", owner.name, describe_error(cond_exc))
        return False


# -- task runs -----------------------------------------------------------------------------
def task_steps(
    task: Any,
    run: TaskRun,
    parameters: dict[str, Any],
    upstream: list[tuple[Any, str, str | None]],
    flow_ctx: FlowRunContext | None,
    recorder: Any,
) -> Steps:
    """The life of one task run. ``upstream``: (future, kind, parameter) to wait for."""
    options = task.options
    slots: TaskSlots | None = None  # concurrency slots held while an attempt's body runs
    try:
        if flow_ctx is not None and flow_ctx.stop and flow_ctx.cancel_requested():
            return _cancel_task(run, flow_ctx, recorder)
        if upstream:
            states = yield Resolve([f for f, _, _ in upstream])
            for state, (future, kind, _name) in zip(states, upstream, strict=True):
                if not state.is_completed() and not kind.endswith(ALLOWED):
                    cause = f"upstream task run {future.task_run.name!r} is {state.type.title}"
                    error = UpstreamFailed(cause)
                    error.__cause__ = state.result(raise_on_failure=False)
                    return set_state(run, State(StateType.CANCELLED, cause, name="Skipped", data=error), recorder)
            if any(kind.startswith("data") for _, kind, _ in upstream):
                parameters = {name: resolve_futures(value) for name, value in parameters.items()}

        if flow_ctx is not None and flow_ctx.reuse:
            earlier = _earlier_result(flow_ctx, task, run)
            if earlier is not None:
                outcome = yield Do(_read_result, earlier["result_ref"])
                if outcome.error is None:
                    return _reused(run, earlier, outcome.value, flow_ctx, recorder)
                task.run_logger(run).warning(
                    "the result of task run %s of an earlier attempt cannot be read (%s); running it again",
                    earlier["id"], describe_error(outcome.error))

        task_ctx = TaskRunContext(task, run, parameters, flow_ctx, task.log_prints_for(flow_ctx))
        storage = None
        cache_key = None
        if options.caches:
            try:
                cache_key = task.cache_key(task_ctx, parameters)
            except PlaitError as exc:  # a result_storage_key that does not fit: say so
                return _fail_task(run, exc, recorder)
            run.cache_key = cache_key
        if cache_key is not None or task.persists_for(flow_ctx):
            try:
                storage = task.storage(flow_ctx)
            except Exception as exc:  # e.g. an unknown storage scheme: the run fails, clearly
                return _fail_task(run, exc, recorder)
        if cache_key is not None and not options.refresh_cache:
            outcome = yield Do(task.load_cached, storage, cache_key)
            if outcome.error is None and outcome.value is not None:
                value, ref = outcome.value
                run.result_ref = ref
                if not options.cache_result_in_memory:
                    return set_state(run, State(StateType.CACHED, "result read from cache", result_ref=ref), recorder)
                if flow_ctx is not None:
                    flow_ctx.track_result(value, run.id)
                return set_state(run, State(
                    StateType.CACHED, "result read from cache", data=value, result_ref=ref
                ), recorder)

        args, kwargs = task.call_arguments(parameters)
        while True:
            if run.run_count and flow_ctx is not None and flow_ctx.stop and flow_ctx.cancel_requested():
                return _cancel_task(run, flow_ctx, recorder)  # no retry of a cancelled run's task
            if run.tags and might_hold(run.tags):  # tags may name limits: hold their slots
                taken = yield TakeSlots(run, flow_ctx)
                if taken.error is not None:
                    if flow_ctx is not None and flow_ctx.stop and flow_ctx.cancel_requested():
                        return _cancel_task(run, flow_ctx, recorder)
                    return _fail_task(run, taken.error, recorder)
                slots = taken.value
            run.run_count += 1
            set_state(run, State(StateType.RUNNING), recorder)
            outcome = yield Call(task.fn, args, kwargs, options.timeout_seconds,
                                 f"task run {run.name!r}", task_ctx=task_ctx)
            if slots is not None:
                held, slots = slots, None
                yield GiveBack(held)
            value, returned, failure = _settled(outcome, f"task run {run.name!r}")
            if failure is None:
                ref = None
                txn = transaction_var.get()
                key = cache_key or run.id  # where the result goes in storage
                if txn is not None:  # written when the transaction commits, if it does
                    write = None
                    if storage is not None:
                        write = functools.partial(task.save_result, storage, key, value, run, flow_ctx, recorder)
                        ref = run.result_ref = task.result_ref(storage, key)
                    txn.stage(task, run, value, write)
                elif storage is not None:
                    saved = yield Do(task.save_result, storage, key, value, run, flow_ctx, recorder)
                    if saved.error is not None:
                        return _fail_task(run, saved.error, recorder)
                    ref = saved.value
                    run.result_ref = ref
                kept = returned or _NO_STATE
                if ref is not None and txn is None and not options.cache_result_in_memory:
                    # only the reference stays: futures read the value back when asked
                    return set_state(run, State(StateType.COMPLETED, kept.message, name=kept.name, result_ref=ref),
                                     recorder)
                if flow_ctx is not None:
                    flow_ctx.track_result(value, run.id)
                return set_state(run, State(
                    StateType.COMPLETED, kept.message, name=kept.name, data=value, result_ref=ref
                ), recorder)
            if returned is not None and not returned.is_failed():  # Cancelled, Crashed: never retried
                return _end_as_returned(run, returned, failure, recorder)
            if not wants_retry(options, task, run, failure):
                if returned is not None:
                    return _end_as_returned(run, returned, failure, recorder)
                return _fail_task(run, failure, recorder)
            delay = retry_delay(options, run.run_count)
            set_state(run, State(
                StateType.RETRYING, f"attempt {run.run_count} failed: {describe_error(failure)}; "
                f"retrying in {delay:.3g}s", data=failure,
            ), recorder)
            task.run_logger(run).warning("attempt %d failed with %s; retrying in %.3gs",
                                         run.run_count, describe_error(failure), delay)
            if delay:
                yield Sleep(delay)
    except BaseException as exc:  # interrupted (Ctrl-C, SystemExit, cancellation)
        if slots is not None:  # crash path: give them back at once (logged, never raises)
            slots.give_back()
        if not run.state.is_final():
            set_state(run, State(StateType.CRASHED, f"interrupted: {describe_error(exc)}",
                                 data=CrashedRun(describe_error(exc))), recorder)
        raise


_NO_STATE = State(StateType.COMPLETED)  # the name and message of a plain return value


def _settled(outcome: Outcome, what: str) -> tuple[Any, State | None, BaseException | None]:
    """``(value, returned, failure)`` of a body's outcome. A body may return a State, as in
    Prefect: a Completed one gives its data as the value and keeps its name and message
    (``returned``); a Failed, Crashed or Cancelled one is the run's failure; any other
    (Running, Pending...) is a mistake the run fails with."""
    value = outcome.value
    if outcome.error is not None or not isinstance(value, State):
        return value, None, outcome.error
    if value.is_completed():
        return (value.data if value.has_data else None), value, None
    if value.is_final():
        return None, value, value.result(raise_on_failure=False)
    return None, None, PlaitError(
        f"{what} returned a {value.type.title} state; return a value or a final state "
        "(Completed, Failed, Cancelled)"
    )


def _end_as_returned(run: TaskRun, returned: State, failure: BaseException, recorder: Any) -> State:
    """End a task run in the final state its body returned (its type, name and message)."""
    message = returned.message or describe_error(failure)
    state = set_state(run, State(returned.type, message, name=returned.name, data=failure), recorder)
    if returned.is_failed():
        _task_logger(run).error("failed: %s", message)
    return state


# An upstream kind ending so ("data+allowed") was passed in allow_failure(...): its failure
# does not skip the task run.
ALLOWED = "+allowed"


def _cancel_task(run: TaskRun, flow_ctx: FlowRunContext, recorder: Any) -> State:
    message = f"not run: flow run {flow_ctx.flow_run.name!r} was cancelled"
    return set_state(run, State(StateType.CANCELLED, message, data=CancelledRun(message)), recorder)


def _earlier_result(flow_ctx: FlowRunContext, task: Any, run: TaskRun) -> dict[str, Any] | None:
    """The task run of an earlier attempt this one stands for: same task, same place in the
    flow's order of calls (``dynamic_key``), same recorded arguments."""
    reuse = flow_ctx.reuse
    earlier = reuse.get((task.task_key, run.dynamic_key)) if reuse else None
    if earlier is None or earlier.get("parameters") != run.parameters:
        return None
    return earlier


def _read_result(ref: str) -> Any:
    from plait.results import read_result_ref

    return read_result_ref(ref)


def _reused(run: TaskRun, earlier: dict[str, Any], value: Any, flow_ctx: FlowRunContext, recorder: Any) -> State:
    ref = earlier["result_ref"]
    run.result_ref = ref
    flow_ctx.track_result(value, run.id)
    message = f"result of task run {earlier['id']} (an earlier attempt of this flow run) reused"
    return set_state(run, State(StateType.CACHED, message, name="Reused", data=value, result_ref=ref), recorder)


def _fail_task(run: TaskRun, exc: BaseException, recorder: Any) -> State:
    message = describe_error(exc)
    if run.run_count and not isinstance(exc, SerializationError):
        message = f"{message} (after {run.run_count} attempt{'s' if run.run_count != 1 else ''})"
    state = set_state(run, State(StateType.FAILED, message, data=exc), recorder)
    _task_logger(run).error("failed: %s", describe_error(exc), exc_info=(type(exc), exc, exc.__traceback__))
    return state


def _task_logger(run: TaskRun) -> Any:
    from plait._logging import run_logger_for

    return run_logger_for(run.flow_run_id, run.id, f"Task run {run.name!r}")


# -- flow runs -----------------------------------------------------------------------------
def flow_steps(
    flow: Any, run: FlowRun, ctx: FlowRunContext, args: tuple[Any, ...], kwargs: dict[str, Any], is_top: bool
) -> Steps:
    """The life of one flow run: attempts of the body, waiting on its tasks, the verdict."""
    options = flow.options
    recorder = ctx.recorder
    try:
        stored = _start_control(flow, run, ctx, is_top)
        log = flow.run_logger(run)
        if ctx.cancel_requested() or (stored is not None and stored["state_type"] == StateType.CANCELLING.value):
            state = _cancel_flow(run, recorder, "cancelled before it started")
            log.warning("cancelled before it started")
            return state
        log.info("Beginning flow run %r for flow %r", run.name, flow.name)
        while True:
            run.run_count += 1
            set_state(run, State(StateType.RUNNING), recorder)
            ctx.results.clear()
            ctx.futures.clear()
            with ctx.task_runner.started():
                outcome = yield Call(flow.fn, args, kwargs, options.timeout_seconds,
                                     f"flow run {run.name!r}", flow_ctx=ctx, task_ctx=None)
                yield WaitAll(ctx)
            exc = outcome.error
            returned = outcome.value if exc is None and isinstance(outcome.value, State) else None
            if exc is None:
                value, exc = flow.settle_return(outcome.value, ctx)
            else:
                exc = root_cause(exc)
            if exc is None:
                kept = returned or _NO_STATE  # a returned Completed(...) keeps its name and message
                state = set_state(run, State(StateType.COMPLETED, kept.message, name=kept.name, data=value), recorder)
                break
            if ctx.stop and ctx.cancel_requested():  # it stopped because it was asked to
                state = _cancel_flow(run, recorder, "cancelled on request")
                log.warning("cancelled on request: no task runs were started after the request")
                break
            if wants_retry(options, flow, run, exc):
                delay = retry_delay(options, run.run_count)
                set_state(run, State(StateType.RETRYING, f"attempt {run.run_count} failed: "
                                     f"{describe_error(exc)}; retrying in {delay:.3g}s", data=exc), recorder)
                log.warning("attempt %d failed with %s; retrying in %.3gs", run.run_count, describe_error(exc), delay)
                if delay:
                    yield Sleep(delay)
                continue
            if returned is not None and returned.is_final() and not returned.is_completed():
                state = set_state(run, State(returned.type, returned.message or describe_error(exc),
                                             name=returned.name, data=exc), recorder)
            else:
                state = set_state(run, State(StateType.FAILED, describe_error(exc), data=exc), recorder)
            log.error("failed: %s", state.message)
            break
        log.info("Finished in state %r", state)
        return state
    except BaseException as exc:
        if not run.state.is_final():
            set_state(run, State(StateType.CRASHED, f"interrupted: {describe_error(exc)}",
                                 data=CrashedRun(describe_error(exc))), recorder)
            flow.run_logger(run).error("crashed: %s", describe_error(exc))
        raise
    finally:
        if is_top:
            try:
                recorder.flush()
            except PlaitError as exc:  # the history waits (buffered, journaled); the verdict stands
                logger.warning("run history not written yet, kept and retried: %s", exc)


def _cancel_flow(run: FlowRun, recorder: Any, message: str) -> State:
    return set_state(run, State(StateType.CANCELLED, message, data=CancelledRun(message)), recorder)


def _start_control(flow: Any, run: FlowRun, ctx: FlowRunContext, is_top: bool) -> dict[str, Any] | None:
    """Wire the run to run control (no I/O): cancellation by the recorder's set, and, for
    a top-level run, its entrypoint and what a launcher's ``PLAIT_FLOW_RUN_ID`` named.

    A run a launcher named (a worker's, ``serve``'s, a retry's) persists its task results
    unless the flow says ``persist_result=False``, so that a retry after a failure or crash
    reuses them; one the store already held (Scheduled by a deployment, retried) is adopted:
    its name and attempt count go on, and its completed task runs are reused.

    Returns:
        What the store held of the run, for a run a launcher named that exists there.
    """
    recorder = ctx.recorder
    ctx.stop = getattr(recorder, "cancelling", frozenset())
    parent = flow_run_var.get()
    ctx.lineage = (run.id, *parent.lineage) if parent is not None and parent is not ctx else (run.id,)
    if not is_top:
        return None
    entrypoint = flow_entrypoint(flow)
    note = getattr(recorder, "note_entrypoint", None)
    if entrypoint is not None and note is not None:
        note(run.id, entrypoint)
    launched_run = getattr(recorder, "launched_run", None)
    launched, stored = (
        cast(tuple[bool, "dict[str, Any] | None"], launched_run(run.id)) if launched_run is not None else (False, None)
    )
    if not launched:
        return None
    if flow.options.persist_result is None:
        ctx.persist_results = True
    if stored is None:
        return None
    ctx.deployment_id = stored.get("deployment_id")
    run.name = stored.get("name") or run.name
    run.run_count = int(stored.get("run_count") or 0)
    run.tags = list(dict.fromkeys([*(stored.get("tags") or []), *run.tags]))
    done = stored.get("done") or []
    ctx.reuse = {(d["task_key"], int(d["dynamic_key"])): d for d in done} or None
    if ctx.reuse:
        flow.run_logger(run).info("attempt %d: %d task run(s) completed before; their results are reused",
                                  run.run_count + 1, len(ctx.reuse))
    return stored


def flow_entrypoint(flow: Any) -> str | None:
    """``/absolute/path.py:function`` of a flow defined in a file (None: defined elsewhere,
    e.g. in a notebook)."""
    fn = getattr(flow, "fn", None)
    path = getattr(getattr(fn, "__code__", None), "co_filename", "")
    if not path or path.startswith("<") or not path.endswith(".py"):
        return None
    return f"{os.path.abspath(path)}:{fn.__name__}"  # type: ignore[union-attr]


def root_cause(exc: BaseException) -> BaseException:
    """A skipped task's error points at the upstream failure; report that original one."""
    while isinstance(exc, UpstreamFailed) and isinstance(exc.__cause__, BaseException):
        exc = exc.__cause__
    return exc
