"""plait-sqlalchemy: SQL databases in plait flows, through SQLAlchemy.

    from plait import flow
    from plait_sqlalchemy import DatabaseCredentials, SqlAlchemyConnector, query

    @flow
    def report() -> list[dict]:
        connector = SqlAlchemyConnector(credentials=DatabaseCredentials(driver="sqlite", database="shop.db"))
        return query("SELECT name FROM customers WHERE city = :city", connector, {"city": "London"})

Blocks: ``DatabaseCredentials``, ``SqlAlchemyConnector``, ``AsyncSqlAlchemyConnector``.
Tasks: ``query``, ``execute``, ``execute_many`` and their async twins.
Flow: ``copy_run_history`` (plait's run history into warehouse tables). See README.md.
"""

from plait_sqlalchemy.async_connector import AsyncSqlAlchemyConnector
from plait_sqlalchemy.connector import SqlAlchemyConnector
from plait_sqlalchemy.credentials import DatabaseConnectionError, DatabaseCredentials, DriverNotInstalledError
from plait_sqlalchemy.history import copy_run_history
from plait_sqlalchemy.tasks import async_execute, async_execute_many, async_query, execute, execute_many, query

__version__ = "0.2.0"

__all__ = [
    "AsyncSqlAlchemyConnector",
    "DatabaseConnectionError",
    "DatabaseCredentials",
    "DriverNotInstalledError",
    "SqlAlchemyConnector",
    "async_execute",
    "async_execute_many",
    "async_query",
    "copy_run_history",
    "execute",
    "execute_many",
    "query",
]
