"""State hooks: functions a flow or task calls when its run enters a state.

    @flow(on_failure=[page_someone], on_completion=[refresh_dashboard])
    def nightly(): ...

Each hook is ``fn(flow_or_task, run, state)`` (sync or async), as in Prefect: ``on_running``
each time an attempt starts, ``on_completion`` (Completed or Cached), ``on_failure``,
``on_cancellation`` (Cancelled, a Skipped task run too) and ``on_crashed`` once the run is
final. A hook that raises is logged on the run's logger and never changes the run's state.

A run's state machine (``plait._engine``) knows nothing of hooks: ``with_hooks`` wraps it
only for a flow or task that has some, so the others pay nothing.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from plait._engine import Call, Steps
from plait.states import State, StateType

__all__ = ["HookMethods", "hooks_for", "with_hooks"]

# The option holding the hooks of each state a run can end in.
_FINAL_HOOKS = {
    StateType.COMPLETED: "on_completion",
    StateType.CACHED: "on_completion",
    StateType.FAILED: "on_failure",
    StateType.CANCELLED: "on_cancellation",
    StateType.CRASHED: "on_crashed",
}
def hooks_for(options: Any, state: State) -> tuple[Callable[..., Any], ...]:
    option = _FINAL_HOOKS.get(state.type)
    hooks: tuple[Callable[..., Any], ...] = getattr(options, option) if option else ()
    return hooks


class RunHooks:
    """Call hooks with ``(owner, run, state)``; log, never raise, what they raise."""

    __slots__ = ("hooks", "owner", "run", "state")

    def __init__(self, hooks: tuple[Callable[..., Any], ...], owner: Any, run: Any, state: State) -> None:
        self.hooks, self.owner, self.run, self.state = hooks, owner, run, state

    def run_sync(self) -> None:
        for hook in self.hooks:
            try:
                outcome = hook(self.owner, self.run, self.state)
                if inspect.isawaitable(outcome):  # an async hook of a sync run: on plait's loop
                    from plait.task_runners import background_loop

                    background_loop.submit(_awaited(outcome)).result()
            except Exception as exc:
                self._report(hook, exc)

    async def run_async(self) -> None:
        for hook in self.hooks:
            try:
                outcome = hook(self.owner, self.run, self.state)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception as exc:
                self._report(hook, exc)

    def _report(self, hook: Callable[..., Any], exc: Exception) -> None:
        from plait._engine import describe_error

        name = getattr(hook, "__qualname__", None) or repr(hook)
        self.owner.run_logger(self.run).error(
            "%s hook %s raised %s; the run stays %s", _option_of(self.state), name, describe_error(exc),
            self.state.type.title, exc_info=(type(exc), exc, exc.__traceback__),
        )


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _option_of(state: State) -> str:
    return _FINAL_HOOKS.get(state.type, "on_running")


def with_hooks(steps: Steps, owner: Any, run: Any) -> Steps:
    """``steps`` (a run's state machine) with ``owner``'s state hooks called as it goes:
    ``on_running`` before each attempt's body, the final state's hooks once it ends (those of
    a crash at once, as the interruption goes on up)."""
    options = owner.options
    try:
        action = steps.send(None)
        while True:
            if options.on_running and isinstance(action, Call):  # an attempt starts: the run is Running
                yield RunHooks(options.on_running, owner, run, run.state)
            try:
                result = yield action
            except BaseException as exc:
                action = steps.throw(exc)
            else:
                action = steps.send(result)
    except StopIteration as stop:
        state: State = stop.value
    except BaseException:
        if run.state.is_crashed() and options.on_crashed:
            RunHooks(options.on_crashed, owner, run, run.state).run_sync()
        raise
    hooks = hooks_for(options, state)
    if hooks:
        yield RunHooks(hooks, owner, run, state)
    return state


F = TypeVar("F", bound=Callable[..., Any])


class HookMethods:
    """``@my_flow.on_failure`` (and the other hooks) as decorators, for Flow and Task."""

    options: Any

    def _add_hook(self, option: str, fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"{option} takes a function fn(flow_or_task, run, state), got {fn!r}")
        self.options = dataclasses.replace(self.options, **{option: (*getattr(self.options, option), fn)})
        return fn

    def on_completion(self, fn: F) -> F:
        """Call ``fn(owner, run, state)`` when a run completes (Completed or Cached)."""
        return self._add_hook("on_completion", fn)

    def on_failure(self, fn: F) -> F:
        """Call ``fn(owner, run, state)`` when a run fails."""
        return self._add_hook("on_failure", fn)

    def on_cancellation(self, fn: F) -> F:
        """Call ``fn(owner, run, state)`` when a run is cancelled (or skipped)."""
        return self._add_hook("on_cancellation", fn)

    def on_crashed(self, fn: F) -> F:
        """Call ``fn(owner, run, state)`` when a run crashes (interrupted)."""
        return self._add_hook("on_crashed", fn)

    def on_running(self, fn: F) -> F:
        """Call ``fn(owner, run, state)`` each time an attempt of a run starts."""
        return self._add_hook("on_running", fn)
