"""The prebuilt tasks inside flows (recorded, retried), and connectors saved and loaded."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError

from plait import flow
from plait.blocks import Block
from plait.testing import PlaitTestHarness
from plait_sqlalchemy import (
    AsyncSqlAlchemyConnector,
    DatabaseCredentials,
    SqlAlchemyConnector,
    async_execute,
    async_execute_many,
    async_query,
    execute,
    execute_many,
    query,
)

PEOPLE = [{"id": 1, "name": "ada"}, {"id": 2, "name": "grace"}, {"id": 3, "name": "edsger"}]


def task_runs(harness: PlaitTestHarness) -> list[dict[str, Any]]:
    run = harness.flow_runs()[0]
    return harness.flow_run(run["id"])["task_runs"]


def test_prebuilt_tasks_in_a_flow(credentials: DatabaseCredentials, table: str, plait_harness: PlaitTestHarness) -> None:
    @flow
    def load_people(connector: SqlAlchemyConnector) -> list[dict[str, Any]]:
        execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name VARCHAR(50))", connector)
        inserted = execute_many(f"INSERT INTO {table} (id, name) VALUES (:id, :name)", connector, PEOPLE)
        assert inserted == 3
        return query(f"SELECT id, name FROM {table} WHERE id >= :low ORDER BY id", connector, {"low": 2})

    with SqlAlchemyConnector(credentials=credentials) as connector:
        assert load_people(connector) == PEOPLE[1:]

    runs = task_runs(plait_harness)
    assert [r["task_name"] for r in runs] == ["sqlalchemy_execute", "sqlalchemy_execute_many", "sqlalchemy_query"]
    assert all(r["state_type"] == "COMPLETED" for r in runs)
    assert runs[2]["parameters"]["parameters"] == {"low": 2}


@pytest.mark.postgres
def test_recorded_task_parameters_never_show_the_password(
    postgres_credentials: Any, plait_harness: PlaitTestHarness
) -> None:
    base = postgres_credentials("postgresql+psycopg")
    credentials = DatabaseCredentials(**{**base.model_dump(exclude={"password", "url"}), "password": "Flow-Secret-Pw-77"})

    @flow
    def probe(connector: SqlAlchemyConnector) -> list[dict[str, Any]]:
        return query("SELECT 1 AS one", connector)

    with SqlAlchemyConnector(credentials=credentials) as connector:  # trust auth ignores the password
        assert probe(connector) == [{"one": 1}]
    run = plait_harness.flow_runs()[0]
    assert "Flow-Secret-Pw-77" not in repr(plait_harness.flow_run(run["id"]))


def test_a_retry_succeeds_once_the_missing_table_exists(
    credentials: DatabaseCredentials, table: str, plait_harness: PlaitTestHarness
) -> None:
    def create_table_then_retry(task: Any, run: Any, state: Any) -> bool:
        with SqlAlchemyConnector(credentials=credentials) as other:
            other.execute(f"CREATE TABLE {table} (id INTEGER, name VARCHAR(50))")
        return True

    insert = execute.with_options(retries=1, retry_condition=create_table_then_retry)

    @flow
    def add_person(connector: SqlAlchemyConnector) -> int:
        return insert(f"INSERT INTO {table} (id, name) VALUES (:id, :name)", connector, PEOPLE[0])

    with SqlAlchemyConnector(credentials=credentials) as connector:
        assert add_person(connector) == 1
        assert connector.fetch_all(f"SELECT id, name FROM {table}") == [PEOPLE[0]]

    (run,) = task_runs(plait_harness)
    assert run["run_count"] == 2 and run["state_type"] == "COMPLETED"
    assert "RETRYING" in [s["type"] for s in run["states"]]


def test_a_failing_statement_is_tried_twice_with_one_retry(
    credentials: DatabaseCredentials, plait_harness: PlaitTestHarness
) -> None:
    @flow
    def broken(connector: SqlAlchemyConnector) -> list[dict[str, Any]]:
        return query.with_options(retries=1)("SELECT * FROM no_such_table_anywhere", connector)

    with SqlAlchemyConnector(credentials=credentials) as connector:
        with pytest.raises(DBAPIError):
            broken(connector)
        assert connector.fetch_one("SELECT 1 AS one") == {"one": 1}  # the connection is still usable

    (run,) = task_runs(plait_harness)
    assert run["run_count"] == 2 and run["state_type"] == "FAILED"
    assert plait_harness.flow_runs()[0]["state_type"] == "FAILED"


def test_saved_connector_with_nested_credentials_loads_in_a_flow(
    credentials: DatabaseCredentials, table: str, plait_harness: PlaitTestHarness
) -> None:
    with SqlAlchemyConnector(credentials=credentials) as setup:
        setup.execute(f"CREATE TABLE {table} (id INTEGER, name VARCHAR(50))")
        setup.execute_many(f"INSERT INTO {table} (id, name) VALUES (:id, :name)", PEOPLE)

    credentials.save("warehouse-db")
    SqlAlchemyConnector(credentials=credentials, fetch_size=2).save("warehouse")

    @flow
    def report() -> list[dict[str, Any]]:
        connector = SqlAlchemyConnector.load("warehouse")
        with connector:
            first_page = connector.fetch_many(f"SELECT id FROM {table} ORDER BY id")
            assert first_page == [{"id": 1}, {"id": 2}]  # fetch_size=2 came back
            return query(f"SELECT name FROM {table} WHERE id = :id", connector, {"id": 3})

    assert report() == [{"name": "edsger"}]

    loaded = Block.load("sqlalchemy-connector/warehouse")
    assert isinstance(loaded, SqlAlchemyConnector)
    assert loaded.credentials == credentials  # secrets compared by value
    assert loaded.credentials.get_url() == credentials.get_url()
    assert DatabaseCredentials.load("warehouse-db") == credentials


def test_saved_url_credentials_keep_their_secret(plait_harness: PlaitTestHarness, tmp_path: Any) -> None:
    credentials = DatabaseCredentials(url=f"sqlite:///{tmp_path / 'u.db'}?timeout=5")
    AsyncSqlAlchemyConnector(credentials=credentials).save("local-async")
    loaded = AsyncSqlAlchemyConnector.load("local-async")
    assert loaded.credentials.url is not None
    assert loaded.credentials.url.get_secret_value() == f"sqlite:///{tmp_path / 'u.db'}?timeout=5"
    assert asyncio.run(_one(loaded)) == {"one": 1}


async def _one(connector: AsyncSqlAlchemyConnector) -> dict[str, Any] | None:
    async with connector:
        return await connector.fetch_one("SELECT 1 AS one")


def test_async_tasks_in_an_async_flow(
    async_credentials: DatabaseCredentials, table: str, plait_harness: PlaitTestHarness
) -> None:
    @flow
    async def load_people(connector: AsyncSqlAlchemyConnector) -> list[dict[str, Any]]:
        await async_execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name VARCHAR(50))", connector)
        assert await async_execute_many(f"INSERT INTO {table} (id, name) VALUES (:id, :name)", connector, PEOPLE) == 3
        return await async_query(f"SELECT id, name FROM {table} WHERE id <= :top ORDER BY id", connector, {"top": 2})

    async def main() -> list[dict[str, Any]]:
        async with AsyncSqlAlchemyConnector(credentials=async_credentials) as connector:
            return await load_people(connector)

    assert asyncio.run(main()) == PEOPLE[:2]
    assert [r["task_name"] for r in task_runs(plait_harness)] == [
        "sqlalchemy_async_execute", "sqlalchemy_async_execute_many", "sqlalchemy_async_query",
    ]
