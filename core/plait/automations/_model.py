"""The automation spec (``plait._automation_model``, a value type below the deployments,
whose triggers are automations too), under the name the automations package uses."""

from __future__ import annotations

from plait._automation_model import (
    ACTION_TYPES,
    MAX_ACTIONS,
    AutomationSpec,
    AutomationSpecError,
    CompoundTrigger,
    EventTrigger,
    parse_automation,
    parse_seconds,
)

__all__ = [
    "ACTION_TYPES",
    "MAX_ACTIONS",
    "AutomationSpec",
    "AutomationSpecError",
    "CompoundTrigger",
    "EventTrigger",
    "parse_automation",
    "parse_seconds",
]
