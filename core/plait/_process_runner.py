"""Task runners that run task bodies in other processes: a process pool here, Dask in plait-dask.

Each task run's state machine stays in the flow's process, driven by a thread as
``ThreadPoolTaskRunner`` drives it: waiting for upstream runs, caching, retries, timeouts,
result persistence and every record (states, task runs, results, logs) happen there, so a
worker needs no database and no plait settings. Only the body — the user's function and
its arguments, pickled with cloudpickle — is shipped; the worker sends back the value or
the exception, and the log lines the body wrote, which the flow's process then records.

The seam: while a driver thread runs a task's state machine, ``body_executor_var`` holds
the runner's ``run_body``; the engine's ``Call`` of a task body hands itself to it instead
of calling the function in place. A subclass only says how to start and stop its backend
and how to submit ``run_task_body(payload)`` to it (``submit_body``).
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import logging
import os
import threading
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, Protocol, cast

from plait._context import body_executor_var
from plait.task_runners import TaskRunner

__all__ = ["BodyHandle", "RemoteTaskRunner", "ProcessPoolTaskRunner", "run_task_body"]


class BodyHandle(Protocol):
    """What ``submit_body`` returns: ``concurrent.futures.Future`` and Dask's ``Future`` both fit."""

    def result(self, timeout: float | None = None) -> Any: ...


class RemoteTaskRunner(TaskRunner):
    """Base class of runners whose task bodies run elsewhere.

    Subclasses implement ``submit_body(payload, label) -> handle`` (run ``run_task_body(payload)``
    somewhere and return a handle with ``result()``), and usually ``start_backend``,
    ``stop_backend`` and ``driver_threads``. Async tasks are not shipped: they run on the
    flow's event loop as with every runner.
    """

    def __init__(self) -> None:
        self._drivers: concurrent.futures.ThreadPoolExecutor | None = None
        self._functions: dict[int, tuple[Callable[..., Any], bytes]] = {}  # id(fn) -> (fn, pickled)
        self._lock = threading.Lock()

    # -- what subclasses provide -------------------------------------------------------------
    def start_backend(self) -> None:
        """Start (or connect to) whatever runs the bodies."""

    def stop_backend(self) -> None:
        """Stop what ``start_backend`` started; called once every task run has ended."""

    def driver_threads(self) -> int:
        """How many task runs may be in flight at once (each waits on its body in a thread)."""
        return 8

    def submit_body(self, payload: bytes, label: str) -> BodyHandle:
        """Run ``run_task_body(payload)`` on the backend; return a handle of its bytes.
        ``label`` is the task run's name ("square-3"), e.g. for the backend's task key."""
        raise NotImplementedError

    def where(self) -> str:
        """The backend, for error messages ("a worker process", "the Dask cluster at ...")."""
        return "a worker process"

    # -- the TaskRunner interface ------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self._drivers is not None:
                return
            self.start_backend()
            self._drivers = concurrent.futures.ThreadPoolExecutor(self.driver_threads(),
                                                                  thread_name_prefix="plait-task-driver")

    def shutdown(self) -> None:
        with self._lock:
            drivers, self._drivers = self._drivers, None
        if drivers is not None:
            drivers.shutdown(wait=True)
            self._functions.clear()
            self.stop_backend()

    def submit(self, call: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        if self._drivers is None:  # submitted before the flow started the runner
            self.start()
        assert self._drivers is not None

        def drive() -> Any:
            token = body_executor_var.set(self.run_body)
            try:
                return call()
            finally:
                body_executor_var.reset(token)

        # each task sees the submitting flow's context (run ids, loggers, the recorder)
        return self._drivers.submit(contextvars.copy_context().run, drive)

    # -- one body ----------------------------------------------------------------------------
    def run_body(self, action: Any) -> Any:
        """Perform the engine's ``Call`` of a task body on the backend; return an ``Outcome``."""
        from plait._engine import Outcome

        task_ctx = action.task_ctx
        task_name = getattr(task_ctx.task, "name", "?")
        try:
            payload = self._payload(action, task_name)
        except Exception as exc:
            return Outcome(error=exc)
        try:
            answer = self.submit_body(payload, task_ctx.task_run.name).result()
        except Exception as exc:  # the backend lost the body (a worker died, the cluster went away)
            self.backend_failed(exc)
            from plait.exceptions import PlaitError

            error = PlaitError(f"{action.what} of task {task_name!r} did not come back from {self.where()}: "
                               f"{type(exc).__name__}: {exc}")
            error.__cause__ = exc
            return Outcome(error=error)
        ok, value, logs = _cloudpickle().loads(answer)
        _record_logs(task_ctx, logs)
        return Outcome(value) if ok else Outcome(error=value)

    def backend_failed(self, exc: BaseException) -> None:
        """Called when a body did not come back; e.g. replace a broken pool."""

    def _payload(self, action: Any, task_name: str) -> bytes:
        from plait.exceptions import SerializationError

        cloudpickle = _cloudpickle()

        fn = action.fn
        cached = self._functions.get(id(fn))
        if cached is None or cached[0] is not fn:
            try:
                cached = (fn, cloudpickle.dumps(fn))
            except Exception as exc:
                raise SerializationError(
                    f"task {task_name!r} cannot run in {self.where()}: its function "
                    f"{getattr(fn, '__qualname__', fn)!r} cannot be pickled ({type(exc).__name__}: {exc}). "
                    "Define it at module level without references to locks, open files or clients, "
                    "or run this flow with ThreadPoolTaskRunner"
                ) from exc
            self._functions[id(fn)] = cached
        task_ctx = action.task_ctx
        run = task_ctx.task_run
        flow_run = task_ctx.flow_run
        details = {
            "args": action.args, "kwargs": action.kwargs, "parameters": task_ctx.parameters,
            "timeout": action.timeout, "what": action.what, "log_prints": task_ctx.log_prints,
            "task": {"name": task_name},
            "task_run": {"id": run.id, "name": run.name, "flow_run_id": run.flow_run_id,
                         "run_count": run.run_count, "tags": list(run.tags or ())},
            "flow_run": None if flow_run is None else {"id": flow_run.id, "name": flow_run.name},
        }
        try:
            rest = cloudpickle.dumps(details)
        except Exception as exc:
            raise SerializationError(
                f"task {task_name!r} cannot run in {self.where()}: its arguments cannot be pickled "
                f"({type(exc).__name__}: {exc}). Pass plain data (no locks, open files or clients), "
                "or run this flow with ThreadPoolTaskRunner"
            ) from exc
        return cast(bytes, cloudpickle.dumps((cached[1], rest)))


def _cloudpickle() -> Any:
    import cloudpickle  # type: ignore[import-untyped]  # ships no type hints

    return cloudpickle


def _record_logs(task_ctx: Any, logs: list[tuple[Any, ...]]) -> None:
    """Store the lines the body logged remotely with its run, as if logged here (masked here:
    secrets registered in the flow's process are unknown to the worker)."""
    if not logs:
        return
    from plait._masking import mask

    recorder = task_ctx.flow_context.recorder if task_ctx.flow_context is not None else None
    if recorder is None:
        return
    for flow_run_id, task_run_id, level, name, message, created in logs:
        recorder.add_log(flow_run_id, task_run_id, level, name, mask(message), created)


# -- in the worker ------------------------------------------------------------------------------
class _LogCollector:
    """Stands in for the recorder in a worker: keeps the body's log lines to send back."""

    def __init__(self) -> None:
        self.lines: list[tuple[Any, ...]] = []

    def add_log(self, flow_run_id: Any, task_run_id: Any, level: int, name: str, message: str,
                created: datetime | None = None) -> None:
        self.lines.append((flow_run_id, task_run_id, level, name, message, created or datetime.now(UTC)))


def run_task_body(payload: bytes) -> bytes:
    """Run one shipped task body (in a worker process) and return ``(ok, value, logs)``
    pickled: the value or the exception, and the lines the body logged.

    Inside the body, ``get_run_logger()``, ``plait.runtime.task_run`` and ``log_prints``
    work; their records come back to the flow's process. The body has no flow context:
    ``plait.runtime.flow_run`` is empty there and a task called inside it runs on its own.
    """
    from plait._context import TaskRunContext, task_run_var

    cloudpickle = _cloudpickle()

    fn_bytes, rest = cloudpickle.loads(payload)
    fn = cloudpickle.loads(fn_bytes)
    d = cloudpickle.loads(rest)
    collector = _LogCollector()
    flow_run = SimpleNamespace(**d["flow_run"]) if d["flow_run"] else None
    flow_ctx = SimpleNamespace(recorder=collector, flow_run=flow_run, parameters={}, log_prints=d["log_prints"])
    ctx = TaskRunContext(SimpleNamespace(**d["task"]), SimpleNamespace(**d["task_run"]),  # type: ignore[arg-type]
                         d["parameters"], flow_ctx, d["log_prints"])  # type: ignore[arg-type]
    if d["log_prints"]:
        from plait._logging import install_print_capture

        install_print_capture()
    token = task_run_var.set(ctx)
    try:
        ok, value = True, _call(fn, d["args"], d["kwargs"], d["timeout"], d["what"])
    except Exception as exc:
        ok, value = False, exc
        exc.add_note(f"raised in process {os.getpid()} on {os.uname().nodename}:\n"
                     + "".join(traceback.format_exception(exc)).rstrip())
    finally:
        task_run_var.reset(token)
    return _answer(ok, value, collector.lines, d["what"])


def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None,
          what: str) -> Any:
    if timeout is None:
        return fn(*args, **kwargs)
    from plait._engine import _call_with_timeout

    # as in the thread pool: the body cannot be killed; it runs on in the worker, the run fails
    return _call_with_timeout(fn, args, kwargs, timeout, what)


def _answer(ok: bool, value: Any, logs: list[tuple[Any, ...]], what: str) -> bytes:
    cloudpickle = _cloudpickle()
    try:
        return cast(bytes, cloudpickle.dumps((ok, value, logs)))
    except Exception as exc:
        from plait.exceptions import PlaitError, SerializationError

        if ok:
            problem: Exception = SerializationError(
                f"{what} returned a {type(value).__name__} that cannot be pickled to send it back from the "
                f"worker ({type(exc).__name__}: {exc}); return plain data")
        else:
            problem = PlaitError(f"{type(value).__name__}: {value} (the exception itself cannot be pickled)")
        return cast(bytes, cloudpickle.dumps((False, problem, logs)))


# -- a local process pool -----------------------------------------------------------------------
class ProcessPoolTaskRunner(RemoteTaskRunner):
    """Runs task bodies in a pool of ``max_workers`` processes (default: one per CPU).

    For CPU-bound pure-Python tasks, which threads cannot run in parallel. Functions,
    arguments and return values travel by cloudpickle; the worker processes are started
    with ``spawn``, so a script that runs a flow must do it under
    ``if __name__ == "__main__":``.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is not None and (
            not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1
        ):
            from plait.exceptions import InvalidOptions

            raise InvalidOptions(f"ProcessPoolTaskRunner max_workers must be an integer >= 1, got {max_workers!r}")
        super().__init__()
        self.max_workers = max_workers
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def duplicate(self) -> ProcessPoolTaskRunner:
        return ProcessPoolTaskRunner(self.max_workers)

    def _workers(self) -> int:
        return self.max_workers or os.cpu_count() or 1

    def driver_threads(self) -> int:
        # enough in flight to keep every process busy while others' results are recorded
        return 2 * self._workers() + 2

    def start_backend(self) -> None:
        import multiprocessing

        self._pool = concurrent.futures.ProcessPoolExecutor(self._workers(),
                                                            mp_context=multiprocessing.get_context("spawn"))

    def stop_backend(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def submit_body(self, payload: bytes, label: str) -> BodyHandle:
        assert self._pool is not None, "the runner is not started"
        return self._pool.submit(run_task_body, payload)

    def backend_failed(self, exc: BaseException) -> None:
        # a worker that died breaks the whole pool: the next bodies get a new one
        if isinstance(exc, concurrent.futures.process.BrokenProcessPool):
            with self._lock:
                pool = self._pool
                if pool is not None and getattr(pool, "_broken", False):
                    self.start_backend()
                    pool.shutdown(wait=False, cancel_futures=True)
                    logging.getLogger("plait.task_runners").warning(
                        "a worker process of %r died; started a new pool", self)

    def __repr__(self) -> str:
        return f"ProcessPoolTaskRunner(max_workers={self.max_workers})"

