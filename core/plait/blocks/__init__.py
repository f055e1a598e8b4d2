"""Blocks: typed, documented configuration that users save by name and load in flows."""

from plait.blocks._base import Block, SecretDict, is_secret_annotation
from plait.blocks._kinds import (
    CredentialsBlock,
    InfrastructureBlock,
    InfrastructureResult,
    NotificationBlock,
    StorageBlock,
)

__all__ = [
    "Block",
    "CredentialsBlock",
    "InfrastructureBlock",
    "InfrastructureResult",
    "NotificationBlock",
    "SecretDict",
    "StorageBlock",
    "is_secret_annotation",
]
