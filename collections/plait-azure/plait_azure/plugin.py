"""plait-azure as a plugin (entry point ``plait_azure`` in the ``plait.plugins`` group).

Registers the Azure block types, the prebuilt tasks, and the ``az`` storage scheme. What it
provides is declared in pyproject.toml, so plait imports this module only when needed.
"""

from __future__ import annotations

from typing import Any

from plait.hookspecs import hookimpl
from plait_azure.blob import AzureBlobStorageContainer, az_container_from_url
from plait_azure.credentials import AzureBlobCredentials
from plait_azure.tasks import TASKS

__all__ = ["BLOCK_CLASSES", "TASKS", "plait_register_blocks", "plait_register_storage", "plait_register_tasks"]

BLOCK_CLASSES: tuple[type, ...] = (AzureBlobCredentials, AzureBlobStorageContainer)


@hookimpl
def plait_register_blocks() -> list[type]:
    return list(BLOCK_CLASSES)


@hookimpl
def plait_register_tasks() -> list[Any]:
    return list(TASKS)


@hookimpl
def plait_register_storage() -> dict[str, Any]:
    return {"az": az_container_from_url}
