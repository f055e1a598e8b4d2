"""An index of a deployment's flow runs in (created, id) order.

Revision ID: 0010
Revises: 0009

``flow_runs(deployment_id, created, id)``: the flow-run list filtered by deployment (the
dashboard's runs page) reads one page of it, newest first, however long the history is.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_flow_runs_deployment_id_created_id"), "flow_runs", ["deployment_id", "created", "id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_flow_runs_deployment_id_created_id"), table_name="flow_runs")
