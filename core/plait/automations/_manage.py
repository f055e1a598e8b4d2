"""Automations by name: create (from a spec or a YAML file), list, inspect, enable, disable,
delete, and the actions they took.

Each public function works on the local store, or on the plait server ``PLAIT_API_URL``
names (through ``plait._api``), with the same answers either way: automation dicts
``{id, name, description, enabled, trigger, actions, source, created, updated}`` with times
as ISO 8601 text, and the values a user wrote masked (a secret plait knows, a webhook's
``Authorization`` header, a token in a URL) so that showing an automation never shows a
secret. Notification rules are listed too, as read-only automations
(``plait.automations._rules``).

An automation made by ``plait deploy`` (source ``deployment:<id>``) belongs to its
deployment: it can be enabled and disabled here, not replaced or deleted.

The server's routes (``plait.server.routes.automations``) use the helpers here too
(``validated``, ``shown_automation``, ``deployment_owner``...), so both doors refuse and
answer alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from plait.automations._model import AutomationSpec, AutomationSpecError, parse_automation
from plait.automations._rules import SOURCE as RULE_SOURCE
from plait.automations._rules import find_rule_automation, read_only_message, rule_automations

if TYPE_CHECKING:
    from plait._api import ApiCalls, Call
    from plait._store.database import Database

__all__ = [
    "AutomationReadOnly",
    "create_automation",
    "load_automation_file",
    "list_automations",
    "get_automation",
    "enable_automation",
    "disable_automation",
    "delete_automation",
    "automation_actions",
]

T = TypeVar("T")
RECENT_ACTIONS = 20
ACTION_STATUSES = ("pending", "running", "done", "failed", "skipped")
_SENSITIVE_HEADER = re.compile(r"auth|token|secret|key|pass|signature|cookie|session", re.IGNORECASE)
_TEMPLATE_MARKS = ("{{", "{%", "{#")


class AutomationReadOnly(ValueError):
    """The automation cannot be changed this way: a deployment manages it (only enable and
    disable work), or it is a notification rule (``plait notification`` changes it)."""


# -- checks and answers shared with the server -------------------------------------------------------
def _template_leaves(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        if any(mark in value for mark in _TEMPLATE_MARKS):
            yield path, value
    elif isinstance(value, Mapping):
        for key, inner in value.items():
            yield from _template_leaves(inner, f"{path}.{key}")
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from _template_leaves(inner, f"{path}.{i}")


def validated(data: Mapping[str, Any] | AutomationSpec) -> AutomationSpec:
    """``data`` as a valid automation: its fields (``parse_automation``) and the syntax of
    every template in its actions.

    Raises:
        AutomationSpecError: Naming each bad field by its path (a template's with line and column).
    """
    spec = parse_automation(data)
    try:
        from plait.automations._templates import check_template
    except ImportError:  # pragma: no cover - part of plait; absent only while being built
        return spec
    problems = []
    for i, action in enumerate(spec.to_json()["actions"]):
        problems += _written_credentials(action, f"actions.{i}")
        for path, text in _template_leaves({k: v for k, v in action.items() if k != "type"}, f"actions.{i}"):
            try:
                check_template(text, what=f"{path} of automation {spec.name!r}")
            except ValueError as exc:
                problems.append(str(exc))
    if problems:
        raise AutomationSpecError(f"automation {spec.name!r} is not valid: " + "; ".join(problems))
    return spec


def _written_credentials(action: Mapping[str, Any], path: str) -> list[str]:
    """A webhook call's credential written into the automation (a header such as
    ``Authorization``, a URL's password or token): refused, since the store would then hold
    it in the clear; a template reading a secret block is what belongs there."""
    if action.get("type") != "call-webhook":
        return []
    from plait._masking import mask_url

    hint = "keep it in a secret block and write \"{{ secret('NAME') }}\" instead (docs/automations.md)"
    problems = []
    for name, value in (action.get("headers") or {}).items():
        if _SENSITIVE_HEADER.search(name) and isinstance(value, str) and not any(m in value for m in _TEMPLATE_MARKS):
            problems.append(f"{path}.headers.{name}: a credential written as it is; {hint}")
    url = action.get("url")
    if isinstance(url, str) and not any(m in url for m in _TEMPLATE_MARKS) and mask_url(url) != url:
        problems.append(f"{path}.url: holds a password or token; {hint}")
    return problems


def _masked(value: Any) -> Any:
    from plait._masking import mask

    if isinstance(value, str):
        return mask(value)
    if isinstance(value, Mapping):
        return {str(k): _masked(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked(v) for v in value]
    return value


def _shown_action_spec(action: Any) -> Any:
    """An action spec with its secrets hidden: every text masked, a webhook call's
    credential headers as ``***`` and the password or token of its URL masked."""
    from plait._masking import MASK, mask_url

    shown = _masked(action)
    if isinstance(shown, dict) and shown.get("type") == "call-webhook":
        headers = shown.get("headers")
        if isinstance(headers, dict):
            shown["headers"] = {k: MASK if _SENSITIVE_HEADER.search(k) else v for k, v in headers.items()}
        if isinstance(shown.get("url"), str):
            shown["url"] = mask_url(shown["url"])
    return shown


def shown_automation(row: Mapping[str, Any]) -> dict[str, Any]:
    """An automation as plait shows it (API, CLI, functions): the user's texts masked."""
    out = {str(k): v for k, v in row.items()}
    for key in ("description", "trigger"):
        if key in out:
            out[key] = _masked(out[key])
    if isinstance(out.get("actions"), list):
        out["actions"] = [_shown_action_spec(a) for a in out["actions"]]
    if isinstance(out.get("recent_actions"), list):
        out["recent_actions"] = [shown_action(a) for a in out["recent_actions"]]
    return out


def shown_action(row: Mapping[str, Any]) -> dict[str, Any]:
    """One action taken (or to be taken) as plait shows it: spec, result and error masked."""
    out = {str(k): v for k, v in row.items()}
    if "action" in out:
        out["action"] = _shown_action_spec(out["action"])
    for key in ("result", "error"):
        if out.get(key) is not None:
            out[key] = _masked(out[key])
    return out


def deployment_owner(db: Database, row: Mapping[str, Any]) -> str | None:
    """The deployment (``flow/name``, else its id) that manages the automation ``row``
    (its source is ``deployment:<id>``), or None."""
    source = str(row.get("source") or "")
    if not source.startswith("deployment:"):
        return None
    ref = source.removeprefix("deployment:")
    try:
        from plait._store.deployments import get_deployment as stored_deployment

        found = stored_deployment(db, ref)
    except (LookupError, ValueError):
        found = None
    return f"{found['flow_name']}/{found['name']}" if found else ref


def managed_message(row: Mapping[str, Any], owner: str, what: str) -> str:
    """Why ``what`` cannot be done to an automation a deployment manages."""
    return (f"cannot {what} automation {row.get('name')!r}: it belongs to deployment {owner} and is managed by "
            f"`plait deploy` (change that deployment's triggers and deploy it again); `plait automation "
            "enable` and `disable` still work on it")


def all_automations(db: Database) -> list[dict[str, Any]]:
    """The stored automations and the notification rules (read-only), by name."""
    from plait._store.automations import list_automations as stored

    items = [*stored(db), *rule_automations(db)]
    return sorted(items, key=lambda r: (str(r.get("name")), r.get("source") == RULE_SOURCE))


def find_automation(db: Database, key: str) -> dict[str, Any]:
    """The stored automation whose id or name is ``key``, else the notification rule's.

    Raises:
        LookupError: Neither (the store's message, with its hint).
    """
    from plait._store.automations import get_automation as stored

    try:
        return stored(db, key)
    except (KeyError, IndexError):
        raise
    except LookupError:
        rule = find_rule_automation(rule_automations(db), key)
        if rule is None:
            raise
        return rule


def with_recent_actions(db: Database, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with ``recent_actions``: its last 20 actions, newest first."""
    from plait._store.automations import list_automation_actions

    if row.get("source") == RULE_SOURCE:
        return {**row, "recent_actions": []}
    return {**row, "recent_actions": list_automation_actions(db, automation=row["id"], limit=RECENT_ACTIONS)}


def refusal_to_change(db: Database, row: Mapping[str, Any], what: str, *, deployments_too: bool) -> str | None:
    """Why the automation ``row`` cannot be changed this way (None: it can): a notification
    rule never; one a deployment manages only by enable and disable (``deployments_too``)."""
    if row.get("source") == RULE_SOURCE:
        return read_only_message(row, what)
    if deployments_too:
        owner = deployment_owner(db, row)
        if owner is not None:
            return managed_message(row, owner, what)
    return None


def save_checked(db: Database, spec: AutomationSpec) -> tuple[dict[str, Any], str]:
    """Save ``spec`` (``stored_form``) unless an automation a deployment manages has its name.

    Raises:
        AutomationReadOnly: A deployment manages the automation of that name.
    """
    from plait._store.automations import get_automation as stored
    from plait._store.automations import save_automation

    try:
        existing: dict[str, Any] | None = stored(db, spec.name)
    except (KeyError, IndexError):
        raise
    except LookupError:
        existing = None
    if existing is not None and existing.get("name") == spec.name:
        why = refusal_to_change(db, existing, "replace", deployments_too=True)
        if why is not None:
            raise AutomationReadOnly(why)
    return save_automation(db, stored_form(spec))


def stored_form(spec: AutomationSpec) -> dict[str, Any]:
    """What is stored of ``spec``: a secret plait knows is masked everywhere in it, actions
    too — the store never holds one in the clear. An action that needs a credential (a
    webhook call's ``Authorization`` header) reads it from a secret block when it is taken:
    ``"Bearer {{ secret('api-token') }}"``."""
    data = spec.to_json()
    data["description"] = _masked(data["description"])
    data["trigger"] = _masked(data["trigger"])
    data["actions"] = _masked(data["actions"])
    return data


# -- local or remote ---------------------------------------------------------------------------------
def _remote() -> bool:
    from plait.settings import get_settings

    return bool(get_settings().api_url)


def _api(make: Callable[[ApiCalls], Call[T]]) -> T:
    from plait._api import ApiSession

    with ApiSession.from_settings() as session:
        return session.call(make(session.calls))


def _db() -> Database:
    from plait._store.database import get_database

    return get_database()


def _key(key: str) -> str:
    if not isinstance(key, str) or not key.strip():
        raise LookupError("give an automation's name or id; `plait automation ls` lists them")
    return key.strip()


def _local_change(key: str, what: str, change: Callable[[Database, dict[str, Any]], dict[str, Any]],
                  *, deployments_too: bool) -> dict[str, Any]:
    db = _db()
    row = find_automation(db, _key(key))
    why = refusal_to_change(db, row, what, deployments_too=deployments_too)
    if why is not None:
        raise AutomationReadOnly(why)
    return shown_automation(change(db, row))


def create_automation(spec: Mapping[str, Any] | AutomationSpec) -> dict[str, Any]:
    """Save an automation by its name: created, or replaced by this spec.

    Args:
        spec: ``{name, description, enabled, trigger, actions}`` (as in a YAML file), or an
            ``AutomationSpec``.

    Returns:
        ``{"automation": {...}, "outcome": "created" | "updated" | "unchanged"}``.

    Raises:
        AutomationSpecError: The spec is invalid (each bad field named by its path).
        AutomationReadOnly: A deployment manages the automation of that name (locally;
            remotely the server's 409 is a ``plait.client.ApiError``).
    """
    checked = validated(spec)
    if _remote():
        answer = _api(lambda calls: calls.save_automation(checked.to_json()))
        return {"automation": shown_automation(answer["automation"]), "outcome": answer["outcome"]}
    row, outcome = save_checked(_db(), checked)
    return {"automation": shown_automation(row), "outcome": outcome}


def _file_entries(path: Path) -> list[Any]:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist; write one automation (name, trigger, actions) or "
                         "'automations:' with a list of them (see docs/automations.md)") from None
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {exc}") from None
    if isinstance(data, Mapping) and "automations" in data:
        extra = sorted(str(k) for k in data if k != "automations")
        if extra:
            raise ValueError(f"{path}: beside 'automations' a file holds nothing, found {', '.join(extra)}")
        entries = data["automations"]
        if not isinstance(entries, list) or not entries:
            raise ValueError(f"{path}: 'automations' must be a non-empty list of automations")
        return entries
    if isinstance(data, Mapping):
        return [data]
    raise ValueError(f"{path} holds {type(data).__name__}; write one automation (name, trigger, actions) or "
                     "'automations:' with a list of them")


def load_automation_file(path: str | Path) -> list[dict[str, Any]]:
    """Save the automations of a YAML (or JSON) file: one automation, or ``automations:``
    with a list. Every entry is checked before any is saved.

    Returns:
        One ``{"automation", "outcome"}`` per entry, in the file's order.

    Raises:
        ValueError: The file cannot be read, or an entry is invalid (``AutomationSpecError``
            naming the file, the entry and the field); nothing was saved then.
    """
    file = Path(path).expanduser()
    entries = _file_entries(file)
    specs: list[AutomationSpec] = []
    for i, entry in enumerate(entries):
        try:
            specs.append(validated(entry))
        except AutomationSpecError as exc:
            where = f"{file}: automation {i + 1}" if len(entries) > 1 else str(file)
            raise AutomationSpecError(f"{where}: {exc}") from None
    names = [s.name for s in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise AutomationSpecError(f"{file}: more than one automation named {', '.join(map(repr, twice))}")
    return [create_automation(spec) for spec in specs]


def list_automations() -> list[dict[str, Any]]:
    """Every automation by name, with the notification rules among them (``source``
    ``"notification-rule"``, ``read_only``)."""
    if _remote():
        return [shown_automation(r) for r in _api(lambda calls: calls.list_automations())]
    return [shown_automation(r) for r in all_automations(_db())]


def get_automation(key: str) -> dict[str, Any]:
    """One automation by name or id, with ``recent_actions`` (its last 20, newest first).

    Raises:
        LookupError: No automation (or notification rule) has that name or id.
    """
    if _remote():
        found: dict[str, Any] = _api(lambda calls: calls.get_automation(_key(key)))
        return shown_automation(found)
    db = _db()
    return shown_automation(with_recent_actions(db, find_automation(db, _key(key))))


def _set_enabled(key: str, enabled: bool) -> dict[str, Any]:
    if _remote():
        changed: dict[str, Any] = _api(lambda calls: calls.enable_automation(_key(key)) if enabled
                                       else calls.disable_automation(_key(key)))
        return shown_automation(changed)
    from plait._store.automations import set_automation_enabled

    return _local_change(key, "enable" if enabled else "disable",
                         lambda db, row: set_automation_enabled(db, row["id"], enabled), deployments_too=False)


def enable_automation(key: str) -> dict[str, Any]:
    """Enable an automation (its trigger counts events from now on).

    Raises:
        LookupError: No such automation.
        AutomationReadOnly: It is a notification rule (locally; remotely an ``ApiError`` 409).
    """
    return _set_enabled(key, True)


def disable_automation(key: str) -> dict[str, Any]:
    """Disable an automation: it takes no action until enabled again.

    Raises:
        LookupError: No such automation.
        AutomationReadOnly: It is a notification rule (locally; remotely an ``ApiError`` 409).
    """
    return _set_enabled(key, False)


def delete_automation(key: str) -> dict[str, Any]:
    """Delete an automation; returns what was deleted.

    Raises:
        LookupError: No such automation.
        AutomationReadOnly: A deployment manages it, or it is a notification rule (locally;
            remotely an ``ApiError`` 409).
    """
    if _remote():
        deleted: dict[str, Any] = _api(lambda calls: calls.delete_automation(_key(key)))
        return shown_automation(deleted)
    from plait._store.automations import delete_automation as stored_delete

    return _local_change(key, "delete", lambda db, row: stored_delete(db, row["id"]), deployments_too=True)


def automation_actions(key: str, *, status: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """The actions an automation took or is taking, newest first: ``{id, automation_name,
    type, status, action, created, started, finished, flow_run_id, result, error,
    event_kind...}``; a deleted automation's are still found by its name.

    Args:
        key: The automation's name or id.
        status: Only actions in this status: pending, running, done, failed or skipped.
        limit: At most this many (default 100).

    Raises:
        LookupError: No such automation.
        ValueError: An unknown status or a limit below 1.
    """
    if status is not None and status not in ACTION_STATUSES:
        raise ValueError(f"unknown action status {status!r}; use one of: {', '.join(ACTION_STATUSES)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a whole number >= 1, got {limit!r}")
    if _remote():
        rows = _api(lambda calls: calls.automation_actions(_key(key), status=status, limit=limit))
        return [shown_action(r) for r in rows]
    from plait._store.automations import list_automation_actions

    db = _db()
    try:
        row: dict[str, Any] | None = find_automation(db, _key(key))
    except (KeyError, IndexError):
        raise
    except LookupError as missing:
        row, gone = None, missing
    if row is not None and row.get("source") == RULE_SOURCE:
        return []
    found = list_automation_actions(db, automation=row["id"] if row else _key(key), status=status,
                                    limit=limit or 100)
    if row is None and not found:
        raise gone
    return [shown_action(r) for r in found]
