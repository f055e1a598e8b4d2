"""What an automation is, as data: a trigger and the actions it takes, validated.

A value type with no I/O (``plait.automations`` builds on it; the deployments use it for
their triggers, which are automations that run them).

An automation is saved as JSON (``AutomationSpec.to_json()``) and read back the same way;
YAML files (``plait automation create -f``) and the API give the same dict. Names in a
trigger (``expect``, ``after``) are event kinds or globs over them; a state change is also
known by its state (``flow-run.completed``, ``task-run.failed``, ``flow-run.late``), so
"when the load completes" reads as it says.

Postures follow Prefect's where they overlap:

- reactive: fires when ``threshold`` events matching ``expect`` arrive within ``within``
  seconds of the first (0: no time limit), counted per ``for_each`` key; with ``after``, only
  events following one of those count;
- proactive: fires when fewer than ``threshold`` ``expect`` events arrive within ``within``
  seconds after an ``after`` event (without ``after``: of each window since the automation
  was saved or last fired) — the alert on what did not happen;
- compound: fires when ``require`` ("all", "any" or a number) of its triggers fired within
  ``within`` seconds of each other.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from plait.states import StateType

__all__ = [
    "ACTION_TYPES",
    "AutomationSpec",
    "AutomationSpecError",
    "EventTrigger",
    "CompoundTrigger",
    "parse_automation",
    "parse_seconds",
    "MAX_ACTIONS",
    "deployment_trigger_specs",
]

MAX_ACTIONS = 20
_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")
_EVENT_NAME = re.compile(r"^[a-z0-9*?\[\]][a-z0-9*?\[\]!._-]*$")
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,199}$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_MAX_WINDOW = 366 * 86400.0


class AutomationSpecError(ValueError):
    """An automation that cannot be saved; the message names each bad field by its path."""


def parse_seconds(value: Any, where: str = "within") -> float:
    """``90``, ``"90s"``, ``"30m"``, ``"2h"``, ``"1d"`` -> seconds.

    Raises:
        ValueError: Not a duration, negative, or over a year.
    """
    if isinstance(value, bool):
        raise ValueError(f"{where}: a duration like 30, '30s', '10m' or '2h', not {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (found := _DURATION.match(value)):
        seconds = float(found.group(1)) * _UNIT[found.group(2)]
    else:
        raise ValueError(f"{where}: a duration like 30, '30s', '10m' or '2h', not {value!r}")
    if not 0 <= seconds <= _MAX_WINDOW:
        raise ValueError(f"{where}: between 0 seconds and a year, not {value!r}")
    return seconds


def _strings(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ValueError(f"{where}: a name or a list of names")
    return items


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventTrigger(_Spec):
    """Events matching ``expect`` (and ``match``), counted per ``for_each`` key."""

    type: Literal["event"] = "event"
    posture: Literal["reactive", "proactive"] = "reactive"
    expect: list[str] = Field(default_factory=list, description="Event names or globs; none: any event.")
    after: list[str] = Field(default_factory=list, description="Events that open the window first.")
    match: dict[str, str | list[str]] = Field(
        default_factory=dict, description="Label (or payload.<path>) -> glob or list of globs; '!' negates.")
    for_each: list[str] = Field(default_factory=list, description="Labels that key separate windows.")
    threshold: int = Field(default=1, ge=1, le=1_000_000)
    within: float = Field(default=0.0, description="Seconds (or '10m', '2h').")

    @field_validator("expect", "after", mode="before")
    @classmethod
    def _names(cls, value: Any) -> list[str]:
        names = _strings(value, "event names")
        for name in names:
            if not _EVENT_NAME.match(name):
                raise ValueError(f"{name!r} is not an event name or glob like 'flow-run.completed' or 'block.*'")
        return names

    @field_validator("for_each", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> list[str]:
        labels = _strings(value, "for_each")
        for label in labels:
            if not _LABEL.match(label):
                raise ValueError(f"{label!r} is not a label name such as 'deployment' or 'resource'")
        return labels

    @field_validator("match", mode="before")
    @classmethod
    def _match(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, Mapping):
            for key in value:
                if not isinstance(key, str) or not _LABEL.match(key):
                    raise ValueError(f"{key!r} is not a label name such as 'deployment' or 'payload.table'")
        return value

    @field_validator("within", mode="before")
    @classmethod
    def _within(cls, value: Any) -> float:
        return parse_seconds(value)

    @model_validator(mode="after")
    def _window(self) -> EventTrigger:
        if self.posture == "proactive" and self.within <= 0:
            raise ValueError("a proactive trigger needs a window: within is how long to wait for what is expected")
        return self


class CompoundTrigger(_Spec):
    """Several triggers, of which ``require`` must fire within ``within`` seconds."""

    type: Literal["compound"] = "compound"
    require: Literal["all", "any"] | int = "all"
    within: float = 0.0
    triggers: list[EventTrigger] = Field(min_length=1, max_length=20)

    @field_validator("within", mode="before")
    @classmethod
    def _within(cls, value: Any) -> float:
        return parse_seconds(value)

    @model_validator(mode="after")
    def _require(self) -> CompoundTrigger:
        if isinstance(self.require, int) and not 1 <= self.require <= len(self.triggers):
            raise ValueError(f"require: a number from 1 to {len(self.triggers)} (its triggers), or 'all' or 'any'")
        return self

    @property
    def needed(self) -> int:
        if self.require == "all":
            return len(self.triggers)
        if self.require == "any":
            return 1
        return int(self.require)


Trigger = Annotated[EventTrigger | CompoundTrigger, Field(discriminator="type")]


# -- actions ---------------------------------------------------------------------------------------
class RunDeployment(_Spec):
    type: Literal["run-deployment"]
    deployment: str | None = Field(default=None, description="'flow/name'; none: the triggering run's.")
    parameters: dict[str, Any] = Field(default_factory=dict)
    job_variables: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)


class SendNotification(_Spec):
    type: Literal["send-notification"]
    block: str = Field(min_length=1, description="A saved notification block, 'slug/name'.")
    subject: str = "plait: {{ automation.name }} fired"
    body: str = ("{{ event.kind }} of {{ event.resource }}"
                 "{% if flow_run %} ({{ flow_run.flow_name }} / {{ flow_run.name }}: {{ flow_run.state_name }})"
                 "{% endif %}")


class FlowRunAction(_Spec):
    type: Literal["cancel-flow-run", "suspend-flow-run", "resume-flow-run"]
    flow_run_id: str | None = None


class ChangeFlowRunState(_Spec):
    type: Literal["change-flow-run-state"]
    flow_run_id: str | None = None
    state: StateType
    name: str | None = None
    message: str | None = None

    @field_validator("state", mode="before")
    @classmethod
    def _state(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value


class DeploymentAction(_Spec):
    type: Literal["pause-deployment", "resume-deployment"]
    deployment: str | None = None


class WorkPoolAction(_Spec):
    type: Literal["pause-work-pool", "resume-work-pool"]
    work_pool: str | None = None


class CallWebhook(_Spec):
    type: Literal["call-webhook"]
    url: str = Field(min_length=1, max_length=2000)
    method: Literal["POST", "PUT", "PATCH", "GET", "DELETE"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    timeout: float = Field(default=10.0, gt=0, le=300)

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value


Action = Annotated[
    RunDeployment | SendNotification | FlowRunAction | ChangeFlowRunState | DeploymentAction | WorkPoolAction
    | CallWebhook,
    Field(discriminator="type"),
]
ACTION_TYPES = (
    "run-deployment", "send-notification", "cancel-flow-run", "suspend-flow-run", "resume-flow-run",
    "change-flow-run-state", "pause-deployment", "resume-deployment", "pause-work-pool", "resume-work-pool",
    "call-webhook",
)


class AutomationSpec(_Spec):
    """A trigger and 1 to 20 actions, saved under a unique name."""

    name: str
    description: str = Field(default="", max_length=20000)
    enabled: bool = True
    trigger: Trigger
    actions: list[Action] = Field(min_length=1, max_length=MAX_ACTIONS)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = value.strip()
        if not _NAME.match(value):
            raise ValueError("a name of 1 to 200 characters without control characters")
        return value

    def to_json(self) -> dict[str, Any]:
        """The stored form (what ``parse_automation`` reads back)."""
        return self.model_dump(mode="json")


_SHOWN_ONLY = frozenset({"id", "source", "created", "updated", "recent_actions", "managed_by"})


def _action_type_hint(data: Any) -> None:
    actions = data.get("actions") if isinstance(data, Mapping) else None
    for i, action in enumerate(actions if isinstance(actions, list) else []):
        kind = action.get("type") if isinstance(action, Mapping) else None
        if kind not in ACTION_TYPES:
            raise AutomationSpecError(
                f"actions.{i}.type: {kind!r} is not an action; use one of: {', '.join(ACTION_TYPES)}")


def parse_automation(data: Any) -> AutomationSpec:
    """A dict (from YAML, JSON or the API) as a validated automation.

    A trigger without ``type`` is an event trigger; the fields the store adds (``id``,
    ``source``, ``created``...) are ignored. Raises ``AutomationSpecError`` naming
    every bad field by its path (``trigger.within: ...``, ``actions.0.deployment: ...``).
    """
    if isinstance(data, AutomationSpec):
        return data
    if not isinstance(data, Mapping):
        raise AutomationSpecError(
            f"an automation is a mapping with name, trigger and actions, not {type(data).__name__}")
    # what the store adds: an automation shown by `inspect --json` can be saved back as it is
    data = {k: v for k, v in data.items() if k not in _SHOWN_ONLY}
    trigger = data.get("trigger")
    if isinstance(trigger, Mapping) and "type" not in trigger:
        data["trigger"] = {"type": "compound" if "triggers" in trigger else "event", **trigger}
    if isinstance(data.get("trigger"), Mapping) and data["trigger"].get("type") == "compound":
        children = data["trigger"].get("triggers")
        if isinstance(children, list):
            data["trigger"] = {**data["trigger"], "triggers": [
                {"type": "event", **c} if isinstance(c, Mapping) and "type" not in c else c for c in children]}
    _action_type_hint(data)
    try:
        return AutomationSpec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            path = ".".join(str(p) for p in error["loc"] if p not in ("event", "compound") and not (
                isinstance(p, str) and p in ACTION_TYPES))
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{path}: {message}" if path else message)
        name = data.get("name")
        where = f"automation {name!r}" if isinstance(name, str) and name else "the automation"
        raise AutomationSpecError(f"{where} is not valid: " + "; ".join(problems)) from None


# -- deployment triggers ---------------------------------------------------------------------------
_TRIGGER_KEYS = {"posture", "expect", "after", "match", "for_each", "threshold", "within", "type", "require",
                 "triggers"}
_RUN_KEYS = {"parameters", "job_variables", "tags"}


def deployment_trigger_specs(deployment: str, triggers: Any) -> list[dict[str, Any]]:
    """A deployment's ``triggers`` as the automations that run it, validated.

    Each item is either an automation spec already (``trigger`` and ``actions``), or the
    shorthand: ``{deployment: "flow/name", states: [completed]}`` ("when a run of that
    deployment completes") or the fields of an event or compound trigger, plus optional
    ``name``, ``description``, ``enabled`` and the run's ``parameters`` (templates over the
    triggering event and flow run), ``job_variables`` and ``tags``. The automations are
    named ``"<deployment>: trigger <n>"`` unless named.

    Raises:
        AutomationSpecError: An item that is not a trigger, naming it by position.
    """
    if triggers is None:
        return []
    if not isinstance(triggers, list):
        raise AutomationSpecError(f"deployment {deployment!r}: triggers is a list, not {type(triggers).__name__}")
    specs: list[dict[str, Any]] = []
    for index, item in enumerate(triggers, start=1):
        where = f"deployment {deployment!r}, trigger {index}"
        if not isinstance(item, Mapping):
            raise AutomationSpecError(f"{where}: a mapping such as {{deployment: flow/name, states: [completed]}}")
        item = dict(item)
        if "trigger" in item and "actions" in item:
            specs.append(parse_automation(item).to_json())
            continue
        shown = {k: item.pop(k) for k in ("name", "description", "enabled") if k in item}
        run = {k: item.pop(k) for k in _RUN_KEYS if k in item}
        upstream = item.pop("deployment", None)
        states = item.pop("states", None)
        if upstream is not None:
            if not isinstance(upstream, str) or "/" not in upstream:
                raise AutomationSpecError(f"{where}: deployment is 'flow/name' of the upstream deployment, "
                                          f"not {upstream!r}")
            names = _strings(states if states is not None else ["completed"], f"{where}: states")
            item.setdefault("expect", [f"flow-run.{s.strip().lower()}" for s in names])
            item["match"] = {"deployment": upstream, **dict(item.get("match") or {})}
        elif states is not None:
            raise AutomationSpecError(f"{where}: states needs the upstream deployment ('deployment: flow/name')")
        unknown = sorted(set(item) - _TRIGGER_KEYS)
        if unknown:
            raise AutomationSpecError(
                f"{where}: unknown field(s) {', '.join(unknown)}; a trigger takes deployment and states, or "
                f"{', '.join(sorted(_TRIGGER_KEYS))}, with name, description, enabled, "
                f"{', '.join(sorted(_RUN_KEYS))}")
        spec = {"name": shown.get("name") or f"{deployment}: trigger {index}",
                "description": shown.get("description") or f"runs {deployment}",
                "enabled": shown.get("enabled", True), "trigger": item,
                "actions": [{"type": "run-deployment", "deployment": deployment, **run}]}
        try:
            specs.append(parse_automation(spec).to_json())
        except AutomationSpecError as exc:
            raise AutomationSpecError(f"{where}: {exc}") from None
    names = [s["name"] for s in specs]
    if len(set(names)) != len(names):
        raise AutomationSpecError(f"deployment {deployment!r}: two triggers have one name; name them apart")
    return specs
