"""Concurrency limits and the slots held of them.

Revision ID: 0008
Revises: 0007

A concurrency limit is a name with a number of slots (``limit``); task runs tagged with the
name and ``plait.concurrency(name)`` blocks hold slots of it, one ``concurrency_slots`` row
per holder. With ``slot_decay_per_second`` above 0 it is a rate limit as well: ``level`` is
the fill of its token bucket as of ``level_at``. A slot names the flow run it belongs to
(indexed: the slots of a run that ended are freed). Two new tables, nothing else changes.
Written out rather than derived from the models, so this revision keeps creating exactly
this schema.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.String(36)
_NAME = sa.String(200)
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "concurrency_limits",
        sa.Column("name", _NAME, nullable=False),
        sa.Column("limit", sa.Integer(), nullable=False),
        sa.Column("slot_decay_per_second", sa.Float(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("level", sa.Float(), nullable=False),
        sa.Column("level_at", _TS, nullable=True),
        sa.Column("created", _TS, nullable=False),
        sa.Column("updated", _TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_concurrency_limits")),
    )
    op.create_table(
        "concurrency_slots",
        sa.Column("id", _ID, nullable=False),
        sa.Column("limit_name", _NAME, nullable=False),
        sa.Column("occupy", sa.Integer(), nullable=False),
        sa.Column("flow_run_id", _ID, nullable=True),
        sa.Column("task_run_id", _ID, nullable=True),
        sa.Column("hostname", sa.String(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("label", sa.String(), nullable=False),
        sa.Column("acquired_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["limit_name"], ["concurrency_limits.name"],
            name=op.f("fk_concurrency_slots_limit_name_concurrency_limits"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_concurrency_slots")),
    )
    op.create_index(op.f("ix_concurrency_slots_limit_name"), "concurrency_slots", ["limit_name"])
    op.create_index(op.f("ix_concurrency_slots_flow_run_id"), "concurrency_slots", ["flow_run_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_concurrency_slots_flow_run_id"), table_name="concurrency_slots")
    op.drop_index(op.f("ix_concurrency_slots_limit_name"), table_name="concurrency_slots")
    op.drop_table("concurrency_slots")
    op.drop_table("concurrency_limits")
