"""``@task``: a plain function, orchestrated.

Calling a task runs it (inside a flow or not) and returns its value; ``.submit()`` hands it
to the flow's task runner and returns a future; ``.map()`` fans out over iterables.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Coroutine, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, Literal, ParamSpec, TypeVar, overload

from plait._callables import Signature, check_name_template, jsonable, new_id, render_name
from plait._context import FlowRunContext, flow_run_var, run_tags, task_run_var, transaction_var
from plait._engine import ALLOWED, drive_async, drive_sync, task_steps
from plait._hooks import HookMethods, with_hooks
from plait._options import FlowOptions, TaskOptions, build_options
from plait._runs import TaskRun
from plait.exceptions import InvalidOptions, ParameterBindError
from plait.futures import (
    PlaitFuture,
    PlaitFutureList,
    _running_loop,
    allow_failure,
    iter_futures,
    iter_values,
    quote,
    value_of,
)
from plait.states import State, StateType

__all__ = ["Task", "task", "unmapped", "exponential_backoff"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
logger = logging.getLogger("plait.tasks")
_UNSET = object()


def exponential_backoff(backoff_factor: float) -> Callable[[int], list[float]]:
    """``retry_delay_seconds`` that doubles: ``backoff_factor``, then twice, four times that...

        @task(retries=4, retry_delay_seconds=exponential_backoff(backoff_factor=10))  # 10, 20, 40, 80 s
    """
    if isinstance(backoff_factor, bool) or not isinstance(backoff_factor, (int, float)) or backoff_factor < 0:
        raise ValueError(f"exponential_backoff needs a backoff_factor >= 0 (seconds), got {backoff_factor!r}")

    def delays(retries: int) -> list[float]:
        return [float(backoff_factor) * 2**n for n in range(retries)]

    return delays


class unmapped:  # noqa: N801 - reads like a function at the call site
    """Wrap an argument of ``.map()`` that every mapped run gets whole."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class Task(HookMethods, Generic[P, R]):
    """A function whose calls become recorded task runs. Build with ``@task``."""

    options: TaskOptions

    def __init__(self, fn: Callable[P, R], options: TaskOptions) -> None:
        if not callable(fn):
            raise TypeError(f"@task decorates a function, got {fn!r}")
        self.fn = fn
        self.options = options
        self.name = options.name or fn.__name__
        self.description = options.description or inspect.getdoc(fn)
        self.task_key = f"{_module_key(fn)}.{fn.__qualname__}"
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = Signature(fn)
        check_name_template(options.task_run_name, self.signature, f"task {self.name!r}", "task_run_name")
        functools.update_wrapper(self, fn)
        if options.log_prints:
            from plait._logging import install_print_capture

            install_print_capture()

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        """``@task`` on a method: ``obj.load(x)``, ``obj.load.submit(x)`` and
        ``obj.load.map(xs)`` run the task with ``obj`` first (every mapped run gets it
        whole); under ``@classmethod``, the class. On the class itself: the task as it is."""
        if instance is None:
            return self
        return _BoundTask(self, instance)

    def on_commit(self, fn: F) -> F:
        """Call ``fn(txn)`` when a transaction this task's completed run was staged in commits."""
        return self._add_hook("on_commit", fn)

    def on_rollback(self, fn: F) -> F:
        """Call ``fn(txn)`` when a transaction this task's completed run was staged in rolls
        back (another task failed, say): undo the run's side effects there."""
        return self._add_hook("on_rollback", fn)

    def with_options(self, **changes: Any) -> Task[P, R]:
        """A copy of this task with some options replaced (validated like the decorator)."""
        return Task(self.fn, build_options(TaskOptions, self.options, changes))

    def __repr__(self) -> str:
        return f"Task({self.name!r})"

    # -- calling ---------------------------------------------------------------------------
    # Typing: mypy allows no keyword parameter beside ``*args: P.args, **kwargs: P.kwargs``,
    # so a call is checked against the function's own signature unless it passes
    # ``return_state=`` or ``wait_for=``; those calls get the right return type, with the
    # function's arguments unchecked. An async task is a ``Task[P, Coroutine[Any, Any, R]]``:
    # calling it gives the coroutine, while submit/map give futures of ``R`` itself. Passing a
    # future for a parameter of its value type runs fine but is a type error: no ParamSpec
    # can say "T or PlaitFuture[T]": pass ``future.result()``, or ``cast(int, future)`` to keep
    # the downstream run waiting on the future instead of the flow.
    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def __call__(
        self: Task[P, Coroutine[Any, Any, T]], *args: Any, return_state: Literal[True],
        wait_for: Iterable[Any] | None = None, **kwargs: Any,
    ) -> Coroutine[Any, Any, State]: ...
    @overload
    def __call__(
        self, *args: Any, return_state: Literal[True], wait_for: Iterable[Any] | None = None, **kwargs: Any
    ) -> State: ...
    @overload
    def __call__(
        self, *args: Any, return_state: Literal[False], wait_for: Iterable[Any] | None = None, **kwargs: Any
    ) -> R: ...
    @overload
    def __call__(self, *args: Any, wait_for: Iterable[Any] | None, **kwargs: Any) -> R: ...
    @overload
    def __call__(self, *args: Any, return_state: bool, wait_for: Iterable[Any] | None = None, **kwargs: Any) -> Any: ...
    # `Any` for the keywords: the first overload's P.kwargs may name them with any type
    def __call__(self, *args: Any, return_state: Any = False, wait_for: Any = None, **kwargs: Any) -> Any:
        """Run now and return the value (or the final State with ``return_state=True``).

        An async task returns an awaitable.
        """
        run, steps, flow_ctx = self._prepare(args, kwargs, wait_for)
        if self.is_async:
            return self._call_async(steps, flow_ctx, return_state)
        state = drive_sync(steps)
        return self._finish_direct(state, flow_ctx, return_state)

    async def _call_async(self, steps: Any, flow_ctx: Any, return_state: bool) -> Any:
        state = await drive_async(steps)
        return self._finish_direct(state, flow_ctx, return_state)

    def _finish_direct(self, state: State, flow_ctx: FlowRunContext | None, return_state: bool) -> Any:
        if flow_ctx is None:
            _flush_standalone_run()
        if return_state:
            return state
        return value_of(state)

    @overload
    def submit(self: Task[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs) -> PlaitFuture[T]: ...
    @overload
    def submit(self: Task[P, T], *args: P.args, **kwargs: P.kwargs) -> PlaitFuture[T]: ...
    @overload
    def submit(
        self: Task[P, Coroutine[Any, Any, T]], *args: Any, wait_for: Iterable[Any] | None, **kwargs: Any
    ) -> PlaitFuture[T]: ...
    @overload
    def submit(self: Task[P, T], *args: Any, wait_for: Iterable[Any] | None, **kwargs: Any) -> PlaitFuture[T]: ...
    def submit(self, *args: Any, wait_for: Any = None, **kwargs: Any) -> Any:
        """Start a run on the flow's task runner; return its future at once."""
        run, steps, flow_ctx = self._prepare(args, kwargs, wait_for)
        return self._launch(run, steps, flow_ctx)

    # map's arguments are iterables of (or unmapped) parameters: no ParamSpec says that
    @overload
    def map(
        self: Task[P, Coroutine[Any, Any, T]], *args: Any, wait_for: Iterable[Any] | None = None, **kwargs: Any
    ) -> PlaitFutureList[T]: ...
    @overload
    def map(
        self: Task[P, T], *args: Any, wait_for: Iterable[Any] | None = None, **kwargs: Any
    ) -> PlaitFutureList[T]: ...
    def map(self, *args: Any, wait_for: Iterable[Any] | None = None, **kwargs: Any) -> Any:
        """Submit one run per item of the iterable arguments. Other arguments (and strings)
        go whole to every run, as does an iterable wrapped in ``unmapped(x)``."""
        columns: dict[int | str, Sequence[Any]] = {}
        constants: dict[int | str, Any] = {}
        sources: list[tuple[str, str | None]] = []  # upstream runs whose result is mapped over
        arguments: list[tuple[int | str, Any]] = [*enumerate(args), *kwargs.items()]
        for key, value in arguments:
            if isinstance(value, unmapped):
                constants[key] = value.value
            elif isinstance(value, PlaitFuture):  # map over an upstream's result
                columns[key] = list(value.result())
                sources.append((value.task_run.id, key if isinstance(key, str) else self._param_name(key)))
            elif isinstance(value, (str, bytes, bytearray)) or not isinstance(value, Iterable):
                constants[key] = value  # broadcast to every run, as Prefect does
            else:
                columns[key] = value if isinstance(value, (list, tuple)) else list(value)
        if not columns:
            raise ParameterBindError(f"task {self.name!r}.map() needs at least one iterable argument")
        lengths = {len(col) for col in columns.values()}
        if len(lengths) > 1:
            sizes = ", ".join(f"{k if isinstance(k, str) else f'#{k + 1}'}={len(c)}" for k, c in columns.items())
            raise ParameterBindError(f"task {self.name!r}.map() got iterables of different lengths ({sizes})")
        wait_list = list(wait_for) if wait_for is not None else None
        futures: PlaitFutureList[Any] = PlaitFutureList()
        positional = sorted(k for k in (*columns, *constants) if isinstance(k, int))
        named = [k for k in (*columns, *constants) if isinstance(k, str)]
        for i in range(lengths.pop()):
            call_args = tuple(columns[k][i] if k in columns else constants[k] for k in positional)
            call_kwargs = {k: columns[k][i] if k in columns else constants[k] for k in named}
            run, steps, flow_ctx = self._prepare(call_args, call_kwargs, wait_list, sources)
            futures.append(self._launch(run, steps, flow_ctx))
        return futures

    def _param_name(self, position: int) -> str | None:
        names = self.signature.names
        return names[position] if position < len(names) else None

    def _launch(self, run: TaskRun, steps: Any, flow_ctx: FlowRunContext | None) -> PlaitFuture[Any]:
        if self.is_async:
            loop = flow_ctx.loop if flow_ctx is not None else None
            if loop is not None and _running_loop() is loop:
                handle: Any = loop.create_task(drive_async(steps))
            else:
                from plait.task_runners import background_loop

                handle = background_loop.submit(drive_async(steps))
        elif flow_ctx is not None:
            handle = flow_ctx.task_runner.submit(lambda: drive_sync(steps))
        else:
            from plait.task_runners import InProcessTaskRunner

            handle = InProcessTaskRunner().submit(lambda: _standalone(steps))
        future: PlaitFuture[Any] = PlaitFuture(run, handle)
        if flow_ctx is not None:
            flow_ctx.futures.append(future)
        txn = transaction_var.get()
        if txn is not None:  # a transaction commits once its runs have finished
            txn.futures.append(future)
        return future

    # -- one run ---------------------------------------------------------------------------
    def _prepare(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        wait_for: Iterable[Any] | None,
        sources: list[tuple[str, str | None]] | None = None,
    ) -> tuple[TaskRun, Any, Any]:
        from plait._recording import current_recorder

        flow_ctx = flow_run_var.get()
        parameters = self.signature.bind(f"task {self.name!r}", args, kwargs)
        flow_run_id: str | None
        if flow_ctx is not None:
            recorder = flow_ctx.recorder
            dynamic_key = flow_ctx.next_dynamic_key(self.task_key)
            flow_run_id = flow_ctx.flow_run.id
        else:
            recorder = current_recorder()
            dynamic_key = 0
            parent_task = task_run_var.get()
            flow_run_id = parent_task.task_run.flow_run_id if parent_task else None
        run = TaskRun(
            id=new_id(),
            flow_run_id=flow_run_id,
            task_name=self.name,
            task_key=self.task_key,
            name=(render_name(self.options.task_run_name, parameters, f"task {self.name!r}", "task_run_name")
                  if self.options.task_run_name else f"{self.name}-{dynamic_key}"),
            parameters={k: jsonable(v) for k, v in parameters.items()},
            state=State(StateType.PENDING),
            dynamic_key=dynamic_key,
            tags=run_tags(self.options.tags),
        )
        recorder.add_task_run(run)
        recorder.add_state(run, run.state)
        upstream = self._upstream(run, parameters, wait_for, flow_ctx, recorder)
        if any(type(v) is quote for v in parameters.values()):  # passed on as they are, unopened
            parameters = {k: v.value if type(v) is quote else v for k, v in parameters.items()}
        for upstream_id, name in sources or ():
            recorder.add_edge(upstream_id, run.id, "data", name)
        steps = task_steps(self, run, parameters, upstream, flow_ctx, recorder)
        if self.options.has_hooks:
            steps = with_hooks(steps, self, run)
        return run, steps, flow_ctx

    def _upstream(
        self, run: TaskRun, parameters: dict[str, Any], wait_for: Any, flow_ctx: Any, recorder: Any
    ) -> list[tuple[PlaitFuture[Any], str, str | None]]:
        """Futures to wait for, and dependency edges (futures and results passed in)."""
        upstream: list[tuple[PlaitFuture[Any], str, str | None]] = []
        seen: set[tuple[str, str | None]] = set()
        items = list(parameters.items()) + [(None, w) for w in (wait_for or ())]
        for name, value in items:
            kind = "data" if name is not None else "wait_for"
            allowed = kind + ALLOWED if isinstance(value, allow_failure) else kind
            for future in iter_futures(value):
                if allowed is not kind:
                    future._observed = True  # its failure is handled: the flow does not fail for it
                upstream.append((future, allowed, name))
                if (future.task_run.id, name) not in seen:
                    seen.add((future.task_run.id, name))
                    recorder.add_edge(future.task_run.id, run.id, kind, name)
            if flow_ctx is not None and flow_ctx.results:
                for item in iter_values(value):
                    producer = flow_ctx.producer_of(item)
                    if producer is not None and (producer, name) not in seen:
                        seen.add((producer, name))
                        recorder.add_edge(producer, run.id, kind, name)
        return upstream

    # -- used by the engine ----------------------------------------------------------------
    def call_arguments(self, parameters: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return self.signature.call_arguments(parameters)

    def log_prints_for(self, flow_ctx: FlowRunContext | None) -> bool:
        if self.options.log_prints is not None:
            return self.options.log_prints
        return flow_ctx.log_prints if flow_ctx is not None else False

    def persists_for(self, flow_ctx: FlowRunContext | None) -> bool:
        options = self.options
        if options.persist_result is not None:
            return options.persist_result
        if options.caches or not options.cache_result_in_memory:
            return True
        if flow_ctx is not None:
            return flow_ctx.persist_results
        from plait.settings import get_settings

        return get_settings().persist_results

    def storage(self, flow_ctx: FlowRunContext | None) -> Any:
        from plait.results import resolve_storage

        spec = self.options.result_storage
        if spec is None and flow_ctx is not None:
            spec = flow_ctx.flow.options.result_storage
        return resolve_storage(spec)

    def serializer(self, flow_ctx: FlowRunContext | None) -> str:
        if self.options.result_serializer:
            return self.options.result_serializer
        if flow_ctx is not None:
            flow_options: FlowOptions = flow_ctx.flow.options  # the context holds its flow untyped (no import cycle)
            if flow_options.result_serializer:
                return flow_options.result_serializer
        from plait.settings import get_settings

        return get_settings().result_serializer

    def cache_key(self, task_ctx: Any, parameters: dict[str, Any]) -> str | None:
        from plait.cache_policies import Unhashable, compute_cache_key

        if self.options.result_storage_key is not None:
            return self._storage_key(task_ctx, parameters)
        try:
            return compute_cache_key(self.options, task_ctx, self.task_key, parameters)
        except Unhashable as exc:
            self.run_logger(task_ctx.task_run).warning("not cached this time: %s", exc)
        except Exception as exc:
            self.run_logger(task_ctx.task_run).warning(
                "cache key could not be computed (%s: %s); running without cache", type(exc).__name__, exc
            )
        return None

    def _storage_key(self, task_ctx: Any, parameters: dict[str, Any]) -> str:
        """``result_storage_key`` rendered; a template that does not fit fails the run."""
        template = self.options.result_storage_key
        assert template is not None
        flow_ctx = task_ctx.flow_context
        try:
            key = template.format(parameters=parameters, task_run=task_ctx.task_run,
                                  flow_run=flow_ctx.flow_run if flow_ctx is not None else None)
        except (KeyError, AttributeError, IndexError, ValueError) as exc:
            raise InvalidOptions(
                f"task {self.name!r} result_storage_key {template!r} cannot be filled in ({type(exc).__name__}: "
                f"{exc}); it may use {{parameters[name]}} (parameters: {', '.join(parameters) or 'none'}), "
                "{flow_run.name}, {flow_run.id}, {task_run.name}, {task_run.id}"
            ) from None
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise InvalidOptions(f"task {self.name!r} result_storage_key rendered to {key!r}, which is not a "
                                 "relative path inside the result storage")
        return key

    def encrypts_for(self, flow_ctx: FlowRunContext | None) -> bool:
        """Whether persisted results are encrypted: the task's option, the flow's, the setting."""
        if self.options.encrypt_result is not None:
            return self.options.encrypt_result
        if flow_ctx is not None and flow_ctx.flow.options.encrypt_result is not None:
            return bool(flow_ctx.flow.options.encrypt_result)
        from plait.settings import get_settings

        return get_settings().encrypt_results

    def declared_return(self) -> Any:
        """The function's return annotation (resolved), or ``Any`` when it has none."""
        hint = self.__dict__.get("_declared_return", _UNSET)
        if hint is _UNSET:
            import typing

            try:
                hint = typing.get_type_hints(self.fn).get("return", Any)
            except Exception:  # a forward reference that does not resolve: nothing to check against
                hint = Any
            self.__dict__["_declared_return"] = hint
        return hint

    def load_cached(self, storage: Any, key: str) -> tuple[Any, str] | None:
        """The cached value and its reference, or None to run the task: when there is no
        entry, or it is refused (unsigned, changed), unreadable, or not of the declared type."""
        from plait.results import ResultMissing, ResultRefused, read_result, storage_uri, type_mismatch, type_name

        try:
            value = read_result(storage, key)
        except ResultMissing:
            return None
        except ResultRefused as exc:  # never unpickled: maybe planted, maybe another key
            logger.warning("task %r: %s; running the task, its result replaces the file", self.name, exc)
            return None
        except Exception as exc:  # an unreadable entry is a miss, not a failure
            logger.warning("cached result %s of task %r could not be read (%s); running the task", key, self.name, exc)
            return None
        ref = f"{storage_uri(storage)}/{key}"
        declared = self.declared_return()
        problem = type_mismatch(value, declared)
        if problem is not None:
            logger.warning(
                "cached result %s of task %r does not match its return annotation %s (%s); running the task",
                ref, self.name, type_name(declared), problem,
            )
            return None
        return value, ref

    def result_ref(self, storage: Any, key: str) -> str:
        """Where ``save_result`` puts the result at ``key`` (no I/O)."""
        from plait.results import storage_uri

        return f"{storage_uri(storage)}/{key}"

    def save_result(self, storage: Any, key: str, value: Any, run: TaskRun, flow_ctx: Any, recorder: Any) -> str:
        from plait.results import storage_uri, write_result

        expiration = self.options.cache_expiration
        expires_at = datetime.now(UTC) + expiration if expiration and run.cache_key else None
        serializer = self.serializer(flow_ctx)
        ref = write_result(storage, key, value, serializer, expires_at=expires_at, owner=f"task {self.name!r}",
                           encrypt=self.encrypts_for(flow_ctx))
        recorder.add_result(run.id, storage_uri(storage), key, serializer, run.cache_key, expires_at)
        return ref

    def run_logger(self, run: TaskRun) -> Any:
        from plait._logging import run_logger_for

        return run_logger_for(run.flow_run_id, run.id, f"Task run {run.name!r}")


# A flow file loaded by a launcher (plait.infrastructure: a worker, ``plait run``, a retry) is
# imported under this prefix; run as ``python file.py`` it is ``__main__``.
_ENTRYPOINT_PREFIX = "_plait_entrypoint_"


def _module_key(fn: Callable[..., Any]) -> str:
    """The module part of a task's key: a flow file's own name (``etl`` for etl.py) whether it
    runs as ``python etl.py`` or is loaded from its entrypoint, so caches and the results a
    retry reuses are found either way; an imported module's dotted name otherwise."""
    module = getattr(fn, "__module__", None) or "__main__"
    if module.startswith(_ENTRYPOINT_PREFIX):
        return module[len(_ENTRYPOINT_PREFIX):] or module
    if module == "__main__":
        import sys

        path = getattr(sys.modules.get(module), "__file__", None)  # none in a REPL or a notebook
        if isinstance(path, str) and path.endswith(".py"):
            from pathlib import Path

            return Path(path).stem
    return module


class _BoundTask:
    """A task looked up on an instance (or, under ``@classmethod``, a class)."""

    __slots__ = ("task", "instance")

    def __init__(self, task: Task[..., Any], instance: Any) -> None:
        self.task, self.instance = task, instance

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.task(self.instance, *args, **kwargs)

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        return self.task.submit(self.instance, *args, **kwargs)

    def map(self, *args: Any, **kwargs: Any) -> Any:
        return self.task.map(unmapped(self.instance), *args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # name, options, with_options...
        return getattr(self.task, name)

    def __repr__(self) -> str:
        return f"{self.task!r} bound to {type(self.instance).__name__}"


def _standalone(steps: Any) -> State:
    state = drive_sync(steps)
    _flush_standalone_run()
    return state


def _flush_standalone_run() -> None:
    """A task run outside any flow is written at once (there is no flow end to wait for)."""
    if task_run_var.get() is None:
        from plait._recording import current_recorder

        current_recorder().flush()


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(*, name: str | None = ..., **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...
def task(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Make a function a task. Options: see ``plait.TaskOptions`` (retries, cache_policy, ...)."""
    task_options = build_options(TaskOptions, None, options)
    if fn is not None:
        return Task(fn, task_options)
    return lambda f: Task(f, task_options)
