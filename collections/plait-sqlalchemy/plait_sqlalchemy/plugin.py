"""plait-sqlalchemy as a plait plugin (entry point ``plait_sqlalchemy`` in ``plait.plugins``).

Registers the three block types, the prebuilt tasks and the prebuilt flow; nothing else.

What it provides is declared in pyproject.toml (``plait.block_types``, ``plait.hooks``…), so
plait imports this module only when one of those is first needed.
"""

from __future__ import annotations

from typing import Any

from plait.hookspecs import hookimpl
from plait_sqlalchemy.async_connector import AsyncSqlAlchemyConnector
from plait_sqlalchemy.connector import SqlAlchemyConnector
from plait_sqlalchemy.credentials import DatabaseCredentials
from plait_sqlalchemy.history import copy_run_history
from plait_sqlalchemy.tasks import async_execute, async_execute_many, async_query, execute, execute_many, query

__all__ = ["BLOCK_CLASSES", "FLOWS", "TASKS", "plait_register_blocks", "plait_register_flows", "plait_register_tasks"]

BLOCK_CLASSES: tuple[type, ...] = (DatabaseCredentials, SqlAlchemyConnector, AsyncSqlAlchemyConnector)
TASKS: tuple[Any, ...] = (query, execute, execute_many, async_query, async_execute, async_execute_many)
FLOWS: tuple[Any, ...] = (copy_run_history,)


@hookimpl
def plait_register_blocks() -> list[type]:
    return list(BLOCK_CLASSES)


@hookimpl
def plait_register_tasks() -> list[Any]:
    return list(TASKS)


@hookimpl
def plait_register_flows() -> list[Any]:
    return list(FLOWS)
