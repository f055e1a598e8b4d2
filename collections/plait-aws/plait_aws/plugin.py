"""plait-aws as a plugin (entry point ``plait_aws`` in the ``plait.plugins`` group).

Registers the AWS block types, the prebuilt tasks, and the ``s3`` storage scheme.
"""

from __future__ import annotations

from typing import Any, Callable

from plait.hookspecs import hookimpl
from plait_aws.credentials import AwsCredentials
from plait_aws.s3 import S3Bucket, s3_bucket_from_url
from plait_aws.secrets_manager import AwsSecret
from plait_aws.tasks import TASKS

__all__ = ["BLOCK_CLASSES", "plait_register_blocks", "plait_register_tasks", "plait_register_storage"]

BLOCK_CLASSES: tuple[type, ...] = (AwsCredentials, S3Bucket, AwsSecret)


@hookimpl
def plait_register_blocks(register: Callable[[type], None]) -> None:
    for cls in BLOCK_CLASSES:
        register(cls)


@hookimpl
def plait_register_tasks(register: Callable[..., None]) -> None:
    for prebuilt in TASKS:
        register(prebuilt)


@hookimpl
def plait_register_storage(register: Callable[[str, Callable[[str], Any]], None]) -> None:
    register("s3", s3_bucket_from_url)
