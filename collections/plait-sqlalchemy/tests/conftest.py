"""Real databases for plait-sqlalchemy's tests: a SQLite file per test, and a throwaway
PostgreSQL database per test module on 127.0.0.1:5432.

PostgreSQL tests skip with the reason when no server answers, unless
PLAIT_REQUIRE_POSTGRES=1 (CI), where they fail instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from plait.testing import throwaway_postgres_database
from plait_sqlalchemy import DatabaseCredentials

PG_HOST = "127.0.0.1"
PG_PORT = 5432


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[str]:
    """The name of a fresh PostgreSQL database, dropped when the module's tests are done."""
    from sqlalchemy.engine import make_url

    with throwaway_postgres_database("plait_sqla") as url:
        yield make_url(url).database


def postgres_credentials_for(database: str, driver: str = "postgresql+psycopg") -> DatabaseCredentials:
    return DatabaseCredentials(driver=driver, host=PG_HOST, port=PG_PORT, database=database, username="postgres")


def _credentials(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> DatabaseCredentials:
    if kind.startswith("sqlite"):
        return DatabaseCredentials(driver=kind, database=str(tmp_path / "data.db"))
    return postgres_credentials_for(request.getfixturevalue("postgres_database"), driver=kind)


@pytest.fixture(params=["sqlite", pytest.param("postgresql+psycopg", marks=pytest.mark.postgres)])
def credentials(request: pytest.FixtureRequest, tmp_path: Path) -> DatabaseCredentials:
    """Credentials of an empty SQLite file, or of this module's PostgreSQL database."""
    return _credentials(request.param, request, tmp_path)


@pytest.fixture(
    params=[
        "sqlite+aiosqlite",
        pytest.param("postgresql+asyncpg", marks=pytest.mark.postgres),
        pytest.param("postgresql+psycopg", marks=pytest.mark.postgres),
    ]
)
def async_credentials(request: pytest.FixtureRequest, tmp_path: Path) -> DatabaseCredentials:
    """Credentials for an async driver: aiosqlite, asyncpg, or psycopg's async mode."""
    return _credentials(request.param, request, tmp_path)


@pytest.fixture
def postgres_credentials(postgres_database: str) -> Callable[[str], DatabaseCredentials]:
    """``postgres_credentials(driver)``: credentials of this module's PostgreSQL database."""
    return lambda driver="postgresql+psycopg": postgres_credentials_for(postgres_database, driver)


@pytest.fixture
def table() -> str:
    """A table name no other test uses (tests share a module's PostgreSQL database)."""
    return f"t_{uuid.uuid4().hex[:10]}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: needs the PostgreSQL server on 127.0.0.1:5432")
