"""``copy_run_history``: plait's flow runs, task runs and states, copied into warehouse tables.

Incremental and idempotent: the id of the last state copied is kept in the warehouse
(``<prefix>sync_state``), and each batch is loaded in one transaction with it — states
appended by id, the runs they belong to replaced by id — so a copy run twice loads nothing
twice, and a run that changed since (Running -> Completed) is brought up to date.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from plait import flow, get_run_logger
from plait.history import HistoryBatch, copy_history
from plait_sqlalchemy.connector import SqlAlchemyConnector

if TYPE_CHECKING:
    from sqlalchemy import Connection, MetaData, Table

__all__ = ["COPY_FLOW_NAME", "HistoryTables", "copy_run_history", "load_history_batch"]

COPY_FLOW_NAME = "sqlalchemy_copy_run_history"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_KEY = 255  # room for ids (uuids) and names
T = TypeVar("T")


class HistoryTables:
    """The warehouse tables ``copy_run_history`` writes: ``<prefix>flow_runs``,
    ``<prefix>task_runs``, ``<prefix>states`` and ``<prefix>sync_state``, in ``schema``.

    Raises:
        ValueError: ``prefix`` or ``schema`` is no plain SQL name (letters, digits, ``_``).
    """

    def __init__(self, prefix: str = "plait_", schema: str | None = None) -> None:
        from sqlalchemy import BigInteger, Column, DateTime, Float, Integer, MetaData, String, Table, Text

        if not isinstance(prefix, str) or not _NAME.match(prefix + "x"):
            raise ValueError(f"prefix must be letters, digits and '_' starting with a letter or '_' (e.g. 'plait_'), "
                             f"not {prefix!r}")
        if schema is not None and (not isinstance(schema, str) or not _NAME.match(schema)):
            raise ValueError(f"schema must be a plain SQL name (letters, digits and '_'), not {schema!r}")
        self.prefix, self.schema = prefix, schema
        self.metadata: MetaData = MetaData(schema=schema)

        def run_columns() -> list[Column[Any]]:
            return [
                Column("state_type", String(16)), Column("state_name", String(_KEY)), Column("state_message", Text),
                Column("run_count", Integer), Column("tags", Text), Column("created", DateTime),
                Column("start_time", DateTime), Column("end_time", DateTime), Column("duration_seconds", Float),
            ]

        self.flow_runs: Table = Table(
            f"{prefix}flow_runs", self.metadata,
            Column("id", String(64), primary_key=True), Column("flow_name", String(_KEY)), Column("name", String(_KEY)),
            Column("parent_flow_run_id", String(64)), Column("parent_task_run_id", String(64)),
            Column("deployment_id", String(64)), Column("work_pool_name", String(_KEY)),
            Column("expected_start_time", DateTime), *run_columns(),
        )
        self.task_runs: Table = Table(
            f"{prefix}task_runs", self.metadata,
            Column("id", String(64), primary_key=True), Column("flow_run_id", String(64)),
            Column("task_name", String(_KEY)), Column("task_key", String(_KEY)), Column("name", String(_KEY)),
            *run_columns(),
        )
        self.states: Table = Table(
            f"{prefix}states", self.metadata,
            Column("id", BigInteger, primary_key=True, autoincrement=False), Column("run_id", String(64)),
            Column("run_kind", String(8)), Column("type", String(16)), Column("name", String(_KEY)),
            Column("message", Text), Column("timestamp", DateTime),
        )
        self.sync_state: Table = Table(
            f"{prefix}sync_state", self.metadata,
            Column("source", String(_KEY), primary_key=True), Column("last_state_id", BigInteger, nullable=False),
            Column("updated_at", DateTime, nullable=False),
        )

    def create(self, connection: Connection) -> None:
        """Create the schema and tables that do not exist yet.

        Raises:
            ValueError: A schema is asked for on SQLite, which has none.
        """
        from sqlalchemy import inspect, schema

        if self.schema is not None and connection.dialect.name == "sqlite":
            raise ValueError(f"SQLite has no schemas, so schema={self.schema!r} cannot be used; give prefix= "
                             f"instead (e.g. prefix='{self.schema}_')")
        if self.schema is not None and self.schema not in inspect(connection).get_schema_names():
            connection.execute(schema.CreateSchema(self.schema))
        self.metadata.create_all(connection, checkfirst=True)

    def cursor(self, connection: Connection, source: str) -> int:
        """The id of the last state copied from ``source`` (0: none yet)."""
        from sqlalchemy import select

        value = connection.scalar(select(self.sync_state.c.last_state_id).where(self.sync_state.c.source == source))
        return int(value or 0)


def _naive_utc(value: datetime | None) -> datetime | None:
    """Times go to the warehouse as naive UTC, which every database's TIMESTAMP takes."""
    return value.astimezone(UTC).replace(tzinfo=None) if value is not None else None


def _run_row(run: dict[str, Any]) -> dict[str, Any]:
    row = dict(run)
    start, end = row["start_time"], row["end_time"]
    row["duration_seconds"] = round((end - start).total_seconds(), 3) if start and end else None
    for key in ("created", "start_time", "end_time", "expected_start_time"):
        if key in row:
            row[key] = _naive_utc(row[key])
    row["tags"] = json.dumps(row["tags"])
    return row


def _replace(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Replace rows by id: delete, then insert (works the same on every database)."""
    ids = [r["id"] for r in rows]
    for start in range(0, len(ids), 500):
        connection.execute(table.delete().where(table.c.id.in_(ids[start:start + 500])))
    if rows:
        names = [c.name for c in table.c]
        connection.execute(table.insert(), [{n: r.get(n) for n in names} for r in rows])


def load_history_batch(connection: Connection, tables: HistoryTables, batch: HistoryBatch,
                       source: str = "default") -> dict[str, int]:
    """Load one batch inside the caller's transaction: append its states not there yet,
    replace by id the runs those states belong to, and move the cursor of ``source`` on to
    the batch's (never back: a batch may re-read a window below the cursor).

    Returns:
        ``{"flow_runs", "task_runs", "states"}``: rows written (runs new or changed, states new).
    """
    from sqlalchemy import select

    ids = [s["id"] for s in batch.states]
    present: set[int] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        present |= set(connection.scalars(select(tables.states.c.id).where(tables.states.c.id.in_(chunk))))
    fresh = [{**s, "timestamp": _naive_utc(s["timestamp"])} for s in batch.states if s["id"] not in present]
    changed = {s["run_id"] for s in fresh}  # a run changes only with a new state
    flow_runs = [_run_row(r) for r in batch.flow_runs if r["id"] in changed]
    task_runs = [_run_row(r) for r in batch.task_runs if r["id"] in changed]
    _replace(connection, tables.flow_runs, flow_runs)
    _replace(connection, tables.task_runs, task_runs)
    if fresh:
        connection.execute(tables.states.insert(), fresh)
    now = datetime.now(UTC).replace(tzinfo=None)
    sync = tables.sync_state
    stored = connection.scalar(select(sync.c.last_state_id).where(sync.c.source == source))
    if stored is None:
        connection.execute(sync.insert().values(source=source, last_state_id=batch.cursor, updated_at=now))
    else:
        connection.execute(sync.update().where(sync.c.source == source)
                           .values(last_state_id=max(int(stored), batch.cursor), updated_at=now))
    return {"flow_runs": len(flow_runs), "task_runs": len(task_runs), "states": len(fresh)}


@flow(name=COPY_FLOW_NAME)
def copy_run_history(
    connector: SqlAlchemyConnector | str,
    prefix: str = "plait_",
    schema: str | None = None,
    batch_size: int = 1000,
    source: str = "default",
    exclude_flows: Sequence[str] = (),
    overlap: int = 1000,
) -> dict[str, int]:
    """Copy plait's flow runs, task runs and states into warehouse tables, incrementally.

    Creates the tables on first use. Each batch is loaded in one transaction with the cursor
    (in ``<prefix>sync_state``), so running it again loads nothing twice. Runs of this flow
    itself are not copied (else every copy would find its own run new).

    Args:
        connector: The warehouse: a ``SqlAlchemyConnector`` or the name it was saved under.
        prefix: Put before each table's name (``plait_flow_runs``…).
        schema: The schema of the tables (created when missing); None: the default one.
        batch_size: States per batch (and transaction).
        source: The cursor's name, for copying several plait stores into the same tables.
        exclude_flows: More flows whose runs are not copied.
        overlap: State ids below the cursor read again, so a state a PostgreSQL store
            committed after a later one (two writers) is not missed; states already copied
            are skipped.

    Returns:
        ``{"flow_runs", "task_runs", "states", "cursor"}``: runs written (new or changed),
        states appended, and the id of the last state copied.
    """
    warehouse = SqlAlchemyConnector.load(connector) if isinstance(connector, str) else connector
    tables = HistoryTables(prefix, schema)

    def in_transaction(work: Callable[[Connection], T]) -> T:
        # The connector's own connection, so its later reads see what was loaded (DuckDB
        # reads in the snapshot of the transaction a fetch left open).
        def run(connection: Connection) -> T:
            if connection.in_transaction():
                connection.commit()
            with connection.begin():
                return work(connection)

        return warehouse._run(run)

    def prepare(connection: Connection) -> int:
        tables.create(connection)
        return tables.cursor(connection, source)

    def load(batch: HistoryBatch) -> dict[str, int]:
        return in_transaction(lambda connection: load_history_batch(connection, tables, batch, source))

    copied = {"flow_runs": 0, "task_runs": 0, "states": 0, **copy_history(
        load, in_transaction(prepare), batch_size=batch_size, exclude_flows=[COPY_FLOW_NAME, *exclude_flows],
        overlap=overlap)}
    get_run_logger().info("Copied %d flow runs, %d task runs and %d states (cursor %d)", copied["flow_runs"],
                          copied["task_runs"], copied["states"], copied["cursor"])
    return copied
