"""plait-snowflake as a plait plugin (entry point ``plait_snowflake`` in ``plait.plugins``).

Registers the two block types and the prebuilt tasks; nothing else.
"""

from __future__ import annotations

from typing import Any, Callable

from plait.hookspecs import hookimpl
from plait_snowflake.connector import SnowflakeConnector
from plait_snowflake.credentials import SnowflakeCredentials
from plait_snowflake.tasks import TASKS

__all__ = ["BLOCK_CLASSES", "TASKS", "plait_register_blocks", "plait_register_tasks"]

BLOCK_CLASSES: tuple[type, ...] = (SnowflakeCredentials, SnowflakeConnector)


@hookimpl
def plait_register_blocks(register: Callable[[type], None]) -> None:
    for cls in BLOCK_CLASSES:
        register(cls)


@hookimpl
def plait_register_tasks(register: Callable[..., None]) -> None:
    for prebuilt in TASKS:
        register(prebuilt)
