"""Automations: when something happens (or fails to happen), do something.

An automation is a trigger and one or more actions, saved by name and evaluated by the
plait server (one evaluator across all servers of a database). See docs/automations.md.
"""

from __future__ import annotations

from plait.automations._manage import (
    AutomationReadOnly,
    automation_actions,
    create_automation,
    delete_automation,
    disable_automation,
    enable_automation,
    get_automation,
    list_automations,
    load_automation_file,
)
from plait.automations._model import (
    ACTION_TYPES,
    AutomationSpec,
    AutomationSpecError,
    CompoundTrigger,
    EventTrigger,
    parse_automation,
)
from plait.automations._webhooks import (
    create_webhook,
    delete_webhook,
    get_webhook,
    list_webhooks,
    rotate_webhook_token,
    update_webhook,
)

__all__ = [
    "AutomationReadOnly",
    "automation_actions",
    "create_automation",
    "delete_automation",
    "disable_automation",
    "enable_automation",
    "get_automation",
    "list_automations",
    "load_automation_file",
    "create_webhook",
    "delete_webhook",
    "get_webhook",
    "list_webhooks",
    "rotate_webhook_token",
    "update_webhook",
    "ACTION_TYPES",
    "AutomationSpec",
    "AutomationSpecError",
    "CompoundTrigger",
    "EventTrigger",
    "parse_automation",
]
