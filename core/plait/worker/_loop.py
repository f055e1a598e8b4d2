"""What a worker's loop and a ``serve`` loop share: the control plane, signals, pacing.

Both loops tick a few times a second: claim when a poll is due and there is room, ask which
in-flight runs are Cancelling, let the supervisor act, and stop cleanly on SIGTERM/SIGINT
(stop claiming, let runs finish for the shutdown grace, then end the rest Crashed). A
second signal skips the grace.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from plait._masking import mask

__all__ = ["LoopControl", "Pacer", "is_local_control", "call_quietly", "TICK_SECONDS", "CANCEL_CHECK_SECONDS"]

logger = logging.getLogger("plait.worker")

TICK_SECONDS = 0.1
CANCEL_CHECK_SECONDS = 1.0  # how often in-flight runs are checked for a cancel request


def is_local_control(control: Any) -> bool:
    """Whether a control plane writes the local store (a ``LocalControl``)."""
    from plait.deployments._control import LocalControl

    return isinstance(control, LocalControl)


class LoopControl:
    """Stop requests for a loop: ``stop()`` from anywhere, or SIGTERM/SIGINT in the main thread.

    Attributes:
        stopping: Set by the first request: claim no more runs.
        hurry: Set by a second request: end the runs in flight now.
        reason: Why it stops ("SIGTERM", "stop() was called"...).
    """

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.hurry = threading.Event()
        self.reason = ""

    def stop(self, reason: str = "stop() was called", *, now: bool = False) -> None:
        """Ask the loop to stop; ``now`` skips the grace for runs in flight."""
        if self.stopping.is_set() or now:
            self.hurry.set()
        if not self.stopping.is_set():
            self.reason = reason
        self.stopping.set()

    def sleep(self, seconds: float) -> None:
        """Sleep, waking early when a stop is requested."""
        (self.hurry if self.stopping.is_set() else self.stopping).wait(seconds)

    @contextlib.contextmanager
    def signals(self, who: str) -> Iterator[None]:
        """Route SIGTERM and SIGINT to ``stop()`` while inside (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handle(number: int, frame: Any) -> None:
            name = signal.Signals(number).name
            if self.stopping.is_set():
                logger.warning("%s: %s again: stopping the runs in flight now", who, name)
            else:
                logger.warning("%s: %s: no new runs; waiting for the runs in flight (again to stop them now)",
                               who, name)
            self.stop(name)

        previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class Pacer:
    """Calls ``action`` at most every ``interval`` seconds (the first call at once)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.next = 0.0

    def due(self) -> bool:
        now = time.monotonic()
        if now < self.next:
            return False
        self.next = now + self.interval
        return True

    def soon(self) -> None:
        """Make the next ``due()`` true (e.g. after a claim filled every free slot)."""
        self.next = 0.0


class _Warned:
    """Logs a failing call once per kind of failure, and again when it recovers."""

    def __init__(self) -> None:
        self.failing: dict[str, str] = {}


_warned = _Warned()


def call_quietly(who: str, what: str, fn: Callable[..., Any], *args: Any, default: Any = None, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, or ``default`` when it raises: the loop goes on through a
    server outage.

    The first failure of ``what`` is logged as a warning, repeats at debug level, the
    recovery at info level.
    """
    try:
        value = fn(*args, **kwargs)
    except Exception as exc:
        text = mask(" ".join(str(exc).split())) or type(exc).__name__
        key = f"{who}:{what}"
        if _warned.failing.get(key) != text:
            logger.warning("%s: %s failed (will retry): %s", who, what, text)
        else:
            logger.debug("%s: %s failed again: %s", who, what, text)
        _warned.failing[key] = text
        return default
    if _warned.failing.pop(f"{who}:{what}", None) is not None:
        logger.info("%s: %s works again", who, what)
    return value
