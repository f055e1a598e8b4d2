"""AsyncSqlAlchemyConnector on aiosqlite, asyncpg and psycopg's async mode; parity with the
sync connector."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError

from plait.blocks import Block
from plait_sqlalchemy import AsyncSqlAlchemyConnector, DatabaseConnectionError, DatabaseCredentials, SqlAlchemyConnector

NAMES = ["ada", "grace", "edsger", "barbara", "donald"]


def run(credentials: DatabaseCredentials, table: str, scenario: Callable[[AsyncSqlAlchemyConnector], Awaitable[Any]]) -> Any:
    """Run ``scenario`` on a fresh event loop with a connector over a five-row table."""

    async def main() -> Any:
        async with AsyncSqlAlchemyConnector(credentials=credentials) as connector:
            await connector.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name VARCHAR(100))")
            await connector.execute_many(
                f"INSERT INTO {table} (id, name) VALUES (:id, :name)",
                [{"id": i, "name": name} for i, name in enumerate(NAMES, start=1)],
            )
            return await scenario(connector)

    return asyncio.run(main())


def test_async_fetch_many_continues_the_same_cursor(async_credentials: DatabaseCredentials, table: str) -> None:
    async def scenario(connector: AsyncSqlAlchemyConnector) -> None:
        sql = f"SELECT id FROM {table} ORDER BY id"
        pages = [await connector.fetch_many(sql, size=2) for _ in range(3)]
        assert [len(p) for p in pages] == [2, 2, 1]
        assert [r["id"] for p in pages for r in p] == [1, 2, 3, 4, 5]
        assert await connector.fetch_many(sql, size=2) == []
        await connector.reset_cursors()
        assert await connector.fetch_many(sql, size=2) == [{"id": 1}, {"id": 2}]

    run(async_credentials, table, scenario)


def test_async_fetch_one_and_separate_cursors(async_credentials: DatabaseCredentials, table: str) -> None:
    async def scenario(connector: AsyncSqlAlchemyConnector) -> None:
        sql = f"SELECT id, name FROM {table} WHERE id >= :low ORDER BY id"
        assert await connector.fetch_one(sql, {"low": 4}) == {"id": 4, "name": "barbara"}
        assert await connector.fetch_one(sql, {"low": 1}) == {"id": 1, "name": "ada"}
        assert await connector.fetch_one(sql, {"low": 4}) == {"id": 5, "name": "donald"}
        assert await connector.fetch_one(sql, {"low": 4}) is None

    run(async_credentials, table, scenario)


def test_async_fetch_all_execute_and_execute_many(async_credentials: DatabaseCredentials, table: str) -> None:
    async def scenario(connector: AsyncSqlAlchemyConnector) -> None:
        assert await connector.execute(f"DELETE FROM {table} WHERE id > :id", {"id": 3}) == 2
        assert await connector.execute_many(
            f"UPDATE {table} SET name = :name WHERE id = :id", [{"id": 1, "name": "A"}, {"id": 2, "name": "G"}]
        ) == 2
        assert await connector.execute_many(f"DELETE FROM {table} WHERE id = :id", []) == 0
        async with AsyncSqlAlchemyConnector(credentials=connector.credentials) as other:  # committed
            assert await other.fetch_all(f"SELECT id, name FROM {table} ORDER BY id") == [
                {"id": 1, "name": "A"}, {"id": 2, "name": "G"}, {"id": 3, "name": "edsger"},
            ]

    run(async_credentials, table, scenario)


def test_async_parameters_are_bound(async_credentials: DatabaseCredentials, table: str) -> None:
    async def scenario(connector: AsyncSqlAlchemyConnector) -> None:
        evil = f"x'); DROP TABLE {table}; --"
        await connector.execute(f"INSERT INTO {table} (id, name) VALUES (:id, :name)", {"id": 9, "name": evil})
        assert await connector.fetch_all(f"SELECT name FROM {table} WHERE id = :id", {"id": 9}) == [{"name": evil}]
        assert await connector.fetch_all(f"SELECT id FROM {table} WHERE name = :n", {"n": "' OR '1'='1"}) == []
        assert len(await connector.fetch_all(f"SELECT id FROM {table}")) == 6

    run(async_credentials, table, scenario)


def test_async_failure_rolls_back_and_reuse(async_credentials: DatabaseCredentials, table: str) -> None:
    async def scenario(connector: AsyncSqlAlchemyConnector) -> None:
        engine, connection = connector.get_engine(), await connector.get_connection()
        with pytest.raises(DBAPIError):
            await connector.execute("INSERT INTO no_such_table (x) VALUES (1)")
        assert await connector.execute(f"INSERT INTO {table} (id, name) VALUES (6, 'ken')") == 1
        assert len(await connector.fetch_all(f"SELECT id FROM {table}")) == 6
        assert connector.get_engine() is engine
        assert await connector.get_connection() is connection
        return connection

    connection = run(async_credentials, table, scenario)
    assert connection.closed  # `async with` closed it


def test_async_connector_survives_a_new_event_loop(async_credentials: DatabaseCredentials) -> None:
    connector = AsyncSqlAlchemyConnector(credentials=async_credentials)
    first = asyncio.run(connector.fetch_one("SELECT 1 AS one"))
    second = asyncio.run(connector.fetch_one("SELECT 2 AS two"))  # the old loop is gone
    assert (first, second) == ({"one": 1}, {"two": 2})
    asyncio.run(connector.close())


def test_async_unreachable_database_raises_a_masked_error() -> None:
    credentials = DatabaseCredentials(
        driver="postgresql+asyncpg", host="127.0.0.1", port=1, database="test", username="postgres",
        password="pw-0f-the-year",
    )

    async def main() -> None:
        await AsyncSqlAlchemyConnector(credentials=credentials).fetch_all("SELECT 1")

    with pytest.raises(DatabaseConnectionError) as caught:
        asyncio.run(main())
    assert "postgresql+asyncpg://postgres:***@127.0.0.1:1/test" in str(caught.value)
    assert "pw-0f-the-year" not in str(caught.value)


def test_a_sync_only_driver_is_refused_with_advice(tmp_path) -> None:
    credentials = DatabaseCredentials(driver="mysql+pymysql", host="127.0.0.1")
    with pytest.raises(DatabaseConnectionError, match="not async.*sqlite\\+aiosqlite"):
        AsyncSqlAlchemyConnector(credentials=credentials).get_engine()


# -- parity ---------------------------------------------------------------------------------
def _public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(cls).items()
        if callable(member) and not name.startswith("_") and not hasattr(Block, name)
    }


def test_sync_and_async_connectors_offer_the_same_api() -> None:
    sync, asynchronous = _public_methods(SqlAlchemyConnector), _public_methods(AsyncSqlAlchemyConnector)
    assert sorted(sync) == sorted(asynchronous)
    for name, signature in sync.items():  # same parameters; return types differ (Engine/AsyncEngine)
        assert list(signature.parameters.values()) == list(asynchronous[name].parameters.values()), name
    blocking_by_design = {"get_engine"}  # creating an engine does no I/O
    for name in set(asynchronous) - blocking_by_design:
        assert inspect.iscoroutinefunction(getattr(AsyncSqlAlchemyConnector, name)), name
    assert SqlAlchemyConnector.model_fields.keys() == AsyncSqlAlchemyConnector.model_fields.keys()
