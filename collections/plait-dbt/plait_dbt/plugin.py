"""plait-dbt as a plait plugin (entry point ``plait_dbt`` in ``plait.plugins``).

Registers the block types (the Snowflake target only when plait-snowflake is installed)
and the prebuilt ``dbt_run`` task; nothing else.
"""

from __future__ import annotations

from typing import Any, Callable

from plait.hookspecs import hookimpl
from plait_dbt.operation import DbtCoreOperation
from plait_dbt.profiles import DbtCliProfile
from plait_dbt.targets import TARGET_CONFIG_CLASSES
from plait_dbt.tasks import dbt_run

__all__ = ["BLOCK_CLASSES", "TASKS", "plait_register_blocks", "plait_register_tasks"]

BLOCK_CLASSES: tuple[type, ...] = (DbtCliProfile, *TARGET_CONFIG_CLASSES, DbtCoreOperation)
TASKS: tuple[Any, ...] = (dbt_run,)


@hookimpl
def plait_register_blocks(register: Callable[[type], None]) -> None:
    for cls in BLOCK_CLASSES:
        register(cls)


@hookimpl
def plait_register_tasks(register: Callable[..., None]) -> None:
    for prebuilt in TASKS:
        register(prebuilt)
