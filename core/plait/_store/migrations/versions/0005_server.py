"""The server: events, API keys, delivered batches, flow run tags, and keyset indexes.

Revision ID: 0005
Revises: 0004

List pages walk an index in (created, id) order — one per filter of the flow-run listing,
one per task runs of a run, one per log lines of a run or task run — so a page costs the
same with a million runs as with ten. The single-column indexes those replace were
prefixes of them. ``flow_run_tags`` holds each run's tags as rows (filled here from the
runs' JSON lists), so a page of the runs with a tag reads an index too. Written out
rather than derived from the models, so this revision keeps creating exactly this schema
however the models evolve.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.String(36)
_TS = sa.DateTime(timezone=True)

# (table, old single-column indexes, new composite indexes)
_REINDEX: tuple[tuple[str, tuple[str, ...], tuple[tuple[str, ...], ...]], ...] = (
    (
        "flow_runs",
        ("created", "flow_name", "state_type", "parent_flow_run_id"),
        (
            ("created", "id"),
            ("flow_name", "created", "id"),
            ("state_type", "created", "id"),
            ("parent_flow_run_id", "created", "id"),
        ),
    ),
    ("task_runs", ("flow_run_id",), (("flow_run_id", "created", "id"), ("created", "id"))),
    ("logs", ("flow_run_id",), (("flow_run_id", "id"), ("task_run_id", "id"))),
)


def _serial() -> sa.types.TypeEngine[int]:
    # 64-bit on servers; SQLite only autoincrements a column declared INTEGER PRIMARY KEY.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _name(table: str, columns: Sequence[str]) -> str:
    return f"ix_{table}_{'_'.join(columns)}"


def _copy_tags() -> None:
    """The tags of the runs already stored, one row each (strings only, each once)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "INSERT INTO flow_run_tags (flow_run_id, tag, created) "
            "SELECT DISTINCT f.id, t.value #>> '{}', f.created FROM flow_runs AS f "
            "CROSS JOIN LATERAL json_array_elements(CASE WHEN json_typeof(f.tags) = 'array' THEN f.tags "
            "ELSE '[]'::json END) AS t(value) WHERE json_typeof(t.value) = 'string'"
        )
    else:
        op.execute(
            "INSERT INTO flow_run_tags (flow_run_id, tag, created) "
            "SELECT DISTINCT f.id, t.value, f.created FROM flow_runs AS f, json_each(f.tags) AS t "
            "WHERE json_valid(f.tags) AND json_type(f.tags) = 'array' AND t.type = 'text'"
        )


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("seq", _serial(), autoincrement=True, nullable=False),
        sa.Column("id", _ID, nullable=False),
        sa.Column("occurred", _TS, nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("resource", sa.String(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_events")),
        sa.UniqueConstraint("id", name=op.f("uq_events_id")),
    )
    op.create_index(op.f("ix_events_occurred"), "events", ["occurred"])
    op.create_index(op.f("ix_events_kind_seq"), "events", ["kind", "seq"])
    op.create_index(
        op.f("ix_events_resource"), "events", ["resource"], postgresql_ops={"resource": "varchar_pattern_ops"}
    )

    op.create_table(
        "api_keys",
        sa.Column("id", _ID, nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("created", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=True),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.Column("last_used_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("name", name=op.f("uq_api_keys_name")),
    )
    op.create_index(op.f("ix_api_keys_prefix"), "api_keys", ["prefix"])

    op.create_table(
        "ingested_batches",
        sa.Column("batch_id", sa.String(128), nullable=False),
        sa.Column("received", _TS, nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", name=op.f("pk_ingested_batches")),
    )

    op.create_table(
        "flow_run_tags",
        sa.Column("flow_run_id", _ID, nullable=False),
        sa.Column("tag", sa.String(), nullable=False),
        sa.Column("created", _TS, nullable=False),
        sa.PrimaryKeyConstraint("flow_run_id", "tag", name=op.f("pk_flow_run_tags")),
    )
    _copy_tags()
    op.create_index(
        op.f("ix_flow_run_tags_tag_created_flow_run_id"), "flow_run_tags", ["tag", "created", "flow_run_id"]
    )

    for table, old, new in _REINDEX:
        for columns in new:  # the new ones first: a lookup never lacks an index meanwhile
            op.create_index(op.f(_name(table, columns)), table, list(columns))
        for column in old:
            op.drop_index(op.f(_name(table, (column,))), table_name=table)


def downgrade() -> None:
    for table, old, new in _REINDEX:
        for column in old:
            op.create_index(op.f(_name(table, (column,))), table, [column])
        for columns in new:
            op.drop_index(op.f(_name(table, columns)), table_name=table)
    for table in ("flow_run_tags", "ingested_batches", "api_keys", "events"):
        op.drop_table(table)
