"""``@flow``: a plain function whose run, and every task it calls, is orchestrated."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Coroutine
from typing import Any, Generic, Literal, ParamSpec, TypeVar, overload

from plait._callables import Signature, jsonable, new_id, run_name
from plait._context import FlowRunContext, flow_run_var, task_run_var
from plait._engine import drive_async, drive_sync, flow_steps, root_cause
from plait._options import FlowOptions, build_options
from plait._runs import FlowRun
from plait.futures import iter_futures, resolve_futures
from plait.states import State, StateType

__all__ = ["Flow", "flow"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class Flow(Generic[P, R]):
    """A function whose calls become recorded flow runs. Build with ``@flow``."""

    def __init__(self, fn: Callable[P, R], options: FlowOptions) -> None:
        if not callable(fn):
            raise TypeError(f"@flow decorates a function, got {fn!r}")
        self.fn = fn
        self.options = options
        self.name = options.name or fn.__name__.replace("_", "-")
        self.description = options.description or inspect.getdoc(fn)
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = Signature(fn)
        functools.update_wrapper(self, fn)

    def with_options(self, **changes: Any) -> Flow[P, R]:
        """A copy of this flow with some options replaced (validated like the decorator)."""
        return Flow(self.fn, build_options(FlowOptions, self.options, changes))

    def __repr__(self) -> str:
        return f"Flow({self.name!r})"

    # Typing as for Task.__call__: a call is checked against the function's signature unless
    # it passes ``return_state=`` (mypy allows no keyword beside P.args/P.kwargs); an async
    # flow is a ``Flow[P, Coroutine[Any, Any, R]]`` whose call gives the coroutine.
    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def __call__(
        self: Flow[P, Coroutine[Any, Any, T]], *args: Any, return_state: Literal[True], **kwargs: Any
    ) -> Coroutine[Any, Any, State]: ...
    @overload
    def __call__(self, *args: Any, return_state: Literal[True], **kwargs: Any) -> State: ...
    @overload
    def __call__(self, *args: Any, return_state: Literal[False], **kwargs: Any) -> R: ...
    @overload
    def __call__(self, *args: Any, return_state: bool, **kwargs: Any) -> Any: ...
    # `Any` for the keyword: the first overload's P.kwargs may name it with any type
    def __call__(self, *args: Any, return_state: Any = False, **kwargs: Any) -> Any:
        """Run the flow; return its value, or raise the exception that failed it.

        With ``return_state=True`` the final State is returned instead. An async flow
        returns an awaitable.
        """
        steps = self._prepare(args, kwargs)
        if self.is_async:
            return self._call_async(steps, return_state)
        return _finish(drive_sync(steps), return_state)

    async def _call_async(self, steps: Any, return_state: bool) -> Any:
        return _finish(await drive_async(steps), return_state)

    def _prepare(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        from plait._logging import install_print_capture, setup_logging
        from plait._recording import current_recorder
        from plait.settings import get_settings
        from plait.task_runners import InProcessTaskRunner

        if self.options.validate_parameters:
            parameters = self.signature.bind(f"flow {self.name!r}", args, kwargs)
        else:
            parameters = dict(kwargs, **{f"arg{i}": a for i, a in enumerate(args)})
        settings = get_settings()
        recorder = current_recorder()  # opens the database now: a bad URL fails before any work
        setup_logging()
        log_prints = bool(self.options.log_prints)
        if log_prints:
            install_print_capture()
        parent = flow_run_var.get()
        parent_task = task_run_var.get()
        if parent is not None and self.options.log_prints is None:
            log_prints = parent.log_prints
        is_top = parent is None and parent_task is None
        # infrastructure (e.g. the Process block) picks the id of the run it launches
        preset_id = os.environ.pop("PLAIT_FLOW_RUN_ID", None) if is_top else None
        if preset_id:
            _refuse_ended_run(recorder, preset_id)
        run = FlowRun(
            id=preset_id or new_id(),
            flow_name=self.name,
            name=run_name(),
            parameters={k: jsonable(v) for k, v in parameters.items()},
            state=State(StateType.PENDING),
            tags=list(self.options.tags),
            parent_flow_run_id=parent.flow_run.id if parent else None,
            parent_task_run_id=parent_task.task_run.id if parent_task else None,
        )
        recorder.add_flow_run(run)
        recorder.add_state(run, run.state)
        ctx = FlowRunContext(
            flow=self,
            flow_run=run,
            parameters=parameters,
            task_runner=(self.options.task_runner or InProcessTaskRunner()).duplicate(),
            recorder=recorder,
            log_prints=log_prints,
            persist_results=(
                settings.persist_results if self.options.persist_result is None else self.options.persist_result
            ),
        )
        call_args, call_kwargs = (
            self.signature.call_arguments(parameters) if self.options.validate_parameters else (args, kwargs)
        )
        return flow_steps(self, run, ctx, call_args, call_kwargs, is_top=is_top)

    # -- used by the engine ----------------------------------------------------------------
    def settle_return(self, value: Any, ctx: FlowRunContext) -> tuple[Any, BaseException | None]:
        """Decide the flow's value and failure once its body returned.

        Futures in the return value are resolved; a returned failed State fails the flow;
        so does any submitted task run that failed without its failure being looked at.
        """
        try:
            if isinstance(value, State):
                if not value.is_completed():
                    return None, root_cause(value.result(raise_on_failure=False))
                value = value.result()
            elif any(True for _ in iter_futures(value)):
                value = resolve_futures(value)
        except Exception as exc:
            return None, root_cause(exc)
        for future in ctx.futures:
            if not future._observed and not future.task_run.state.is_completed():
                return None, root_cause(future.task_run.state.result(raise_on_failure=False))
        return value, None

    def run_logger(self, run: FlowRun) -> Any:
        from plait._logging import run_logger_for

        return run_logger_for(run.id, None, f"Flow run {run.name!r}")


def _refuse_ended_run(recorder: Any, flow_run_id: str) -> None:
    """A launcher's ``PLAIT_FLOW_RUN_ID`` must name a new run or one still waiting to run:
    a run that already ended keeps its history."""
    stored = recorder.stored_flow_run_state(flow_run_id)
    if stored is not None and stored.is_final:
        from plait.exceptions import PlaitError

        raise PlaitError(
            f"PLAIT_FLOW_RUN_ID={flow_run_id!r} names a flow run that already ended ({stored.title}); "
            "plait will not overwrite its history. Unset PLAIT_FLOW_RUN_ID to start a new flow run, "
            "or give the id of a run that has not ended yet."
        )


def _finish(state: State, return_state: bool) -> Any:
    if return_state:
        return state
    return state.result()


@overload
def flow(fn: Callable[P, R], /) -> Flow[P, R]: ...
@overload
def flow(*, name: str | None = ..., **options: Any) -> Callable[[Callable[P, R]], Flow[P, R]]: ...
def flow(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Make a function a flow. Options: see ``plait.FlowOptions`` (retries, task_runner, ...)."""
    flow_options = build_options(FlowOptions, None, options)
    if fn is not None:
        return Flow(fn, flow_options)
    return lambda f: Flow(f, flow_options)


