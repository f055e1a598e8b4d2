"""Shared fixtures: a real database per test, on SQLite and on PostgreSQL."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from plait.testing import throwaway_postgres_database


def _reset_store() -> None:
    from plait._recorder import reset_recorder
    from plait._store.database import Database

    reset_recorder()
    Database.dispose_all()


@pytest.fixture(autouse=True)
def _plait_logging_reset() -> Iterator[None]:
    """A test that ran a flow leaves plait's console handler behind, which stops plait's
    records reaching the root logger (and caplog): undone after every test."""
    yield
    from plait._logging import reset_logging

    reset_logging()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database: a SQLite file, or a fresh PostgreSQL database.

    PostgreSQL tests skip when no server answers on 127.0.0.1:5432, unless
    PLAIT_REQUIRE_POSTGRES=1 (CI), where they fail instead.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/plait.db"
        return
    with throwaway_postgres_database("plait_test") as url:
        yield url


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


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path where a test installs fake plugin distributions; plugins are
    rediscovered before and after, and modules imported from it are forgotten."""
    from plait import plugins

    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("PLAIT_PLUGINS", raising=False)
    monkeypatch.delenv("PLAIT_PLUGINS_STRICT", raising=False)
    plugins.reset_plugins()
    yield site
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(site)):
            del sys.modules[name]
    plugins.reset_plugins()
