"""The values ``plait.plugins`` hands out: diagnoses, plugin infos, the notification event."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from plait.exceptions import PlaitError

__all__ = ["Diagnosis", "PluginInfo", "PluginError", "StateChangeEvent"]


class PluginError(PlaitError):
    """A plugin could not be loaded or used (raised only in strict mode)."""


@dataclass
class Diagnosis:
    """Why a plugin (or one of its hooks) is not working, and what to do."""

    plugin: str
    version: str | None
    reason: str
    fix: str

    def __str__(self) -> str:
        version = f" {self.version}" if self.version else ""
        return f"{self.plugin}{version}: {self.reason}. {self.fix}"


@dataclass
class PluginInfo:
    """A discovered plugin: where it came from, what it declares, whether it is loaded.

    ``status`` is ``"loaded"``, ``"not imported"`` (nothing it provides was needed yet),
    ``"failed"`` (see the diagnoses) or ``"incompatible"`` (never imported). ``hooks`` are
    the hooks it implements once loaded, else the ones it declares.
    """

    name: str
    module: str
    distribution: str | None
    version: str | None
    requires_plait: str | None
    loaded: bool
    hooks: list[str] = field(default_factory=list)
    status: str = "not imported"
    default: bool = False
    declares: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StateChangeEvent:
    """What the notification hook receives when a flow run enters a state."""

    flow_run_id: str
    flow_run_name: str
    flow_name: str
    tags: tuple[str, ...]
    state_type: str
    state_name: str
    state_message: str
    timestamp: str
    parameters: dict[str, Any]


for _cls in (Diagnosis, PluginInfo, PluginError, StateChangeEvent):
    _cls.__module__ = "plait.plugins"  # where users import them from
