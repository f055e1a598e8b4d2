"""The built-in blocks as a plugin: plait loads this module by name as a default plugin.

Registers the built-in block types, the ``file`` storage scheme, the ``process``
infrastructure, and delivers notification rules when flow runs change state. What it
provides is declared in plait's own pyproject.toml (``plait.block_types`` …) like any
collection's.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any

from plait import mask_secrets  # the one masking function
from plait.hookspecs import hookimpl

__all__ = [
    "plait_register_blocks",
    "plait_register_storage",
    "plait_register_infrastructure",
    "plait_notify",
    "wait_for_deliveries",
]

logger = logging.getLogger("plait.notifications")


# The block classes are imported by the hooks that hand them out, not with this module: every
# process recording a flow run imports it (for plait_notify), few of them need a block.
@hookimpl
def plait_register_blocks() -> list[type]:
    from plait_blocks.notifications import Email, SlackWebhook, Webhook
    from plait_blocks.process import Process
    from plait_blocks.storage import LocalFileSystem
    from plait_blocks.values import JSON, Secret

    return [LocalFileSystem, Secret, JSON, Webhook, SlackWebhook, Email, Process]


@hookimpl
def plait_register_storage() -> dict[str, Callable[[str], Any]]:
    from plait_blocks.storage import local_file_system_from_url

    return {"file": local_file_system_from_url}


@hookimpl
def plait_register_infrastructure() -> dict[str, type]:
    from plait_blocks.process import Process

    return {"process": Process}


# -- notifications ---------------------------------------------------------------------------
@hookimpl
def plait_notify(event: Any) -> None:
    """Deliver every enabled rule matching ``event``; never raises.

    Matching rules and loading their blocks happen here (against the current database);
    the network delivery runs on a background thread so the flow run is not held up by a
    slow server. Pending deliveries finish before the interpreter exits.
    """
    try:
        from plait.notifications import matching_rules

        rules = matching_rules(event)
    except Exception as exc:
        logger.warning(
            "notification rules could not be read for flow run %s (%s: %s); nothing delivered",
            getattr(event, "flow_run_id", "?"), type(exc).__name__, exc,
        )
        return
    for rule in rules:
        name = rule.get("name") or rule.get("id") or "?"
        reference = rule.get("block") or "?"
        try:
            from plait.blocks import load_document

            block = load_document(reference)
        except Exception as exc:
            logger.warning(
                "notification rule %r: block %s could not be loaded (%s: %s); skipped",
                name, reference, type(exc).__name__, exc,
            )
            continue
        try:
            _submit(_deliver, name, reference, block, event)
        except Exception as exc:  # e.g. the interpreter is shutting down
            logger.warning("notification rule %r: delivery with block %s could not start (%s)", name, reference, exc)


def _deliver(rule_name: str, reference: str, block: Any, event: Any) -> None:
    from plait_blocks.notifications import deliver_event

    try:
        deliver_event(block, event)
    except Exception as exc:
        message = mask_secrets(f"{type(exc).__name__}: {exc}", extra=[block])
        logger.warning(
            "notification rule %r: delivery with block %s failed for flow run %s (%s)",
            rule_name, reference, event.flow_run_id, message,
        )
    else:
        logger.debug("notification rule %r: delivered flow run %s %s with block %s",
                     rule_name, event.flow_run_id, event.state_name, reference)


class _Deliveries:
    """One background thread delivering in order; reset in forked children."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.executor: ThreadPoolExecutor | None = None
        self.pending: set[Future[Any]] = set()

    def submit(self, fn: Callable[..., None], *args: Any) -> Future[Any]:
        with self.lock:
            if self.executor is None:
                self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plait-notify")
            future = self.executor.submit(fn, *args)
            self.pending.add(future)
        future.add_done_callback(self._done)
        return future

    def _done(self, future: Future[Any]) -> None:
        with self.lock:
            self.pending.discard(future)

    def wait(self, timeout: float | None) -> bool:
        with self.lock:
            pending = set(self.pending)
        if not pending:
            return True
        _done, not_done = wait_futures(pending, timeout=timeout)
        return not not_done

    def reset_after_fork(self) -> None:
        self.lock = threading.Lock()
        self.executor = None
        self.pending = set()


_deliveries = _Deliveries()
_submit = _deliveries.submit
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_deliveries.reset_after_fork)


def wait_for_deliveries(timeout: float | None = None) -> bool:
    """Wait until the notifications handed to the background thread are delivered (or have
    failed and been logged); False if some are still running after ``timeout`` seconds."""
    return _deliveries.wait(timeout)
