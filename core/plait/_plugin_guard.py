"""Isolation inside pluggy: each plugin is registered as a proxy whose hooks catch their own errors.

pluggy does the calling — ordering (``tryfirst``/``trylast``), wrappers and tracing — but
stops a hook call at the first exception. So a plugin is never registered as itself: its
hook functions are validated one by one (a bad signature drops only that hook) and wrapped
in a guard that turns an exception into ``on_error(hook, exc)`` and an empty answer, so the
other plugins' implementations still run. The guard keeps the function's signature
(``functools.wraps``), which is what pluggy reads to pass arguments.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Generator
from typing import Any

import pluggy

from plait import hookspecs

__all__ = ["GuardedPlugin", "HookProblem", "guarded_plugin", "new_manager", "ISOLATED"]

# What a plugin's hook may raise without taking plait down (KeyboardInterrupt still stops plait).
ISOLATED: tuple[type[BaseException], ...] = (Exception, SystemExit)
OnError = Callable[[str, BaseException], None]
_MARKER = f"{hookspecs.PROJECT}_impl"


def new_manager() -> pluggy.PluginManager:
    """A plugin manager that knows plait's hook specifications."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    return manager


_VALIDATOR: pluggy.PluginManager | None = None


class GuardedPlugin:
    """What pluggy sees of one plugin: its valid hooks, each guarded."""

    def __init__(self, name: str, module: Any) -> None:
        self.plait_plugin_name = name
        self.plait_module = module

    def __repr__(self) -> str:
        module = getattr(self.plait_module, "__name__", self.plait_module)
        return f"<plait plugin {self.plait_plugin_name} ({module!r})>"


class HookProblem(Exception):
    """A hook function of a plugin that does not match the contract (it is left out)."""

    def __init__(self, attribute: str, hook: str, message: str) -> None:
        super().__init__(message)
        self.attribute = attribute
        self.hook = hook


def _hook_attributes(module: Any) -> list[tuple[str, dict[str, Any], Any]]:
    """``(attribute, options, function)`` of every ``@hookimpl`` function of ``module``."""
    manager = _validator()
    found = []
    for attribute in dir(module):
        try:
            opts = manager.parse_hookimpl_opts(module, attribute)
        except Exception:  # an attribute whose lookup raises is not a hook
            continue
        if opts is not None:
            found.append((attribute, dict(opts), getattr(module, attribute)))
    return found


def _validator() -> pluggy.PluginManager:
    global _VALIDATOR
    if _VALIDATOR is None:
        _VALIDATOR = new_manager()
    return _VALIDATOR


def _validate(plugin_name: str, attribute: str, hook: str, opts: dict[str, Any], function: Any) -> None:
    """Raise HookProblem unless pluggy accepts this one hook function (its own checks and message)."""
    spec = getattr(_validator().hook, hook, None)
    if spec is None or not spec.has_spec():
        if opts.get("optionalhook"):
            return
        close = [h for h in sorted(hookspecs.REGISTRATION_HOOKS + hookspecs.RUNTIME_HOOKS) if _similar(h, hook)]
        hint = f"; did you mean {close[0]}?" if close else ""
        raise HookProblem(attribute, hook, f"{attribute} implements {hook!r}, which is not a plait hook{hint}")
    holder = GuardedPlugin(plugin_name, None)
    setattr(holder, attribute, _marked(function, opts))
    try:
        _validator().register(holder, name=plugin_name)  # pluggy's message then names the plugin
    except pluggy.PluginValidationError as exc:
        raise HookProblem(attribute, hook, " ".join(str(exc).split())) from None
    finally:
        if _validator().is_registered(holder):
            _validator().unregister(holder)


def _marked(function: Any, opts: dict[str, Any]) -> Any:
    """A stand-in with ``function``'s code flags and signature, carrying ``opts``."""
    if inspect.isgeneratorfunction(function):

        @functools.wraps(function)
        def stand_in(*args: Any, **kwargs: Any) -> Generator[None, Any, Any]:
            return (yield)

    else:

        @functools.wraps(function)
        def stand_in(*args: Any, **kwargs: Any) -> Any:
            return None

    setattr(stand_in, _MARKER, dict(opts))
    return stand_in


def _similar(a: str, b: str) -> bool:
    import difflib

    return difflib.SequenceMatcher(None, a, b).ratio() > 0.8


def guarded_plugin(name: str, module: Any, on_error: OnError) -> tuple[GuardedPlugin, list[HookProblem]]:
    """The proxy to register for ``module``, and the hook functions left out (with why)."""
    proxy = GuardedPlugin(name, module)
    problems: list[HookProblem] = []
    for attribute, opts, function in _hook_attributes(module):
        hook = opts.get("specname") or attribute
        try:
            _validate(name, attribute, hook, opts, function)
        except HookProblem as problem:
            problems.append(problem)
            continue
        if opts.get("hookwrapper"):
            guarded = _guard_old_wrapper(function, hook, on_error)
        elif opts.get("wrapper"):
            guarded = _guard_wrapper(function, hook, on_error)
        else:
            guarded = _guard_call(function, hook, on_error)
        setattr(guarded, _MARKER, dict(opts))
        setattr(proxy, attribute, guarded)
    return proxy, problems


# -- the guards ------------------------------------------------------------------------------
def _guard_call(function: Any, hook: str, on_error: OnError) -> Any:
    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except ISOLATED as exc:
            on_error(hook, exc)
            return None

    return guarded


def _guard_wrapper(function: Any, hook: str, on_error: OnError) -> Any:
    """A ``wrapper=True`` implementation: a generator that yields once and returns the result."""

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Generator[None, Any, Any]:
        try:
            teardown = function(*args, **kwargs)
            next(teardown)
        except StopIteration:
            on_error(hook, RuntimeError("the wrapper did not yield"))
            return (yield)
        except ISOLATED as exc:
            on_error(hook, exc)
            return (yield)
        try:
            result = yield
        except BaseException as inner:  # an inner implementation raised: the wrapper may handle it
            try:
                teardown.throw(inner)
            except StopIteration as stop:
                return stop.value
            except ISOLATED as exc:
                if exc is not inner:
                    on_error(hook, exc)
                raise inner from None
            on_error(hook, RuntimeError("the wrapper yielded twice"))
            teardown.close()
            raise
        try:
            teardown.send(result)
        except StopIteration as stop:
            return stop.value
        except ISOLATED as exc:
            on_error(hook, exc)
            return result
        on_error(hook, RuntimeError("the wrapper yielded twice"))
        teardown.close()
        return result

    return guarded


def _guard_old_wrapper(function: Any, hook: str, on_error: OnError) -> Any:
    """A ``hookwrapper=True`` implementation: it receives a ``pluggy.Result`` from its yield."""

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Generator[None, Any, None]:
        try:
            teardown = function(*args, **kwargs)
            next(teardown)
        except StopIteration:
            on_error(hook, RuntimeError("the hook wrapper did not yield"))
            yield
            return
        except ISOLATED as exc:
            on_error(hook, exc)
            yield
            return
        outcome = yield
        try:
            teardown.send(outcome)
        except StopIteration:
            return
        except ISOLATED as exc:
            on_error(hook, exc)
            return
        on_error(hook, RuntimeError("the hook wrapper yielded twice"))
        teardown.close()

    return guarded
