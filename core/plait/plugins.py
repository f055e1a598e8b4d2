"""The plugin manager: discovery, compatibility checks, isolation, diagnoses.

Plugins are modules named by entry points in the group ``plait.plugins`` — the built-in
blocks load this way too. Loading never crashes the core: a plugin that fails to import,
declares a plait range excluding this version, or whose hook raises becomes a
``Diagnosis`` (shown once as a warning and by ``plait plugins ls``). ``PLAIT_PLUGINS``
restricts which plugins load; ``PLAIT_PLUGINS_STRICT=true`` turns diagnoses into errors.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any, Callable

import pluggy

from plait import hookspecs
from plait.exceptions import PlaitError

__all__ = [
    "Diagnosis",
    "PluginInfo",
    "PluginError",
    "StateChangeEvent",
    "get_plugin_manager",
    "plugins",
    "diagnoses",
    "call_each",
    "block_classes",
    "registered_tasks",
    "registered_flows",
    "infrastructure_kinds",
    "reset_plugins",
]

ENTRY_POINT_GROUP = "plait.plugins"
logger = logging.getLogger("plait.plugins")


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
    """A discovered plugin: where it came from and whether it loaded."""

    name: str
    module: str
    distribution: str | None
    version: str | None
    requires_plait: str | None
    loaded: bool
    hooks: list[str] = field(default_factory=list)

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


class _Registry:
    """What loaded plugins registered, by hook family."""

    def __init__(self) -> None:
        self.blocks: dict[str, type] = {}
        self.block_owner: dict[str, str] = {}
        self.tasks: list[tuple[str, Any]] = []
        self.flows: list[tuple[str, Any]] = []
        self.storage: dict[str, Callable[[str], Any]] = {}
        self.infrastructure: dict[str, type] = {}


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.manager: pluggy.PluginManager | None = None
        self.infos: list[PluginInfo] = []
        self.diagnoses: list[Diagnosis] = []
        self.registry = _Registry()
        self.warned = False
        self.has_lifecycle = (False, False)


_state = _State()


def _plait_version() -> str:
    from plait import __version__

    return __version__


def _requirement_on_plait(dist: metadata.Distribution | None, module: Any) -> str | None:
    """The plait range a plugin supports: ``PLAIT_REQUIRES`` in the module, else its dist's
    ``Requires-Dist: plait...``."""
    declared = getattr(module, "PLAIT_REQUIRES", None) if module is not None else None
    if declared:
        return str(declared)
    if dist is None:
        return None
    from packaging.requirements import Requirement

    for line in dist.requires or ():
        try:
            req = Requirement(line)
        except Exception:
            continue
        if req.name.lower() == "plait" and not req.marker:
            return str(req.specifier) or None
    return None


def _compatible(spec: str | None) -> bool:
    if not spec:
        return True
    from packaging.specifiers import SpecifierSet

    return SpecifierSet(spec).contains(_plait_version(), prereleases=True)


def _selected() -> set[str] | None:
    raw = os.environ.get("PLAIT_PLUGINS")
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def _strict() -> bool:
    return os.environ.get("PLAIT_PLUGINS_STRICT", "").lower() in ("1", "true", "yes")


def _diagnose(plugin: str, version: str | None, reason: str, fix: str) -> None:
    diagnosis = Diagnosis(plugin, version, reason, fix)
    _state.diagnoses.append(diagnosis)
    if _strict():
        raise PluginError(str(diagnosis))


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loading plugins on first use."""
    if _state.manager is not None:
        return _state.manager
    with _state.lock:
        if _state.manager is None:
            _load()
        return _state.manager  # type: ignore[return-value]


def _load() -> None:
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    if os.environ.get("PLAIT_TRACE_PLUGINS"):
        manager.trace.root.setwriter(lambda text: sys.stderr.write(f"plait plugin trace: {text}"))
        manager.enable_tracing()
    _state.manager = manager
    _state.infos = []
    _state.diagnoses = []
    _state.registry = _Registry()
    selected = _selected()
    try:
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if selected is not None and ep.name not in selected:
                continue
            _load_entry_point(manager, ep)
        for name in sorted(_extra_plugins):
            if selected is None or name in selected:
                _register_module(manager, name, _extra_plugins[name], None, None)
        _collect_registrations(manager)
    except PluginError:
        _state.manager = None  # strict mode: try again (and fail again) next time
        raise
    _state.has_lifecycle = (
        bool(manager.hook.plait_flow_run_state_changed.get_hookimpls())
        or bool(manager.hook.plait_notify.get_hookimpls()),
        bool(manager.hook.plait_task_run_state_changed.get_hookimpls()),
    )
    if _state.diagnoses and not _state.warned:
        _state.warned = True
        names = ", ".join(sorted({d.plugin for d in _state.diagnoses}))
        logger.warning(
            "%d plugin problem%s (%s); run `plait plugins ls` for details",
            len(_state.diagnoses), "" if len(_state.diagnoses) == 1 else "s", names,
        )


def _load_entry_point(manager: pluggy.PluginManager, ep: metadata.EntryPoint) -> None:
    dist = getattr(ep, "dist", None)
    dist_name = dist.metadata["Name"] if dist is not None else None
    version = dist.version if dist is not None else None
    info = PluginInfo(ep.name, ep.value, dist_name, version, None, loaded=False)
    _state.infos.append(info)
    try:
        module = ep.load()
    except Exception as exc:
        _diagnose(ep.name, version, f"failed to import {ep.value} ({type(exc).__name__}: {exc})",
                  f"reinstall or upgrade {dist_name or ep.name}, or exclude it with PLAIT_PLUGINS")
        return
    try:
        info.requires_plait = _requirement_on_plait(dist, module)
        compatible = _compatible(info.requires_plait)
    except Exception as exc:
        _diagnose(ep.name, version, f"declares an unreadable plait range ({exc})", "fix the plugin's metadata")
        return
    if not compatible:
        _diagnose(
            ep.name, version,
            f"supports plait{info.requires_plait}, but plait {_plait_version()} is installed",
            f"install a version of {dist_name or ep.name} that supports plait {_plait_version()}",
        )
        return
    _register_module(manager, ep.name, module, info, version)


def _register_module(manager: pluggy.PluginManager, name: str, module: Any, info: PluginInfo | None, version: str | None) -> None:
    if info is None:
        info = PluginInfo(name, getattr(module, "__name__", repr(module)), None, None,
                          getattr(module, "PLAIT_REQUIRES", None), loaded=False)
        _state.infos.append(info)
    try:
        manager.register(module, name=name)
    except Exception as exc:  # pluggy.PluginValidationError names the hook and the argument
        _diagnose(name, version, f"its hooks do not match the contract ({exc})",
                  "fix the hook signature to match plait.hookspecs")
        return
    info.loaded = True
    info.hooks = sorted(impl.name for impl in manager.get_hookcallers(module) or ())


def call_each(hook_name: str, **kwargs: Any) -> list[Any]:
    """Call every implementation of a hook, isolating failures as diagnoses."""
    manager = get_plugin_manager()
    results = []
    for impl in getattr(manager.hook, hook_name).get_hookimpls():
        try:
            results.append(impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames}))
        except PluginError:
            raise
        except Exception as exc:
            version = next((i.version for i in _state.infos if i.name == impl.plugin_name), None)
            _diagnose(impl.plugin_name, version, f"hook {hook_name} raised {type(exc).__name__}: {exc}",
                      "report it to the plugin's authors; other plugins keep working")
            logger.warning("plugin %s: hook %s raised %s: %s", impl.plugin_name, hook_name, type(exc).__name__, exc)
    return results


def _collect_registrations(manager: pluggy.PluginManager) -> None:
    registry = _state.registry
    current: list[str] = [""]  # the plugin whose hook is running, to record ownership

    def register_block(cls: type) -> None:
        from plait.blocks import Block

        if not (isinstance(cls, type) and issubclass(cls, Block)):
            raise TypeError(f"register() takes a Block subclass, got {cls!r}")
        slug = cls.block_type_slug
        if slug in registry.blocks and registry.blocks[slug] is not cls:
            raise ValueError(f"block type {slug!r} is already registered by plugin {registry.block_owner[slug]!r}")
        registry.blocks[slug] = cls
        registry.block_owner[slug] = current[0]

    def register_task(obj: Any, name: str | None = None) -> None:
        registry.tasks.append((current[0], obj))

    def register_flow(obj: Any, name: str | None = None) -> None:
        registry.flows.append((current[0], obj))

    def register_storage(scheme: str, factory: Callable[[str], Any]) -> None:
        if not callable(factory):
            raise TypeError(f"storage factory for {scheme!r} must be callable")
        registry.storage[scheme.lower().removesuffix("://")] = factory

    def register_infrastructure(kind: str, cls: type) -> None:
        registry.infrastructure[kind] = cls

    for hook_name, register in (
        ("plait_register_blocks", register_block),
        ("plait_register_tasks", register_task),
        ("plait_register_flows", register_flow),
        ("plait_register_storage", register_storage),
        ("plait_register_infrastructure", register_infrastructure),
    ):
        for impl in getattr(manager.hook, hook_name).get_hookimpls():
            current[0] = impl.plugin_name
            try:
                impl.function(register=register)
            except PluginError:
                raise
            except Exception as exc:
                version = next((i.version for i in _state.infos if i.name == impl.plugin_name), None)
                _diagnose(impl.plugin_name, version, f"hook {hook_name} raised {type(exc).__name__}: {exc}",
                          "fix the plugin; its other registrations still load")
    from plait import results

    for scheme, factory in registry.storage.items():
        results.register_storage_scheme(scheme, factory)


# -- what the rest of plait asks ---------------------------------------------------------------
def plugins() -> list[PluginInfo]:
    get_plugin_manager()
    return list(_state.infos)


def diagnoses() -> list[Diagnosis]:
    get_plugin_manager()
    return list(_state.diagnoses)


def block_classes() -> dict[str, type]:
    get_plugin_manager()
    return dict(_state.registry.blocks)


def registered_tasks() -> list[tuple[str, Any]]:
    get_plugin_manager()
    return list(_state.registry.tasks)


def registered_flows() -> list[tuple[str, Any]]:
    get_plugin_manager()
    return list(_state.registry.flows)


def infrastructure_kinds() -> dict[str, type]:
    get_plugin_manager()
    return dict(_state.registry.infrastructure)


def lifecycle_observers() -> tuple[bool, bool]:
    """(flow-level hooks present, task-level hooks present) — lets the engine skip the calls."""
    get_plugin_manager()
    return _state.has_lifecycle


_extra_plugins: dict[str, Any] = {}


def register_plugin(name: str, module: Any) -> None:
    """Add a plugin module by hand (tests, notebooks); takes effect at the next load."""
    _extra_plugins[name] = module
    reset_plugins()


def unregister_plugin(name: str) -> None:
    _extra_plugins.pop(name, None)
    reset_plugins()


def reset_plugins() -> None:
    """Forget loaded plugins; the next use loads them again (e.g. after PLAIT_PLUGINS changed)."""
    with _state.lock:
        from plait import results

        for scheme in _state.registry.storage:
            results._SCHEME_FACTORIES.pop(scheme, None)
        results._RESOLVED.clear()
        _state.manager = None
        _state.warned = False
