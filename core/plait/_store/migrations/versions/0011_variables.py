"""Variables: named JSON values that flows and files read (``plait.variables``).

Revision ID: 0011
Revises: 0010

- ``variables``: one row per name (unique; lower-case letters, digits, ``_`` and ``-``, at
  most 255 characters), its JSON ``value`` and ``tags``. Values are not secrets.

Written out rather than derived from the models, so this revision keeps creating exactly
this schema.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "variables",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("created", _TS, nullable=False),
        sa.Column("updated", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_variables")),
        sa.UniqueConstraint("name", name=op.f("uq_variables_name")),
    )


def downgrade() -> None:
    op.drop_table("variables")
