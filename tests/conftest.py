"""Shared fixtures: a real database per test, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_SERVER = "127.0.0.1:5432"
PG_ADMIN_URL = f"postgresql+psycopg://postgres@{PG_SERVER}/test?connect_timeout=5"


def _reset_store() -> None:
    from plait._store.database import Database
    from plait._store.recorder import reset_recorder

    reset_recorder()
    Database.dispose_all()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database: a SQLite file, or a fresh PostgreSQL database.

    PostgreSQL tests skip when no server answers on 127.0.0.1:5432, unless
    PLAIT_REQUIRE_POSTGRES=1 (CI), where they fail instead.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/plait.db"
        return
    from sqlalchemy import create_engine

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"plait_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        admin.dispose()
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        reason = f"PostgreSQL not reachable on {PG_SERVER}: {detail}"
        if os.environ.get("PLAIT_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield f"postgresql+psycopg://postgres@{PG_SERVER}/{name}"
    finally:
        _reset_store()  # release pooled connections before dropping
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def plait_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point PLAIT_HOME and PLAIT_DATABASE_URL at this test's database; yields the URL.

    The process-wide recorder and database handles are reset before and after, so nothing
    leaks between tests.
    """
    _reset_store()
    monkeypatch.setenv("PLAIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PLAIT_DATABASE_URL", database_url)
    yield database_url
    _reset_store()
