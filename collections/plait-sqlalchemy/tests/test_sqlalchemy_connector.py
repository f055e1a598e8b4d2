"""SqlAlchemyConnector on SQLite and PostgreSQL: cursors, writes, bound parameters, reuse."""

from __future__ import annotations

import copy
import pickle
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import column, select
from sqlalchemy import table as sql_table
from sqlalchemy.exc import DBAPIError

from plait_sqlalchemy import DatabaseConnectionError, DatabaseCredentials, SqlAlchemyConnector

NAMES = ["ada", "grace", "edsger", "barbara", "donald"]


@pytest.fixture
def connector(credentials: DatabaseCredentials, table: str) -> Iterator[SqlAlchemyConnector]:
    """A connector over a table ``table`` with five people (id 1..5)."""
    with SqlAlchemyConnector(credentials=credentials) as connector:
        connector.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name VARCHAR(100))")
        connector.execute_many(
            f"INSERT INTO {table} (id, name) VALUES (:id, :name)",
            [{"id": i, "name": name} for i, name in enumerate(NAMES, start=1)],
        )
        yield connector


def test_fetch_many_continues_the_same_cursor(connector: SqlAlchemyConnector, table: str) -> None:
    sql = f"SELECT id FROM {table} ORDER BY id"
    pages = [connector.fetch_many(sql, size=2) for _ in range(3)]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [row["id"] for page in pages for row in page] == [1, 2, 3, 4, 5]
    assert connector.fetch_many(sql, size=2) == []  # stays exhausted: a `while rows := ...` loop ends
    connector.reset_cursors()
    assert connector.fetch_many(sql, size=2) == [{"id": 1}, {"id": 2}]


def test_fetch_many_default_size_is_fetch_size(credentials: DatabaseCredentials, table: str) -> None:
    with SqlAlchemyConnector(credentials=credentials, fetch_size=3) as connector:
        connector.execute(f"CREATE TABLE {table} (id INTEGER)")
        connector.execute_many(f"INSERT INTO {table} (id) VALUES (:id)", [{"id": i} for i in range(5)])
        assert len(connector.fetch_many(f"SELECT id FROM {table}")) == 3
    with pytest.raises(ValueError, match="size must be"):
        connector.fetch_many(f"SELECT id FROM {table}", size=0)


def test_fetch_one_continues_and_ends_with_none(connector: SqlAlchemyConnector, table: str) -> None:
    sql = f"SELECT id, name FROM {table} WHERE id <= :top ORDER BY id"
    assert connector.fetch_one(sql, {"top": 2}) == {"id": 1, "name": "ada"}
    assert connector.fetch_one(sql, {"top": 2}) == {"id": 2, "name": "grace"}
    assert connector.fetch_one(sql, {"top": 2}) is None
    assert connector.fetch_one(sql, {"top": 2}) is None


def test_different_sql_or_parameters_get_cursors_of_their_own(connector: SqlAlchemyConnector, table: str) -> None:
    sql = f"SELECT id FROM {table} WHERE id >= :low ORDER BY id"
    assert connector.fetch_one(sql, {"low": 1}) == {"id": 1}
    assert connector.fetch_one(sql, {"low": 4}) == {"id": 4}  # other parameters: a new cursor
    assert connector.fetch_one(f"SELECT id FROM {table} ORDER BY id DESC") == {"id": 5}
    assert connector.fetch_one(sql, {"low": 1}) == {"id": 2}  # the first one went on
    assert connector.fetch_many(sql, {"low": 4}, size=5) == [{"id": 5}]


def test_a_write_between_fetches_keeps_the_cursor(connector: SqlAlchemyConnector, table: str) -> None:
    sql = f"SELECT id FROM {table} ORDER BY id"
    assert connector.fetch_many(sql, size=2) == [{"id": 1}, {"id": 2}]
    assert connector.execute(f"UPDATE {table} SET name = :name WHERE id = :id", {"name": "Ada", "id": 1}) == 1
    assert connector.fetch_many(sql, size=2) == [{"id": 3}, {"id": 4}]


def test_fetch_all_runs_afresh_and_returns_dicts(connector: SqlAlchemyConnector, table: str) -> None:
    sql = f"SELECT id, name FROM {table} ORDER BY id"
    connector.fetch_one(sql)
    rows = connector.fetch_all(sql)
    assert rows == [{"id": i, "name": n} for i, n in enumerate(NAMES, start=1)]
    assert all(type(row) is dict for row in rows)
    assert connector.fetch_one(sql) == {"id": 2, "name": "grace"}  # fetch_all left the cursor alone


def test_execute_and_execute_many_commit_and_count(
    connector: SqlAlchemyConnector, credentials: DatabaseCredentials, table: str
) -> None:
    assert connector.execute(f"DELETE FROM {table} WHERE id > :id", {"id": 3}) == 2
    assert connector.execute_many(
        f"UPDATE {table} SET name = :name WHERE id = :id", [{"id": 1, "name": "A"}, {"id": 2, "name": "G"}]
    ) == 2
    assert connector.execute_many(f"INSERT INTO {table} (id, name) VALUES (:id, :name)", []) == 0
    # committed: another connection sees it
    with SqlAlchemyConnector(credentials=credentials) as other:
        assert other.fetch_all(f"SELECT id, name FROM {table} ORDER BY id") == [
            {"id": 1, "name": "A"}, {"id": 2, "name": "G"}, {"id": 3, "name": "edsger"},
        ]


def test_parameters_are_bound_never_formatted(connector: SqlAlchemyConnector, table: str) -> None:
    evil = f"x'); DROP TABLE {table}; --"
    assert connector.execute(f"INSERT INTO {table} (id, name) VALUES (:id, :name)", {"id": 9, "name": evil}) == 1
    assert connector.fetch_all(f"SELECT name FROM {table} WHERE id = :id", {"id": 9}) == [{"name": evil}]
    assert connector.fetch_all(f"SELECT * FROM {table} WHERE name = :name", {"name": "' OR '1'='1"}) == []
    assert len(connector.fetch_all(f"SELECT id FROM {table}")) == 6  # the table is still there


def test_sqlalchemy_statements_work_too(connector: SqlAlchemyConnector, table: str) -> None:
    people = sql_table(table, column("id"), column("name"))
    stmt = select(people.c.name).where(people.c.id == 2)
    assert connector.fetch_all(stmt) == [{"name": "grace"}]
    assert connector.fetch_one(stmt) == {"name": "grace"}
    assert connector.fetch_one(stmt) is None


def test_bad_arguments_are_explained(connector: SqlAlchemyConnector, table: str) -> None:
    with pytest.raises(TypeError, match="parameters must be a mapping"):
        connector.execute(f"DELETE FROM {table} WHERE id = :id", [1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seq_of_parameters must be a list of mappings"):
        connector.execute_many(f"DELETE FROM {table} WHERE id = :id", {"id": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sql is empty"):
        connector.fetch_all("  ")


def test_a_failed_statement_rolls_back_and_the_connector_goes_on(connector: SqlAlchemyConnector, table: str) -> None:
    sql = f"SELECT id FROM {table} ORDER BY id"
    connector.fetch_one(sql)
    with pytest.raises(DBAPIError):
        connector.execute("INSERT INTO no_such_table (x) VALUES (1)")
    with pytest.raises(DBAPIError):  # a duplicate key
        connector.execute(f"INSERT INTO {table} (id, name) VALUES (:id, :name)", {"id": 1, "name": "again"})
    assert connector.fetch_one(sql) == {"id": 1}  # cursors start over after a failure
    assert connector.execute(f"INSERT INTO {table} (id, name) VALUES (6, 'ken')") == 1


def test_engine_and_connection_are_created_once_and_reused(connector: SqlAlchemyConnector, table: str) -> None:
    engine, connection = connector.get_engine(), connector.get_connection()
    connector.fetch_all(f"SELECT * FROM {table}")
    connector.execute(f"DELETE FROM {table} WHERE id = 5")
    connector.fetch_many(f"SELECT * FROM {table}", size=2)
    assert connector.get_engine() is engine
    assert connector.get_connection() is connection
    assert engine.pool.checkedout() == 1


def test_engine_kwargs_reach_create_engine(credentials: DatabaseCredentials) -> None:
    with SqlAlchemyConnector(credentials=credentials, engine_kwargs={"pool_pre_ping": True, "echo": False}) as c:
        assert c.get_engine().pool._pre_ping is True
        assert c.fetch_one("SELECT 1 AS one") == {"one": 1}


def test_new_credentials_mean_a_new_engine(credentials: DatabaseCredentials, tmp_path) -> None:
    with SqlAlchemyConnector(credentials=credentials) as connector:
        first = connector.get_engine()
        connector.credentials = DatabaseCredentials(driver="sqlite", database=str(tmp_path / "other.db"))
        assert connector.get_engine() is not first
        assert connector.get_engine().url.database == str(tmp_path / "other.db")


def test_context_manager_and_close_release_everything(credentials: DatabaseCredentials, table: str) -> None:
    with SqlAlchemyConnector(credentials=credentials) as connector:
        connection = connector.get_connection()
        engine = connector.get_engine()
        connector.fetch_one("SELECT 1 AS one")
    assert connection.closed
    assert engine.pool.checkedout() == 0
    # usable again: reconnects lazily with a new engine
    assert connector.fetch_one("SELECT 2 AS two") == {"two": 2}
    assert connector.get_engine() is not engine
    connector.close()
    connector.close()  # twice is fine


def test_an_unreachable_database_raises_a_masked_connection_error() -> None:
    credentials = DatabaseCredentials(
        driver="postgresql+psycopg", host="127.0.0.1", port=1, database="test", username="postgres",
        password="pw-0f-the-year",
    )
    with pytest.raises(DatabaseConnectionError) as caught:
        SqlAlchemyConnector(credentials=credentials).fetch_all("SELECT 1")
    assert "postgres:***@127.0.0.1:1" in str(caught.value)
    assert "pw-0f-the-year" not in str(caught.value)


def test_connection_state_is_not_part_of_the_blocks_value(connector: SqlAlchemyConnector) -> None:
    fresh = SqlAlchemyConnector(credentials=connector.credentials)
    connector.fetch_one("SELECT 1 AS one")
    assert connector == fresh
    for clone in (copy.deepcopy(connector), pickle.loads(pickle.dumps(connector))):
        assert clone == connector
        assert clone.get_engine() is not connector.get_engine()
        clone.close()


def test_threads_share_one_connector_safely(connector: SqlAlchemyConnector, table: str) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for _ in range(20):
                assert len(connector.fetch_all(f"SELECT id FROM {table} WHERE id <= :n", {"n": n})) == n
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(1, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
