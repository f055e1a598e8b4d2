"""``snowflake_copy_run_history``: plait's flow runs, task runs and states, copied into Snowflake tables.

Incremental and idempotent: the id of the last state copied is kept in Snowflake
(``<PREFIX>SYNC_STATE``), and each batch is loaded in one transaction with it — states
appended by id, the runs they belong to replaced by id — so a copy run twice loads nothing
twice, and a run that changed since (Running -> Completed) is brought up to date.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from plait import flow, get_run_logger
from plait.history import HistoryBatch, copy_history
from plait_snowflake.connector import SnowflakeConnector

__all__ = ["COPY_FLOW_NAME", "HistoryTables", "snowflake_copy_run_history", "load_history_batch"]

COPY_FLOW_NAME = "snowflake_copy_run_history"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,200}$")
_CHUNK = 500  # values per IN (...) and per array-bound INSERT
_RUN = [("STATE_TYPE", "VARCHAR(16)"), ("STATE_NAME", "VARCHAR"), ("STATE_MESSAGE", "VARCHAR"),
        ("RUN_COUNT", "INTEGER"), ("TAGS", "VARCHAR"), ("CREATED", "TIMESTAMP_NTZ"),
        ("START_TIME", "TIMESTAMP_NTZ"), ("END_TIME", "TIMESTAMP_NTZ"), ("DURATION_SECONDS", "FLOAT")]
_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "FLOW_RUNS": [("ID", "VARCHAR(64) PRIMARY KEY"), ("FLOW_NAME", "VARCHAR"), ("NAME", "VARCHAR"),
                  ("PARENT_FLOW_RUN_ID", "VARCHAR(64)"), ("PARENT_TASK_RUN_ID", "VARCHAR(64)"),
                  ("DEPLOYMENT_ID", "VARCHAR(64)"), ("WORK_POOL_NAME", "VARCHAR"),
                  ("EXPECTED_START_TIME", "TIMESTAMP_NTZ"), *_RUN],
    "TASK_RUNS": [("ID", "VARCHAR(64) PRIMARY KEY"), ("FLOW_RUN_ID", "VARCHAR(64)"), ("TASK_NAME", "VARCHAR"),
                  ("TASK_KEY", "VARCHAR"), ("NAME", "VARCHAR"), *_RUN],
    "STATES": [("ID", "BIGINT PRIMARY KEY"), ("RUN_ID", "VARCHAR(64)"), ("RUN_KIND", "VARCHAR(8)"),
               ("TYPE", "VARCHAR(16)"), ("NAME", "VARCHAR"), ("MESSAGE", "VARCHAR"), ("TIMESTAMP", "TIMESTAMP_NTZ")],
    "SYNC_STATE": [("SOURCE", "VARCHAR PRIMARY KEY"), ("LAST_STATE_ID", "BIGINT NOT NULL"),
                   ("UPDATED_AT", "TIMESTAMP_NTZ NOT NULL")],
}


class HistoryTables:
    """The Snowflake tables the copy writes: ``<PREFIX>FLOW_RUNS``, ``<PREFIX>TASK_RUNS``,
    ``<PREFIX>STATES`` and ``<PREFIX>SYNC_STATE`` (names upper case, as Snowflake keeps
    unquoted ones), in ``schema`` or the session's schema.

    Raises:
        ValueError: ``prefix`` or ``schema`` is no plain SQL name (letters, digits, ``_``).
    """

    def __init__(self, prefix: str = "PLAIT_", schema: str | None = None) -> None:
        if not isinstance(prefix, str) or not _NAME.match(prefix + "x"):
            raise ValueError(f"prefix must be letters, digits and '_' starting with a letter or '_' (e.g. 'PLAIT_'), "
                             f"not {prefix!r}")
        if schema is not None and (not isinstance(schema, str) or not _NAME.match(schema)):
            raise ValueError(f"schema must be a plain SQL name (letters, digits and '_'), not {schema!r}")
        self.prefix, self.schema = prefix.upper(), schema.upper() if schema else None

    def name(self, table: str) -> str:
        """The qualified name of ``table`` (``"FLOW_RUNS"``…)."""
        return f"{self.schema}.{self.prefix}{table}" if self.schema else f"{self.prefix}{table}"

    def create(self, connector: SnowflakeConnector) -> None:
        """Create the schema and tables that do not exist yet (DDL: outside any transaction)."""
        if self.schema:
            connector.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
        for table, columns in _COLUMNS.items():
            body = ", ".join(f"{name} {kind}" for name, kind in columns)
            connector.execute(f"CREATE TABLE IF NOT EXISTS {self.name(table)} ({body})")

    def cursor(self, connector: SnowflakeConnector, source: str) -> int:
        """The id of the last state copied from ``source`` (0: none yet)."""
        row = connector.fetch_all(f"SELECT LAST_STATE_ID FROM {self.name('SYNC_STATE')} WHERE SOURCE = ?", [source])
        return int(row[0]["LAST_STATE_ID"]) if row else 0


def _naive_utc(value: datetime | None) -> datetime | None:
    """Times go to Snowflake as naive UTC (TIMESTAMP_NTZ)."""
    return value.astimezone(UTC).replace(tzinfo=None) if value is not None else None


def _values(table: str, row: dict[str, Any]) -> list[Any]:
    item = dict(row)
    if table in ("FLOW_RUNS", "TASK_RUNS"):
        start, end = item["start_time"], item["end_time"]
        item["duration_seconds"] = round((end - start).total_seconds(), 3) if start and end else None
        item["tags"] = json.dumps(item["tags"])
    out = []
    for name, _ in _COLUMNS[table]:
        value = item.get(name.lower())
        out.append(_naive_utc(value) if isinstance(value, datetime) else value)
    return out


def _insert(connector: SnowflakeConnector, tables: HistoryTables, table: str, rows: list[dict[str, Any]]) -> None:
    names = [name for name, _ in _COLUMNS[table]]
    sql = f"INSERT INTO {tables.name(table)} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    for start in range(0, len(rows), _CHUNK):
        connector.execute_many(sql, [_values(table, r) for r in rows[start:start + _CHUNK]])


def _ids_in(connector: SnowflakeConnector, sql: str, ids: list[Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start:start + _CHUNK]
        found += connector.fetch_all(sql.format(marks=", ".join("?" * len(chunk))), chunk)
    return found


def load_history_batch(connector: SnowflakeConnector, tables: HistoryTables, batch: HistoryBatch,
                       source: str = "default") -> dict[str, int]:
    """Load one batch in one transaction: append its states not there yet, replace by id
    the runs those states belong to, and move the cursor of ``source`` on to the batch's
    (never back: a batch may re-read a window below the cursor).

    Returns:
        ``{"flow_runs", "task_runs", "states"}``: rows written (runs new or changed, states new).
    """
    states, sync = tables.name("STATES"), tables.name("SYNC_STATE")
    with connector.transaction():
        present = {int(r["ID"]) for r in _ids_in(
            connector, f"SELECT ID FROM {states} WHERE ID IN ({{marks}})", [s["id"] for s in batch.states])}
        fresh = [s for s in batch.states if s["id"] not in present]
        changed = {s["run_id"] for s in fresh}  # a run changes only with a new state
        written = {}
        for table, runs in (("FLOW_RUNS", batch.flow_runs), ("TASK_RUNS", batch.task_runs)):
            rows = [r for r in runs if r["id"] in changed]
            _ids_in(connector, f"DELETE FROM {tables.name(table)} WHERE ID IN ({{marks}})", [r["id"] for r in rows])
            _insert(connector, tables, table, rows)
            written[table] = len(rows)
        _insert(connector, tables, "STATES", fresh)
        stored = connector.fetch_all(f"SELECT LAST_STATE_ID FROM {sync} WHERE SOURCE = ?", [source])
        cursor = max([batch.cursor, *(int(r["LAST_STATE_ID"]) for r in stored)])
        connector.execute(f"DELETE FROM {sync} WHERE SOURCE = ?", [source])
        connector.execute(f"INSERT INTO {sync} (SOURCE, LAST_STATE_ID, UPDATED_AT) VALUES (?, ?, ?)",
                          [source, cursor, datetime.now(UTC).replace(tzinfo=None)])
    return {"flow_runs": written["FLOW_RUNS"], "task_runs": written["TASK_RUNS"], "states": len(fresh)}


@flow(name=COPY_FLOW_NAME)
def snowflake_copy_run_history(
    connector: SnowflakeConnector | str,
    prefix: str = "PLAIT_",
    schema: str | None = None,
    batch_size: int = 1000,
    source: str = "default",
    exclude_flows: Sequence[str] = (),
    overlap: int = 1000,
) -> dict[str, int]:
    """Copy plait's flow runs, task runs and states into Snowflake tables, incrementally.

    Creates the tables on first use. Each batch is loaded in one transaction with the cursor
    (in ``<PREFIX>SYNC_STATE``), so running it again loads nothing twice. Runs of this flow
    itself are not copied (else every copy would find its own run new).

    Args:
        connector: The warehouse: a ``SnowflakeConnector`` or the name it was saved under.
        prefix: Put before each table's name (``PLAIT_FLOW_RUNS``…).
        schema: The schema of the tables (created when missing); None: the session's.
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
    warehouse = SnowflakeConnector.load(connector) if isinstance(connector, str) else connector
    tables = HistoryTables(prefix, schema)
    tables.create(warehouse)
    copied = {"flow_runs": 0, "task_runs": 0, "states": 0, **copy_history(
        lambda batch: load_history_batch(warehouse, tables, batch, source), tables.cursor(warehouse, source),
        batch_size=batch_size, exclude_flows=[COPY_FLOW_NAME, *exclude_flows], overlap=overlap)}
    get_run_logger().info("Copied %d flow runs, %d task runs and %d states (cursor %d)", copied["flow_runs"],
                          copied["task_runs"], copied["states"], copied["cursor"])
    return copied
