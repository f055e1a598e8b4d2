"""Deployments, their schedules, work pools, work queues, workers; flow runs learn where
they come from and who runs them.

Revision ID: 0007
Revises: 0006

A deployment's runs are flow runs with ``deployment_id`` set, created Scheduled ahead of
time (``expected_start_time`` is the slot) and claimed by a worker (``worker_id``,
``claimed_at``). ``idempotency_key`` is unique, so two schedulers (or a caller sending a
request twice) never create two runs for one slot. The engine records every top-level
run's ``entrypoint`` and a paused run's ``pause_schema``, ``resume_input`` and
``pause_deadline``. Every new flow_runs column is nullable (a run started by hand has none
of them), so SQLite adds them without rebuilding the table; the unique key is a unique
index for the same reason. Written out rather than derived from the models, so this
revision keeps creating exactly this schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.String(36)
_TS = sa.DateTime(timezone=True)

_FLOW_RUN_COLUMNS: tuple[tuple[str, sa.types.TypeEngine[Any]], ...] = (
    ("deployment_id", _ID),
    ("work_pool_name", sa.String()),
    ("work_queue_name", sa.String()),
    ("job_variables", sa.JSON()),
    ("expected_start_time", _TS),
    ("idempotency_key", sa.String()),
    ("worker_id", _ID),
    ("claimed_at", _TS),
    ("retry_of", _ID),
    ("auto_scheduled", sa.Boolean()),
    ("entrypoint", sa.Text()),
    ("pause_schema", sa.JSON()),
    ("resume_input", sa.JSON()),
    ("pause_deadline", _TS),
)
_FLOW_RUN_INDEXES: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("ix_flow_runs_work_pool_name_state_type_expected_start_time",
     ("work_pool_name", "state_type", "expected_start_time"), False),
    ("ix_flow_runs_deployment_id_state_type_expected_start_time",
     ("deployment_id", "state_type", "expected_start_time"), False),
    ("ix_flow_runs_idempotency_key", ("idempotency_key",), True),
)


def upgrade() -> None:
    op.create_table(
        "work_pools",
        sa.Column("id", _ID, nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("base_job_variables", sa.JSON(), nullable=False),
        sa.Column("concurrency_limit", sa.Integer(), nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("created", _TS, nullable=False),
        sa.Column("updated", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_pools")),
        sa.UniqueConstraint("name", name=op.f("uq_work_pools_name")),
    )
    op.create_table(
        "work_queues",
        sa.Column("id", _ID, nullable=False),
        sa.Column("pool_name", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("concurrency_limit", sa.Integer(), nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("created", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_queues")),
        sa.UniqueConstraint("pool_name", "name", name=op.f("uq_work_queues_pool_name_name")),
    )
    op.create_table(
        "workers",
        sa.Column("id", _ID, nullable=False),
        sa.Column("pool_name", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("hostname", sa.String(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("heartbeat_at", _TS, nullable=False),
        sa.Column("heartbeat_interval", sa.Float(), nullable=False),
        sa.Column("created", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
        sa.UniqueConstraint("pool_name", "name", name=op.f("uq_workers_pool_name_name")),
    )
    op.create_table(
        "deployments",
        sa.Column("id", _ID, nullable=False),
        sa.Column("flow_name", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("entrypoint", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("storage_block", sa.String(), nullable=True),
        sa.Column("bundle_key", sa.Text(), nullable=True),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("parameter_schema", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("version", sa.String(), nullable=True),
        sa.Column("work_pool_name", sa.String(), nullable=True),
        sa.Column("work_queue_name", sa.String(), nullable=True),
        sa.Column("job_variables", sa.JSON(), nullable=False),
        sa.Column("concurrency_limit", sa.Integer(), nullable=True),
        sa.Column("collision_strategy", sa.String(16), nullable=False),
        sa.Column("catchup", sa.String(16), nullable=False),
        sa.Column("max_active_runs", sa.Integer(), nullable=True),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("last_polled_at", _TS, nullable=True),
        sa.Column("created", _TS, nullable=False),
        sa.Column("updated", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployments")),
        sa.UniqueConstraint("flow_name", "name", name=op.f("uq_deployments_flow_name_name")),
    )
    op.create_index(op.f("ix_deployments_work_pool_name"), "deployments", ["work_pool_name"])
    op.create_table(
        "deployment_schedules",
        sa.Column("id", _ID, nullable=False),
        sa.Column("deployment_id", _ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("cron", sa.String(), nullable=True),
        sa.Column("interval_seconds", sa.Float(), nullable=True),
        sa.Column("anchor", _TS, nullable=True),
        sa.Column("rrule", sa.Text(), nullable=True),
        sa.Column("timezone", sa.String(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("created", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment_schedules")),
    )
    op.create_index(
        op.f("ix_deployment_schedules_deployment_id_position"), "deployment_schedules", ["deployment_id", "position"]
    )

    with op.batch_alter_table("flow_runs") as batch:
        for name, kind in _FLOW_RUN_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
    for index, columns, unique in _FLOW_RUN_INDEXES:
        op.create_index(op.f(index), "flow_runs", list(columns), unique=unique)


def downgrade() -> None:
    for index, _columns, _unique in _FLOW_RUN_INDEXES:
        op.drop_index(op.f(index), table_name="flow_runs")
    with op.batch_alter_table("flow_runs") as batch:
        for name, _kind in reversed(_FLOW_RUN_COLUMNS):
            batch.drop_column(name)
    op.drop_index(op.f("ix_deployment_schedules_deployment_id_position"), table_name="deployment_schedules")
    op.drop_index(op.f("ix_deployments_work_pool_name"), table_name="deployments")
    for table in ("deployment_schedules", "deployments", "workers", "work_queues", "work_pools"):
        op.drop_table(table)
