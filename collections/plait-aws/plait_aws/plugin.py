"""plait-aws as a plugin (entry point ``plait_aws`` in the ``plait.plugins`` group).

Registers the AWS block types, the prebuilt tasks, and the ``s3`` storage scheme.

What it provides is declared in pyproject.toml (``plait.block_types``, ``plait.hooks``…), so
plait imports this module only when one of those is first needed.
"""

from __future__ import annotations

from typing import Any

from plait.hookspecs import hookimpl
from plait_aws.credentials import AwsCredentials
from plait_aws.s3 import S3Bucket, s3_bucket_from_url
from plait_aws.secrets_manager import AwsSecret
from plait_aws.tasks import TASKS

__all__ = ["BLOCK_CLASSES", "TASKS", "plait_register_blocks", "plait_register_tasks", "plait_register_storage"]

BLOCK_CLASSES: tuple[type, ...] = (AwsCredentials, S3Bucket, AwsSecret)


@hookimpl
def plait_register_blocks() -> list[type]:
    return list(BLOCK_CLASSES)


@hookimpl
def plait_register_tasks() -> list[Any]:
    return list(TASKS)


@hookimpl
def plait_register_storage() -> dict[str, Any]:
    return {"s3": s3_bucket_from_url}
