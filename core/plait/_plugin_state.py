"""The process-wide plugin session: discovery, lazy imports, what plugins registered, diagnoses.

A session starts on the first use of plugins. It reads the entry-point metadata, claims
what each plugin declares (block slugs, storage schemes, infrastructure kinds, task runners — the first
plugin in load order keeps a name two declare), hands ``plait.results`` a lazy factory per
declared storage scheme, and imports the plugins that must be loaded at once: the default
plugins, modules added with ``register_plugin``, and plugins that declare nothing. Every
other plugin is imported when something it declares is first needed.

Importing a plugin: the module is imported (any exception, ``SystemExit`` included, becomes
a diagnosis), registered with pluggy as a guarded proxy (``_plugin_guard``), and its
registration hooks are called through pluggy for that plugin alone; what they return is
checked (``_plugin_contract``) and compared with what the plugin declared.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from plait import results
from plait._plugin_contract import Contributions, call_registration_hooks
from plait._plugin_discovery import Candidate, compatible, discover, plait_version
from plait._plugin_guard import GuardedPlugin, guarded_plugin, new_manager
from plait._plugin_records import Diagnosis, PluginError, PluginInfo
from plait.exceptions import PlaitError
from plait.hookspecs import REGISTRATION_HOOKS, RUNTIME_HOOKS

__all__ = ["Session", "session", "current", "reset", "extra_plugins"]

logger = logging.getLogger("plait.plugins")
_KINDS = {  # declared kind -> (what users call it, the registry attribute)
    "block_types": ("block type", "blocks"),
    "storage_schemes": ("storage scheme", "storage"),
    "infrastructure": ("infrastructure kind", "infrastructure"),
    "task_runners": ("task runner", "task_runners"),
}
_GROUPS = {"block_types": "plait.block_types", "storage_schemes": "plait.storage_schemes",
           "infrastructure": "plait.infrastructure", "task_runners": "plait.task_runners", "hooks": "plait.hooks"}

extra_plugins: dict[str, Any] = {}  # register_plugin(): name -> module


def _strict() -> bool:
    return os.environ.get("PLAIT_PLUGINS_STRICT", "").lower() in ("1", "true", "yes")


def _selected() -> set[str] | None:
    raw = os.environ.get("PLAIT_PLUGINS")
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


@dataclass
class _Plugin:
    candidate: Candidate
    status: str = "not imported"  # -> importing -> loaded | failed
    proxy: GuardedPlugin | None = None
    hooks: list[str] = field(default_factory=list)
    contributions: Contributions = field(default_factory=Contributions)
    registered: bool = False  # its registration hooks are being called, or were
    # ... and what they gave is in the registries: until then another thread must wait on the lock
    taken: bool = False

    @property
    def lazy(self) -> bool:
        c = self.candidate
        return bool(c.declared) and not c.default and c.object is None

    @property
    def defers_registration(self) -> bool:
        """A plugin whose metadata says what it provides is asked for its blocks, schemes
        and tasks only when one of them is needed, not when it is imported for a run-time
        hook: the built-in blocks plugin is imported by every flow run (``plait_notify``),
        and building its block classes would cost each of them tens of milliseconds."""
        c = self.candidate
        return bool(c.declared) and c.object is None


class Session:
    """Everything known about plugins in this process since the last reset."""

    def __init__(self) -> None:
        self.manager: pluggy.PluginManager = new_manager()
        if os.environ.get("PLAIT_TRACE_PLUGINS"):
            self.manager.trace.root.setwriter(lambda text: sys.stderr.write(f"plait plugin trace: {text}"))
            self.manager.enable_tracing()
        self.plugins: dict[str, _Plugin] = {}
        self.unusable: list[Candidate] = []
        self.diagnoses: dict[tuple[str, str], Diagnosis] = {}
        self.diagnoses_lock = threading.Lock()
        self.claims: dict[str, dict[str, str]] = {kind: {} for kind in _KINDS}
        self.blocks: dict[str, type] = {}
        self.storage: dict[str, Any] = {}
        self.infrastructure: dict[str, type] = {}
        self.task_runners: dict[str, type] = {}
        self.ready_hooks: set[str] = set()
        self.results_schemes: set[str] = set()
        self.ready = False
        self.warned = False

    # -- diagnoses ---------------------------------------------------------------------------
    def diagnose(self, plugin: str, version: str | None, reason: str, fix: str, key: str | None = None) -> None:
        """Record a problem once per (plugin, key) — a hook raising on every call is one
        diagnosis and one warning — and raise it in strict mode."""
        diagnosis = Diagnosis(plugin, version, reason, fix)
        with self.diagnoses_lock:  # hooks fail on worker threads too
            new = self.diagnoses.setdefault((plugin, key or reason), diagnosis) is diagnosis
        if new and self.ready:  # problems found after start-up are not in the start-up summary
            logger.warning("plugin %s", diagnosis)
        if _strict():
            raise PluginError(str(diagnosis))

    def _hook_error(self, candidate: Candidate) -> Callable[[str, BaseException], None]:
        def on_error(hook: str, exc: BaseException) -> None:
            fix = ("fix the plugin; its other registrations still load" if hook in REGISTRATION_HOOKS
                   else "report it to the plugin's authors; other plugins keep working")
            self.diagnose(candidate.name, candidate.version, f"hook {hook} raised {type(exc).__name__}: {exc}", fix,
                          key=f"hook:{hook}")

        return on_error

    # -- start -------------------------------------------------------------------------------
    def start(self) -> None:
        usable, self.unusable, problems = discover(_selected(), dict(extra_plugins))
        for problem in problems:
            self.diagnose(problem.plugin, problem.version, problem.reason, problem.fix)
        for candidate in usable:
            self.plugins[candidate.name] = _Plugin(candidate)
        for plugin in self.plugins.values():
            self._claim_declarations(plugin.candidate)
        for scheme, owner in self.claims["storage_schemes"].items():
            self._results_scheme(scheme, _LazyStorage(self, scheme, owner))
        for plugin in list(self.plugins.values()):
            if not plugin.lazy:
                self.load(plugin)
        self.ready = True
        if self.diagnoses and not self.warned:
            self.warned = True
            names = ", ".join(sorted({d.plugin for d in self.diagnoses.values()}))
            count = len(self.diagnoses)
            logger.warning("%d plugin problem%s (%s); run `plait plugins ls` for details",
                           count, "" if count == 1 else "s", names)

    def _claim_declarations(self, candidate: Candidate) -> None:
        for kind, (label, _attribute) in _KINDS.items():
            for name in getattr(candidate.declared, kind):
                owner = self.claims[kind].setdefault(name, candidate.name)
                if owner != candidate.name:
                    self.diagnose(candidate.name, candidate.version,
                                  f"declares {label} {name!r}, which plugin {owner!r} provides too",
                                  f"uninstall one of the two; plait uses {owner}'s", key=f"clash:{kind}:{name}")

    def _results_scheme(self, scheme: str, factory: Any) -> None:
        results.register_storage_scheme(scheme, factory)
        self.results_schemes.add(scheme)

    # -- importing one plugin ----------------------------------------------------------------
    def load(self, plugin: _Plugin) -> None:
        """Import ``plugin`` and take its registrations (no-op unless it is not imported yet)."""
        if plugin.status != "not imported":
            return
        plugin.status = "importing"
        try:
            self._import(plugin)
        finally:
            if plugin.status == "importing":  # strict mode raised half-way
                plugin.status = "failed"

    def _import(self, plugin: _Plugin) -> None:
        c = plugin.candidate
        module = c.object
        if module is None:
            try:
                module = importlib.import_module(c.module)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # SystemExit too: one plugin never ends plait
                plugin.status = "failed"
                self.diagnose(c.name, c.version, f"failed to import {c.module} ({type(exc).__name__}: {exc})",
                              f"reinstall or upgrade {c.distribution or c.name}, or exclude it with PLAIT_PLUGINS")
                return
        if c.requires_plait is None and not c.default and getattr(module, "PLAIT_REQUIRES", None):
            c.requires_plait = str(module.PLAIT_REQUIRES)
            if not self._compatible_after_import(plugin):
                return
        proxy, problems = guarded_plugin(c.name, module, self._hook_error(c))
        for problem in problems:
            self.diagnose(c.name, c.version, f"its hooks do not match the contract ({problem})",
                          "fix the hook signature to match plait.hookspecs; its other hooks still work",
                          key=f"signature:{problem.attribute}")
        try:
            self.manager.register(proxy, name=c.name)
        except ValueError as exc:
            plugin.status = "failed"
            self.diagnose(c.name, c.version, f"cannot be registered ({exc})", "give each plugin a unique name")
            return
        plugin.proxy = proxy
        plugin.hooks = sorted(set(self._hooks_of(proxy)))
        plugin.status = "loaded"
        if not plugin.defers_registration or self.ready_hooks.intersection(REGISTRATION_HOOKS):
            self.register(plugin)

    def register(self, plugin: _Plugin) -> None:
        """Call a loaded plugin's registration hooks and take what they give (once)."""
        if plugin.status != "loaded" or plugin.registered or plugin.proxy is None:
            return
        c = plugin.candidate
        plugin.registered = True
        plugin.contributions = contributions = call_registration_hooks(self.manager, plugin.proxy)
        for hook, reason in contributions.problems:
            self.diagnose(c.name, c.version, f"{hook}: {reason}", "fix the plugin; its valid registrations still load")
        self._take(plugin)
        if plugin.lazy:
            self._check_declarations(plugin)
        plugin.taken = True

    def _compatible_after_import(self, plugin: _Plugin) -> bool:
        c = plugin.candidate
        try:
            ok = compatible(c.requires_plait)
        except Exception as exc:
            ok, reason = False, f"declares an unreadable plait range ({exc})"
        else:
            reason = f"supports plait{c.requires_plait}, but plait {plait_version()} is installed"
        if not ok:
            plugin.status = "failed"
            self.diagnose(c.name, c.version, reason,
                          f"install a version of {c.distribution or c.name} that supports plait {plait_version()}")
        return ok

    def _hooks_of(self, proxy: GuardedPlugin) -> list[str]:
        return [caller.name for caller in self.manager.get_hookcallers(proxy) or ()]

    def _take(self, plugin: _Plugin) -> None:
        """Add what the plugin registered to the registries, unless another plugin owns the name."""
        c, got = plugin.candidate, plugin.contributions
        for kind, (label, attribute) in _KINDS.items():
            registry: dict[str, Any] = getattr(self, attribute)
            for name, value in list(getattr(got, attribute).items()):
                owner = self.claims[kind].setdefault(name, c.name)
                if owner != c.name:
                    del getattr(got, attribute)[name]
                    shown = f"{name}://" if kind == "storage_schemes" else repr(name)
                    self.diagnose(c.name, c.version,
                                  f"registers {label} {shown}, which plugin {owner!r} already provides",
                                  f"uninstall one of the two; plait uses {owner}'s", key=f"clash:{kind}:{name}")
                    continue
                registry[name] = value
                if kind == "storage_schemes":
                    self._results_scheme(name, value)

    def _check_declarations(self, plugin: _Plugin) -> None:
        """A lazy plugin must register what it declares, and declare what it registers."""
        c, got = plugin.candidate, plugin.contributions
        where = c.distribution or c.name
        for kind, (label, attribute) in _KINDS.items():
            declared: dict[str, bool] = getattr(c.declared, kind)
            registered = set(getattr(got, attribute))
            for name in sorted(n for n, optional in declared.items() if not optional and n not in registered):
                if self.claims[kind].get(name) == c.name:
                    self.diagnose(c.name, c.version,
                                  f"declares {label} {name!r} ({_GROUPS[kind]}) but does not register it",
                                  "register it, or remove the declaration (declare it as \"module [extra]\" if an "
                                  "extra provides it)", key=f"declared:{kind}:{name}")
            for name in sorted(registered - set(declared)):
                self.diagnose(c.name, c.version, f"registers {label} {name!r} without declaring it",
                              f'add {name} = "{c.module}" to [project.entry-points."{_GROUPS[kind]}"] of {where}, '
                              "so plait finds it before importing the plugin", key=f"undeclared:{kind}:{name}")
        implemented = set(plugin.hooks)
        declared_hooks = c.declared.hook_names()
        implied = {"plait_register_blocks", "plait_register_storage", "plait_register_infrastructure",
                   "plait_register_task_runners"}
        for hook in sorted(implemented - declared_hooks - implied):
            self.diagnose(c.name, c.version, f"implements {hook} without declaring it",
                          f'add {hook} = "{c.module}" to [project.entry-points."plait.hooks"] of {where}, '
                          "or plait calls it only once the plugin is imported for something else",
                          key=f"undeclared:hook:{hook}")
        for hook in sorted(h for h, optional in c.declared.hooks.items() if not optional and h not in implemented):
            self.diagnose(c.name, c.version, f"declares {hook} (plait.hooks) but does not implement it",
                          "implement it, or remove the declaration", key=f"declared:hook:{hook}")

    # -- asking for what plugins provide -----------------------------------------------------
    def provider(self, kind: str, name: str) -> _Plugin | None:
        owner = self.claims[kind].get(name)
        return self.plugins.get(owner) if owner else None

    def ensure(self, kind: str, name: str) -> None:
        plugin = self.provider(kind, name)
        if plugin is not None and not plugin.taken:  # (tasks on several threads may ask at once)
            with _lock:
                self.load(plugin)
                self.register(plugin)

    def ensure_hook(self, hook: str) -> None:
        """Import every plugin that declares ``hook`` (so calling it reaches them all)."""
        if hook in self.ready_hooks:
            return
        with _lock:
            for plugin in list(self.plugins.values()):
                if plugin.status == "not imported" and hook in plugin.candidate.declared.hook_names():
                    self.load(plugin)
            if hook in REGISTRATION_HOOKS:  # everything of that kind is wanted
                for plugin in list(self.plugins.values()):
                    self.register(plugin)
            self.ready_hooks.add(hook)

    def load_all(self) -> None:
        with _lock:
            for plugin in list(self.plugins.values()):
                self.load(plugin)
                self.register(plugin)
            self.ready_hooks.update(REGISTRATION_HOOKS + RUNTIME_HOOKS)

    def infos(self) -> list[PluginInfo]:
        rows = []
        for plugin in self.plugins.values():
            c = plugin.candidate
            loaded = plugin.status == "loaded"
            rows.append(PluginInfo(
                c.name, c.module, c.distribution, c.version, c.requires_plait, loaded,
                plugin.hooks if loaded else sorted(c.declared.hook_names()),
                status=plugin.status,
                default=c.default, declares=c.declared.as_dict(),
            ))
        for c in self.unusable:
            rows.append(PluginInfo(c.name, c.module, c.distribution, c.version, c.requires_plait, False,
                                   sorted(c.declared.hook_names()), status="incompatible",
                                   declares=c.declared.as_dict()))
        return sorted(rows, key=lambda info: info.name)

    def close(self) -> None:
        """Take this session's storage schemes out of plait.results (and every built storage)."""
        for scheme in self.results_schemes:
            results.register_storage_scheme(scheme, None)
        self.results_schemes.clear()


class _LazyStorage:
    """The factory results holds for a declared scheme until its plugin is imported."""

    def __init__(self, owner_session: Session, scheme: str, plugin: str) -> None:
        self.session, self.scheme, self.plugin = owner_session, scheme, plugin

    def __call__(self, url: str) -> Any:
        self.session.ensure("storage_schemes", self.scheme)
        factory = self.session.storage.get(self.scheme)
        if factory is None:
            raise PlaitError(
                f"plugin {self.plugin!r} declares the storage scheme {self.scheme}:// but did not register it "
                "(see `plait plugins ls`)"
            )
        return factory(url)

    def __repr__(self) -> str:
        return f"<{self.scheme}:// from plugin {self.plugin}, not imported yet>"


# -- the process-wide session -------------------------------------------------------------------
_lock = threading.RLock()
_current: Session | None = None
_starting: Session | None = None


def session() -> Session:
    """The session, started on first use (a re-entrant call during start-up gets the one
    being started)."""
    live = _current
    if live is not None:
        return live
    global _starting
    with _lock:
        if _current is not None:
            return _current
        if _starting is not None:  # a plugin imported during start-up asks for plugins
            return _starting
        started = _starting = Session()
        try:
            started.start()
        except BaseException:  # strict mode: start again (and fail again) next time
            started.close()
            raise
        finally:
            _starting = None
        _set(started)
        return started


def _set(value: Session | None) -> None:
    global _current
    _current = value


def current() -> Session | None:
    """The session if one is running (never starts one)."""
    return _current


def reset() -> None:
    """Forget every plugin; the next use discovers them again."""
    with _lock:
        live = _current
        _set(None)
        if live is not None:
            live.close()
        install_finder()


def _find_scheme(scheme: str) -> None:
    """plait.results asks about a scheme nobody registered: discover the plugins (which registers
    the schemes they declare)."""
    session()


def install_finder() -> None:
    """Let plait.results start plugin discovery for an unknown storage scheme (drops every
    storage results built so far)."""
    results.register_storage_scheme("*", _find_scheme)


install_finder()  # importing the plugin layer is what connects it to plait.results
