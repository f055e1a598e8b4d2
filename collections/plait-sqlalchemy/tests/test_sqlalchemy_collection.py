"""plait's collection conventions for plait-sqlalchemy: discovery, declarations, block
conformance, the exported API, the import rules, and the docs examples (plait.testing.CollectionSuite)."""

from __future__ import annotations

import plait_sqlalchemy
from plait.testing import CollectionSuite
from plait_sqlalchemy import AsyncSqlAlchemyConnector, DatabaseCredentials, SqlAlchemyConnector

FIELD_CREDENTIALS = DatabaseCredentials(
    driver="postgresql+psycopg", host="db.example.com", port=5432, database="analytics",
    username="etl", password="s3cr3t-pass", query={"sslmode": "require"},
)
URL_CREDENTIALS = DatabaseCredentials(url="postgresql+asyncpg://etl:s3cr3t-pass@db.example.com:5432/analytics")


class TestPlaitSqlalchemy(CollectionSuite):
    package = plait_sqlalchemy
    examples = {
        DatabaseCredentials: [FIELD_CREDENTIALS, URL_CREDENTIALS],
        SqlAlchemyConnector: [SqlAlchemyConnector(credentials=FIELD_CREDENTIALS, fetch_size=50,
                                                  engine_kwargs={"pool_pre_ping": True})],
        AsyncSqlAlchemyConnector: [AsyncSqlAlchemyConnector(credentials=URL_CREDENTIALS)],
    }
    docs = ["README.md", "../../docs/collections/plait-sqlalchemy.md"]
    requires_plait = ">=0.1,<0.2"
    tasks = ["sqlalchemy_query", "sqlalchemy_execute", "sqlalchemy_execute_many",
             "sqlalchemy_async_query", "sqlalchemy_async_execute", "sqlalchemy_async_execute_many"]
    flows = ["sqlalchemy_copy_run_history"]
    exports = [
        "AsyncSqlAlchemyConnector", "DatabaseConnectionError", "DatabaseCredentials", "DriverNotInstalledError",
        "SqlAlchemyConnector", "async_execute", "async_execute_many", "async_query", "copy_run_history", "execute", "execute_many",
        "query",
    ]
