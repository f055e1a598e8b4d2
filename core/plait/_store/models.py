"""The schema as SQLAlchemy Core tables (``FLOW_RUNS``, ``TASK_RUNS``, ...), all in ``METADATA``.

These tables describe the *current* schema for queries and the recorder. They never create
tables: every schema change goes through an Alembic migration in
``plait/_store/migrations/versions`` (a test checks that the two agree).

Core, not the ORM: the repositories speak in statements over rows (the recorder inserts
tens of thousands per flush), and declarative classes cost every process that opens the
store ~0.1 s of mapping at import for nothing it uses.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

__all__ = [
    "METADATA",
    "UTCDateTime",
    "FLOW_RUNS",
    "TASK_RUNS",
    "STATES",
    "TASK_RUN_EDGES",
    "LOGS",
    "RESULTS",
    "BLOCK_TYPES",
    "BLOCK_SCHEMAS",
    "BLOCK_DOCUMENTS",
    "BLOCK_DOCUMENT_REFERENCES",
    "ARTIFACTS",
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


# Every table of the schema, with the naming convention.
METADATA = MetaData(naming_convention=NAMING_CONVENTION)


# One execution of a flow; mirrors ``plait._runs.FlowRun`` plus a heartbeat.
FLOW_RUNS = Table(
    "flow_runs", METADATA,
    Column("id", ID, primary_key=True),
    Column("flow_name", String, nullable=False),
    Column("name", String, nullable=False),
    Column("parameters", JSON, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("state_type", String(16), nullable=False),
    Column("state_name", String, nullable=False),
    Column("state_message", Text),
    Column("parent_flow_run_id", ID),
    Column("parent_task_run_id", ID),
    Column("run_count", Integer, default=0, nullable=False),
    Column("created", UTCDateTime(), nullable=False),
    Column("start_time", UTCDateTime()),
    Column("end_time", UTCDateTime()),
    Column("pid", Integer),
    Column("hostname", String),
    # Last time the owning process wrote this row; a silent Running run is Crashed.
    Column("heartbeat_at", UTCDateTime()),
    # The owning process's heartbeat interval: silence of twice this means it is gone.
    Column("heartbeat_interval", Float),
    # -- deployments and workers (migration 0007; NULL for a run started by hand) -------------
    Column("deployment_id", ID),
    Column("work_pool_name", String),
    Column("work_queue_name", String),
    Column("job_variables", JSON),
    # The schedule slot or requested start: lateness and catch-up are measured from it.
    Column("expected_start_time", UTCDateTime()),
    # "schedule:<schedule id>:<slot>" for the scheduler's runs, or a caller's key.
    Column("idempotency_key", String),
    Column("worker_id", ID),  # the worker that claimed it
    Column("claimed_at", UTCDateTime()),
    Column("retry_of", ID),  # the crashed run this one retries
    Column("auto_scheduled", Boolean),  # created by the scheduler
    Column("entrypoint", Text),  # "path.py:flow" of a top-level run
    Column("pause_schema", JSON),
    Column("resume_input", JSON),
    Column("pause_deadline", UTCDateTime()),
    # Each filter of the flow-run listing walks its own index in (created, id) order, so a
    # keyset page reads about one page of index entries however long the history is.
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


# One execution of a task; ``flow_run_id`` is NULL for a task called outside a flow.
TASK_RUNS = Table(
    "task_runs", METADATA,
    Column("id", ID, primary_key=True),
    Column("flow_run_id", ID),
    Column("task_name", String, nullable=False),
    Column("task_key", String, nullable=False),
    Column("name", String, nullable=False),
    Column("dynamic_key", Integer, default=0, nullable=False),
    Column("parameters", JSON, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("state_type", String(16), nullable=False),
    Column("state_name", String, nullable=False),
    Column("state_message", Text),
    Column("run_count", Integer, default=0, nullable=False),
    Column("cache_key", String),
    Column("result_ref", Text),
    Column("created", UTCDateTime(), nullable=False),
    Column("start_time", UTCDateTime()),
    Column("end_time", UTCDateTime()),
    Index(None, "flow_run_id", "created", "id"),  # a run's task runs, in order
    Index(None, "created", "id"),  # every task run, newest first
)


# One entry of a run's state history, in the order the engine reported it.
STATES = Table(
    "states", METADATA,
    Column("id", SERIAL_ID, primary_key=True, autoincrement=True),
    Column("run_id", ID, index=True, nullable=False),
    Column("run_kind", String(8), nullable=False),  # "flow" | "task"
    Column("type", String(16), nullable=False),
    Column("name", String, nullable=False),
    Column("message", Text),
    Column("timestamp", UTCDateTime(), nullable=False),
)


# Task run ``downstream_id`` depended on ``upstream_id`` (``kind``: data | wait_for).
TASK_RUN_EDGES = Table(
    "task_run_edges", METADATA,
    Column("id", SERIAL_ID, primary_key=True, autoincrement=True),
    Column("upstream_id", ID, nullable=False),
    Column("downstream_id", ID, index=True, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("parameter", String),
)


# A log line emitted while a flow run or task run executed.
LOGS = Table(
    "logs", METADATA,
    Column("id", SERIAL_ID, primary_key=True, autoincrement=True),
    Column("flow_run_id", ID),
    Column("task_run_id", ID),
    Column("level", Integer, nullable=False),
    Column("logger", String, nullable=False),
    Column("message", Text, nullable=False),
    Column("timestamp", UTCDateTime(), nullable=False),
    # Pages of a run's (or a task run's) lines in the order they were stored: ids only grow,
    # so a reader following new lines never misses one that arrived late.
    Index(None, "flow_run_id", "id"),
    Index(None, "task_run_id", "id"),
)


# Index of persisted task results: where each lives and which cache key it answers.
RESULTS = Table(
    "results", METADATA,
    Column("id", SERIAL_ID, primary_key=True, autoincrement=True),
    Column("task_run_id", ID, index=True, nullable=False),
    Column("storage", String, nullable=False),
    Column("path", Text, nullable=False),
    Column("serializer", String(32), nullable=False),
    Column("cache_key", String, index=True),
    Column("expires_at", UTCDateTime()),
    Column("created", UTCDateTime(), nullable=False),
)


# -- blocks ------------------------------------------------------------------------------------
# A block type that has been saved at least once: its slug and display metadata.
BLOCK_TYPES = Table(
    "block_types", METADATA,
    Column("slug", String, primary_key=True),
    Column("name", String, nullable=False),
    Column("description", Text, nullable=False),
    Column("capabilities", JSON, nullable=False),
    Column("plugin", String),  # the plugin that registered it, if any
    Column("updated", UTCDateTime(), nullable=False),
)


# One version of a block type's JSON schema, keyed by its checksum.
BLOCK_SCHEMAS = Table(
    "block_schemas", METADATA,
    Column("checksum", String, primary_key=True),
    Column("slug", String, nullable=False),
    Column("json_schema", JSON, nullable=False),
    Column("secret_fields", JSON, nullable=False),
    Column("created", UTCDateTime(), nullable=False),
)


# A saved block: its values as JSON, secret values encrypted (``{"$secret": token}``) and
# nested blocks by reference (``{"$ref": document_id}``).
BLOCK_DOCUMENTS = Table(
    "block_documents", METADATA,
    Column("id", ID, primary_key=True),
    Column("name", String, nullable=False),
    Column("slug", String, nullable=False),
    Column("schema_checksum", String, nullable=False),
    Column("data", JSON, nullable=False),
    Column("created", UTCDateTime(), nullable=False),
    Column("updated", UTCDateTime(), nullable=False),
    UniqueConstraint("slug", "name"),
    Index(None, "name"),
)


# Block document ``parent_document_id`` holds ``child_document_id`` in ``field_name``.
BLOCK_DOCUMENT_REFERENCES = Table(
    "block_document_references", METADATA,
    Column("id", ID, primary_key=True),
    Column("parent_document_id", ID, index=True, nullable=False),
    Column("field_name", String, nullable=False),
    Column("child_document_id", ID, index=True, nullable=False),
)


# -- notification rules ------------------------------------------------------------------------
__all__.append("NOTIFICATION_RULES")


# Notify through a saved block (``slug/name``) when a matching flow run enters a state.
# ``flow_name`` is a glob over flow names; a run must carry every tag in ``tags``;
# ``states`` lists state types (``["FAILED", "CRASHED"]``). See ``plait.notifications``.
NOTIFICATION_RULES = Table(
    "notification_rules", METADATA,
    Column("id", ID, primary_key=True),
    Column("name", String, unique=True, nullable=False),
    Column("block", String, nullable=False),
    Column("flow_name", String, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("states", JSON, nullable=False),
    Column("enabled", Boolean, default=True, nullable=False),
    Column("created", UTCDateTime(), nullable=False),
)


# -- server: events, API keys, delivered batches -----------------------------------------------
__all__ += ["EVENTS", "API_KEYS", "INGESTED_BATCHES", "FLOW_RUN_TAGS"]


# One tag of a flow run, with the run's creation time: a page of the runs with a tag walks
# (tag, created, flow_run_id) instead of every run's JSON list of tags. Written with the
# run (a run's tags do not change after it is created).
FLOW_RUN_TAGS = Table(
    "flow_run_tags", METADATA,
    Column("flow_run_id", ID, primary_key=True),
    Column("tag", String, primary_key=True),
    Column("created", UTCDateTime(), nullable=False),
    Index(None, "tag", "created", "flow_run_id"),
)


# Something that happened (a state change, a block saved, log lines written), in the order
# it was committed: ``seq`` is the cursor readers resume from.
EVENTS = Table(
    "events", METADATA,
    Column("seq", SERIAL_ID, primary_key=True, autoincrement=True),
    Column("id", ID, unique=True, nullable=False),
    Column("occurred", UTCDateTime(), index=True, nullable=False),
    Column("kind", String, nullable=False),
    Column("resource", String, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("labels", JSON),  # a custom event's resource labels
    Index(None, "kind", "seq"),
    # Migration 0005 gives it varchar_pattern_ops on PostgreSQL, which then answers a prefix
    # LIKE from the index in any collation. Not repeated here: naming a dialect's option
    # imports that dialect, and every process that records a flow run imports this module.
    Index(None, "resource"),
)


# An API key of the server: only the SHA-256 of the key is kept, never the key.
API_KEYS = Table(
    "api_keys", METADATA,
    Column("id", ID, primary_key=True),
    Column("name", String, unique=True, nullable=False),
    Column("prefix", String(16), index=True, nullable=False),  # shown in listings
    Column("hash", String(64), nullable=False),
    Column("scope", String(8), nullable=False),  # "read" | "run" | "admin"
    Column("created", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime()),
    Column("revoked_at", UTCDateTime()),
    Column("last_used_at", UTCDateTime()),
)


# A recorder batch a server has stored, with the answer it gave: written in the same
# transaction as the batch, so a batch sent again is stored once and answered alike.
INGESTED_BATCHES = Table(
    "ingested_batches", METADATA,
    Column("batch_id", String(128), primary_key=True),
    Column("received", UTCDateTime(), nullable=False),
    Column("result", JSON, nullable=False),
)


__all__.append("SERVICE_LEASES")


# Which plait server runs a background service, until when (``plait._store.leases``).
SERVICE_LEASES = Table(
    "service_leases", METADATA,
    Column("name", String(100), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
)


# -- deployments, schedules, work pools, workers (migration 0007) -----------------------------
__all__ += ["WORK_POOLS", "WORK_QUEUES", "WORKERS", "DEPLOYMENTS", "DEPLOYMENT_SCHEDULES"]


# A named place where deployments' runs are executed, typed by an infrastructure block
# type (``process``); workers poll it (``plait._store.work_pools``).
WORK_POOLS = Table(
    "work_pools", METADATA,
    Column("id", ID, primary_key=True),
    Column("name", String, unique=True, nullable=False),
    Column("type", String, nullable=False),
    Column("description", Text, nullable=False),
    Column("base_job_variables", JSON, nullable=False),
    Column("concurrency_limit", Integer),
    Column("paused", Boolean, nullable=False),
    Column("created", UTCDateTime(), nullable=False),
    Column("updated", UTCDateTime(), nullable=False),
)


# A priority queue of a work pool (``priority`` 1 is served first).
WORK_QUEUES = Table(
    "work_queues", METADATA,
    Column("id", ID, primary_key=True),
    Column("pool_name", String, nullable=False),
    Column("name", String, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("concurrency_limit", Integer),
    Column("paused", Boolean, nullable=False),
    Column("created", UTCDateTime(), nullable=False),
    UniqueConstraint("pool_name", "name"),
)


# A worker process polling a pool; silence for two of its heartbeat intervals means it is
# gone and its claimed runs are crashed.
WORKERS = Table(
    "workers", METADATA,
    Column("id", ID, primary_key=True),
    Column("pool_name", String, nullable=False),
    Column("name", String, nullable=False),
    Column("hostname", String, nullable=False),
    Column("pid", Integer),
    Column("heartbeat_at", UTCDateTime(), nullable=False),
    Column("heartbeat_interval", Float, nullable=False),
    Column("created", UTCDateTime(), nullable=False),
    UniqueConstraint("pool_name", "name"),
)


# A flow entrypoint with the defaults, schedules and place its runs get; named
# ``"<flow_name>/<name>"`` (``plait._store.deployments``).
DEPLOYMENTS = Table(
    "deployments", METADATA,
    Column("id", ID, primary_key=True),
    Column("flow_name", String, nullable=False),
    Column("name", String, nullable=False),
    Column("entrypoint", Text, nullable=False),
    Column("path", Text),  # working directory of its runs
    Column("storage_block", String),  # "slug/name" holding the code bundle
    Column("bundle_key", Text),
    Column("parameters", JSON, nullable=False),
    Column("parameter_schema", JSON, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("description", Text, nullable=False),
    Column("version", String),
    Column("work_pool_name", String),
    Column("work_queue_name", String),
    Column("job_variables", JSON, nullable=False),
    Column("concurrency_limit", Integer),
    Column("collision_strategy", String(16), nullable=False),  # "enqueue" | "cancel_new"
    Column("catchup", String(16), nullable=False),  # "all" | "latest" | "none"
    Column("max_active_runs", Integer),
    Column("retries", Integer, nullable=False),  # new attempts after a crash
    Column("paused", Boolean, nullable=False),
    Column("last_polled_at", UTCDateTime()),
    Column("created", UTCDateTime(), nullable=False),
    Column("updated", UTCDateTime(), nullable=False),
    UniqueConstraint("flow_name", "name"),
    Index(None, "work_pool_name"),
)


# One schedule of a deployment (``kind``: cron | interval | rrule), in ``position`` order.
DEPLOYMENT_SCHEDULES = Table(
    "deployment_schedules", METADATA,
    Column("id", ID, primary_key=True),
    Column("deployment_id", ID, nullable=False),
    Column("position", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("cron", String),
    Column("interval_seconds", Float),
    Column("anchor", UTCDateTime()),
    Column("rrule", Text),
    Column("timezone", String, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("parameters", JSON, nullable=False),
    Column("created", UTCDateTime(), nullable=False),
    Index(None, "deployment_id", "position"),
)


# -- concurrency limits and their held slots (migration 0008) ----------------------------------
__all__ += ["CONCURRENCY_LIMITS", "CONCURRENCY_SLOTS"]


# A named concurrency limit (``plait._store.concurrency``): task runs tagged with its name
# and ``plait.concurrency(name)`` blocks hold slots of it; with a slot decay it is a rate
# limit too, whose bucket fill is ``level`` as of ``level_at``.
CONCURRENCY_LIMITS = Table(
    "concurrency_limits", METADATA,
    Column("name", String(200), primary_key=True),
    Column("limit", Integer, nullable=False),
    Column("slot_decay_per_second", Float, default=0.0, nullable=False),
    Column("active", Boolean, default=True, nullable=False),
    Column("description", Text, default="", nullable=False),
    Column("level", Float, default=0.0, nullable=False),
    Column("level_at", UTCDateTime()),
    Column("created", UTCDateTime(), nullable=False),
    Column("updated", UTCDateTime(), nullable=False),
)


# ``occupy`` slots of a limit held by one holder (a task run, a with-block) since
# ``acquired_at``; a slot of a flow run that has ended is stale and freed on the next
# acquisition of its limit.
CONCURRENCY_SLOTS = Table(
    "concurrency_slots", METADATA,
    Column("id", ID, primary_key=True),
    Column("limit_name", String(200), ForeignKey("concurrency_limits.name", ondelete="CASCADE"), index=True,
           nullable=False),
    Column("occupy", Integer, nullable=False),
    Column("flow_run_id", ID, index=True),
    Column("task_run_id", ID),
    Column("hostname", String, nullable=False),
    Column("pid", Integer),
    Column("label", String, nullable=False),  # "task run extract-3 of flow run 1a2b...", for people
    Column("acquired_at", UTCDateTime(), nullable=False),
)


# -- automations, webhooks (migration 0009) --------------------------------------------------
__all__ += ["AUTOMATIONS", "AUTOMATION_BUCKETS", "AUTOMATION_ACTIONS", "SERVICE_CURSORS",
            "WEBHOOKS"]


# A trigger and its actions, saved by name (``plait._store.automations``).
AUTOMATIONS = Table(
    "automations", METADATA,
    Column("id", ID, primary_key=True),
    Column("name", String(200), unique=True, nullable=False),
    Column("description", Text, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("trigger", JSON, nullable=False),
    Column("actions", JSON, nullable=False),
    Column("source", String(200), index=True),  # "deployment:<id>": managed there
    Column("created", UTCDateTime(), nullable=False),
    Column("updated", UTCDateTime(), nullable=False),
)


# One open window of a trigger: ``count`` events since ``opened_at``, ending at
# ``expires_at`` (null: no end), per automation, trigger path and ``for_each`` key.
AUTOMATION_BUCKETS = Table(
    "automation_buckets", METADATA,
    Column("automation_id", ID, ForeignKey("automations.id", ondelete="CASCADE"), primary_key=True),
    Column("path", String(50), primary_key=True),
    Column("key", String, primary_key=True),
    Column("opened_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), index=True),
    Column("count", Integer, nullable=False),
    Column("state", JSON, nullable=False),
)


# One action of one firing, recorded before it is taken; ``status`` pending, running,
# done, failed or skipped.
AUTOMATION_ACTIONS = Table(
    "automation_actions", METADATA,
    Column("id", ID, primary_key=True),
    Column("automation_id", ID, index=True, nullable=False),
    Column("automation_name", String(200), nullable=False),
    Column("firing_id", ID, nullable=False),
    Column("position", Integer, nullable=False),
    Column("action", JSON, nullable=False),
    Column("context", JSON, nullable=False),
    Column("chain", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created", UTCDateTime(), nullable=False),
    Column("started", UTCDateTime()),
    Column("finished", UTCDateTime()),
    Column("flow_run_id", ID, index=True),  # the run a run-deployment made
    Column("result", JSON),
    Column("error", Text),
    UniqueConstraint("firing_id", "position"),
    Index(None, "status", "created"),
)


# The seq of the last event a service has dealt with.
SERVICE_CURSORS = Table(
    "service_cursors", METADATA,
    Column("name", String(100), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("updated", UTCDateTime(), nullable=False),
)


# A named receiver of HTTP calls that become events; only the token's SHA-256 is kept.
WEBHOOKS = Table(
    "webhooks", METADATA,
    Column("id", ID, primary_key=True),
    Column("name", String(200), unique=True, nullable=False),
    Column("slug", String(64), unique=True, nullable=False),
    Column("token_hash", String(64), nullable=False),
    Column("template", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("created", UTCDateTime(), nullable=False),
    Column("updated", UTCDateTime(), nullable=False),
    Column("last_called_at", UTCDateTime()),
)


# A named JSON value flows and files read (``plait.variables``); not a secret.
VARIABLES = Table(
    "variables", METADATA,
    Column("id", ID, primary_key=True),
    Column("name", String(255), unique=True, nullable=False),
    Column("value", JSON),
    Column("tags", JSON, nullable=False),
    Column("created", UTCDateTime(), nullable=False),
    Column("updated", UTCDateTime(), nullable=False),
)


# What a run made for people to read (``plait.artifacts``): a markdown report, a table, a
# link, a progress figure. Each create is a row (its id is the artifact's); rows sharing a
# key are that key's versions, newest ``created`` first. Progress updates rewrite ``data``
# and ``updated`` of their row. No foreign keys to the runs: the recorder may store an
# artifact before its run (remote batches, replays), and an artifact outside a run has none.
ARTIFACTS = Table(
    "artifacts", METADATA,
    Column("id", ID, primary_key=True),
    Column("key", String(255)),
    Column("type", String(32), nullable=False),
    Column("description", Text),
    Column("data", JSON),
    Column("flow_run_id", ID),
    Column("task_run_id", ID),
    Column("created", UTCDateTime(), nullable=False),
    Column("updated", UTCDateTime(), nullable=False),
    # keyset order (created, id) behind every filter the API offers
    Index(None, "key", "created", "id"),
    Index(None, "flow_run_id", "created", "id"),
    Index(None, "task_run_id", "created", "id"),
    Index(None, "created", "id"),
)
