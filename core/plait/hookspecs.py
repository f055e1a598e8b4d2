"""The plugin contract: every hook a plugin (a collection, or the built-in blocks) may implement.

A plugin is a module named by an entry point in the group ``plait.plugins``; it implements
hooks with ``@hookimpl``. Registration hooks receive a ``register`` callback rather than
returning lists, so a plugin registers exactly what it has, in one place:

    from plait.hookspecs import hookimpl

    @hookimpl
    def plait_register_blocks(register):
        register(MyCredentials)

Every hook is documented in docs/plugins.md with its arguments and an example.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

__all__ = ["hookspec", "hookimpl", "PROJECT"]

PROJECT = "plait"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -- blocks ---------------------------------------------------------------------------------
@hookspec
def plait_register_blocks(register: Callable[[type], None]) -> None:
    """Register Block classes: call ``register(BlockClass)`` once per class.

    The block's type slug (``BlockClass.block_type_slug``) must be unique across plugins.
    """


# -- tasks and flows a collection offers ----------------------------------------------------
@hookspec
def plait_register_tasks(register: Callable[..., None]) -> None:
    """Register prebuilt tasks: ``register(task)`` for each ``@task`` the plugin offers.

    Registered tasks are listed by the registry and the CLI; users import them normally.
    """


@hookspec
def plait_register_flows(register: Callable[..., None]) -> None:
    """Register prebuilt flows: ``register(flow)`` for each ``@flow`` the plugin offers."""


# -- storage --------------------------------------------------------------------------------
@hookspec
def plait_register_storage(register: Callable[[str, Callable[[str], Any]], None]) -> None:
    """Map URL schemes to storage: ``register("s3", factory)``.

    ``factory(url)`` receives the whole URL (``"s3://bucket/prefix"``) and returns an object
    with ``read_path(path) -> bytes`` and ``write_path(path, content)`` — usually a storage
    block. Result persistence and caching resolve ``result_storage`` URLs through this.
    """


# -- infrastructure -------------------------------------------------------------------------
@hookspec
def plait_register_infrastructure(register: Callable[[str, type], None]) -> None:
    """Register ways to run a flow run somewhere: ``register("process", ProcessBlockClass)``.

    The class is a Block with the ``run-infrastructure`` capability whose
    ``run(entrypoint, parameters)`` runs the flow and returns an ``InfrastructureResult``.
    """


# -- notification ---------------------------------------------------------------------------
@hookspec
def plait_notify(event: Any) -> None:
    """React to a flow run entering a new state (deliver notifications).

    ``event`` is a ``plait.plugins.StateChangeEvent`` (flow name, tags, run id and name,
    the new state, parameters). Called after the state is recorded; must return quickly and
    never raise (a raising implementation is recorded as a plugin diagnosis and skipped).
    """


# -- lifecycle ------------------------------------------------------------------------------
@hookspec
def plait_flow_run_state_changed(flow_run: Any, state: Any) -> None:
    """Observe every flow run state change (observability). ``flow_run`` is read-only."""


@hookspec
def plait_task_run_state_changed(task_run: Any, state: Any) -> None:
    """Observe every task run state change. Called on the hot path: keep it cheap."""
