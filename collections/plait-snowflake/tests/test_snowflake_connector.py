"""SnowflakeConnector against fakesnow's server: cursors, writes, bound parameters, reuse,
transactions, closing."""

from __future__ import annotations

import copy
import pickle
import threading
from collections.abc import Callable

import pytest
from snowflake.connector.errors import ProgrammingError

from plait_snowflake import SnowflakeConnectionError, SnowflakeConnector, SnowflakeCredentials

NAMES = ["ada", "grace", "edsger", "barbara", "donald"]


def test_fetch_many_continues_the_same_cursor(connector: SnowflakeConnector, people: str) -> None:
    sql = f"SELECT ID FROM {people} ORDER BY ID"
    pages = [connector.fetch_many(sql, size=2) for _ in range(3)]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [row["ID"] for page in pages for row in page] == [1, 2, 3, 4, 5]
    assert connector.fetch_many(sql, size=2) == []  # stays exhausted: a `while rows := ...` loop ends
    connector.reset_cursors()
    assert connector.fetch_many(sql, size=2) == [{"ID": 1}, {"ID": 2}]


def test_fetch_many_default_size_is_fetch_size(credentials: SnowflakeCredentials, database: str, ) -> None:
    with SnowflakeConnector(credentials=credentials, database=database, schema_name="PUBLIC", fetch_size=3) as c:
        c.execute("CREATE TABLE T (ID INTEGER)")
        c.execute_many("INSERT INTO T (ID) VALUES (?)", [[i] for i in range(5)])
        assert len(c.fetch_many("SELECT ID FROM T")) == 3
        with pytest.raises(ValueError, match="size must be"):
            c.fetch_many("SELECT ID FROM T", size=0)


def test_fetch_one_continues_and_ends_with_none(connector: SnowflakeConnector, people: str) -> None:
    sql = f"SELECT ID, NAME FROM {people} WHERE ID <= ? ORDER BY ID"
    assert connector.fetch_one(sql, [2]) == {"ID": 1, "NAME": "ada"}
    assert connector.fetch_one(sql, [2]) == {"ID": 2, "NAME": "grace"}
    assert connector.fetch_one(sql, [2]) is None
    assert connector.fetch_one(sql, [2]) is None


def test_other_sql_or_parameters_get_cursors_of_their_own(connector: SnowflakeConnector, people: str) -> None:
    sql = f"SELECT ID FROM {people} WHERE ID >= ? ORDER BY ID"
    assert connector.fetch_one(sql, [1]) == {"ID": 1}
    assert connector.fetch_one(sql, (4,)) == {"ID": 4}  # other parameters: a new cursor
    assert connector.fetch_one(f"SELECT ID FROM {people} ORDER BY ID DESC") == {"ID": 5}
    assert connector.fetch_one(sql, [1]) == {"ID": 2}  # the first one went on
    assert connector.fetch_many(sql, [4], size=5) == [{"ID": 5}]


def test_a_write_between_fetches_keeps_the_cursor(connector: SnowflakeConnector, people: str) -> None:
    sql = f"SELECT ID FROM {people} ORDER BY ID"
    assert connector.fetch_many(sql, size=2) == [{"ID": 1}, {"ID": 2}]
    assert connector.execute(f"UPDATE {people} SET NAME = ? WHERE ID = ?", ["Ada", 1]) == 1
    assert connector.fetch_many(sql, size=2) == [{"ID": 3}, {"ID": 4}]


def test_fetch_all_runs_afresh_and_returns_dicts(connector: SnowflakeConnector, people: str) -> None:
    sql = f"SELECT ID, NAME FROM {people} ORDER BY ID"
    connector.fetch_one(sql)
    rows = connector.fetch_all(sql)
    assert rows == [{"ID": i, "NAME": n} for i, n in enumerate(NAMES, start=1)]
    assert all(type(row) is dict for row in rows)
    assert connector.fetch_one(sql) == {"ID": 2, "NAME": "grace"}  # fetch_all left the cursor alone


def test_execute_and_execute_many_count_and_commit(
    connector: SnowflakeConnector, people: str, credentials: SnowflakeCredentials, database: str
) -> None:
    assert connector.execute(f"DELETE FROM {people} WHERE ID > ?", [3]) == 2
    assert connector.execute_many(f"UPDATE {people} SET NAME = ? WHERE ID = ?", [("A", 1), ("G", 2)]) == 2
    assert connector.execute_many(f"INSERT INTO {people} (ID, NAME) VALUES (?, ?)", []) == 0
    with SnowflakeConnector(credentials=credentials, database=database, schema="PUBLIC") as other:
        assert other.fetch_all(f"SELECT ID, NAME FROM {people} ORDER BY ID") == [
            {"ID": 1, "NAME": "A"}, {"ID": 2, "NAME": "G"}, {"ID": 3, "NAME": "edsger"},
        ]


def test_parameters_are_bound_never_formatted(connector: SnowflakeConnector, people: str) -> None:
    evil = f"x'); DROP TABLE {people}; --"
    assert connector.execute(f"INSERT INTO {people} (ID, NAME) VALUES (?, ?)", [9, evil]) == 1
    assert connector.fetch_all(f"SELECT NAME FROM {people} WHERE ID = ?", [9]) == [{"NAME": evil}]
    assert connector.fetch_all(f"SELECT * FROM {people} WHERE NAME = ?", ["' OR '1'='1"]) == []
    assert connector.execute_many(f"INSERT INTO {people} (ID, NAME) VALUES (?, ?)", [(10, "a'b"), (11, "--")]) == 2
    assert len(connector.fetch_all(f"SELECT ID FROM {people}")) == 8  # the table is still there
    assert connector.fetch_all("SELECT ? AS A, :2 AS B", ["q", 7]) == [{"A": "q", "B": 7}]  # :1 works too


def test_bad_arguments_are_explained(connector: SnowflakeConnector, people: str) -> None:
    with pytest.raises(TypeError, match="list of values for the \\? placeholders.*named :name"):
        connector.execute(f"DELETE FROM {people} WHERE ID = ?", {"id": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got str"):
        connector.fetch_all(f"SELECT * FROM {people} WHERE NAME = ?", "ada")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seq_of_parameters must be a list of value lists"):
        connector.execute_many(f"DELETE FROM {people} WHERE ID = ?", {"id": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sql is empty"):
        connector.fetch_all("  ")


def test_a_failed_statement_leaves_the_connector_usable(connector: SnowflakeConnector, people: str) -> None:
    sql = f"SELECT ID FROM {people} ORDER BY ID"
    assert connector.fetch_one(sql) == {"ID": 1}
    with pytest.raises(ProgrammingError, match="NO_SUCH_TABLE"):
        connector.execute("INSERT INTO NO_SUCH_TABLE (X) VALUES (1)")
    with pytest.raises(ProgrammingError):
        connector.fetch_one("SELECT * FROM NO_SUCH_TABLE")
    assert connector.fetch_one(sql) == {"ID": 2}  # the other cursor is unaffected
    assert connector.execute(f"INSERT INTO {people} (ID, NAME) VALUES (6, 'ken')") == 1


def test_transaction_commits_or_rolls_back(connector: SnowflakeConnector, people: str) -> None:
    with connector.transaction():
        connector.execute(f"DELETE FROM {people} WHERE ID = ?", [5])
        with connector.transaction():  # joins the outer one
            connector.execute(f"DELETE FROM {people} WHERE ID = ?", [4])
    assert len(connector.fetch_all(f"SELECT ID FROM {people}")) == 3

    with pytest.raises(ProgrammingError):
        with connector.transaction():
            connector.execute(f"DELETE FROM {people}")
            connector.execute("INSERT INTO NO_SUCH_TABLE VALUES (1)")
    assert len(connector.fetch_all(f"SELECT ID FROM {people}")) == 3  # the DELETE was rolled back

    with pytest.raises(RuntimeError, match="changed my mind"):
        with connector.transaction():
            connector.execute(f"DELETE FROM {people}")
            raise RuntimeError("changed my mind")
    assert len(connector.fetch_all(f"SELECT ID FROM {people}")) == 3

    with pytest.raises(RuntimeError, match="changed inside transaction"):
        with connector.transaction():
            connector.execute(f"DELETE FROM {people}")
            connector.warehouse = "OTHER_WH"  # would need a new session: refused, rolled back
            connector.execute(f"DELETE FROM {people}")
    connector.warehouse = "TEST_WH"
    assert len(connector.fetch_all(f"SELECT ID FROM {people}")) == 3


def test_the_session_is_opened_once_and_reused(connector: SnowflakeConnector, people: str, database: str) -> None:
    assert not connector.connected or connector.get_connection() is not None
    session = connector.get_connection()
    connector.fetch_all(f"SELECT * FROM {people}")
    connector.execute(f"DELETE FROM {people} WHERE ID = 5")
    connector.fetch_many(f"SELECT * FROM {people}", size=2)
    with connector.transaction():
        connector.execute(f"DELETE FROM {people} WHERE ID = 4")
    assert connector.get_connection() is session
    assert connector.fetch_one("SELECT CURRENT_DATABASE() AS DB, CURRENT_SCHEMA() AS SCH") == {
        "DB": database, "SCH": "PUBLIC",
    }


def test_new_settings_mean_a_new_session(connector: SnowflakeConnector, people: str) -> None:
    first = connector.get_connection()
    connector.fetch_one(f"SELECT ID FROM {people}")
    connector.schema_name = "OTHER"
    assert connector.get_connection() is not first
    assert connector.fetch_one("SELECT CURRENT_SCHEMA() AS S") == {"S": "OTHER"}


def test_context_manager_and_close_end_the_session(credentials: SnowflakeCredentials, database: str) -> None:
    with SnowflakeConnector(credentials=credentials, database=database, schema_name="PUBLIC") as connector:
        session = connector.get_connection()
        assert connector.fetch_one("SELECT 1 AS ONE") == {"ONE": 1}
        assert connector.connected
    assert not connector.connected
    # usable again: logs in afresh
    assert connector.fetch_one("SELECT 2 AS TWO") == {"TWO": 2}
    assert connector.get_connection() is not session
    connector.close()
    connector.close()  # twice is fine
    assert not connector.connected


def test_schema_is_accepted_as_input_name(credentials: SnowflakeCredentials) -> None:
    connector = SnowflakeConnector(credentials=credentials, schema="RAW")
    assert connector.schema_name == "RAW"
    assert "schema_name" in connector.model_dump()
    assert SnowflakeConnector.model_json_schema()["properties"]["schema_name"]["description"].startswith("Schema")
    with pytest.raises(ValueError, match="must not be blank"):
        SnowflakeConnector(credentials=credentials, warehouse=" ")


def test_an_unreachable_server_raises_a_masked_connection_error(
    make_credentials: Callable[..., SnowflakeCredentials], password: str
) -> None:
    connector = SnowflakeConnector(credentials=make_credentials(port=1, login_timeout=5))
    with pytest.raises(SnowflakeConnectionError) as caught:
        connector.fetch_all("SELECT 1")
    assert "account 'plait-test' as user 'tester'" in str(caught.value)
    assert password not in str(caught.value)
    assert not connector.connected


def test_connection_state_is_not_part_of_the_blocks_value(connector: SnowflakeConnector) -> None:
    fresh = SnowflakeConnector(credentials=connector.credentials, warehouse="TEST_WH",
                               database=connector.database, schema_name="PUBLIC")
    connector.fetch_one("SELECT 1 AS ONE")
    assert connector == fresh
    for clone in (copy.deepcopy(connector), pickle.loads(pickle.dumps(connector))):
        assert clone == connector
        assert not clone.connected
        assert clone.fetch_one("SELECT 1 AS ONE") == {"ONE": 1}
        assert clone.get_connection() is not connector.get_connection()
        clone.close()


def test_threads_share_one_connector_safely(connector: SnowflakeConnector, people: str) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for _ in range(5):
                assert len(connector.fetch_all(f"SELECT ID FROM {people} WHERE ID <= ?", [n])) == n
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(1, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
