"""plait-sqlalchemy as a plait plugin (entry point ``plait_sqlalchemy`` in ``plait.plugins``).

Registers the three block types and the prebuilt tasks; nothing else.
"""

from __future__ import annotations

from typing import Any, Callable

from plait.hookspecs import hookimpl
from plait_sqlalchemy.async_connector import AsyncSqlAlchemyConnector
from plait_sqlalchemy.connector import SqlAlchemyConnector
from plait_sqlalchemy.credentials import DatabaseCredentials
from plait_sqlalchemy.tasks import async_execute, async_execute_many, async_query, execute, execute_many, query

__all__ = ["BLOCK_CLASSES", "TASKS", "plait_register_blocks", "plait_register_tasks"]

BLOCK_CLASSES: tuple[type, ...] = (DatabaseCredentials, SqlAlchemyConnector, AsyncSqlAlchemyConnector)
TASKS: tuple[Any, ...] = (query, execute, execute_many, async_query, async_execute, async_execute_many)


@hookimpl
def plait_register_blocks(register: Callable[[type], None]) -> None:
    for cls in BLOCK_CLASSES:
        register(cls)


@hookimpl
def plait_register_tasks(register: Callable[..., None]) -> None:
    for prebuilt in TASKS:
        register(prebuilt)
