"""Blocks: typed, documented configuration that users save by name and load in flows.

    from plait.blocks import Block, load_document

    MyBlock(...).save("prod")          # secrets encrypted at rest
    MyBlock.load("prod")               # or Block.load("my-block/prod")

See docs/blocks.md.
"""

from plait.blocks._apply import ApplyResult, apply_blocks_file
from plait.blocks._base import Block, SecretDict, is_secret_annotation
from plait.blocks._kinds import (
    CredentialsBlock,
    InfrastructureBlock,
    InfrastructureResult,
    NotificationBlock,
    StorageBlock,
)
from plait.blocks._load import list_documents, load_document
from plait.blocks._types import block_types, get_block_class
from plait.blocks._values import block_to_dict

__all__ = [
    "ApplyResult",
    "Block",
    "CredentialsBlock",
    "InfrastructureBlock",
    "InfrastructureResult",
    "NotificationBlock",
    "SecretDict",
    "StorageBlock",
    "apply_blocks_file",
    "block_to_dict",
    "block_types",
    "get_block_class",
    "is_secret_annotation",
    "list_documents",
    "load_document",
]
