"""Flow runs record their process's heartbeat interval.

Revision ID: 0004
Revises: 0003

Crash detection for a run on another host waits two of *that run's* heartbeat intervals,
so a live run is never declared crashed by a reader with different settings.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("flow_runs") as batch:
        batch.add_column(sa.Column("heartbeat_interval", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("flow_runs") as batch:
        batch.drop_column("heartbeat_interval")
