"""Blocks: block types, their schemas, saved block documents and their references.

Revision ID: 0002
Revises: 0001

Secret values live inside ``block_documents.data`` encrypted (``{"$secret": token}``);
nested blocks are stored as ``{"$ref": document_id}`` and listed in
``block_document_references`` so a referenced block cannot be deleted from under its user.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.String(36)
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "block_types",
        sa.Column("slug", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("capabilities", sa.JSON(), nullable=False),
        sa.Column("plugin", sa.String(), nullable=True),
        sa.Column("updated", _TS, nullable=False),
        sa.PrimaryKeyConstraint("slug", name=op.f("pk_block_types")),
    )

    op.create_table(
        "block_schemas",
        sa.Column("checksum", sa.String(), nullable=False),
        sa.Column("slug", sa.String(), nullable=False),
        sa.Column("json_schema", sa.JSON(), nullable=False),
        sa.Column("secret_fields", sa.JSON(), nullable=False),
        sa.Column("created", _TS, nullable=False),
        sa.PrimaryKeyConstraint("checksum", name=op.f("pk_block_schemas")),
    )

    op.create_table(
        "block_documents",
        sa.Column("id", _ID, nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("slug", sa.String(), nullable=False),
        sa.Column("schema_checksum", sa.String(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created", _TS, nullable=False),
        sa.Column("updated", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_block_documents")),
        sa.UniqueConstraint("slug", "name", name=op.f("uq_block_documents_slug_name")),
    )
    op.create_index(op.f("ix_block_documents_name"), "block_documents", ["name"])

    op.create_table(
        "block_document_references",
        sa.Column("id", _ID, nullable=False),
        sa.Column("parent_document_id", _ID, nullable=False),
        sa.Column("field_name", sa.String(), nullable=False),
        sa.Column("child_document_id", _ID, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_block_document_references")),
    )
    op.create_index(
        op.f("ix_block_document_references_parent_document_id"),
        "block_document_references",
        ["parent_document_id"],
    )
    op.create_index(
        op.f("ix_block_document_references_child_document_id"),
        "block_document_references",
        ["child_document_id"],
    )


def downgrade() -> None:
    for table in ("block_document_references", "block_documents", "block_schemas", "block_types"):
        op.drop_table(table)
