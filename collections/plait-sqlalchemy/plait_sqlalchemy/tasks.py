"""Prebuilt tasks: query and change a database from a flow with a connector block.

Each is an ordinary ``@task``: call it in a flow, ``.submit()`` it, or give it retries with
``query.with_options(retries=3)``. A failed statement rolls the connector's transaction
back, so a retry starts clean.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from plait import task
from plait_sqlalchemy._base import Parameters, Statement
from plait_sqlalchemy.async_connector import AsyncSqlAlchemyConnector
from plait_sqlalchemy.connector import SqlAlchemyConnector

__all__ = ["query", "execute", "execute_many", "async_query", "async_execute", "async_execute_many"]


@task(name="sqlalchemy_query")
def query(
    sql: Statement, connector: SqlAlchemyConnector, parameters: Parameters | None = None
) -> list[dict[str, Any]]:
    """Run a query and return every row as a dict ({column: value}).

    Args:
        sql: SQL with ``:name`` bind parameters, e.g. ``"SELECT * FROM t WHERE id = :id"``.
        connector: The database to query.
        parameters: Values for the bind parameters, e.g. ``{"id": 7}`` (never formatted into
            the SQL).
    """
    return connector.fetch_all(sql, parameters)


@task(name="sqlalchemy_execute")
def execute(sql: Statement, connector: SqlAlchemyConnector, parameters: Parameters | None = None) -> int:
    """Run one statement (INSERT, UPDATE, DELETE, DDL) and commit; return the rows changed.

    Args:
        sql: SQL with ``:name`` bind parameters.
        connector: The database to change.
        parameters: Values for the bind parameters.
    """
    return connector.execute(sql, parameters)


@task(name="sqlalchemy_execute_many")
def execute_many(sql: Statement, connector: SqlAlchemyConnector, seq_of_parameters: Iterable[Parameters]) -> int:
    """Run one statement once per set of parameters in one transaction and commit; return
    the total rows changed.

    Args:
        sql: SQL with ``:name`` bind parameters.
        connector: The database to change.
        seq_of_parameters: One mapping of bind values per execution.
    """
    return connector.execute_many(sql, list(seq_of_parameters))


@task(name="sqlalchemy_async_query")
async def async_query(
    sql: Statement, connector: AsyncSqlAlchemyConnector, parameters: Parameters | None = None
) -> list[dict[str, Any]]:
    """Run a query with an async connector and return every row as a dict."""
    return await connector.fetch_all(sql, parameters)


@task(name="sqlalchemy_async_execute")
async def async_execute(
    sql: Statement, connector: AsyncSqlAlchemyConnector, parameters: Parameters | None = None
) -> int:
    """Run one statement with an async connector and commit; return the rows changed."""
    return await connector.execute(sql, parameters)


@task(name="sqlalchemy_async_execute_many")
async def async_execute_many(
    sql: Statement, connector: AsyncSqlAlchemyConnector, seq_of_parameters: Iterable[Parameters]
) -> int:
    """Run one statement once per set of parameters with an async connector and commit;
    return the total rows changed."""
    return await connector.execute_many(sql, list(seq_of_parameters))
