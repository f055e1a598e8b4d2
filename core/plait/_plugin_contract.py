"""What registration hooks may return, and the checks each contribution must pass.

The plugin layer sits below blocks, tasks and flows and never imports them (not even inside a
function), so a contribution cannot be checked with ``isinstance(obj, Task)``. It is checked
by the interface the core goes on to use — duck typing:

- a block type is a class with a non-empty ``block_type_slug``, ``capabilities``,
  ``block_schema()`` and pydantic's ``model_fields`` (what ``plait.blocks.Block`` defines);
- an infrastructure class is such a block type whose capabilities include
  ``run-infrastructure`` and that has ``run()``;
- a task has ``fn``, ``name``, ``submit`` and ``map``; a flow has ``fn``, ``name`` and
  ``with_options`` but no ``submit`` (so a task is not taken for a flow, nor the reverse);
- a storage factory is callable, under a scheme of two or more letters;
- a task runner is a class with ``submit``, ``duplicate``, ``start`` and ``shutdown`` (what
  ``plait.task_runners.TaskRunner`` defines), under a name such as ``dask``.

Validators handed in by the upper layers were the alternative; they would need a setup step
in four modules and would not exist until those modules were imported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy

from plait.hookspecs import REGISTRATION_HOOKS

__all__ = [
    "Contributions",
    "collect",
    "call_registration_hooks",
    "check_block",
    "check_task",
    "check_flow",
    "check_infrastructure",
    "check_storage",
    "check_task_runner",
    "normalize_scheme",
    "LIST_HOOKS",
    "MAP_HOOKS",
]

LIST_HOOKS = {"plait_register_blocks": "blocks", "plait_register_tasks": "tasks", "plait_register_flows": "flows"}
MAP_HOOKS = {"plait_register_storage": "storage", "plait_register_infrastructure": "infrastructure",
             "plait_register_task_runners": "task_runners"}
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]+$")
_RUNNER_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass
class Contributions:
    """What one plugin's registration hooks returned, checked; ``problems`` are (hook, reason)."""

    blocks: dict[str, type] = field(default_factory=dict)
    tasks: list[Any] = field(default_factory=list)
    flows: list[Any] = field(default_factory=list)
    storage: dict[str, Any] = field(default_factory=dict)
    infrastructure: dict[str, type] = field(default_factory=dict)
    task_runners: dict[str, type] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)


# -- checks: None when fine, else what is wrong -------------------------------------------------
def check_block(obj: Any) -> str | None:
    if not isinstance(obj, type):
        return f"{obj!r} is not a class (return Block subclasses)"
    slug = getattr(obj, "block_type_slug", None)
    capabilities = getattr(obj, "capabilities", None)
    if not (isinstance(slug, str) and slug and callable(getattr(obj, "block_schema", None))
            and hasattr(obj, "model_fields") and isinstance(capabilities, (tuple, list, frozenset, set))):
        return f"{obj.__module__}.{obj.__qualname__} is not a plait.blocks.Block subclass"
    return None


def check_infrastructure(obj: Any) -> str | None:
    problem = check_block(obj)
    if problem is not None:
        return problem
    if "run-infrastructure" not in tuple(obj.capabilities) or not callable(getattr(obj, "run", None)):
        return (f"{obj.__qualname__} is not an infrastructure block (subclass plait.blocks.InfrastructureBlock: "
                "the run-infrastructure capability and a run() method)")
    return None


def check_task_runner(name: Any, obj: Any) -> str | None:
    if not (isinstance(name, str) and _RUNNER_NAME.match(name)):
        return f"{name!r} is not a task runner name (lower-case letters, digits, '-' or '_', e.g. 'dask')"
    if not isinstance(obj, type):
        return f"{obj!r} is not a class (return TaskRunner subclasses)"
    if not all(callable(getattr(obj, method, None)) for method in ("submit", "duplicate", "start", "shutdown")):
        return (f"{obj.__module__}.{obj.__qualname__} is not a task runner (subclass plait.task_runners.TaskRunner: "
                "submit, duplicate, start and shutdown)")
    return None


def check_task(obj: Any) -> str | None:
    if isinstance(getattr(obj, "name", None), str) and callable(getattr(obj, "fn", None)) \
            and callable(getattr(obj, "submit", None)) and callable(getattr(obj, "map", None)):
        return None
    return f"{obj!r} is not a plait task (decorate the function with @task)"


def check_flow(obj: Any) -> str | None:
    if isinstance(getattr(obj, "name", None), str) and callable(getattr(obj, "fn", None)) \
            and callable(getattr(obj, "with_options", None)) and not hasattr(obj, "submit"):
        return None
    return f"{obj!r} is not a plait flow (decorate the function with @flow)"


def normalize_scheme(scheme: Any) -> str | None:
    if not isinstance(scheme, str):
        return None
    text = scheme.lower().removesuffix("://")
    return text if _SCHEME.match(text) else None


def check_storage(scheme: Any, factory: Any) -> str | None:
    if normalize_scheme(scheme) is None:
        return f"{scheme!r} is not a URL scheme (two or more letters, digits, '+', '-' or '.', e.g. 's3')"
    if not callable(factory):
        return f"the factory for {scheme!r} is not callable (give a function url -> storage)"
    return None


# -- collecting ------------------------------------------------------------------------------
def call_registration_hooks(manager: pluggy.PluginManager, plugin: object) -> Contributions:
    """Call the registration hooks of ``plugin`` alone, through pluggy, and check the answers.

    Implementations may also hand contributions to the ``register`` callback of plait 0.1.
    """
    others = [p for p in manager.get_plugins() if p is not plugin]
    answers: dict[str, list[Any]] = {}
    called_back: dict[str, list[tuple[Any, ...]]] = {}
    for hook in REGISTRATION_HOOKS:
        caller = manager.subset_hook_caller(hook, remove_plugins=others)
        if not caller.get_hookimpls():
            continue
        calls = called_back.setdefault(hook, [])

        def register(*args: Any, _calls: list[tuple[Any, ...]] = calls, **_kwargs: Any) -> None:
            _calls.append(args)

        answers[hook] = list(caller(register=register))
    return collect(answers, called_back)


def _items(hook: str, answer: Any) -> tuple[list[Any], str | None]:
    """The entries of one implementation's answer, or why the answer has the wrong shape."""
    if hook in LIST_HOOKS:
        if isinstance(answer, (str, bytes, Mapping)) or not isinstance(answer, Iterable):
            return [], f"returned {type(answer).__name__}; return a list"
        return list(answer), None
    if not isinstance(answer, Mapping):
        return [], f"returned {type(answer).__name__}; return a dict"
    return list(answer.items()), None


def collect(answers: dict[str, list[Any]], called_back: dict[str, list[tuple[Any, ...]]]) -> Contributions:
    """Check what each registration hook returned (``answers``: one entry per implementation
    that returned something) or handed to the ``register`` callback (``called_back``)."""
    out = Contributions()
    for hook in (*LIST_HOOKS, *MAP_HOOKS):
        entries: list[Any] = []
        for answer in answers.get(hook, ()):
            items, wrong = _items(hook, answer)
            if wrong:
                out.problems.append((hook, wrong))
            entries += items
        for args in called_back.get(hook, ()):
            entries.append(args[0] if hook in LIST_HOOKS else tuple(args[:2]))
        for entry in entries:
            problem = _add(out, hook, entry)
            if problem:
                out.problems.append((hook, problem))
    return out


def _add(out: Contributions, hook: str, entry: Any) -> str | None:
    if hook == "plait_register_blocks":
        problem = check_block(entry)
        if problem:
            return problem
        slug = entry.block_type_slug
        if out.blocks.get(slug, entry) is not entry:
            both = f"{out.blocks[slug].__qualname__}, {entry.__qualname__}"
            return f"block type slug {slug!r} is registered by two classes ({both})"
        out.blocks[slug] = entry
    elif hook == "plait_register_tasks":
        problem = check_task(entry)
        if problem:
            return problem
        if entry not in out.tasks:
            out.tasks.append(entry)
    elif hook == "plait_register_flows":
        problem = check_flow(entry)
        if problem:
            return problem
        if entry not in out.flows:
            out.flows.append(entry)
    elif hook == "plait_register_storage":
        if not (isinstance(entry, tuple) and len(entry) == 2):
            return "register() takes (scheme, factory)"
        scheme, factory = entry
        problem = check_storage(scheme, factory)
        if problem:
            return problem
        out.storage[normalize_scheme(scheme)] = factory  # type: ignore[index]
    elif hook == "plait_register_task_runners":
        if not (isinstance(entry, tuple) and len(entry) == 2):
            return "register() takes (name, task runner class)"
        name, cls = entry
        problem = check_task_runner(name, cls)
        if problem:
            return problem
        out.task_runners[name] = cls
    else:
        if not (isinstance(entry, tuple) and len(entry) == 2):
            return "register() takes (kind, block class)"
        kind, cls = entry
        if not (isinstance(kind, str) and kind):
            return f"{kind!r} is not an infrastructure kind (a non-empty string, e.g. 'process')"
        problem = check_infrastructure(cls)
        if problem:
            return problem
        out.infrastructure[kind] = cls
    return None
