"""``pause_flow_run``: park the current flow run as Paused until someone resumes it.

The run's state goes to Paused (written at once, through the recorder), the store keeps
what it waits for (the JSON schema of the input model and the deadline), and the calling
thread polls the store, or the server, until the run is no longer Paused:

- resumed (``plait flow-run resume ID [--input JSON]``, ``POST /flow-runs/{id}/resume``):
  the input, already checked against the schema, is validated with the model itself and
  returned; if the model refuses it (a Python validator the schema cannot say), the run is
  paused again with the reason in its state message;
- cancelled: ``CancelledRun`` is raised and the run ends Cancelled;
- nobody came before the deadline: ``PauseTimeout`` is raised, which fails the run.

A paused run keeps its process (and its memory) waiting; nothing runs meanwhile.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, overload

from plait._context import FlowRunContext, flow_run_var
from plait._engine import set_state
from plait.exceptions import CancelledRun, PlaitError
from plait.states import State, StateType

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["pause_flow_run", "PauseTimeout"]

M = TypeVar("M", bound="BaseModel")

_POLL = 1.0  # seconds between two looks at the store while paused


class PauseTimeout(PlaitError):
    """A paused flow run was not resumed before its timeout; the run fails with this."""


@overload
def pause_flow_run(
    timeout: float | timedelta = ..., wait_for_input: None = None, *, poll_interval: float | None = None
) -> None: ...
@overload
def pause_flow_run(
    timeout: float | timedelta = ..., *, wait_for_input: type[M], poll_interval: float | None = None
) -> M: ...
@overload
def pause_flow_run(
    timeout: float | timedelta, wait_for_input: type[M], *, poll_interval: float | None = None
) -> M: ...
def pause_flow_run(
    timeout: float | timedelta = 3600.0,
    wait_for_input: type[BaseModel] | None = None,
    *,
    poll_interval: float | None = None,
) -> Any:
    """Pause the flow run this is called in until someone resumes it; return the input.

    Args:
        timeout: Seconds (or a ``timedelta``) to wait; then the run fails with ``PauseTimeout``.
        wait_for_input: A pydantic model of the input the run waits for: ``plait flow-run
            resume ID --input JSON`` must give values that fit it, and its instance is
            returned. None: resume without input; returns None.
        poll_interval: Seconds between two looks at the store (default 1).

    Returns:
        The validated ``wait_for_input`` instance, or None.

    Raises:
        PauseTimeout: Nobody resumed the run within ``timeout``.
        CancelledRun: The run was cancelled while paused (it ends Cancelled).
        PlaitError: Not called inside a flow run, run history is off, or the store cannot
            be written.
        TypeError: ``wait_for_input`` is not a pydantic model class.
    """
    ctx = flow_run_var.get()
    if ctx is None:
        raise PlaitError("pause_flow_run() pauses the flow run it is called in; call it inside a @flow function")
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
    if not seconds > 0:
        raise ValueError(f"pause_flow_run(timeout=...) takes a positive number of seconds, not {timeout!r}")
    schema = _schema_of(wait_for_input)
    recorder = ctx.recorder
    if getattr(recorder, "pause_status", None) is None:
        raise PlaitError("pause_flow_run() needs run history, which is off (record_history / "
                         "PLAIT_RECORD_HISTORY=false): nobody could resume the run; turn it on")
    run = ctx.flow_run
    log = ctx.flow.run_logger(run)
    deadline = datetime.now(UTC) + timedelta(seconds=seconds)
    ends = time.monotonic() + seconds
    waits = f"for input ({wait_for_input.__name__}) " if wait_for_input is not None else ""
    hint = " --input JSON" if wait_for_input is not None else ""
    _park(ctx, schema, deadline, f"waiting {waits}until {deadline.isoformat(timespec='seconds')}")
    log.info("paused %still %s: resume it with `plait flow-run resume %s%s`", waits,
             deadline.isoformat(timespec="seconds"), run.id, hint)
    interval = _POLL if poll_interval is None else max(0.01, float(poll_interval))
    while True:
        left = ends - time.monotonic()
        if left <= 0:
            set_state(run, State(StateType.RUNNING, "pause timed out"), recorder)
            raise PauseTimeout(
                f"flow run {run.name!r} was paused for {seconds:g}s and nobody resumed it; resume a paused run "
                f"within its timeout with `plait flow-run resume {run.id}{hint}`, or give pause_flow_run() a "
                "longer timeout"
            )
        time.sleep(min(interval, left))
        try:
            found = recorder.pause_status(run.id)  # type: ignore[attr-defined]
        except PlaitError as exc:  # the store is down: the pause goes on
            log.debug("could not look at the paused run: %s", exc)
            continue
        stored = found.get("state_type")
        if stored == StateType.PAUSED.value:
            continue
        if stored == StateType.CANCELLING.value or _is_final(stored):
            stop = getattr(recorder, "cancelling", None)
            if isinstance(stop, set):
                stop.add(run.id)  # the engine ends the run Cancelled
            raise CancelledRun(f"flow run {run.name!r} was cancelled while paused")
        value = found.get("resume_input")
        if wait_for_input is None:
            _go_on(ctx, "resumed")
            log.info("resumed")
            return None
        result, problem = _validated(wait_for_input, value)
        if problem is None:
            _go_on(ctx, "resumed with input")
            log.info("resumed with input")
            return result
        log.warning("the input it was resumed with does not fit %s (%s); paused again", wait_for_input.__name__,
                    problem)
        _go_on(ctx, "resume refused")
        _park(ctx, schema, deadline, f"the input it was resumed with does not fit {wait_for_input.__name__}: "
              f"{problem}; resume it again with valid input before {deadline.isoformat(timespec='seconds')}")


def _schema_of(model: Any) -> dict[str, Any] | None:
    if model is None:
        return None
    from pydantic import BaseModel

    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"pause_flow_run(wait_for_input=...) takes a pydantic model class, not {model!r}")
    return model.model_json_schema()


def _park(ctx: FlowRunContext, schema: dict[str, Any] | None, deadline: datetime, message: str) -> None:
    """Tell the store what the run waits for, then report it Paused and write that now (in
    this order: a resume never finds the run Paused without its schema)."""
    recorder = ctx.recorder
    run = ctx.flow_run
    try:
        recorder.flush()  # the run's row exists before its pause is kept
        recorder.pause(run.id, schema, deadline)  # type: ignore[attr-defined]
    except PlaitError as exc:
        raise PlaitError(f"flow run {run.name!r} cannot pause: {exc}") from None
    set_state(run, State(StateType.PAUSED, message), recorder)
    try:
        recorder.flush()
    except PlaitError as exc:
        set_state(run, State(StateType.RUNNING, "pause not recorded"), recorder)
        raise PlaitError(f"flow run {run.name!r} cannot pause: {exc}") from None


def _go_on(ctx: FlowRunContext, message: str) -> None:
    set_state(ctx.flow_run, State(StateType.RUNNING, message), ctx.recorder)


def _is_final(value: Any) -> bool:
    try:
        return StateType(value).is_final
    except ValueError:
        return False


def _validated(model: type[BaseModel], value: Any) -> tuple[Any, str | None]:
    """``(instance, None)``, or ``(None, why the model refuses value)`` field by field."""
    from pydantic import ValidationError

    try:
        return model.model_validate(value or {}), None
    except ValidationError as exc:
        parts = [f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in exc.errors()[:5]]
        return None, "; ".join(parts)
