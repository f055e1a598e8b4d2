"""``copy_run_history``: real flows make history in a throwaway plait home, the copy flow
loads it into DuckDB, SQLite or PostgreSQL, and loading again loads nothing twice."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from plait import flow, task
from plait.testing import PlaitTestHarness, plait_test_harness
from plait_sqlalchemy import DatabaseCredentials, SqlAlchemyConnector, copy_run_history
from plait_sqlalchemy.history import HistoryTables

LONGER_THAN_USUAL = """
SELECT f.flow_name, f.name, f.duration_seconds, usual.avg_seconds
FROM {p}flow_runs f
JOIN (SELECT flow_name, AVG(duration_seconds) AS avg_seconds
      FROM {p}flow_runs WHERE state_type = 'COMPLETED' GROUP BY flow_name) usual
  ON usual.flow_name = f.flow_name
WHERE f.duration_seconds > 2 * usual.avg_seconds
ORDER BY f.duration_seconds DESC
"""
LAST_NIGHT = """
SELECT flow_name, state_type, COUNT(*) AS runs FROM {p}flow_runs
WHERE start_time >= :since GROUP BY flow_name, state_type ORDER BY flow_name, state_type
"""


@task
def double(x: int) -> int:
    return 2 * x


@flow
def nightly(seconds: float = 0.0) -> int:
    time.sleep(seconds)
    return double(1) + double(2)


@flow
def broken() -> None:
    raise ValueError("the source was empty")


@pytest.fixture
def harness() -> Iterator[PlaitTestHarness]:
    with plait_test_harness() as h:
        yield h


@pytest.fixture(params=["duckdb", "sqlite", pytest.param("postgresql+psycopg", marks=pytest.mark.postgres)])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlAlchemyConnector]:
    if request.param == "duckdb":
        credentials = DatabaseCredentials(driver="duckdb", database=str(tmp_path / "warehouse.duckdb"))
    elif request.param == "sqlite":
        credentials = DatabaseCredentials(driver="sqlite", database=str(tmp_path / "warehouse.db"))
    else:
        credentials = request.getfixturevalue("postgres_credentials")()
    with SqlAlchemyConnector(credentials=credentials) as connector:
        yield connector


@pytest.fixture
def prefix() -> str:
    """Tables of their own for each test (PostgreSQL tests share one database)."""
    return f"h{uuid.uuid4().hex[:8]}_"


def _count(connector: SqlAlchemyConnector, table: str) -> int:
    row = connector.fetch_all(f"SELECT COUNT(*) AS n FROM {table}")[0]
    return int(row["n"])


def _counts(connector: SqlAlchemyConnector, prefix: str) -> dict[str, int]:
    return {kind: _count(connector, f"{prefix}{kind}") for kind in ("flow_runs", "task_runs", "states")}


def test_copies_history_incrementally_and_idempotently(
    harness: PlaitTestHarness, warehouse: SqlAlchemyConnector, prefix: str
) -> None:
    for _ in range(3):
        nightly()
    nightly(0.6)
    with pytest.raises(ValueError):
        broken()
    harness.flush()

    first = copy_run_history(warehouse, prefix=prefix)
    assert first["flow_runs"] == 5 and first["task_runs"] == 8
    counts = _counts(warehouse, prefix)
    assert counts["flow_runs"] == 5 and counts["task_runs"] == 8
    assert counts["states"] == first["states"] >= 5 * 3 + 8 * 3  # Pending, Running, final for each run
    states = {r["flow_name"]: r["state_type"] for r in warehouse.fetch_all(
        f"SELECT flow_name, state_type FROM {prefix}flow_runs WHERE flow_name = 'broken'")}
    assert states == {"broken": "FAILED"}
    # the copy flow's own runs are never copied
    assert _count(warehouse, f"{prefix}flow_runs WHERE flow_name = 'sqlalchemy_copy_run_history'") == 0

    again = copy_run_history(warehouse, prefix=prefix)
    assert (again["flow_runs"], again["task_runs"], again["states"]) == (0, 0, 0)
    assert _counts(warehouse, prefix) == counts
    assert again["cursor"] >= first["cursor"]

    nightly()
    harness.flush()
    third = copy_run_history(warehouse, prefix=prefix)
    assert (third["flow_runs"], third["task_runs"]) == (1, 2)
    assert third["states"] == 3 + 2 * 3
    after = _counts(warehouse, prefix)
    assert after == {"flow_runs": 6, "task_runs": 10, "states": counts["states"] + third["states"]}

    slow = warehouse.fetch_all(LONGER_THAN_USUAL.format(p=prefix))
    assert [(r["flow_name"], round(r["duration_seconds"], 1)) for r in slow] == [("nightly", 0.6)]
    since = {"since": min(r["start_time"] for r in warehouse.fetch_all(f"SELECT start_time FROM {prefix}flow_runs"))}
    night = warehouse.fetch_all(LAST_NIGHT.format(p=prefix), since)
    assert [(r["flow_name"], r["state_type"], int(r["runs"])) for r in night] == [
        ("broken", "FAILED", 1), ("nightly", "COMPLETED", 5)]


def test_a_run_copied_while_running_is_updated_when_it_ends(
    harness: PlaitTestHarness, warehouse: SqlAlchemyConnector, prefix: str
) -> None:
    @flow
    def outer() -> dict[str, int]:
        double(3)
        harness.flush()  # what a long-running flow's recorder would have written by now
        return copy_run_history(warehouse, prefix=prefix)

    copied = outer()
    assert copied["flow_runs"] == 1
    row = warehouse.fetch_all(f"SELECT state_type, end_time FROM {prefix}flow_runs WHERE flow_name = 'outer'")
    assert [(r["state_type"], r["end_time"]) for r in row] == [("RUNNING", None)]
    harness.flush()

    later = copy_run_history(warehouse, prefix=prefix)
    assert later["flow_runs"] == 1 and later["states"] >= 1
    row = warehouse.fetch_all(f"SELECT state_type, end_time FROM {prefix}flow_runs WHERE flow_name = 'outer'")
    assert row[0]["state_type"] == "COMPLETED" and row[0]["end_time"] is not None
    assert _count(warehouse, f"{prefix}flow_runs") == 1
    assert _count(warehouse, f"{prefix}states WHERE type = 'COMPLETED' AND run_kind = 'flow'") == 1


def test_a_saved_connector_by_name_and_a_schema(harness: PlaitTestHarness, tmp_path: Path) -> None:
    nightly()
    harness.flush()
    SqlAlchemyConnector(credentials=DatabaseCredentials(driver="duckdb", database=str(tmp_path / "w.duckdb"))).save(
        "warehouse")
    result = copy_run_history("warehouse", schema="ops", prefix="")
    assert result["flow_runs"] == 1
    with SqlAlchemyConnector.load("warehouse") as connector:
        assert _count(connector, "ops.flow_runs") == 1
        assert connector.fetch_all("SELECT source, last_state_id FROM ops.sync_state") == [
            {"source": "default", "last_state_id": result["cursor"]}]


@pytest.mark.postgres
def test_a_schema_on_postgresql(
    harness: PlaitTestHarness, postgres_credentials: Callable[[], DatabaseCredentials], prefix: str
) -> None:
    nightly()
    harness.flush()
    schema = prefix.rstrip("_")
    with SqlAlchemyConnector(credentials=postgres_credentials()) as connector:
        assert copy_run_history(connector, schema=schema)["flow_runs"] == 1
        assert copy_run_history(connector, schema=schema)["flow_runs"] == 0
        assert _count(connector, f"{schema}.plait_flow_runs") == 1


@pytest.mark.parametrize("bad", [{"prefix": "x; DROP TABLE t"}, {"schema": "a.b"}, {"prefix": "1x"}])
def test_names_that_are_not_plain_sql_names_are_refused(bad: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="prefix|schema"):
        HistoryTables(**bad)


PAGE = Path(__file__).resolve().parents[3] / "docs" / "collections" / "plait-sqlalchemy.md"


def test_the_docs_sql_questions_answer(harness: PlaitTestHarness, warehouse: SqlAlchemyConnector) -> None:
    """The page's two ```sql questions run as written on the loaded tables (not on SQLite,
    which has no INTERVAL)."""
    if not PAGE.exists():
        pytest.skip(f"{PAGE} is not here (installed without the repository)")
    if warehouse.credentials.driver == "sqlite":
        pytest.skip("SQLite has no INTERVAL arithmetic; the page's SQL is for PostgreSQL, DuckDB and Snowflake")
    succeeded, longer = re.findall(r"^```sql\n(.*?)^```", PAGE.read_text(), flags=re.S | re.M)
    for seconds in (0, 0, 0, 0.6):
        nightly(seconds)
    with pytest.raises(ValueError):
        broken()
    harness.flush()
    copy_run_history(warehouse)
    try:
        night = warehouse.fetch_all(succeeded)
        assert [(r["flow_name"], r["state_type"], int(r["runs"])) for r in night] == [
            ("broken", "FAILED", 1), ("nightly", "COMPLETED", 4)]
        slow = warehouse.fetch_all(longer)
        assert [(r["flow_name"], round(r["duration_seconds"], 1)) for r in slow] == [("nightly", 0.6)]
    finally:  # the default table names: leave the shared PostgreSQL database as it was
        for table in ("flow_runs", "task_runs", "states", "sync_state"):
            warehouse.execute(f"DROP TABLE plait_{table}")


def test_a_state_committed_below_the_cursor_is_caught_by_the_overlap(
    harness: PlaitTestHarness, warehouse: SqlAlchemyConnector, prefix: str
) -> None:
    """On PostgreSQL a writer may commit a state after a later one was copied: as if the
    last copy had missed the run's final state, the warehouse lacks it but the cursor is past."""
    nightly()
    harness.flush()
    copy_run_history(warehouse, prefix=prefix)
    final = warehouse.fetch_all(f"SELECT id, run_id FROM {prefix}states WHERE run_kind = 'flow' AND type = 'COMPLETED'")
    warehouse.execute(f"DELETE FROM {prefix}states WHERE id = :id", {"id": final[0]["id"]})
    warehouse.execute(f"UPDATE {prefix}flow_runs SET state_type = 'RUNNING', end_time = NULL")

    assert copy_run_history(warehouse, prefix=prefix, overlap=0)["states"] == 0  # no window: missed for good
    caught = copy_run_history(warehouse, prefix=prefix)
    assert (caught["flow_runs"], caught["task_runs"], caught["states"]) == (1, 0, 1)
    row = warehouse.fetch_all(f"SELECT state_type FROM {prefix}flow_runs")
    assert row == [{"state_type": "COMPLETED"}]
    assert copy_run_history(warehouse, prefix=prefix)["states"] == 0
    with pytest.raises(ValueError, match="overlap"):
        copy_run_history(warehouse, prefix=prefix, overlap=-1)


def test_a_schema_on_sqlite_is_refused_with_what_to_do(harness: PlaitTestHarness, tmp_path: Path) -> None:
    connector = SqlAlchemyConnector(credentials=DatabaseCredentials(driver="sqlite", database=str(tmp_path / "w.db")))
    with connector, pytest.raises(ValueError, match="SQLite has no schemas.*prefix="):
        copy_run_history(connector, schema="ops")
