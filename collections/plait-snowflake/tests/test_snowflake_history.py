"""``snowflake_copy_run_history`` against fakesnow's server through the real connector: real
flows make history in a throwaway plait home, the copy loads it, and loading again loads
nothing twice."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from plait import flow, task
from plait.testing import PlaitTestHarness, plait_test_harness
from plait_snowflake import SnowflakeConnector, snowflake_copy_run_history
from plait_snowflake.history import HistoryTables

LONGER_THAN_USUAL = """
SELECT f.FLOW_NAME, f.NAME, f.DURATION_SECONDS, usual.AVG_SECONDS
FROM PLAIT_FLOW_RUNS f
JOIN (SELECT FLOW_NAME, AVG(DURATION_SECONDS) AS AVG_SECONDS
      FROM PLAIT_FLOW_RUNS WHERE STATE_TYPE = 'COMPLETED' GROUP BY FLOW_NAME) usual
  ON usual.FLOW_NAME = f.FLOW_NAME
WHERE f.DURATION_SECONDS > 2 * usual.AVG_SECONDS
ORDER BY f.DURATION_SECONDS DESC
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


def _count(connector: SnowflakeConnector, table: str) -> int:
    return int(connector.fetch_all(f"SELECT COUNT(*) AS N FROM {table}")[0]["N"])


def _counts(connector: SnowflakeConnector) -> dict[str, int]:
    return {kind: _count(connector, f"PLAIT_{kind.upper()}") for kind in ("flow_runs", "task_runs", "states")}


def test_copies_history_incrementally_and_idempotently(harness: PlaitTestHarness, connector: SnowflakeConnector) -> None:
    for _ in range(3):
        nightly()
    nightly(0.6)
    with pytest.raises(ValueError):
        broken()
    harness.flush()

    first = snowflake_copy_run_history(connector)
    assert (first["flow_runs"], first["task_runs"]) == (5, 8)
    counts = _counts(connector)
    assert counts["flow_runs"] == 5 and counts["task_runs"] == 8 and counts["states"] == first["states"] >= 39
    assert connector.fetch_all("SELECT STATE_TYPE FROM PLAIT_FLOW_RUNS WHERE FLOW_NAME = ?", ["broken"]) == [
        {"STATE_TYPE": "FAILED"}]
    assert _count(connector, "PLAIT_FLOW_RUNS WHERE FLOW_NAME = 'snowflake_copy_run_history'") == 0

    again = snowflake_copy_run_history(connector)
    assert (again["flow_runs"], again["task_runs"], again["states"]) == (0, 0, 0)
    assert _counts(connector) == counts

    nightly()
    harness.flush()
    third = snowflake_copy_run_history(connector)
    assert (third["flow_runs"], third["task_runs"], third["states"]) == (1, 2, 9)
    assert _counts(connector) == {"flow_runs": 6, "task_runs": 10, "states": counts["states"] + 9}
    assert connector.fetch_all("SELECT LAST_STATE_ID FROM PLAIT_SYNC_STATE") == [{"LAST_STATE_ID": third["cursor"]}]

    slow = connector.fetch_all(LONGER_THAN_USUAL)
    assert [(r["FLOW_NAME"], round(r["DURATION_SECONDS"], 1)) for r in slow] == [("nightly", 0.6)]


def test_a_run_copied_while_running_is_updated_when_it_ends(
    harness: PlaitTestHarness, connector: SnowflakeConnector
) -> None:
    @flow
    def outer() -> dict[str, int]:
        double(3)
        harness.flush()  # what a long-running flow's recorder would have written by now
        return snowflake_copy_run_history(connector, schema="OPS")

    assert outer()["flow_runs"] == 1
    # (fakesnow reads a NULL timestamp back as 1970-01-01: ask in SQL)
    rows = connector.fetch_all("SELECT STATE_TYPE, END_TIME IS NULL AS NO_END FROM OPS.PLAIT_FLOW_RUNS")
    assert rows == [{"STATE_TYPE": "RUNNING", "NO_END": True}]
    harness.flush()

    assert snowflake_copy_run_history(connector, schema="OPS")["flow_runs"] == 1
    rows = connector.fetch_all("SELECT STATE_TYPE, END_TIME IS NULL AS NO_END FROM OPS.PLAIT_FLOW_RUNS")
    assert rows == [{"STATE_TYPE": "COMPLETED", "NO_END": False}]


@pytest.mark.parametrize("bad", [{"prefix": "x; DROP TABLE t"}, {"schema": "a.b"}])
def test_names_that_are_not_plain_sql_names_are_refused(bad: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="prefix|schema"):
        HistoryTables(**bad)


PAGE = Path(__file__).resolve().parents[3] / "docs" / "collections" / "plait-snowflake.md"


def test_the_docs_sql_questions_answer(harness: PlaitTestHarness, connector: SnowflakeConnector) -> None:
    """The page's two ```sql questions run as written on the loaded tables."""
    if not PAGE.exists():
        pytest.skip(f"{PAGE} is not here (installed without the repository)")
    succeeded, longer = re.findall(r"^```sql\n(.*?)^```", PAGE.read_text(), flags=re.S | re.M)
    for seconds in (0, 0, 0, 0.6):
        nightly(seconds)
    with pytest.raises(ValueError):
        broken()
    harness.flush()
    snowflake_copy_run_history(connector)
    night = connector.fetch_all(succeeded)
    assert [(r["FLOW_NAME"], r["STATE_TYPE"], int(r["RUNS"])) for r in night] == [
        ("broken", "FAILED", 1), ("nightly", "COMPLETED", 4)]
    slow = connector.fetch_all(longer)
    assert [(r["FLOW_NAME"], round(r["DURATION_SECONDS"], 1)) for r in slow] == [("nightly", 0.6)]


def test_a_state_committed_below_the_cursor_is_caught_by_the_overlap(
    harness: PlaitTestHarness, connector: SnowflakeConnector
) -> None:
    nightly()
    harness.flush()
    snowflake_copy_run_history(connector)
    final = connector.fetch_all("SELECT ID FROM PLAIT_STATES WHERE RUN_KIND = 'flow' AND TYPE = 'COMPLETED'")
    connector.execute("DELETE FROM PLAIT_STATES WHERE ID = ?", [final[0]["ID"]])
    connector.execute("UPDATE PLAIT_FLOW_RUNS SET STATE_TYPE = 'RUNNING'")

    assert snowflake_copy_run_history(connector, overlap=0)["states"] == 0
    caught = snowflake_copy_run_history(connector)
    assert (caught["flow_runs"], caught["task_runs"], caught["states"]) == (1, 0, 1)
    assert connector.fetch_all("SELECT STATE_TYPE FROM PLAIT_FLOW_RUNS") == [{"STATE_TYPE": "COMPLETED"}]
