"""The run-history schema as SQLAlchemy 2 tables.

These classes describe the *current* schema for queries and the recorder. They never
create tables: every schema change goes through an Alembic migration in
``plait/_store/migrations/versions`` (a test checks that the two agree).

The recorder writes through SQLAlchemy Core (``Model.__table__``) rather than ORM objects,
because it inserts tens of thousands of rows per flush; the declarative classes exist so the
schema reads well and the read side can use them in ``select()``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "Base",
    "UTCDateTime",
    "FlowRunModel",
    "TaskRunModel",
    "StateModel",
    "TaskRunEdgeModel",
    "LogModel",
    "ResultModel",
    "BlockTypeModel",
    "BlockSchemaModel",
    "BlockDocumentModel",
    "BlockDocumentReferenceModel",
    "NAMING_CONVENTION",
]

# Stable, predictable constraint names: Alembic needs a name to drop or alter a constraint
# later, and backends otherwise invent their own (or none, on SQLite).
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID = String(36)  # uuid4 text; the engine creates run ids
# History tables grow without bound on a shared server, so their keys are 64-bit there;
# SQLite only autoincrements a column declared exactly INTEGER PRIMARY KEY.
SERIAL_ID = BigInteger().with_variant(Integer(), "sqlite")


def _sqlite_bind(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not None and value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # SQLAlchemy's own SQLite storage format ("YYYY-MM-DD HH:MM:SS.ffffff", cut before any
    # "+00:00"), so the text sorts chronologically and plain DateTime columns can read it.
    return value.isoformat(" ", "microseconds")[:26]


def _sqlite_result(value: str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime stored as UTC and always read back as aware UTC.

    PostgreSQL keeps the instant itself (``timestamptz``); SQLite keeps text without an
    offset, so values are converted to UTC on the way in and tagged UTC on the way out.
    Naive values are taken to be UTC already, which is what plait itself writes.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value  # the DateTime impl reads a datetime back
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)

    # On SQLite one plain function per value replaces TypeDecorator's chain (our hook, then
    # the dialect's strftime-style formatting): a 100k-task flush binds ~600k timestamps.
    def bind_processor(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return _sqlite_bind
        return super().bind_processor(dialect)

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        if dialect.name == "sqlite":
            return _sqlite_result
        return super().result_processor(dialect, coltype)


class Base(DeclarativeBase):
    """Declarative base holding the shared ``MetaData`` with the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class FlowRunModel(Base):
    """One execution of a flow; mirrors ``plait._runs.FlowRun`` plus a heartbeat."""

    __tablename__ = "flow_runs"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    flow_name: Mapped[str] = mapped_column(String)
    name: Mapped[str] = mapped_column(String)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    tags: Mapped[list[str]] = mapped_column(JSON)
    state_type: Mapped[str] = mapped_column(String(16))
    state_name: Mapped[str] = mapped_column(String)
    state_message: Mapped[str | None] = mapped_column(Text)
    parent_flow_run_id: Mapped[str | None] = mapped_column(ID)
    parent_task_run_id: Mapped[str | None] = mapped_column(ID)
    run_count: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[datetime] = mapped_column(UTCDateTime())
    start_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    pid: Mapped[int | None] = mapped_column(Integer)
    hostname: Mapped[str | None] = mapped_column(String)
    # Last time the owning process wrote this row; a silent Running run is Crashed.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The owning process's heartbeat interval: silence of twice this means it is gone.
    heartbeat_interval: Mapped[float | None] = mapped_column(Float)
    # -- deployments and workers (migration 0007; NULL for a run started by hand) -------------
    deployment_id: Mapped[str | None] = mapped_column(ID)
    work_pool_name: Mapped[str | None] = mapped_column(String)
    work_queue_name: Mapped[str | None] = mapped_column(String)
    job_variables: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The schedule slot or requested start: lateness and catch-up are measured from it.
    expected_start_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # "schedule:<schedule id>:<slot>" for the scheduler's runs, or a caller's key.
    idempotency_key: Mapped[str | None] = mapped_column(String)
    worker_id: Mapped[str | None] = mapped_column(ID)  # the worker that claimed it
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    retry_of: Mapped[str | None] = mapped_column(ID)  # the crashed run this one retries
    auto_scheduled: Mapped[bool | None] = mapped_column(Boolean)  # created by the scheduler
    entrypoint: Mapped[str | None] = mapped_column(Text)  # "path.py:flow" of a top-level run
    pause_schema: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    resume_input: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    pause_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime())

    # Each filter of the flow-run listing walks its own index in (created, id) order, so a
    # keyset page reads about one page of index entries however long the history is.
    __table_args__ = (
        Index(None, "created", "id"),
        Index(None, "flow_name", "created", "id"),
        Index(None, "state_type", "created", "id"),
        Index(None, "parent_flow_run_id", "created", "id"),
        # a worker's claim: its pool's due Scheduled runs, oldest slot first
        Index(None, "work_pool_name", "state_type", "expected_start_time"),
        # a serve process's claim, and the scheduler's look at a deployment's planned runs
        Index(None, "deployment_id", "state_type", "expected_start_time"),
        # a deployment's runs, newest first (the dashboard's deployment filter; migration 0010)
        Index(None, "deployment_id", "created", "id"),
        # unique: one run per schedule slot / caller's key, however many servers plan
        Index(None, "idempotency_key", unique=True),
    )


class TaskRunModel(Base):
    """One execution of a task; ``flow_run_id`` is NULL for a task called outside a flow."""

    __tablename__ = "task_runs"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    flow_run_id: Mapped[str | None] = mapped_column(ID)
    task_name: Mapped[str] = mapped_column(String)
    task_key: Mapped[str] = mapped_column(String)
    name: Mapped[str] = mapped_column(String)
    dynamic_key: Mapped[int] = mapped_column(Integer, default=0)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    tags: Mapped[list[str]] = mapped_column(JSON)
    state_type: Mapped[str] = mapped_column(String(16))
    state_name: Mapped[str] = mapped_column(String)
    state_message: Mapped[str | None] = mapped_column(Text)
    run_count: Mapped[int] = mapped_column(Integer, default=0)
    cache_key: Mapped[str | None] = mapped_column(String)
    result_ref: Mapped[str | None] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(UTCDateTime())
    start_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index(None, "flow_run_id", "created", "id"),  # a run's task runs, in order
        Index(None, "created", "id"),  # every task run, newest first
    )


class StateModel(Base):
    """One entry of a run's state history, in the order the engine reported it."""

    __tablename__ = "states"

    id: Mapped[int] = mapped_column(SERIAL_ID, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ID, index=True)
    run_kind: Mapped[str] = mapped_column(String(8))  # "flow" | "task"
    type: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String)
    message: Mapped[str | None] = mapped_column(Text)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime())


class TaskRunEdgeModel(Base):
    """Task run ``downstream_id`` depended on ``upstream_id`` (``kind``: data | wait_for)."""

    __tablename__ = "task_run_edges"

    id: Mapped[int] = mapped_column(SERIAL_ID, primary_key=True, autoincrement=True)
    upstream_id: Mapped[str] = mapped_column(ID)
    downstream_id: Mapped[str] = mapped_column(ID, index=True)
    kind: Mapped[str] = mapped_column(String(16))
    parameter: Mapped[str | None] = mapped_column(String)


class LogModel(Base):
    """A log line emitted while a flow run or task run executed."""

    __tablename__ = "logs"

    id: Mapped[int] = mapped_column(SERIAL_ID, primary_key=True, autoincrement=True)
    flow_run_id: Mapped[str | None] = mapped_column(ID)
    task_run_id: Mapped[str | None] = mapped_column(ID)
    level: Mapped[int] = mapped_column(Integer)
    logger: Mapped[str] = mapped_column(String)
    message: Mapped[str] = mapped_column(Text)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime())

    # Pages of a run's (or a task run's) lines in the order they were stored: ids only grow,
    # so a reader following new lines never misses one that arrived late.
    __table_args__ = (
        Index(None, "flow_run_id", "id"),
        Index(None, "task_run_id", "id"),
    )


class ResultModel(Base):
    """Index of persisted task results: where each lives and which cache key it answers."""

    __tablename__ = "results"

    id: Mapped[int] = mapped_column(SERIAL_ID, primary_key=True, autoincrement=True)
    task_run_id: Mapped[str] = mapped_column(ID, index=True)
    storage: Mapped[str] = mapped_column(String)
    path: Mapped[str] = mapped_column(Text)
    serializer: Mapped[str] = mapped_column(String(32))
    cache_key: Mapped[str | None] = mapped_column(String, index=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created: Mapped[datetime] = mapped_column(UTCDateTime())


# -- blocks ------------------------------------------------------------------------------------
class BlockTypeModel(Base):
    """A block type that has been saved at least once: its slug and display metadata."""

    __tablename__ = "block_types"

    slug: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str] = mapped_column(String)
    description: Mapped[str] = mapped_column(Text)
    capabilities: Mapped[list[str]] = mapped_column(JSON)
    plugin: Mapped[str | None] = mapped_column(String)  # the plugin that registered it, if any
    updated: Mapped[datetime] = mapped_column(UTCDateTime())


class BlockSchemaModel(Base):
    """One version of a block type's JSON schema, keyed by its checksum."""

    __tablename__ = "block_schemas"

    checksum: Mapped[str] = mapped_column(String, primary_key=True)
    slug: Mapped[str] = mapped_column(String)
    json_schema: Mapped[dict[str, Any]] = mapped_column(JSON)
    secret_fields: Mapped[list[str]] = mapped_column(JSON)
    created: Mapped[datetime] = mapped_column(UTCDateTime())


class BlockDocumentModel(Base):
    """A saved block: its values as JSON, secret values encrypted (``{"$secret": token}``)
    and nested blocks by reference (``{"$ref": document_id}``)."""

    __tablename__ = "block_documents"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String)
    slug: Mapped[str] = mapped_column(String)
    schema_checksum: Mapped[str] = mapped_column(String)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created: Mapped[datetime] = mapped_column(UTCDateTime())
    updated: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("slug", "name"),
        Index(None, "name"),
    )


class BlockDocumentReferenceModel(Base):
    """Block document ``parent_document_id`` holds ``child_document_id`` in ``field_name``."""

    __tablename__ = "block_document_references"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    parent_document_id: Mapped[str] = mapped_column(ID, index=True)
    field_name: Mapped[str] = mapped_column(String)
    child_document_id: Mapped[str] = mapped_column(ID, index=True)


# -- notification rules ------------------------------------------------------------------------
__all__.append("NotificationRuleModel")


class NotificationRuleModel(Base):
    """Notify through a saved block (``slug/name``) when a matching flow run enters a state.

    ``flow_name`` is a glob over flow names; a run must carry every tag in ``tags``; ``states``
    lists state types (``["FAILED", "CRASHED"]``). See ``plait.notifications``.
    """

    __tablename__ = "notification_rules"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String, unique=True)
    block: Mapped[str] = mapped_column(String)
    flow_name: Mapped[str] = mapped_column(String)
    tags: Mapped[list[str]] = mapped_column(JSON)
    states: Mapped[list[str]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime())


# -- server: events, API keys, delivered batches -----------------------------------------------
__all__ += ["EventModel", "ApiKeyModel", "IngestedBatchModel", "FlowRunTagModel"]


class FlowRunTagModel(Base):
    """One tag of a flow run, with the run's creation time: a page of the runs with a tag
    walks (tag, created, flow_run_id) instead of every run's JSON list of tags. Written with
    the run (a run's tags do not change after it is created)."""

    __tablename__ = "flow_run_tags"

    flow_run_id: Mapped[str] = mapped_column(ID, primary_key=True)
    tag: Mapped[str] = mapped_column(String, primary_key=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index(None, "tag", "created", "flow_run_id"),)


class EventModel(Base):
    """Something that happened (a state change, a block saved, log lines written), in the
    order it was committed: ``seq`` is the cursor readers resume from."""

    __tablename__ = "events"

    seq: Mapped[int] = mapped_column(SERIAL_ID, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(ID, unique=True)
    occurred: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    kind: Mapped[str] = mapped_column(String)
    resource: Mapped[str] = mapped_column(String)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    labels: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # a custom event's resource labels

    __table_args__ = (
        Index(None, "kind", "seq"),
        # pattern ops: PostgreSQL then answers a prefix LIKE from the index in any collation
        Index(None, "resource", postgresql_ops={"resource": "varchar_pattern_ops"}),
    )


class ApiKeyModel(Base):
    """An API key of the server: only the SHA-256 of the key is kept, never the key."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String, unique=True)
    prefix: Mapped[str] = mapped_column(String(16), index=True)  # shown in listings
    hash: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(8))  # "read" | "run" | "admin"
    created: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class IngestedBatchModel(Base):
    """A recorder batch a server has stored, with the answer it gave: written in the same
    transaction as the batch, so a batch sent again is stored once and answered alike."""

    __tablename__ = "ingested_batches"

    batch_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    received: Mapped[datetime] = mapped_column(UTCDateTime())
    result: Mapped[dict[str, Any]] = mapped_column(JSON)


__all__.append("ServiceLeaseModel")


class ServiceLeaseModel(Base):
    """Which plait server runs a background service, until when (``plait._store.leases``)."""

    __tablename__ = "service_leases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


# -- deployments, schedules, work pools, workers (migration 0007) -----------------------------
__all__ += ["WorkPoolModel", "WorkQueueModel", "WorkerModel", "DeploymentModel", "DeploymentScheduleModel"]


class WorkPoolModel(Base):
    """A named place where deployments' runs are executed, typed by an infrastructure block
    type (``process``); workers poll it (``plait._store.work_pools``)."""

    __tablename__ = "work_pools"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String, unique=True)
    type: Mapped[str] = mapped_column(String)
    description: Mapped[str] = mapped_column(Text)
    base_job_variables: Mapped[dict[str, Any]] = mapped_column(JSON)
    concurrency_limit: Mapped[int | None] = mapped_column(Integer)
    paused: Mapped[bool] = mapped_column(Boolean)
    created: Mapped[datetime] = mapped_column(UTCDateTime())
    updated: Mapped[datetime] = mapped_column(UTCDateTime())


class WorkQueueModel(Base):
    """A priority queue of a work pool (``priority`` 1 is served first)."""

    __tablename__ = "work_queues"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    pool_name: Mapped[str] = mapped_column(String)
    name: Mapped[str] = mapped_column(String)
    priority: Mapped[int] = mapped_column(Integer)
    concurrency_limit: Mapped[int | None] = mapped_column(Integer)
    paused: Mapped[bool] = mapped_column(Boolean)
    created: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("pool_name", "name"),)


class WorkerModel(Base):
    """A worker process polling a pool; silence for two of its heartbeat intervals means it
    is gone and its claimed runs are crashed."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    pool_name: Mapped[str] = mapped_column(String)
    name: Mapped[str] = mapped_column(String)
    hostname: Mapped[str] = mapped_column(String)
    pid: Mapped[int | None] = mapped_column(Integer)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime())
    heartbeat_interval: Mapped[float] = mapped_column(Float)
    created: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("pool_name", "name"),)


class DeploymentModel(Base):
    """A flow entrypoint with the defaults, schedules and place its runs get; named
    ``"<flow_name>/<name>"`` (``plait._store.deployments``)."""

    __tablename__ = "deployments"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    flow_name: Mapped[str] = mapped_column(String)
    name: Mapped[str] = mapped_column(String)
    entrypoint: Mapped[str] = mapped_column(Text)
    path: Mapped[str | None] = mapped_column(Text)  # working directory of its runs
    storage_block: Mapped[str | None] = mapped_column(String)  # "slug/name" holding the code bundle
    bundle_key: Mapped[str | None] = mapped_column(Text)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    parameter_schema: Mapped[dict[str, Any]] = mapped_column(JSON)
    tags: Mapped[list[str]] = mapped_column(JSON)
    description: Mapped[str] = mapped_column(Text)
    version: Mapped[str | None] = mapped_column(String)
    work_pool_name: Mapped[str | None] = mapped_column(String)
    work_queue_name: Mapped[str | None] = mapped_column(String)
    job_variables: Mapped[dict[str, Any]] = mapped_column(JSON)
    concurrency_limit: Mapped[int | None] = mapped_column(Integer)
    collision_strategy: Mapped[str] = mapped_column(String(16))  # "enqueue" | "cancel_new"
    catchup: Mapped[str] = mapped_column(String(16))  # "all" | "latest" | "none"
    max_active_runs: Mapped[int | None] = mapped_column(Integer)
    retries: Mapped[int] = mapped_column(Integer)  # new attempts after a crash
    paused: Mapped[bool] = mapped_column(Boolean)
    last_polled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created: Mapped[datetime] = mapped_column(UTCDateTime())
    updated: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("flow_name", "name"),
        Index(None, "work_pool_name"),
    )


class DeploymentScheduleModel(Base):
    """One schedule of a deployment (``kind``: cron | interval | rrule), in ``position`` order."""

    __tablename__ = "deployment_schedules"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    deployment_id: Mapped[str] = mapped_column(ID)
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    cron: Mapped[str | None] = mapped_column(String)
    interval_seconds: Mapped[float | None] = mapped_column(Float)
    anchor: Mapped[datetime | None] = mapped_column(UTCDateTime())
    rrule: Mapped[str | None] = mapped_column(Text)
    timezone: Mapped[str] = mapped_column(String)
    active: Mapped[bool] = mapped_column(Boolean)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    created: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index(None, "deployment_id", "position"),)


# -- concurrency limits and their held slots (migration 0008) ----------------------------------
__all__ += ["ConcurrencyLimitModel", "ConcurrencySlotModel"]


class ConcurrencyLimitModel(Base):
    """A named concurrency limit (``plait._store.concurrency``): task runs tagged with its
    name and ``plait.concurrency(name)`` blocks hold slots of it; with a slot decay it is a
    rate limit too, whose bucket fill is ``level`` as of ``level_at``."""

    __tablename__ = "concurrency_limits"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    limit: Mapped[int] = mapped_column(Integer)
    slot_decay_per_second: Mapped[float] = mapped_column(Float, default=0.0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[str] = mapped_column(Text, default="")
    level: Mapped[float] = mapped_column(Float, default=0.0)
    level_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created: Mapped[datetime] = mapped_column(UTCDateTime())
    updated: Mapped[datetime] = mapped_column(UTCDateTime())


class ConcurrencySlotModel(Base):
    """``occupy`` slots of a limit held by one holder (a task run, a with-block) since
    ``acquired_at``; a slot of a flow run that has ended is stale and freed on the next
    acquisition of its limit."""

    __tablename__ = "concurrency_slots"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    limit_name: Mapped[str] = mapped_column(
        String(200), ForeignKey("concurrency_limits.name", ondelete="CASCADE"), index=True
    )
    occupy: Mapped[int] = mapped_column(Integer)
    flow_run_id: Mapped[str | None] = mapped_column(ID, index=True)
    task_run_id: Mapped[str | None] = mapped_column(ID)
    hostname: Mapped[str] = mapped_column(String)
    pid: Mapped[int | None] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String)  # "task run extract-3 of flow run 1a2b...", for people
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime())


# -- automations, webhooks (migration 0009) --------------------------------------------------
__all__ += ["AutomationModel", "AutomationBucketModel", "AutomationActionModel", "ServiceCursorModel",
            "WebhookModel"]


class AutomationModel(Base):
    """A trigger and its actions, saved by name (``plait._store.automations``)."""

    __tablename__ = "automations"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean)
    trigger: Mapped[dict[str, Any]] = mapped_column(JSON)
    actions: Mapped[list[Any]] = mapped_column(JSON)
    source: Mapped[str | None] = mapped_column(String(200), index=True)  # "deployment:<id>": managed there
    created: Mapped[datetime] = mapped_column(UTCDateTime())
    updated: Mapped[datetime] = mapped_column(UTCDateTime())


class AutomationBucketModel(Base):
    """One open window of a trigger: ``count`` events since ``opened_at``, ending at
    ``expires_at`` (null: no end), per automation, trigger path and ``for_each`` key."""

    __tablename__ = "automation_buckets"

    automation_id: Mapped[str] = mapped_column(ID, ForeignKey("automations.id", ondelete="CASCADE"),
                                               primary_key=True)
    path: Mapped[str] = mapped_column(String(50), primary_key=True)
    key: Mapped[str] = mapped_column(String, primary_key=True)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    count: Mapped[int] = mapped_column(Integer)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)


class AutomationActionModel(Base):
    """One action of one firing, recorded before it is taken; ``status`` pending, running,
    done, failed or skipped."""

    __tablename__ = "automation_actions"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    automation_id: Mapped[str] = mapped_column(ID, index=True)
    automation_name: Mapped[str] = mapped_column(String(200))
    firing_id: Mapped[str] = mapped_column(ID)
    position: Mapped[int] = mapped_column(Integer)
    action: Mapped[dict[str, Any]] = mapped_column(JSON)
    context: Mapped[dict[str, Any]] = mapped_column(JSON)
    chain: Mapped[list[Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    created: Mapped[datetime] = mapped_column(UTCDateTime())
    started: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished: Mapped[datetime | None] = mapped_column(UTCDateTime())
    flow_run_id: Mapped[str | None] = mapped_column(ID, index=True)  # the run a run-deployment made
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("firing_id", "position"), Index(None, "status", "created"))


class ServiceCursorModel(Base):
    """The seq of the last event a service has dealt with."""

    __tablename__ = "service_cursors"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    updated: Mapped[datetime] = mapped_column(UTCDateTime())


class WebhookModel(Base):
    """A named receiver of HTTP calls that become events; only the token's SHA-256 is kept."""

    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    template: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean)
    created: Mapped[datetime] = mapped_column(UTCDateTime())
    updated: Mapped[datetime] = mapped_column(UTCDateTime())
    last_called_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
