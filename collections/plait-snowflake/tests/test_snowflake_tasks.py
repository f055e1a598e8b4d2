"""The prebuilt tasks inside flows (recorded, retried, transactions), loading rows and
DataFrames, and connectors saved and loaded — all against fakesnow's server."""

from __future__ import annotations

import datetime as dt
import sys
from decimal import Decimal
from typing import Any

import pytest
from snowflake.connector.errors import ProgrammingError

from plait import flow
from plait.blocks import Block
from plait.testing import PlaitTestHarness
from plait_snowflake import (
    PandasNotInstalledError,
    SnowflakeConnector,
    SnowflakeCredentials,
    snowflake_load_dataframe,
    snowflake_load_rows,
    snowflake_multi_query,
    snowflake_query,
)
from plait_snowflake._load import plan_rows


def task_runs(harness: PlaitTestHarness) -> list[dict[str, Any]]:
    run = harness.flow_runs()[0]
    return harness.flow_run(run["id"])["task_runs"]


def rows_of(connector: SnowflakeConnector, table: str) -> list[dict[str, Any]]:
    return connector.fetch_all(f"SELECT * FROM {table} ORDER BY 1")


# -- query and multi-query -------------------------------------------------------------------------
def test_query_and_multi_query_in_a_flow(
    connector: SnowflakeConnector, people: str, plait_harness: PlaitTestHarness
) -> None:
    @flow
    def report(connector: SnowflakeConnector) -> list[dict[str, Any]]:
        results = snowflake_multi_query(
            [f"UPDATE {people} SET NAME = UPPER(NAME) WHERE ID <= 2",
             (f"SELECT COUNT(*) AS N FROM {people} WHERE ID > ?", [1])],
            connector,
        )
        assert results[1] == [{"N": 4}]
        return snowflake_query(f"SELECT ID, NAME FROM {people} WHERE ID <= ? ORDER BY ID", connector, [2])

    assert report(connector) == [{"ID": 1, "NAME": "ADA"}, {"ID": 2, "NAME": "GRACE"}]
    runs = task_runs(plait_harness)
    assert [r["task_name"] for r in runs] == ["snowflake_multi_query", "snowflake_query"]
    assert all(r["state_type"] == "COMPLETED" for r in runs)
    assert runs[1]["parameters"]["parameters"] == [2]


def test_multi_query_as_a_transaction_rolls_back_on_failure(
    connector: SnowflakeConnector, people: str, plait_harness: PlaitTestHarness
) -> None:
    before = rows_of(connector, people)

    @flow
    def broken(connector: SnowflakeConnector) -> None:
        snowflake_multi_query(
            [f"DELETE FROM {people} WHERE ID <= 3",
             (f"INSERT INTO {people} (ID, NAME) VALUES (?, ?)", [9, "new"]),
             "INSERT INTO NO_SUCH_TABLE VALUES (1)"],
            connector, as_transaction=True,
        )

    with pytest.raises(ProgrammingError, match="NO_SUCH_TABLE"):
        broken(connector)
    assert rows_of(connector, people) == before  # unchanged
    (run,) = task_runs(plait_harness)
    assert run["state_type"] == "FAILED"

    results = snowflake_multi_query.fn(
        [f"DELETE FROM {people} WHERE ID <= 3", f"SELECT COUNT(*) AS N FROM {people}"], connector, as_transaction=True
    )
    assert results == [[{"number of rows deleted": 3}], [{"N": 2}]]
    assert len(rows_of(connector, people)) == 2  # committed


def test_multi_query_refuses_one_string(connector: SnowflakeConnector) -> None:
    with pytest.raises(TypeError, match="not one string"):
        snowflake_multi_query.fn("SELECT 1", connector)
    with pytest.raises(TypeError, match=r"queries\[1\]"):
        snowflake_multi_query.fn(["SELECT 1", 42], connector)


def test_a_retry_succeeds_once_the_missing_table_exists(
    connector: SnowflakeConnector, plait_harness: PlaitTestHarness
) -> None:
    def create_table_then_retry(task: Any, run: Any, state: Any) -> bool:
        connector.execute("CREATE TABLE LATE (ID INTEGER)")
        return True

    query = snowflake_query.with_options(retries=1, retry_condition=create_table_then_retry)

    @flow
    def count(connector: SnowflakeConnector) -> list[dict[str, Any]]:
        return query("SELECT COUNT(*) AS N FROM LATE", connector)

    assert count(connector) == [{"N": 0}]
    (run,) = task_runs(plait_harness)
    assert run["run_count"] == 2 and run["state_type"] == "COMPLETED"


# -- loading rows -----------------------------------------------------------------------------------
def test_load_dicts_creating_the_table(connector: SnowflakeConnector, plait_harness: PlaitTestHarness) -> None:
    rows = [
        {"ID": 1, "NAME": "ada", "SCORE": 1.5, "ACTIVE": True, "BORN": dt.date(1815, 12, 10),
         "SEEN": dt.datetime(2026, 1, 2, 3, 4, 5), "SEEN_TZ": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
         "DATA": b"\x00\x01"},
        # (NULLs only in the number and text columns: fakesnow's server cannot take a NULL in an
        # array-bound date, timestamp or binary column; Snowflake can)
        {"ID": 2, "NAME": "x'); DROP TABLE PEOPLE; --", "SCORE": None, "ACTIVE": None, "BORN": dt.date(1906, 12, 9),
         "SEEN": dt.datetime(2026, 5, 6), "SEEN_TZ": dt.datetime(2026, 5, 6, 7, 8, tzinfo=dt.UTC), "DATA": b"x"},
        {"ID": 3, "NAME": None, "SCORE": 2.0, "ACTIVE": False, "BORN": dt.date(1970, 1, 1),
         "SEEN": dt.datetime(2026, 5, 7), "SEEN_TZ": dt.datetime(2026, 5, 7, tzinfo=dt.UTC), "DATA": b""},
    ]

    @flow
    def load(connector: SnowflakeConnector) -> int:
        return snowflake_load_rows("PEOPLE", rows, connector, create=True)

    assert load(connector) == 3
    assert rows_of(connector, "PEOPLE") == rows
    types = {r["name"]: r["type"] for r in connector.fetch_all("DESCRIBE TABLE PEOPLE")}
    assert types["ID"] == "NUMBER(38,0)" and types["SCORE"] == "FLOAT" and types["ACTIVE"] == "BOOLEAN"
    assert types["SEEN"].startswith("TIMESTAMP_NTZ") and types["SEEN_TZ"].startswith("TIMESTAMP_TZ")
    # again, into the existing table, a column subset chosen
    more = [{"ID": 4, "NAME": "grace", "IGNORED": "x"}]
    assert snowflake_load_rows.fn("PEOPLE", more, connector, columns=["ID", "NAME"], create=True) == 1
    assert connector.fetch_all("SELECT NAME, SCORE FROM PEOPLE WHERE ID = 4") == [{"NAME": "grace", "SCORE": None}]


def test_load_tuples_in_chunks_in_one_transaction(connector: SnowflakeConnector) -> None:
    connector.execute("CREATE TABLE NUMBERS (N INTEGER, LABEL VARCHAR)")
    rows = [(i, f"n{i}") for i in range(7)]
    assert snowflake_load_rows.fn("NUMBERS", rows, connector, chunk_size=3) == 7
    assert [r["N"] for r in rows_of(connector, "NUMBERS")] == list(range(7))
    # a bad row in the last chunk: nothing of this load stays
    bad = [(10, "a"), (11, "b"), (12, "c"), ("not a number", "d")]
    with pytest.raises(ProgrammingError):
        snowflake_load_rows.fn("NUMBERS", bad, connector, columns=["N", "LABEL"], chunk_size=2)
    assert len(rows_of(connector, "NUMBERS")) == 7


def test_load_with_column_types_and_quoted_names(connector: SnowflakeConnector) -> None:
    rows = [{"id": 1, "first name": "ada"}]
    with pytest.raises(ValueError, match="quote_identifiers=True"):
        snowflake_load_rows.fn("Q", rows, connector, create=True)
    assert snowflake_load_rows.fn(
        "Q", rows, connector, create=True, quote_identifiers=True, column_types={"id": "NUMBER(10, 0)"}
    ) == 1
    assert connector.fetch_all('SELECT "id", "first name" FROM Q') == [{"id": 1, "first name": "ada"}]


def test_column_types_chosen_for_create() -> None:
    # Decimal values are planned here, not loaded: fakesnow's server cannot bind a Decimal
    # with a fraction (it reads Snowflake's FIXED binding as an int); real Snowflake can.
    plan = plan_rows("DB.SCH.PRICES", [{"ID": 1, "PRICE": Decimal("9.99"), "QTY": 2.0},
                                       {"ID": 2, "PRICE": Decimal("0.125"), "QTY": 3}], create=True)
    assert plan.create == (
        "CREATE TABLE IF NOT EXISTS DB.SCH.PRICES (ID NUMBER(38, 0), PRICE NUMBER(38, 3), QTY FLOAT)"
    )
    assert plan.insert == "INSERT INTO DB.SCH.PRICES (ID, PRICE, QTY) VALUES (?, ?, ?)"
    assert plan.rows == [[1, Decimal("9.99"), 2.0], [2, Decimal("0.125"), 3]]


def test_load_rows_explains_bad_input(connector: SnowflakeConnector) -> None:
    load = snowflake_load_rows.fn
    with pytest.raises(ValueError, match="not a table name"):
        load("PEOPLE; DROP TABLE X", [(1,)], connector)
    with pytest.raises(ValueError, match="create=True needs column names"):
        load("T", [(1, "a")], connector, create=True)
    with pytest.raises(ValueError, match="row 1 has no value for column\\(s\\) NAME"):
        load("T", [{"ID": 1, "NAME": "a"}, {"ID": 2}], connector)
    with pytest.raises(ValueError, match="row 1 has 1 values but there are 2 values in row 0"):
        load("T", [(1, "a"), (2,)], connector)
    with pytest.raises(TypeError, match="mixes values"):
        load("T", [{"A": 1}, {"A": "x"}], connector, create=True)
    with pytest.raises(ValueError, match="not a Snowflake type"):
        load("T", [{"A": 1}], connector, create=True, column_types={"A": "INT); DROP TABLE X; --"})
    assert load("T", [], connector) == 0


# -- loading DataFrames -------------------------------------------------------------------------------
def test_load_dataframe_creating_the_table(connector: SnowflakeConnector, plait_harness: PlaitTestHarness) -> None:
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({
        "ID": [1, 2, 3],
        "NAME": ["ada", None, "edsger"],
        "SCORE": [0.5, float("nan"), 2.25],
        "SEEN": pd.to_datetime(["2026-01-01 10:00", "2026-02-01 00:00", "2026-03-01 00:00"]),  # (no NaT: fakesnow)
        "COUNT": pd.array([1, None, 3], dtype="Int64"),
        "ACTIVE": [True, False, True],
    })

    @flow
    def load(connector: SnowflakeConnector) -> int:
        return snowflake_load_dataframe("SCORES", df, connector, create=True)

    assert load(connector) == 3
    assert rows_of(connector, "SCORES") == [
        {"ID": 1, "NAME": "ada", "SCORE": 0.5, "SEEN": dt.datetime(2026, 1, 1, 10), "COUNT": 1, "ACTIVE": True},
        {"ID": 2, "NAME": None, "SCORE": None, "SEEN": dt.datetime(2026, 2, 1), "COUNT": None, "ACTIVE": False},
        {"ID": 3, "NAME": "edsger", "SCORE": 2.25, "SEEN": dt.datetime(2026, 3, 1), "COUNT": 3, "ACTIVE": True},
    ]
    assert [r["task_name"] for r in task_runs(plait_harness)] == ["snowflake_load_dataframe"]


def test_load_dataframe_without_pandas_says_what_to_install(
    connector: SnowflakeConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if pandas were not installed
    with pytest.raises(PandasNotInstalledError, match=r"pip install 'plait-snowflake\[pandas\]'"):
        snowflake_load_dataframe.fn("T", object(), connector)


# -- saved blocks in flows ------------------------------------------------------------------------------
def test_saved_connector_with_nested_credentials_loads_in_a_flow(
    credentials: SnowflakeCredentials, database: str, plait_harness: PlaitTestHarness, password: str
) -> None:
    credentials.save("snowflake-test")
    SnowflakeConnector(credentials=credentials, database=database, schema_name="PUBLIC", fetch_size=2).save("analytics")

    @flow
    def pipeline() -> list[dict[str, Any]]:
        with SnowflakeConnector.load("analytics") as connector:
            snowflake_load_rows("IDS", [{"ID": i} for i in range(1, 4)],
                                connector, create=True)
            assert connector.fetch_many("SELECT ID FROM IDS ORDER BY ID") == [{"ID": 1}, {"ID": 2}]  # fetch_size=2
            return snowflake_query("SELECT ID FROM IDS WHERE ID = ?", connector, [3])

    assert pipeline() == [{"ID": 3}]

    loaded = Block.load("snowflake-connector/analytics")
    assert isinstance(loaded, SnowflakeConnector)
    assert loaded.credentials == credentials  # secrets compared by value
    assert loaded.credentials.password.get_secret_value() == password
    assert loaded.schema_name == "PUBLIC"
    assert SnowflakeCredentials.load("snowflake-test") == credentials
    run = plait_harness.flow_runs()[0]
    assert run["state_type"] == "COMPLETED"
    assert password not in repr(plait_harness.flow_run(run["id"]))


def test_saved_key_pair_credentials_log_in_after_loading(
    make_credentials: Any, encrypted_pem: str, passphrase: str, plait_harness: PlaitTestHarness
) -> None:
    make_credentials(password=None, private_key=encrypted_pem, private_key_passphrase=passphrase).save("jwt")
    loaded = SnowflakeCredentials.load("jwt")
    assert loaded.authenticator == "snowflake_jwt"
    assert loaded.private_key.get_secret_value() == encrypted_pem
    with SnowflakeConnector(credentials=loaded) as connector:
        assert snowflake_query.fn("SELECT 1 AS ONE", connector) == [{"ONE": 1}]
