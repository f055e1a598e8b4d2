"""Custom events: what your flows and tasks tell plait happened, for automations to react to.

::

    from plait.events import emit_event

    emit_event("warehouse.table.refreshed", resource={"id": "analytics.orders", "schema": "analytics"},
               payload={"rows": 1204})

The event is stored next to plait's own (state changes, deployments, blocks...) with the
resource's other keys as its labels; inside a flow or task run the labels ``flow_run_id``
and ``task_run_id`` are added, so an automation can act on the run that emitted it. It goes
to the server when ``PLAIT_API_URL`` is set (``POST /events``), else to the local store.

Emitting never fails a flow: when the store or the server cannot take the event, a warning
is logged and ``emit_event`` returns None. What the caller got wrong (a malformed kind, a
reserved one, a payload that is no JSON object) raises ``ValueError`` at once.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from plait._masking import mask

__all__ = ["MAX_EVENT_BYTES", "check_event", "emit_event", "is_reserved_kind", "reserved_prefixes"]

MAX_EVENT_BYTES = 64 * 1024  # of the payload and labels as compact JSON
MAX_KIND = 200
MAX_LABELS = 50
MAX_LABEL_KEY = 200
MAX_LABEL_VALUE = 2000
MAX_RESOURCE_ID = 500
FUTURE_SLACK = timedelta(minutes=5)  # how far ahead of the clock ``occurred`` may be

_KIND = re.compile(r"^[a-z][a-z0-9-]*(\.[a-z0-9-]+)+$")
_LABEL_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_WARN_EVERY = 60.0  # seconds between two warnings about events that could not be sent

logger = logging.getLogger("plait.events")

_warned: dict[str, Any] = {"at": None, "lost": 0}
_warn_lock = threading.Lock()
_sessions: dict[Any, Any] = {}  # ApiConfig -> ApiSession
_sessions_lock = threading.Lock()


class _Refused(ValueError):
    """The server refused the event itself (400/413/422): the caller's to fix, so raised."""


@functools.cache
def reserved_prefixes() -> tuple[str, ...]:
    """The kind prefixes that are plait's own (those of ``plait._store.events.KINDS``, and
    ``automation.`` and ``webhook.``): a custom event may not take one, so nobody can forge a
    state change or an automation's outcome."""
    from plait._store.events import KINDS

    return tuple(sorted({kind.split(".", 1)[0] + "." for kind in KINDS} | {"automation.", "webhook."}))


def is_reserved_kind(kind: str) -> bool:
    """Whether ``kind`` starts like one of plait's own kinds."""
    return kind.startswith(reserved_prefixes())


def _json_problem(value: Any, path: str, depth: int = 0) -> str | None:
    """Where ``value`` is not plain JSON (``None`` when it is)."""
    if depth > 64:
        return f"{path} is nested more than 64 levels deep"
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path} is {value!r}, which JSON cannot hold"
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} has the key {key!r}, which is not text"
            found = _json_problem(item, f"{path}.{key}", depth + 1)
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _json_problem(item, f"{path}[{index}]", depth + 1)
            if found:
                return found
        return None
    return f"{path} is a {type(value).__name__}, which is not JSON (give text, numbers, booleans, lists or objects)"


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, Mapping):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked(v) for v in value]
    return value


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        raise ValueError(f"occurred must be a datetime, not {type(moment).__name__}")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def check_event(
    event: str, resource: Mapping[str, Any], payload: Mapping[str, Any] | None = None,
    *, occurred: datetime | None = None,
) -> dict[str, Any]:
    """A custom event checked and masked, ready to store: ``{kind, resource_id, labels,
    payload, occurred}`` (``occurred`` a UTC datetime or None: now).

    Raises:
        ValueError: What is wrong, naming the field: the kind (``noun.verb`` in lowercase,
            not one of plait's own), the resource (an ``id``; other keys are labels, text
            to text), the payload (a JSON object), or the size (64 KiB at most).
    """
    if not isinstance(event, str) or not _KIND.match(event) or len(event) > MAX_KIND:
        raise ValueError(f"event kind {event!r} is not like 'warehouse.table.refreshed' (lowercase words and "
                         "hyphens, joined by dots, at least two parts, at most 200 characters)")
    if is_reserved_kind(event):
        prefix = next((p for p in reserved_prefixes() if event.startswith(p)), event.split(".", 1)[0] + ".")
        raise ValueError(f"event kind {event!r} is reserved for plait (kinds starting {prefix!r} are its own); "
                         "give your event a prefix of your own, such as 'warehouse.'")
    if not isinstance(resource, Mapping):
        raise ValueError(f"resource must be a dict with an 'id', such as {{'id': 'analytics.orders'}}, not "
                         f"{type(resource).__name__}")
    resource_id = resource.get("id")
    if not isinstance(resource_id, str) or not resource_id.strip():
        raise ValueError("resource needs an 'id': non-empty text naming what the event is about, such as "
                         "'analytics.orders'")
    if len(resource_id) > MAX_RESOURCE_ID or _CONTROL.search(resource_id):
        raise ValueError(f"resource 'id' must be at most {MAX_RESOURCE_ID} characters without control characters")
    labels: dict[str, str] = {}
    for key, value in resource.items():
        if key == "id":
            continue
        if not isinstance(key, str) or not _LABEL_KEY.match(key) or len(key) > MAX_LABEL_KEY:
            raise ValueError(f"resource label {key!r}: a label's name is text of letters, digits, '_', '.', ':' or "
                             f"'-' (at most {MAX_LABEL_KEY} characters, not starting with a digit)")
        if not isinstance(value, str):
            raise ValueError(f"resource label {key!r}: values are text, not {type(value).__name__} "
                             f"(give str({key}) if you mean it)")
        if len(value) > MAX_LABEL_VALUE or "\x00" in value:
            raise ValueError(f"resource label {key!r}: at most {MAX_LABEL_VALUE} characters, without NUL")
        labels[key] = value
    if len(labels) > MAX_LABELS:
        raise ValueError(f"resource has {len(labels)} labels; at most {MAX_LABELS}")
    if payload is None:
        payload = {}
    if not isinstance(payload, Mapping):
        raise ValueError(f"payload must be a dict (a JSON object), not {type(payload).__name__}")
    problem = _json_problem(payload, "payload")
    if problem:
        raise ValueError(problem)
    moment = _utc(occurred)
    if moment is not None and moment > datetime.now(UTC) + FUTURE_SLACK:
        raise ValueError("occurred is more than 5 minutes ahead of the clock; give when it happened (a naive "
                         "datetime is taken as UTC)")
    body = {"kind": event, "resource_id": resource_id, "labels": _masked(labels), "payload": _masked(dict(payload)),
            "occurred": moment}
    size = event_size(body["payload"], body["labels"])
    if size > MAX_EVENT_BYTES:
        raise ValueError(f"the event's payload and labels are {size:,} bytes of JSON; at most {MAX_EVENT_BYTES:,} "
                         "(64 KiB): keep large data in a result or an artifact and put a reference in the payload")
    return body


def event_size(payload: Mapping[str, Any], labels: Mapping[str, str]) -> int:
    """The bytes an event's payload and labels take as compact JSON (``MAX_EVENT_BYTES`` at most)."""
    return len(json.dumps([payload, labels], separators=(",", ":"), ensure_ascii=False).encode())


def _run_labels() -> dict[str, str]:
    """``flow_run_id`` / ``task_run_id`` of the run this code runs in (none outside runs)."""
    from plait._context import flow_run_var, task_run_var

    found: dict[str, str] = {}
    task = task_run_var.get()
    flow = flow_run_var.get()
    flow_run_id = flow.flow_run.id if flow is not None else (task.task_run.flow_run_id if task is not None else None)
    if flow_run_id:
        found["flow_run_id"] = str(flow_run_id)
    if task is not None and task.task_run.id:
        found["task_run_id"] = str(task.task_run.id)
    return found


def emit_event(
    event: str,
    resource: Mapping[str, Any],
    payload: Mapping[str, Any] | None = None,
    *,
    occurred: datetime | None = None,
) -> dict[str, Any] | None:
    """Tell plait something happened; automations whose triggers match it react.

    Args:
        event: The kind, lowercase and dotted: ``"warehouse.table.refreshed"``. Kinds
            starting like plait's own (``flow-run.``, ``deployment.``, ``automation.``...)
            are refused.
        resource: What it is about: ``{"id": "analytics.orders"}``; other keys are labels
            (text values) that triggers match on and templates read. Inside a flow or task
            run, ``flow_run_id`` and ``task_run_id`` are added unless given.
        payload: Details, a JSON object (at most 64 KiB with the labels). Secrets plait
            knows are masked in it.
        occurred: When it happened (default: now; a naive datetime is taken as UTC).

    Returns:
        The stored event ``{seq, id, occurred, kind, resource, payload, labels}``, or None
        when the store or the server could not take it (a warning is logged; the flow goes
        on).

    Raises:
        ValueError: The event is malformed (the message names the field).
    """
    checked = check_event(event, resource, payload, occurred=occurred)
    labels = checked["labels"]
    for key, value in _run_labels().items():
        labels.setdefault(key, value)
    try:
        return _send(checked)
    except _Refused:
        raise
    except Exception as exc:  # an outage of the store or the server never fails the flow
        _warn(checked["kind"], exc)
        return None


def _send(checked: dict[str, Any]) -> dict[str, Any]:
    from plait.settings import get_settings

    settings = get_settings()
    if settings.api_url:
        return _send_remote(checked, settings)
    from plait._store.database import get_database
    from plait._store.events import record_event

    return record_event(get_database(), checked["kind"], checked["resource_id"], checked["payload"],
                        labels=checked["labels"] or None, occurred=checked["occurred"])


def _session(settings: Any) -> Any:
    """One kept-alive session per server and key (a flow may emit many events)."""
    from plait._api import ApiConfig, ApiSession

    config = ApiConfig.from_settings(settings)
    with _sessions_lock:
        session = _sessions.get(config)
        if session is None:
            session = _sessions[config] = ApiSession(config)
        return session


def reset_sessions() -> None:
    """Close the kept-alive sessions to servers (after the settings changed; ``plait.testing``'s
    ``reset_state`` calls it)."""
    with _sessions_lock:
        sessions = list(_sessions.values())
        _sessions.clear()
    for session in sessions:
        session.close()


def _send_remote(checked: dict[str, Any], settings: Any) -> dict[str, Any]:
    from plait._api import ApiError

    body: dict[str, Any] = {"event": checked["kind"], "resource": {"id": checked["resource_id"], **checked["labels"]},
                            "payload": checked["payload"]}
    if checked["occurred"] is not None:
        body["occurred"] = checked["occurred"].isoformat()
    session = _session(settings)
    try:
        stored: dict[str, Any] = session.call(session.calls.emit_event(body))
    except ApiError as exc:
        if exc.status in (400, 413, 422):  # the server refused the event itself: the caller's to fix
            raise _Refused(f"the plait server refused the event: {exc.message}") from None
        raise
    return stored


def _warn(kind: str, exc: BaseException) -> None:
    """Log that an event was lost: at once, then at most once a minute with a count."""
    now = time.monotonic()
    with _warn_lock:
        _warned["lost"] += 1
        if _warned["at"] is not None and now - _warned["at"] < _WARN_EVERY:
            logger.debug("event %s not stored: %s", kind, mask(str(exc)))
            return
        lost, _warned["lost"], _warned["at"] = _warned["lost"], 0, now
    more = f" ({lost - 1} more since the last warning)" if lost > 1 else ""
    logger.warning("event %s could not be stored, the flow goes on%s: %s: %s", kind, more, type(exc).__name__,
                   mask(str(exc)))
