"""plait-gcp as a plugin (entry point ``plait_gcp`` in the ``plait.plugins`` group).

Registers the GCP block types, the prebuilt tasks, and the ``gs`` storage scheme.

What it provides is declared in pyproject.toml (``plait.block_types``, ``plait.hooks``…), so
plait imports this module only when one of those is first needed.
"""

from __future__ import annotations

from typing import Any

from plait.hookspecs import hookimpl
from plait_gcp.credentials import GcpCredentials
from plait_gcp.gcs import GcsBucket, gcs_bucket_from_url
from plait_gcp.tasks import TASKS

__all__ = ["BLOCK_CLASSES", "TASKS", "plait_register_blocks", "plait_register_tasks", "plait_register_storage"]

BLOCK_CLASSES: tuple[type, ...] = (GcpCredentials, GcsBucket)


@hookimpl
def plait_register_blocks() -> list[type]:
    return list(BLOCK_CLASSES)


@hookimpl
def plait_register_tasks() -> list[Any]:
    return list(TASKS)


@hookimpl
def plait_register_storage() -> dict[str, Any]:
    return {"gs": gcs_bucket_from_url}
