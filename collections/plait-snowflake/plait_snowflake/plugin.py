"""plait-snowflake as a plait plugin (entry point ``plait_snowflake`` in ``plait.plugins``).

Registers the two block types, the prebuilt tasks and the prebuilt flow; nothing else.

What it provides is declared in pyproject.toml (``plait.block_types``, ``plait.hooks``…), so
plait imports this module only when one of those is first needed.
"""

from __future__ import annotations

from typing import Any

from plait.hookspecs import hookimpl
from plait_snowflake.connector import SnowflakeConnector
from plait_snowflake.credentials import SnowflakeCredentials
from plait_snowflake.history import snowflake_copy_run_history
from plait_snowflake.tasks import TASKS

__all__ = ["BLOCK_CLASSES", "FLOWS", "TASKS", "plait_register_blocks", "plait_register_flows", "plait_register_tasks"]

BLOCK_CLASSES: tuple[type, ...] = (SnowflakeCredentials, SnowflakeConnector)
FLOWS: tuple[Any, ...] = (snowflake_copy_run_history,)


@hookimpl
def plait_register_blocks() -> list[type]:
    return list(BLOCK_CLASSES)


@hookimpl
def plait_register_tasks() -> list[Any]:
    return list(TASKS)


@hookimpl
def plait_register_flows() -> list[Any]:
    return list(FLOWS)
