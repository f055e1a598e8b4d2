"""Task runners: where submitted tasks execute (threads here; processes in ``_process_runner``).

A runner takes a zero-argument callable that drives one task run to its final state and
returns a ``concurrent.futures.Future`` of that state. A runner that runs task bodies in
other processes or machines subclasses ``RemoteTaskRunner`` instead: the state machine (and
every record) stays in the flow's process, and only ``submit_body`` is its own
(``ProcessPoolTaskRunner`` here, ``DaskTaskRunner`` in plait-dask).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import contextvars
import functools
import importlib
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Self, TypeVar, cast

# and, named on first use (below): ProcessPoolTaskRunner, RemoteTaskRunner, BodyHandle, run_task_body
__all__ = ["TaskRunner", "InProcessTaskRunner", "ThreadPoolTaskRunner", "background_loop"]

T = TypeVar("T")



class TaskRunner:
    """Base class. Subclasses implement ``submit`` and, if they hold resources, start/shutdown."""

    def duplicate(self) -> TaskRunner:
        """A fresh, unstarted runner with the same configuration (one per flow run)."""
        return type(self)()

    def start(self) -> None:
        """Acquire resources (called when the flow run starts)."""

    def shutdown(self) -> None:
        """Release resources; called after every submitted task has finished."""

    @contextlib.contextmanager
    def started(self) -> Iterator[Self]:
        self.start()
        try:
            yield self
        finally:
            self.shutdown()

    def submit(self, call: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Start ``call`` (it drives one task run; plait passes it) and return a future of
        what it returns. A runner may run it anywhere, as long as the future completes."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class InProcessTaskRunner(TaskRunner):
    """Runs each submitted task at once, in the submitting thread (the default)."""

    def submit(self, call: Callable[[], T]) -> concurrent.futures.Future[T]:
        try:
            return _Settled(call())
        except BaseException as exc:  # the engine turns task errors into states; this is a crash
            if not isinstance(exc, Exception):
                raise
            return _Settled(None, exc)


class _Settled(concurrent.futures.Future[T]):
    """A future born finished, as the in-process runner's are. A plain Future builds a lock
    and a condition at once (about 1 KB; a 100,000-task map keeps 100,000 of them); this one
    answers without them, and makes its condition only if ``concurrent.futures.wait`` or
    ``as_completed`` asks for it."""

    def __init__(self, result: T | None, exception: BaseException | None = None) -> None:  # no super(): no lock
        self._state = "FINISHED"
        self._result = result
        self._exception = exception

    # made on first use, by concurrent.futures.wait/as_completed over a mix of futures
    @functools.cached_property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        return threading.Condition()

    @functools.cached_property
    def _waiters(self) -> list[Any]:  # type: ignore[override]
        return []

    @functools.cached_property
    def _done_callbacks(self) -> list[Any]:
        return []

    def done(self) -> bool:
        return True

    def running(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def cancel(self) -> bool:
        return False

    def result(self, timeout: float | None = None) -> T:
        if self._exception is not None:
            raise self._exception
        return cast(T, self._result)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return self._exception

    def add_done_callback(self, fn: Callable[[concurrent.futures.Future[T]], object]) -> None:
        fn(self)


class ThreadPoolTaskRunner(TaskRunner):
    """Runs submitted tasks concurrently on up to ``max_workers`` threads (the default runner,
    with ``PLAIT_TASK_RUNNER_MAX_WORKERS`` threads, 32 unless set).

    Leaner than ``concurrent.futures.ThreadPoolExecutor`` for the many tiny runs a ``.map``
    makes: a run waits in one deque, and its future shares the runner's condition instead of
    building a lock and a condition of its own. Threads start as work arrives and no idle
    one is left, so a flow that only calls tasks directly starts none.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is not None and (not isinstance(max_workers, int) or max_workers < 1):
            from plait.exceptions import InvalidOptions

            raise InvalidOptions(f"ThreadPoolTaskRunner max_workers must be an integer >= 1, got {max_workers!r}")
        self.max_workers = max_workers
        self._lock = threading.Lock()
        self._work_ready = threading.Condition(self._lock)  # idle threads wait here
        self._settled = threading.Condition()  # this runner's futures signal and wait here
        self._queue: collections.deque[tuple[contextvars.Context, Callable[[], Any], _Pending[Any]]]
        self._queue = collections.deque()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting for work and not yet called
        self._closing = False

    def duplicate(self) -> ThreadPoolTaskRunner:
        return ThreadPoolTaskRunner(self.max_workers)

    @functools.cached_property
    def _default_limit(self) -> int:
        """Threads when ``max_workers`` is not given: the setting, read once (not per run)."""
        from plait.settings import get_settings

        return get_settings().task_runner_max_workers

    def shutdown(self) -> None:
        with self._lock:
            self._closing = True
            self._work_ready.notify_all()
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join()
        with self._lock:
            self._closing = False  # usable again (a flow run starts and stops its runner)
            self._idle = 0  # the threads that waited have ended

    def submit(self, call: Callable[[], T]) -> concurrent.futures.Future[T]:
        future: _Pending[T] = _Pending(self._settled)
        # each task sees the submitting flow's context (run ids, loggers)
        item = (contextvars.copy_context(), call, future)
        with self._lock:
            self._queue.append(item)
            if self._idle:
                self._idle -= 1
                self._work_ready.notify()
            elif len(self._threads) < (self.max_workers or self._default_limit):
                thread = threading.Thread(target=self._work, name=f"plait-task-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
        return future

    def _work(self) -> None:
        queue = self._queue
        while True:
            with self._lock:
                while not queue:
                    if self._closing:
                        return
                    self._idle += 1  # submit takes it back when it wakes this thread
                    self._work_ready.wait()
                context, call, future = queue.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = context.run(call)
            except BaseException as exc:  # the engine turns task errors into states; this is a crash
                future.set_exception(exc)
            else:
                future.set_result(result)

    def __repr__(self) -> str:
        return f"ThreadPoolTaskRunner(max_workers={self.max_workers})"


class _Pending(concurrent.futures.Future[T]):
    """A future that shares its runner's condition (a plain one builds its own lock and
    condition, about 1 KB each; a 100,000-task map keeps 100,000 futures). Waiting loops
    until this future is done, since the condition also wakes for its siblings."""

    def __init__(self, condition: threading.Condition) -> None:  # no super(): no lock of its own
        self._condition = condition
        self._state = "PENDING"
        self._result = None
        self._exception = None
        self._waiters: list[Any] = []  # what set_result and concurrent.futures.wait expect
        self._done_callbacks: list[Any] = []

    def _wait(self, timeout: float | None) -> None:
        if self._state not in _SETTLED_STATES:
            with self._condition:
                if not self._condition.wait_for(lambda: self._state in _SETTLED_STATES, timeout):
                    raise concurrent.futures.TimeoutError()

    def result(self, timeout: float | None = None) -> T:
        self._wait(timeout)
        return super().result(0)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._wait(timeout)
        return super().exception(0)


_SETTLED_STATES = frozenset({"FINISHED", "CANCELLED", "CANCELLED_AND_NOTIFIED"})


class _LoopThread:
    """One event loop in a daemon thread, for async tasks submitted from sync code."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def get(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                threading.Thread(target=run, name="plait-event-loop", daemon=True).start()
                ready.wait()
                self._loop = loop
            return self._loop

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.get())


background_loop = _LoopThread()

# The runners that ship task bodies to other processes (ProcessPoolTaskRunner, and the base
# of plait-dask's) live in plait._process_runner, which builds on TaskRunner above: this
# module names them on first use instead of importing that one, so neither imports the other.
_REMOTE = ("BodyHandle", "ProcessPoolTaskRunner", "RemoteTaskRunner", "run_task_body")


def __getattr__(name: str) -> Any:
    if name in _REMOTE:
        value = getattr(importlib.import_module("plait._process_runner"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'plait.task_runners' has no attribute {name!r}")
