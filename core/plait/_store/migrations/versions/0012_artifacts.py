"""Artifacts: what runs make for people to read (``plait.artifacts``).

Revision ID: 0012
Revises: 0011

- ``artifacts``: one row per created artifact (its id is the artifact's), with its ``type``
  (markdown, table, link, progress), optional ``key`` (rows sharing a key are its versions),
  ``description``, JSON ``data``, the flow run and task run it was made in (no foreign keys:
  a batch may store an artifact before its run, and one made outside a run has none), and
  ``created``/``updated`` (a progress update moves ``updated``). Indexed for keyset pages in
  (created, id) order by key, by flow run, by task run and overall.

Written out rather than derived from the models, so this revision keeps creating exactly
this schema.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "artifacts",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("key", sa.String(255), nullable=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("flow_run_id", sa.String(36), nullable=True),
        sa.Column("task_run_id", sa.String(36), nullable=True),
        sa.Column("created", _TS, nullable=False),
        sa.Column("updated", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
    )
    for columns in (("key", "created", "id"), ("flow_run_id", "created", "id"), ("task_run_id", "created", "id"),
                    ("created", "id")):
        op.create_index(op.f(f"ix_artifacts_{'_'.join(columns)}"), "artifacts", list(columns))


def downgrade() -> None:
    op.drop_table("artifacts")
