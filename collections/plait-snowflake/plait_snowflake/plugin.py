"""plait-snowflake as a plait plugin (entry point ``plait_snowflake`` in ``plait.plugins``).

Registers the two block types and the prebuilt tasks; nothing else.

What it provides is declared in pyproject.toml (``plait.block_types``, ``plait.hooks``…), so
plait imports this module only when one of those is first needed.
"""

from __future__ import annotations

from typing import Any

from plait.hookspecs import hookimpl
from plait_snowflake.connector import SnowflakeConnector
from plait_snowflake.credentials import SnowflakeCredentials
from plait_snowflake.tasks import TASKS

__all__ = ["BLOCK_CLASSES", "TASKS", "plait_register_blocks", "plait_register_tasks"]

BLOCK_CLASSES: tuple[type, ...] = (SnowflakeCredentials, SnowflakeConnector)


@hookimpl
def plait_register_blocks() -> list[type]:
    return list(BLOCK_CLASSES)


@hookimpl
def plait_register_tasks() -> list[Any]:
    return list(TASKS)
