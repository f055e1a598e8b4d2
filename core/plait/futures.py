"""Futures of submitted task runs, and helpers for values that may contain them.

``PlaitFuture[R]`` carries the type of the task's return value: ``add.submit(1, 2)`` for
``def add(x: int, y: int) -> int`` is a ``PlaitFuture[int]`` and ``.result()`` an ``int``;
``.map()`` gives a ``PlaitFutureList[int]`` whose ``.result()`` is a ``list[int]``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from collections.abc import Awaitable, Generator, Iterable, Iterator
from typing import Any, Generic, Literal, NamedTuple, TypeVar, overload

from plait._runs import TaskRun
from plait.states import State, StateType

__all__ = [
    "PlaitFuture", "PlaitFutureList", "DoneAndNotDone", "wait", "as_completed", "allow_failure", "quote",
    "resolve_futures",
]

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)  # a future only hands its value out

# what a future waits on: a runner's concurrent future or an asyncio task on a loop
_Handle = concurrent.futures.Future[State] | asyncio.Future[State]


class PlaitFuture(Generic[R_co]):
    """The promise of a task run's final state and its value, of type ``R_co``.

    Backed by a ``concurrent.futures.Future`` (sync tasks, or async tasks on plait's loop
    thread) or an ``asyncio`` task (async tasks submitted from an async flow); either way it
    can be waited on with ``.result()``/``.wait()`` or awaited.
    """

    __slots__ = ("task_run", "_handle", "_observed", "__weakref__")

    def __init__(self, task_run: TaskRun, handle: _Handle) -> None:
        self.task_run = task_run
        self._handle = handle
        self._observed = False  # did user code look at the outcome? (unhandled failures fail the flow)

    @property
    def task_run_id(self) -> str:
        return self.task_run.id

    @property
    def state(self) -> State:
        """The current state (final once ``done()``)."""
        self._observed = True
        return self.task_run.state

    def done(self) -> bool:
        return self._handle.done()

    def wait(self, timeout: float | None = None) -> State:
        """Block until the run is final (or ``timeout`` seconds pass); return its state."""
        self._observed = True  # the caller now holds the state: a failure is theirs to handle
        try:
            return self._final_state(timeout)
        except TimeoutError:
            return self.task_run.state

    @overload
    def result(self, timeout: float | None = None, raise_on_failure: Literal[True] = True) -> R_co: ...
    @overload
    def result(self, timeout: float | None = None, *, raise_on_failure: bool) -> R_co | BaseException: ...
    @overload
    def result(self, timeout: float | None, raise_on_failure: bool) -> R_co | BaseException: ...
    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
        """The task's return value; raise its exception if it failed.

        With ``raise_on_failure=False`` a failed run's exception is returned instead (so
        the type is ``R | BaseException``). Raises TimeoutError when the run is not final
        within ``timeout`` seconds.
        """
        state = self._final_state(timeout)
        self._observed = True
        return value_of(state, raise_on_failure)

    def _final_state(self, timeout: float | None = None) -> State:
        handle = self._handle
        if isinstance(handle, concurrent.futures.Future):
            try:
                return handle.result(timeout)
            except concurrent.futures.TimeoutError:
                raise TimeoutError(
                    f"task run {self.task_run.name!r} did not finish within {timeout}s"
                ) from None
        # an asyncio task on a loop
        if handle.done():
            return handle.result()
        loop = handle.get_loop()
        if _running_loop() is loop:
            raise RuntimeError(
                f"task run {self.task_run.name!r} runs on this event loop; use `await future` "
                "(or `await future.result_async()`) inside an async flow instead of .result()"
            )
        waiter = asyncio.run_coroutine_threadsafe(_await(handle), loop)
        try:
            return waiter.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"task run {self.task_run.name!r} did not finish within {timeout}s") from None

    async def _final_state_async(self) -> State:
        handle = self._handle
        if isinstance(handle, concurrent.futures.Future):
            return await asyncio.wrap_future(handle)
        if handle.get_loop() is asyncio.get_running_loop():
            return await handle
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_await(handle), handle.get_loop()))

    @overload
    async def result_async(self, raise_on_failure: Literal[True] = True) -> R_co: ...
    @overload
    async def result_async(self, raise_on_failure: bool) -> R_co | BaseException: ...
    async def result_async(self, raise_on_failure: bool = True) -> Any:
        """``result()`` for async code: await the run without blocking the event loop."""
        state = await self._final_state_async()
        self._observed = True
        return value_of(state, raise_on_failure)

    def __await__(self) -> Generator[Any, None, R_co]:
        return self.result_async().__await__()

    def __repr__(self) -> str:
        return f"PlaitFuture({self.task_run.name!r}, {self.task_run.state!r})"


def value_of(state: State, raise_on_failure: bool = True) -> Any:
    """``state.result()``, read back from result storage when the state holds only a
    reference (a task with ``cache_result_in_memory=False``)."""
    if state.result_ref and not state.has_data and state.type in (StateType.COMPLETED, StateType.CACHED):
        from plait.results import read_result_ref

        return read_result_ref(state.result_ref)
    return state.result(raise_on_failure=raise_on_failure)


async def _await(handle: Awaitable[State]) -> State:
    return await handle


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class PlaitFutureList(list[PlaitFuture[R]], Generic[R]):
    """The futures ``.map()`` returns: a list with ``result()`` and ``wait()`` for all."""

    @overload
    def result(self, timeout: float | None = None, raise_on_failure: Literal[True] = True) -> list[R]: ...
    @overload
    def result(self, timeout: float | None = None, *, raise_on_failure: bool) -> list[R | BaseException]: ...
    @overload
    def result(self, timeout: float | None, raise_on_failure: bool) -> list[R | BaseException]: ...
    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[Any]:
        """Every run's value, in order (see ``PlaitFuture.result``)."""
        return [f.result(timeout=timeout, raise_on_failure=raise_on_failure) for f in self]

    def wait(self, timeout: float | None = None) -> list[State]:
        return [f.wait(timeout) for f in self]

    @property
    def states(self) -> list[State]:
        return [f.state for f in self]


class DoneAndNotDone(NamedTuple):
    """What ``wait`` returns: the futures whose runs are final, and the others."""

    done: set[PlaitFuture[Any]]
    not_done: set[PlaitFuture[Any]]


def wait(futures: Iterable[PlaitFuture[Any]], timeout: float | None = None) -> DoneAndNotDone:
    """Wait until every future's run is final, or ``timeout`` seconds have passed.

        done, not_done = wait(futures, timeout=30)

    The states of the done ones are the caller's to look at (a failure among them no longer
    fails the flow by itself)."""
    by_handle = {_concurrent(f): f for f in futures}
    finished, _pending = concurrent.futures.wait(by_handle, timeout)
    done = {by_handle[h] for h in finished}
    for future in done:
        future._observed = True
    return DoneAndNotDone(done, set(by_handle.values()) - done)


def as_completed(futures: Iterable[PlaitFuture[Any]], timeout: float | None = None) -> Iterator[PlaitFuture[Any]]:
    """The futures, each as soon as its run is final (raises TimeoutError after ``timeout``
    seconds with some still running)."""
    by_handle = {_concurrent(f): f for f in futures}
    try:
        for handle in concurrent.futures.as_completed(by_handle, timeout):
            future = by_handle[handle]
            future._observed = True
            yield future
    except concurrent.futures.TimeoutError:
        left = sum(1 for h in by_handle if not h.done())
        raise TimeoutError(f"{left} task run(s) did not finish within {timeout}s") from None


def _concurrent(future: PlaitFuture[Any]) -> concurrent.futures.Future[State]:
    """A ``concurrent.futures.Future`` that completes with the run (for wait/as_completed)."""
    handle = future._handle
    if isinstance(handle, concurrent.futures.Future):
        return handle
    loop = handle.get_loop()
    if not handle.done() and _running_loop() is loop:
        raise RuntimeError(
            f"task run {future.task_run.name!r} runs on this event loop; await the futures "
            "(asyncio.gather(*futures)) inside an async flow instead of wait()/as_completed()"
        )
    return asyncio.run_coroutine_threadsafe(_await(handle), loop)


class allow_failure:  # noqa: N801 - reads like a function at the call site
    """Run the downstream task even when this upstream failed or was cancelled; it then
    receives the upstream's exception as the value (as Prefect's ``allow_failure``)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"allow_failure({self.value!r})"


class quote:  # noqa: N801 - reads like a function at the call site
    """Pass a value to a task as it is, without plait looking inside it for futures or
    recording its contents (for a large object: a DataFrame of a million rows)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"quote(<{type(self.value).__name__}>)"


# -- values containing futures -------------------------------------------------------------
_MAX_DEPTH = 3


def iter_futures(value: Any, depth: int = 0) -> Iterator[PlaitFuture[Any]]:
    """Futures in ``value`` itself or nested in lists, tuples, sets, dict values, the fields
    of dataclasses and pydantic models, and ``allow_failure`` (never inside a ``quote``)."""
    if isinstance(value, PlaitFuture):
        yield value
    elif depth >= _MAX_DEPTH or isinstance(value, _LEAVES):
        return
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from iter_futures(item, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            yield from iter_futures(item, depth + 1)
    elif isinstance(value, allow_failure):
        yield from iter_futures(value.value, depth)
    else:
        fields = _fields_of(value)
        if fields:
            for item in fields.values():
                yield from iter_futures(item, depth + 1)


# Values that hold no future: most arguments are one of these, and are looked at no further.
_LEAVES = (str, bytes, int, float, bool, type(None), quote)


def _fields_of(value: Any) -> dict[str, Any] | None:
    """The field values of a dataclass instance or a pydantic model (None for anything else)."""
    cls = type(value)
    if getattr(cls, "__dataclass_fields__", None) is not None and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.init}
    if isinstance(getattr(cls, "model_fields", None), dict) and hasattr(value, "model_copy"):
        return {name: getattr(value, name) for name in cls.model_fields}
    return None


def resolve_futures(value: Any, depth: int = 0, allowed: bool = False) -> Any:
    """``value`` with every (finished) future replaced by its result (under
    ``allow_failure``: a failed run's exception)."""
    if isinstance(value, PlaitFuture):
        return value.result(raise_on_failure=not allowed)
    if isinstance(value, allow_failure):
        return resolve_futures(value.value, depth, allowed=True)
    if depth >= _MAX_DEPTH or isinstance(value, _LEAVES):
        return value
    if isinstance(value, (list, tuple, set, frozenset)):
        if not any(True for _ in iter_futures(value, depth)):
            return value
        items = [resolve_futures(v, depth + 1, allowed) for v in value]
        if isinstance(value, tuple) and hasattr(value, "_fields"):  # namedtuple
            return type(value)(*items)
        return type(value)(items)
    if isinstance(value, dict):
        if not any(True for _ in iter_futures(value, depth)):
            return value
        return type(value)((k, resolve_futures(v, depth + 1, allowed)) for k, v in value.items())
    fields = _fields_of(value)
    if fields and any(True for _ in iter_futures(value, depth)):
        changes = {k: resolve_futures(v, depth + 1, allowed) for k, v in fields.items()}
        if hasattr(value, "model_copy"):
            return value.model_copy(update=changes)
        return dataclasses.replace(value, **changes)
    return value


def iter_values(value: Any, depth: int = 0) -> Iterator[Any]:
    """``value`` and values nested in containers (for result-identity dependency edges)."""
    yield value
    if depth < _MAX_DEPTH and isinstance(value, (list, tuple, set, frozenset)) and len(value) <= 1000:
        for item in value:
            yield from iter_values(item, depth + 1)
    elif depth < _MAX_DEPTH and isinstance(value, dict) and len(value) <= 1000:
        for item in value.values():
            yield from iter_values(item, depth + 1)


