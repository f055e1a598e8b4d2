"""Notification rules: which saved notification block hears about which flow runs.

A rule says "when a flow run whose flow name matches ``flow_name`` (a glob) and which carries
all of ``tags`` enters one of ``states``, deliver through the block ``slug/name``". Rules live
in the database next to the run history, so every process that records into it (and
``plait notification ls``) sees the same rules::

    from plait.notifications import create_rule

    create_rule("slack-webhook/ops", flow_name="etl-*", tags=["prod"], states=["failed", "crashed"])

The built-in blocks plugin's ``plait_notify`` hook calls ``matching_rules(event)`` on every
flow run state change and delivers through each matching rule's block. Rules are cached per
process for ``CACHE_SECONDS`` (and dropped at once when this process changes them), so a flow
with many state changes does not query the database each time.
"""

from __future__ import annotations

import difflib
import fnmatch
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from plait.states import StateType

if TYPE_CHECKING:
    from plait._store.rules import NotificationRule

__all__ = [
    "DEFAULT_STATES",
    "CACHE_SECONDS",
    "NOTIFY_CAPABILITY",
    "create_rule",
    "list_rules",
    "delete_rule",
    "matching_rules",
    "rule_matches",
    "clear_cache",
]

DEFAULT_STATES: tuple[str, ...] = ("FAILED", "CRASHED")
CACHE_SECONDS = 1.0
NOTIFY_CAPABILITY = "notify"
STATE_NAMES: tuple[str, ...] = tuple(t.value for t in StateType)

logger = logging.getLogger("plait.notifications")

_cache_lock = threading.Lock()
# database URL -> (monotonic expiry, enabled rules)
_cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}
_last_warning = [0.0]


# -- validation ---------------------------------------------------------------------------------
def normalize_states(states: Iterable[str] | None) -> list[str]:
    """``["failed", "Crashed"]`` -> ``["FAILED", "CRASHED"]`` (deduplicated, in order).

    None gives the default, Failed and Crashed.

    Raises:
        ValueError: A name is not a state type (the message lists the valid ones).
    """
    if states is None:
        return list(DEFAULT_STATES)
    if isinstance(states, str):
        states = [states]
    out: list[str] = []
    for state in states:
        value = str(state).strip().upper()
        if value not in STATE_NAMES:
            raise ValueError(
                f"unknown state {state!r}; use one of: {', '.join(STATE_NAMES)} (any case)"
            )
        if value not in out:
            out.append(value)
    if not out:
        raise ValueError(f"give at least one state; use any of: {', '.join(STATE_NAMES)}")
    return out


def _normalize_tags(tags: Iterable[str] | None) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str):
        tags = [tags]
    out: list[str] = []
    for tag in tags:
        text = str(tag).strip()
        if not text:
            raise ValueError("a tag cannot be empty")
        if text not in out:
            out.append(text)
    return out


def _resolve_block(block: str) -> tuple[str, str]:
    """``"slug/name"`` or a unique bare name -> (slug, name) of a saved notification block.

    Raises:
        plait.exceptions.BlockNotFound: No such saved block (close names suggested).
        plait.exceptions.BlockError: A bare name several block types use.
        ValueError: The block's type cannot deliver notifications.
    """
    import plait.blocks as blocks

    reference = (block or "").strip()
    if not reference:
        raise ValueError("give the notification block as SLUG/NAME (see `plait block ls`)")
    loaded = blocks.load_document(reference)
    cls = type(loaded)
    slug = cls.block_type_slug
    name = reference.partition("/")[2] if "/" in reference else reference
    if NOTIFY_CAPABILITY not in tuple(getattr(cls, "capabilities", ()) or ()):
        notifiers = sorted(
            t["slug"] for t in blocks.block_types() if NOTIFY_CAPABILITY in (t.get("capabilities") or ())
        )
        can = f"; types that can: {', '.join(notifiers)}" if notifiers else ""
        raise ValueError(
            f"block {slug}/{name} cannot send notifications: type {slug!r} lacks the "
            f"'{NOTIFY_CAPABILITY}' capability{can}. Run `plait block ls` to see saved blocks "
            f"and `plait block types` for their capabilities"
        )
    return slug, name


# -- storage ------------------------------------------------------------------------------------
def _as_dict(rule: NotificationRule) -> dict[str, Any]:
    slug, _, name = rule.block.partition("/")
    return {
        "id": rule.id,
        "name": rule.name,
        "block": rule.block,
        "block_slug": slug,
        "block_name": name,
        "flow_name": rule.flow_name,
        "tags": list(rule.tags),
        "states": list(rule.states),
        "enabled": bool(rule.enabled),
        "created": rule.created.isoformat() if rule.created else None,
    }


def _stored_rules(enabled_only: bool = False) -> list[dict[str, Any]]:
    if _remote() is not None:  # a process recording to a server follows the server's rules
        found = _api_call(lambda calls: calls.notification_rules())
        return [r for r in found if r.get("enabled") or not enabled_only]
    from plait._store import rules

    return [_as_dict(r) for r in rules.list_rules(enabled_only=enabled_only)]


def _remote() -> str | None:
    from plait.settings import get_settings

    return get_settings().api_url


def _api_call(make: Any) -> Any:
    from plait._api import ApiSession

    with ApiSession.from_settings() as session:
        return session.call(make(session.calls))


def clear_cache() -> None:
    """Forget cached rules; the next ``matching_rules`` reads the database again."""
    with _cache_lock:
        _cache.clear()


def create_rule(
    block: str,
    flow_name: str = "*",
    tags: list[str] | None = None,
    states: list[str] | None = None,
    name: str | None = None,
    enabled: bool = True,
) -> dict[str, Any]:
    """Save a rule: notify through ``block`` when a matching flow run enters ``states``.

    Args:
        block: The saved notification block, ``"slug/name"`` (or its name when unique).
        flow_name: Glob over flow names (``"etl-*"``); ``"*"`` (default) matches every flow.
        tags: The flow run must carry every one of these tags (none: any run).
        states: State types to notify on, any case (default: FAILED and CRASHED).
        name: A unique name for the rule (default: ``<block name>-<id prefix>``).
        enabled: Whether the rule is active.

    Returns:
        The rule: ``{id, name, block, block_slug, block_name, flow_name, tags, states,
        enabled, created}``.

    Raises:
        ValueError: An unknown state, an empty glob or tag, a taken name, or a block whose
            type lacks the ``notify`` capability.
        plait.exceptions.BlockNotFound: No saved block ``block``.
        plait.exceptions.DatabaseError: The database cannot be written.
    """
    states_ = normalize_states(states)
    tags_ = _normalize_tags(tags)
    flow_glob = (flow_name or "").strip()
    if not flow_glob:
        raise ValueError("the flow name glob cannot be empty; use '*' for every flow")
    if name is not None:
        name = name.strip()
        if not name:
            raise ValueError("a rule name cannot be empty")
    if _remote() is not None:
        body = {"block": block, "flow_name": flow_glob, "tags": tags_, "states": states_, "name": name,
                "enabled": bool(enabled)}
        try:
            return dict(_api_call(lambda calls: calls.create_notification_rule(body)))
        finally:
            clear_cache()
    slug, block_name = _resolve_block(block)

    from plait._store import rules

    rule_id = str(uuid.uuid4())
    name = name or f"{block_name}-{rule_id[:8]}"
    rule = rules.NotificationRule(
        id=rule_id,
        name=name,
        block=f"{slug}/{block_name}",
        flow_name=flow_glob,
        tags=tags_,
        states=states_,
        enabled=bool(enabled),
        created=datetime.now(UTC),
    )
    try:
        rules.insert_rule(rule)
    except rules.RuleNameTaken:
        raise ValueError(f"a notification rule named {name!r} already exists; choose another --name") from None
    finally:
        clear_cache()
    return _as_dict(rule)


def list_rules() -> list[dict[str, Any]]:
    """Every rule, oldest first (same fields as ``create_rule`` returns)."""
    return _stored_rules()


def _find(rules: list[dict[str, Any]], id_or_name: str) -> dict[str, Any]:
    key = (id_or_name or "").strip()
    if not key:
        raise LookupError("give a notification rule's id or name; run `plait notification ls` to see them")
    for field in ("id", "name"):
        exact = [r for r in rules if r[field] == key]
        if exact:
            return exact[0]
    prefixed = [r for r in rules if r["id"].startswith(key)]
    if len(prefixed) == 1:
        return prefixed[0]
    if len(prefixed) > 1:
        raise LookupError(
            f"{key!r} matches {len(prefixed)} notification rules; give more of the id or the rule's name"
        )
    close = difflib.get_close_matches(key, [r["name"] for r in rules], n=3)
    hint = f"did you mean {' or '.join(map(repr, close))}? Run" if close else "run"
    raise LookupError(f"no notification rule matches {key!r}; {hint} `plait notification ls` to see rules")


def delete_rule(id_or_name: str) -> dict[str, Any]:
    """Delete the rule with this id (or unique id prefix) or name; returns what was deleted.

    Raises:
        LookupError: No rule, or more than one, matches.
    """
    rule = _find(_stored_rules(), id_or_name)
    try:
        if _remote() is not None:
            _api_call(lambda calls: calls.delete_notification_rule(rule["id"]))
        else:
            from plait._store import rules

            rules.delete_rule(rule["id"])
    finally:
        clear_cache()
    return rule


# -- matching -----------------------------------------------------------------------------------
def rule_matches(rule: dict[str, Any], event: Any) -> bool:
    """Whether ``rule`` applies to ``event`` (a ``plait.plugins.StateChangeEvent``)."""
    if not rule.get("enabled", True):
        return False
    if str(getattr(event, "state_type", "")).upper() not in rule["states"]:
        return False
    if not fnmatch.fnmatchcase(str(getattr(event, "flow_name", "")), rule["flow_name"]):
        return False
    tags = set(getattr(event, "tags", ()) or ())
    return all(tag in tags for tag in rule["tags"])


def _enabled_rules() -> list[dict[str, Any]]:
    from plait.settings import get_settings

    settings = get_settings()
    url = settings.api_url or settings.effective_database_url
    now = time.monotonic()
    cached = _cache.get(url)
    if cached is not None and cached[0] > now:
        return cached[1]
    with _cache_lock:
        cached = _cache.get(url)
        if cached is not None and cached[0] > now:
            return cached[1]
        rules = _stored_rules(enabled_only=True)
        _cache[url] = (time.monotonic() + CACHE_SECONDS, rules)
        return rules


def matching_rules(event: Any) -> list[dict[str, Any]]:
    """The enabled rules that apply to ``event``, oldest first.

    ``event`` is a ``plait.plugins.StateChangeEvent``: a rule matches when the event's
    ``state_type`` is among its states, ``flow_name`` matches its glob and ``tags`` include
    all of its tags. Rules are read from the database at most once per ``CACHE_SECONDS``
    per process. When the database cannot be read this logs a warning and returns ``[]``
    (notifying must never break a run).
    """
    try:
        rules = _enabled_rules()
    except Exception as exc:  # DatabaseError, settings errors: never break the run
        now = time.monotonic()
        if now - _last_warning[0] > 60:
            _last_warning[0] = now
            logger.warning("cannot read notification rules: %s", exc)
        return []
    return [
        dict(rule, tags=list(rule["tags"]), states=list(rule["states"])) for rule in rules if rule_matches(rule, event)
    ]
