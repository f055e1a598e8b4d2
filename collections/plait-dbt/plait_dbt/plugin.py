"""plait-dbt as a plait plugin (entry point ``plait_dbt`` in ``plait.plugins``).

Registers the block types (the Snowflake target only when plait-snowflake is installed)
and the prebuilt ``dbt_run`` task; nothing else.

What it provides is declared in pyproject.toml (``plait.block_types``, ``plait.hooks``…), so
plait imports this module only when one of those is first needed.
"""

from __future__ import annotations

from typing import Any

from plait.hookspecs import hookimpl
from plait_dbt.operation import DbtCoreOperation
from plait_dbt.profiles import DbtCliProfile
from plait_dbt.targets import TARGET_CONFIG_CLASSES
from plait_dbt.tasks import dbt_run

__all__ = ["BLOCK_CLASSES", "TASKS", "plait_register_blocks", "plait_register_tasks"]

BLOCK_CLASSES: tuple[type, ...] = (DbtCliProfile, *TARGET_CONFIG_CLASSES, DbtCoreOperation)
TASKS: tuple[Any, ...] = (dbt_run,)


@hookimpl
def plait_register_blocks() -> list[type]:
    return list(BLOCK_CLASSES)


@hookimpl
def plait_register_tasks() -> list[Any]:
    return list(TASKS)
