"""Service leases: which plait server runs each background service.

Revision ID: 0006
Revises: 0005

Several servers may serve one database; a service loop acts only while its server holds
the service's lease (``plait._store.leases``). Written out rather than derived from the
models, so this revision keeps creating exactly this table.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "service_leases",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_service_leases")),
    )


def downgrade() -> None:
    op.drop_table("service_leases")
