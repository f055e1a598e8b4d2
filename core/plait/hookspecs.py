"""The plugin contract: every hook a plugin (a collection, or the built-in blocks) may implement.

A plugin is a module named by an entry point in the group ``plait.plugins``; it implements
hooks with ``@hookimpl``. Registration hooks *return* what the plugin contributes — a list
(blocks, tasks, flows) or a dict (storage schemes, infrastructure kinds, task runners) — and pluggy
collects the answers of every plugin:

    from plait.hookspecs import hookimpl

    @hookimpl
    def plait_register_blocks():
        return [MyCredentials, MyStorage]

Hooks are called through pluggy, so ``@hookimpl(tryfirst=True)``, ``trylast`` and wrappers
(``wrapper=True``) work, and ``PLAIT_TRACE_PLUGINS=1`` prints every call. Every hook is
documented in docs/plugins.md with its arguments, return value and an example.

This module imports nothing from plait: the types below say what the core expects of each
contribution without importing the layers that define those classes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pluggy

__all__ = ["hookspec", "hookimpl", "PROJECT", "REGISTRATION_HOOKS", "RUNTIME_HOOKS"]

PROJECT = "plait"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: Hooks plait calls once per plugin, when the plugin is imported, to collect what it offers.
REGISTRATION_HOOKS = (
    "plait_register_blocks",
    "plait_register_tasks",
    "plait_register_flows",
    "plait_register_storage",
    "plait_register_infrastructure",
    "plait_register_task_runners",
)
#: Hooks plait calls while flows run; a plugin declares which it implements (``plait.hooks``).
RUNTIME_HOOKS = ("plait_notify", "plait_flow_run_state_changed", "plait_task_run_state_changed")

# ``register`` (every registration hook): the callback of plait 0.1's contract, still passed so
# plugins written for it keep working. It takes one contribution per call; new plugins return
# their contributions instead.
Register = Callable[..., None]


# -- blocks ---------------------------------------------------------------------------------
@hookspec
def plait_register_blocks(register: Register) -> Sequence[type] | None:
    """Return the Block classes the plugin offers: ``[MyCredentials, MyStorage]``.

    Each is a ``plait.blocks.Block`` subclass; its ``block_type_slug`` must be unique across
    plugins (a slug another plugin already took is a diagnosis).
    """


# -- tasks and flows a collection offers ----------------------------------------------------
@hookspec
def plait_register_tasks(register: Register) -> Sequence[Any] | None:
    """Return the prebuilt tasks (``@task`` objects) the plugin offers.

    Registered tasks are listed by the registry and the CLI; users import them normally.
    """


@hookspec
def plait_register_flows(register: Register) -> Sequence[Any] | None:
    """Return the prebuilt flows (``@flow`` objects) the plugin offers."""


# -- storage --------------------------------------------------------------------------------
@hookspec
def plait_register_storage(register: Register) -> Mapping[str, Callable[[str], Any]] | None:
    """Return URL schemes mapped to storage factories: ``{"s3": s3_bucket_from_url}``.

    ``factory(url)`` receives the whole URL (``"s3://bucket/prefix"``) and returns an object
    with ``read_path(path) -> bytes`` and ``write_path(path, content)`` — usually a storage
    block. Result persistence and caching resolve ``result_storage`` URLs through this.
    """


# -- infrastructure -------------------------------------------------------------------------
@hookspec
def plait_register_infrastructure(register: Register) -> Mapping[str, type] | None:
    """Return infrastructure kinds mapped to their block classes: ``{"process": Process}``.

    Each class is a Block with the ``run-infrastructure`` capability whose
    ``run(entrypoint, parameters, *, flow_run_id=None)`` runs the flow (as the run
    ``flow_run_id`` when a worker claimed one) and returns an ``InfrastructureResult``.
    """


# -- task runners ---------------------------------------------------------------------------
@hookspec
def plait_register_task_runners(register: Register) -> Mapping[str, type] | None:
    """Return task runner names mapped to their classes: ``{"dask": DaskTaskRunner}``.

    Each class is a ``plait.task_runners.TaskRunner`` subclass (``submit``, ``duplicate``,
    ``start``, ``shutdown``); ``plait.plugins.task_runner_class(name)`` finds it, importing
    only the plugin that declares the name (entry-point group ``plait.task_runners``).
    """


# -- notification ---------------------------------------------------------------------------
@hookspec
def plait_notify(event: Any) -> None:
    """React to a flow run entering a new state (deliver notifications).

    ``event`` is a ``plait.plugins.StateChangeEvent`` (flow name, tags, run id and name,
    the new state, parameters). Called after the state is recorded; must return quickly. A
    raising implementation is recorded once as a plugin diagnosis; the flow is unaffected.
    """


# -- lifecycle ------------------------------------------------------------------------------
@hookspec
def plait_flow_run_state_changed(flow_run: Any, state: Any) -> None:
    """Observe every flow run state change (observability). ``flow_run`` is read-only."""


@hookspec
def plait_task_run_state_changed(task_run: Any, state: Any) -> None:
    """Observe every task run state change. Called on the hot path: keep it cheap."""
