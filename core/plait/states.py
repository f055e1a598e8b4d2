"""States: immutable values describing where a flow run or task run is.

A state has a type, a timestamp, a human message and, once final, the data it carries
(the run's return value or the exception that ended it). Which type may follow which is
decided by one table, ``TRANSITIONS``; the engine refuses anything else.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "State",
    "StateType",
    "TRANSITIONS",
    "IllegalTransition",
    "check_transition",
    "Scheduled",
    "Pending",
    "Running",
    "Retrying",
    "Completed",
    "Cached",
    "Failed",
    "Crashed",
    "Cancelled",
    "Paused",
    "Cancelling",
    "ResultNotLoaded",
]


class StateType(str, enum.Enum):  # noqa: UP042 - str() of a member stays "StateType.X", as it always was
    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    RETRYING = "RETRYING"
    COMPLETED = "COMPLETED"
    CACHED = "CACHED"
    FAILED = "FAILED"
    CRASHED = "CRASHED"
    CANCELLED = "CANCELLED"
    PAUSED = "PAUSED"
    # Someone asked the run to stop; whatever runs it stops at its next task boundary (or is
    # killed by its worker) and the run ends Cancelled. Not final: it waits for that.
    CANCELLING = "CANCELLING"

    # Shadows str.title() on purpose: a state type's title ("Completed") is public API, and
    # calling title() on the value was never meant. mypy sees the str method being replaced.
    @property
    def title(self) -> str:  # type: ignore[override]
        return _TITLES[self]

    @property
    def is_final(self) -> bool:
        return self in FINAL_TYPES


FINAL_TYPES = frozenset(
    {StateType.COMPLETED, StateType.CACHED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}
)
_TITLES = {t: t.value.title() for t in StateType}

_S = StateType
# The one table of legal transitions. A final state may only be left by a new attempt
# (a re-run of a failed or crashed run goes back to Pending/Scheduled). Cancelling is a
# request: any waiting or running state may take it, and it ends in a final state (usually
# Cancelled; Completed or Failed when the run finished before it noticed).
TRANSITIONS: dict[StateType, frozenset[StateType]] = {
    _S.SCHEDULED: frozenset({_S.PENDING, _S.RUNNING, _S.CANCELLED, _S.CRASHED, _S.PAUSED, _S.CANCELLING}),
    _S.PENDING: frozenset(
        {_S.RUNNING, _S.CACHED, _S.FAILED, _S.CANCELLED, _S.CRASHED, _S.PAUSED, _S.SCHEDULED, _S.CANCELLING}
    ),
    _S.RUNNING: frozenset(
        {_S.COMPLETED, _S.FAILED, _S.RETRYING, _S.CRASHED, _S.CANCELLED, _S.PAUSED, _S.CANCELLING}
    ),
    _S.RETRYING: frozenset({_S.RUNNING, _S.CANCELLED, _S.CRASHED, _S.FAILED, _S.CANCELLING}),
    _S.PAUSED: frozenset({_S.PENDING, _S.RUNNING, _S.CANCELLED, _S.CRASHED, _S.FAILED, _S.CANCELLING}),
    _S.CANCELLING: frozenset({_S.CANCELLED, _S.CRASHED, _S.FAILED, _S.COMPLETED}),
    _S.COMPLETED: frozenset(),
    _S.CACHED: frozenset(),
    _S.FAILED: frozenset({_S.SCHEDULED, _S.PENDING}),
    _S.CRASHED: frozenset({_S.SCHEDULED, _S.PENDING}),
    _S.CANCELLED: frozenset({_S.SCHEDULED, _S.PENDING}),
}
INITIAL_TYPES = frozenset({_S.SCHEDULED, _S.PENDING})


class IllegalTransition(RuntimeError):
    """A run was asked to move between two states the transition table does not allow."""


def check_transition(current: State | None, proposed: State) -> None:
    """Raise IllegalTransition unless ``proposed`` may follow ``current``."""
    if current is None:
        if proposed.type not in INITIAL_TYPES:
            raise IllegalTransition(
                f"a run must start Scheduled or Pending, not {proposed.type.title}"
            )
        return
    if proposed.type not in TRANSITIONS[current.type]:
        allowed = ", ".join(sorted(t.title for t in TRANSITIONS[current.type])) or "nothing"
        raise IllegalTransition(
            f"cannot move from {current.type.title} to {proposed.type.title}; "
            f"{current.type.title} may be followed by: {allowed}"
        )


class _Unset:
    """The data of a state that carries none (distinct from a run that returned None)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<no data>"

    def __reduce__(self) -> str:
        return "_UNSET"  # pickles as the module-level singleton


_UNSET: Any = _Unset()


_set = object.__setattr__


@dataclass(frozen=True, slots=True, eq=False, init=False)
class State:
    """An immutable state value: type, timestamp, message and (for final states) data.

    Args:
        type: The state type (a ``StateType`` or its value, e.g. ``"COMPLETED"``).
        message: Why the run is in this state, for people.
        name: A display name (default: the type's title; e.g. "Skipped" for a Cancelled).
        timestamp: When (default: now, UTC).
        data: The run's return value or the exception that ended it.
        result_ref: Where a persisted result lives (``plait.results.read_result_ref``).
    """

    type: StateType
    message: str
    name: str
    timestamp: datetime
    data: Any = field(repr=False)
    result_ref: str | None

    def __init__(
        self,
        type: StateType | str,  # noqa: A002 - the state's own word for it
        message: str = "",
        *,
        name: str | None = None,
        timestamp: datetime | None = None,
        data: Any = _UNSET,
        result_ref: str | None = None,
    ) -> None:
        kind = type if type.__class__ is StateType else StateType(type)
        _set(self, "type", kind)
        _set(self, "message", message)
        _set(self, "name", name or _TITLES[kind])  # type: ignore[index]
        _set(self, "timestamp", timestamp or datetime.now(UTC))
        _set(self, "data", data)
        _set(self, "result_ref", result_ref)

    # -- predicates -------------------------------------------------------------------
    def is_scheduled(self) -> bool:
        return self.type is StateType.SCHEDULED

    def is_pending(self) -> bool:
        return self.type is StateType.PENDING

    def is_running(self) -> bool:
        return self.type is StateType.RUNNING

    def is_retrying(self) -> bool:
        return self.type is StateType.RETRYING

    def is_completed(self) -> bool:
        """True for Completed and Cached: the run produced a value."""
        return self.type in (StateType.COMPLETED, StateType.CACHED)

    def is_cached(self) -> bool:
        return self.type is StateType.CACHED

    def is_failed(self) -> bool:
        return self.type is StateType.FAILED

    def is_crashed(self) -> bool:
        return self.type is StateType.CRASHED

    def is_cancelled(self) -> bool:
        return self.type is StateType.CANCELLED

    def is_paused(self) -> bool:
        return self.type is StateType.PAUSED

    def is_cancelling(self) -> bool:
        return self.type is StateType.CANCELLING

    def is_final(self) -> bool:
        return self.type in FINAL_TYPES

    # -- data -------------------------------------------------------------------------
    @property
    def has_data(self) -> bool:
        return self.data is not _UNSET

    def result(self, raise_on_failure: bool = True) -> Any:
        """The run's return value; for a failed/crashed/cancelled run, raise its exception.

        With ``raise_on_failure=False`` the exception is returned instead of raised. No
        I/O happens here: a state that holds only a reference to a persisted result says
        so; ``plait.results.read_result_ref(state.result_ref)`` reads the value.
        """
        data = self.data
        if self.type in (StateType.FAILED, StateType.CRASHED, StateType.CANCELLED):
            exc = data if isinstance(data, BaseException) else _state_error(self)
            if raise_on_failure:
                raise exc
            return exc
        if data is _UNSET:
            if self.result_ref:
                raise ResultNotLoaded(
                    f"this {self.type.title} state holds only a reference to its result "
                    f"({self.result_ref}); read it with plait.results.read_result_ref(state.result_ref)"
                )
            if not self.is_final():
                raise RuntimeError(f"the run is {self.type.title}; it has no result yet")
            return None
        return data

    def with_data(self, data: Any, result_ref: str | None = None) -> State:
        return State(
            self.type, self.message, name=self.name, timestamp=self.timestamp,
            data=data, result_ref=result_ref or self.result_ref,
        )

    def __repr__(self) -> str:
        msg = f"message={self.message!r}" if self.message else ""
        label = self.name if self.name == self.type.title else f"{self.name}, type={self.type.value}"
        return f"{label}({msg})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, State):
            return NotImplemented
        return (self.type, self.name, self.message, self.timestamp) == (
            other.type, other.name, other.message, other.timestamp,
        )

    def __hash__(self) -> int:
        return hash((self.type, self.name, self.timestamp))


class ResultNotLoaded(RuntimeError):
    """``State.result()`` on a state that holds only a reference to its persisted result."""


def _state_error(state: State) -> BaseException:
    from plait.exceptions import CancelledRun, CrashedRun, RunFailed

    if state.type is StateType.CRASHED:
        return CrashedRun(state.message or "the run crashed")
    if state.type is StateType.CANCELLED:
        return CancelledRun(state.message or "the run was cancelled")
    return RunFailed(state.message or "the run failed")


def _factory(state_type: StateType) -> Callable[..., State]:
    def make(message: str = "", **kwargs: Any) -> State:
        return State(state_type, message, **kwargs)

    make.__name__ = state_type.title
    make.__doc__ = f"Return a new {state_type.title} state."
    return make


Scheduled = _factory(StateType.SCHEDULED)
Pending = _factory(StateType.PENDING)
Running = _factory(StateType.RUNNING)
Retrying = _factory(StateType.RETRYING)
Completed = _factory(StateType.COMPLETED)
Cached = _factory(StateType.CACHED)
Failed = _factory(StateType.FAILED)
Crashed = _factory(StateType.CRASHED)
Cancelled = _factory(StateType.CANCELLED)
Paused = _factory(StateType.PAUSED)
Cancelling = _factory(StateType.CANCELLING)
