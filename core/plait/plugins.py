"""The plugin manager: discovery from metadata, lazy imports, pluggy calls, isolation, diagnoses.

Plugins are modules named by entry points in the group ``plait.plugins``; what each provides
(block types, storage schemes, infrastructure kinds, run-time hooks) is declared in its
distribution's metadata, so a plugin is imported only when something it provides is first
needed. The built-in blocks are a default plugin, loaded by module name whatever
``PLAIT_PLUGINS`` says. Hooks are called through pluggy (``tryfirst``/``trylast``, wrappers,
``PLAIT_TRACE_PLUGINS=1`` tracing); a plugin that fails to import, supports another plait,
has a malformed hook or whose hook raises becomes a ``Diagnosis`` — one per plugin and
hook — shown by ``plait plugins ls``, never a crash. ``PLAIT_PLUGINS_STRICT=true`` turns
diagnoses into ``PluginError``. See docs/plugins.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pluggy

from plait import _plugin_state as _st
from plait._plugin_discovery import DECLARATION_GROUPS, DEFAULT_PLUGINS, ENTRY_POINT_GROUP
from plait._plugin_records import Diagnosis, PluginError, PluginInfo, StateChangeEvent

__all__ = [
    "DECLARATION_GROUPS",
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "Diagnosis",
    "PluginInfo",
    "PluginError",
    "StateChangeEvent",
    "get_plugin_manager",
    "plugins",
    "diagnoses",
    "call_hook",
    "call_each",
    "hook_caller",
    "block_class",
    "block_owner",
    "block_classes",
    "block_registry",
    "registered_tasks",
    "registered_flows",
    "infrastructure_class",
    "infrastructure_kinds",
    "task_runner_class",
    "task_runner_names",
    "storage_factory",
    "lifecycle_observers",
    "load_all",
    "register_plugin",
    "unregister_plugin",
    "reset_plugins",
]


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide pluggy manager, after discovery.

    Holds the plugins imported so far (the default plugins, those that declare nothing, and
    any whose contributions were needed); ``load_all()`` imports the rest. Call hooks with
    ``call_hook`` so the plugins that declare a hook are imported first.
    """
    return _st.session().manager


def plugins() -> list[PluginInfo]:
    """Every discovered plugin, imported or not (nothing is imported to list them)."""
    return _st.session().infos()


def diagnoses() -> list[Diagnosis]:
    """The problems found so far (plugins not imported yet have not been checked: see load_all)."""
    return list(_st.session().diagnoses.values())


def load_all() -> None:
    """Import every plugin now (``plait plugins ls --load``; checks each against its declarations)."""
    _st.session().load_all()


# -- hooks ------------------------------------------------------------------------------------
def hook_caller(hook_name: str) -> pluggy.HookCaller:
    """pluggy's caller for ``hook_name``, once every plugin declaring the hook is imported.

    Raises:
        AttributeError: No such hook (see plait.hookspecs).
    """
    live = _st.session()
    live.ensure_hook(hook_name)
    caller: pluggy.HookCaller = getattr(live.manager.hook, hook_name)
    return caller


def call_hook(hook_name: str, **kwargs: Any) -> list[Any]:
    """Call a hook through pluggy; returns the implementations' non-None answers.

    Each implementation is isolated: one that raises is recorded once as a diagnosis and
    answers nothing; the others still run.
    """
    answers: list[Any] = hook_caller(hook_name)(**kwargs)
    return answers


call_each = call_hook  # the name of plait 0.1


def lifecycle_observers() -> tuple[bool, bool]:
    """(flow-level hooks present, task-level hooks present) — lets the engine skip the calls.

    Imports the plugins that declare a run-time hook.
    """
    live = _st.session()
    for hook in ("plait_flow_run_state_changed", "plait_notify", "plait_task_run_state_changed"):
        live.ensure_hook(hook)
    relay = live.manager.hook
    flows = bool(relay.plait_flow_run_state_changed.get_hookimpls() or relay.plait_notify.get_hookimpls())
    return flows, bool(relay.plait_task_run_state_changed.get_hookimpls())


# -- what plugins provide ---------------------------------------------------------------------
def block_class(slug: str) -> type | None:
    """The Block class registered as ``slug``, importing only the plugin that declares it."""
    live = _st.session()
    live.ensure("block_types", slug)
    return live.blocks.get(slug)


def block_owner(slug: str) -> str | None:
    """The plugin providing block type ``slug`` (from its declaration; nothing is imported)."""
    return _st.session().claims["block_types"].get(slug)


def block_classes() -> dict[str, type]:
    """Every registered Block class by slug (imports every plugin that offers blocks)."""
    live = _st.session()
    live.ensure_hook("plait_register_blocks")
    return dict(live.blocks)


class _BlockRegistry(Mapping[str, type]):
    """Block classes by slug: a lookup imports one plugin, iterating imports them all."""

    def __getitem__(self, slug: str) -> type:
        cls = block_class(slug)
        if cls is None:
            raise KeyError(slug)
        return cls

    def __iter__(self) -> Iterator[str]:
        return iter(block_classes())

    def __len__(self) -> int:
        return len(block_classes())

    def __contains__(self, slug: object) -> bool:
        return isinstance(slug, str) and block_class(slug) is not None


def block_registry() -> Mapping[str, type]:
    """A read-only mapping of slug -> Block class that imports plugins only as needed."""
    return _BlockRegistry()


def registered_tasks() -> list[tuple[str, Any]]:
    """``(plugin, task)`` for every prebuilt task (imports the plugins that declare tasks)."""
    live = _st.session()
    live.ensure_hook("plait_register_tasks")
    return [(name, t) for name, p in live.plugins.items() for t in p.contributions.tasks]


def registered_flows() -> list[tuple[str, Any]]:
    """``(plugin, flow)`` for every prebuilt flow (imports the plugins that declare flows)."""
    live = _st.session()
    live.ensure_hook("plait_register_flows")
    return [(name, f) for name, p in live.plugins.items() for f in p.contributions.flows]


def infrastructure_class(kind: str) -> type | None:
    """The block class of infrastructure ``kind``, importing only the plugin that declares it."""
    live = _st.session()
    live.ensure("infrastructure", kind)
    return live.infrastructure.get(kind)


def infrastructure_kinds() -> dict[str, type]:
    """Every infrastructure kind (imports every plugin that offers infrastructure)."""
    live = _st.session()
    live.ensure_hook("plait_register_infrastructure")
    return dict(live.infrastructure)


def task_runner_class(name: str) -> type | None:
    """The task runner class registered as ``name`` (``"dask"``), importing only the plugin
    that declares it; None when no plugin offers it."""
    live = _st.session()
    live.ensure("task_runners", name)
    return live.task_runners.get(name)


def task_runner_names() -> dict[str, type]:
    """Every task runner plugins offer (imports every plugin that offers one)."""
    live = _st.session()
    live.ensure_hook("plait_register_task_runners")
    return dict(live.task_runners)


def storage_factory(scheme: str) -> Any:
    """The storage factory of ``scheme``, importing only the plugin that declares it."""
    live = _st.session()
    live.ensure("storage_schemes", scheme)
    return live.storage.get(scheme)


# -- by hand (tests, notebooks) ---------------------------------------------------------------
def register_plugin(name: str, module: Any) -> None:
    """Add a plugin module by hand (tests, notebooks); loaded at once from the next use on."""
    _st.extra_plugins[name] = module
    reset_plugins()


def unregister_plugin(name: str) -> None:
    _st.extra_plugins.pop(name, None)
    reset_plugins()


def reset_plugins() -> None:
    """Forget loaded plugins and every storage built from their schemes; the next use
    discovers them again (e.g. after PLAIT_PLUGINS changed)."""
    _st.reset()
