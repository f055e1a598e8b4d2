"""Automations, their trigger buckets and action log, webhooks, and event labels.

Revision ID: 0009
Revises: 0008

- ``events.labels``: a custom event's resource labels beyond its id (``emit_event``, webhooks);
  null for the store's own events.
- ``automations``: a trigger and its actions, saved by name, enabled or not; ``source`` names
  what manages it (``deployment:<id>`` for deployment triggers, null when made by hand).
- ``automation_buckets``: the open windows of triggers (one per automation, trigger path and
  ``for_each`` key): what was counted since when, and when the window ends.
- ``automation_actions``: every action of every firing, recorded before it is taken (unique
  per firing and position, so an action is recorded once), with its outcome.
- ``service_cursors``: how far a service has read the events (the automation evaluator);
  its row starts at the newest event of the store being upgraded, so automations react to
  what happens from now on, never to history.
- ``webhooks``: named receivers ``POST /api/v1/webhooks/{slug}``; only the SHA-256 of a
  webhook's token is kept.

Written out rather than derived from the models, so this revision keeps creating exactly
this schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.String(36)
_NAME = sa.String(200)
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("events", sa.Column("labels", sa.JSON(), nullable=True))
    op.create_table(
        "automations",
        sa.Column("id", _ID, nullable=False),
        sa.Column("name", _NAME, nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("trigger", sa.JSON(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("source", _NAME, nullable=True),
        sa.Column("created", _TS, nullable=False),
        sa.Column("updated", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_automations")),
        sa.UniqueConstraint("name", name=op.f("uq_automations_name")),
    )
    op.create_index(op.f("ix_automations_source"), "automations", ["source"])
    op.create_table(
        "automation_buckets",
        sa.Column("automation_id", _ID, nullable=False),
        sa.Column("path", sa.String(50), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("opened_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["automation_id"], ["automations.id"],
            name=op.f("fk_automation_buckets_automation_id_automations"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("automation_id", "path", "key", name=op.f("pk_automation_buckets")),
    )
    op.create_index(op.f("ix_automation_buckets_expires_at"), "automation_buckets", ["expires_at"])
    op.create_table(
        "automation_actions",
        sa.Column("id", _ID, nullable=False),
        sa.Column("automation_id", _ID, nullable=False),
        sa.Column("automation_name", _NAME, nullable=False),
        sa.Column("firing_id", _ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("action", sa.JSON(), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("chain", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created", _TS, nullable=False),
        sa.Column("started", _TS, nullable=True),
        sa.Column("finished", _TS, nullable=True),
        sa.Column("flow_run_id", _ID, nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_automation_actions")),
        sa.UniqueConstraint("firing_id", "position", name=op.f("uq_automation_actions_firing_id_position")),
    )
    op.create_index(op.f("ix_automation_actions_automation_id"), "automation_actions", ["automation_id"])
    op.create_index(op.f("ix_automation_actions_status_created"), "automation_actions", ["status", "created"])
    op.create_index(op.f("ix_automation_actions_flow_run_id"), "automation_actions", ["flow_run_id"])
    cursors = op.create_table(
        "service_cursors",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("updated", _TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_service_cursors")),
    )
    newest = op.get_bind().execute(sa.text("SELECT COALESCE(MAX(seq), 0) FROM events")).scalar()
    op.bulk_insert(cursors, [{"name": "automations", "seq": int(newest or 0), "updated": datetime.now(UTC)}])
    op.create_table(
        "webhooks",
        sa.Column("id", _ID, nullable=False),
        sa.Column("name", _NAME, nullable=False),
        sa.Column("slug", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created", _TS, nullable=False),
        sa.Column("updated", _TS, nullable=False),
        sa.Column("last_called_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
        sa.UniqueConstraint("name", name=op.f("uq_webhooks_name")),
        sa.UniqueConstraint("slug", name=op.f("uq_webhooks_slug")),
    )


def downgrade() -> None:
    op.drop_table("webhooks")
    op.drop_table("service_cursors")
    op.drop_index(op.f("ix_automation_actions_flow_run_id"), table_name="automation_actions")
    op.drop_index(op.f("ix_automation_actions_status_created"), table_name="automation_actions")
    op.drop_index(op.f("ix_automation_actions_automation_id"), table_name="automation_actions")
    op.drop_table("automation_actions")
    op.drop_index(op.f("ix_automation_buckets_expires_at"), table_name="automation_buckets")
    op.drop_table("automation_buckets")
    op.drop_index(op.f("ix_automations_source"), table_name="automations")
    op.drop_table("automations")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("labels")
