"""Initial run-history schema: flow runs, task runs, states, edges, logs, results.

Revision ID: 0001
Revises:

Tables are written out here rather than derived from the models, so this revision keeps
creating exactly this schema however the models evolve.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.String(36)
_TS = sa.DateTime(timezone=True)


def _serial() -> sa.types.TypeEngine[int]:
    # 64-bit on servers; SQLite only autoincrements a column declared INTEGER PRIMARY KEY.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "flow_runs",
        sa.Column("id", _ID, nullable=False),
        sa.Column("flow_name", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("state_type", sa.String(16), nullable=False),
        sa.Column("state_name", sa.String(), nullable=False),
        sa.Column("state_message", sa.Text(), nullable=True),
        sa.Column("parent_flow_run_id", _ID, nullable=True),
        sa.Column("parent_task_run_id", _ID, nullable=True),
        sa.Column("run_count", sa.Integer(), nullable=False),
        sa.Column("created", _TS, nullable=False),
        sa.Column("start_time", _TS, nullable=True),
        sa.Column("end_time", _TS, nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("hostname", sa.String(), nullable=True),
        sa.Column("heartbeat_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_runs")),
    )
    op.create_index(op.f("ix_flow_runs_parent_flow_run_id"), "flow_runs", ["parent_flow_run_id"])
    op.create_index(op.f("ix_flow_runs_state_type"), "flow_runs", ["state_type"])
    op.create_index(op.f("ix_flow_runs_flow_name"), "flow_runs", ["flow_name"])
    op.create_index(op.f("ix_flow_runs_created"), "flow_runs", ["created"])

    op.create_table(
        "task_runs",
        sa.Column("id", _ID, nullable=False),
        sa.Column("flow_run_id", _ID, nullable=True),
        sa.Column("task_name", sa.String(), nullable=False),
        sa.Column("task_key", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("dynamic_key", sa.Integer(), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("state_type", sa.String(16), nullable=False),
        sa.Column("state_name", sa.String(), nullable=False),
        sa.Column("state_message", sa.Text(), nullable=True),
        sa.Column("run_count", sa.Integer(), nullable=False),
        sa.Column("cache_key", sa.String(), nullable=True),
        sa.Column("result_ref", sa.Text(), nullable=True),
        sa.Column("created", _TS, nullable=False),
        sa.Column("start_time", _TS, nullable=True),
        sa.Column("end_time", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_runs")),
    )
    op.create_index(op.f("ix_task_runs_flow_run_id"), "task_runs", ["flow_run_id"])

    op.create_table(
        "states",
        sa.Column("id", _serial(), autoincrement=True, nullable=False),
        sa.Column("run_id", _ID, nullable=False),
        sa.Column("run_kind", sa.String(8), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("timestamp", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_states")),
    )
    op.create_index(op.f("ix_states_run_id"), "states", ["run_id"])

    op.create_table(
        "task_run_edges",
        sa.Column("id", _serial(), autoincrement=True, nullable=False),
        sa.Column("upstream_id", _ID, nullable=False),
        sa.Column("downstream_id", _ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("parameter", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_run_edges")),
    )
    op.create_index(op.f("ix_task_run_edges_downstream_id"), "task_run_edges", ["downstream_id"])

    op.create_table(
        "logs",
        sa.Column("id", _serial(), autoincrement=True, nullable=False),
        sa.Column("flow_run_id", _ID, nullable=True),
        sa.Column("task_run_id", _ID, nullable=True),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("logger", sa.String(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("timestamp", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_logs")),
    )
    op.create_index(op.f("ix_logs_flow_run_id"), "logs", ["flow_run_id"])

    op.create_table(
        "results",
        sa.Column("id", _serial(), autoincrement=True, nullable=False),
        sa.Column("task_run_id", _ID, nullable=False),
        sa.Column("storage", sa.String(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("serializer", sa.String(32), nullable=False),
        sa.Column("cache_key", sa.String(), nullable=True),
        sa.Column("expires_at", _TS, nullable=True),
        sa.Column("created", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_results")),
    )
    op.create_index(op.f("ix_results_task_run_id"), "results", ["task_run_id"])
    op.create_index(op.f("ix_results_cache_key"), "results", ["cache_key"])


def downgrade() -> None:
    for table in ("results", "logs", "task_run_edges", "states", "task_runs", "flow_runs"):
        op.drop_table(table)  # dropping a table drops its indexes too
