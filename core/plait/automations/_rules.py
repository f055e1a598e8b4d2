"""Notification rules shown as automations, read-only.

A notification rule (``plait notification create``) is an automation in all but storage: a
reactive trigger on flow run state changes and one ``send-notification`` action. Listing
automations shows both kinds, so ``plait automation ls`` and ``GET /automations`` answer
where every alert comes from. The rules stay where they are (``plait._store.rules``) and are
still delivered by the notification hook; changing one is ``plait notification``'s job, so
these items carry ``read_only: true`` and ``source: "notification-rule"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from plait._store.database import Database

__all__ = ["SOURCE", "rule_as_automation", "rule_automations", "find_rule_automation", "read_only_message"]

SOURCE = "notification-rule"


def _describe(rule: Mapping[str, Any]) -> str:
    flows = "any flow" if rule.get("flow_name", "*") == "*" else f"flows matching {rule['flow_name']!r}"
    tags = list(rule.get("tags") or [])
    tagged = f" tagged {', '.join(tags)}" if tags else ""
    states = " or ".join(str(s) for s in rule.get("states") or [])
    return (f"Notification rule: notify through {rule.get('block')} when a flow run of {flows}{tagged} enters "
            f"{states}. Managed by `plait notification`.")


def rule_as_automation(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A rule (``{id, name, block, flow_name, tags, states, enabled, created}``) as an
    automation dict, with the rule itself under ``rule``."""
    from plait.automations._model import AutomationSpecError, parse_automation

    glob = str(rule.get("flow_name") or "*")
    spec: dict[str, Any] = {
        "name": str(rule["name"]),
        "description": _describe(rule),
        "enabled": bool(rule.get("enabled", True)),
        "trigger": {
            "type": "event", "posture": "reactive",
            "expect": [f"flow-run.{str(s).lower()}" for s in rule.get("states") or []],
            "match": {} if glob == "*" else {"payload.flow_name": glob},
        },
        "actions": [{"type": "send-notification", "block": str(rule.get("block") or "")}],
    }
    try:
        spec = parse_automation(spec).to_json()  # the defaults an automation shows
    except AutomationSpecError:
        pass  # a rule stored before today's rules on names: shown as it is
    created = rule.get("created")
    created_text = created.isoformat() if isinstance(created, datetime) else created
    return {
        "id": str(rule["id"]), **spec, "source": SOURCE, "read_only": True,
        "created": created_text, "updated": created_text,
        "rule": {k: rule.get(k) for k in ("block", "flow_name", "tags", "states")},
    }


def rule_automations(db: Database) -> list[dict[str, Any]]:
    """Every notification rule of the store, as automations (oldest first)."""
    from plait._store.rules import list_rules

    return [rule_as_automation({
        "id": r.id, "name": r.name, "block": r.block, "flow_name": r.flow_name, "tags": list(r.tags),
        "states": list(r.states), "enabled": r.enabled, "created": r.created,
    }) for r in list_rules(db)]


def find_rule_automation(items: Iterable[Mapping[str, Any]], key: str) -> dict[str, Any] | None:
    """The rule automation whose id or name is ``key`` (None: none)."""
    for field in ("id", "name"):
        for item in items:
            if item.get("source") == SOURCE and item.get(field) == key:
                return dict(item)
    return None


def read_only_message(item: Mapping[str, Any], what: str) -> str:
    """Why ``what`` (enable, disable, delete, replace) cannot be done to a rule's automation."""
    name = item.get("name")
    return (f"cannot {what} {name!r}: it is a notification rule, shown as an automation; change it with "
            f"`plait notification` (`plait notification delete {name}`), or write an automation with a "
            "send-notification action instead")
