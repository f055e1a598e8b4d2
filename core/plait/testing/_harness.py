"""The test harness: a throwaway PLAIT_HOME and database per test, and a throwaway
PostgreSQL database (see ``plait.testing``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["plait_test_harness", "PlaitTestHarness", "reset_state", "throwaway_postgres_database", "POSTGRES_ADMIN_URL"]

_VARS = ("PLAIT_HOME", "PLAIT_DATABASE_URL", "PLAIT_RESULT_STORAGE")


@dataclass
class PlaitTestHarness:
    """What a test gets: the temporary home and database URL, and history queries."""

    home: Path
    database_url: str

    def database(self) -> Any:
        from plait._store.database import get_database

        return get_database()

    def flush(self) -> None:
        from plait._recording import current_recorder

        current_recorder().flush()

    def flow_runs(self, **filters: Any) -> list[dict[str, Any]]:
        """Recorded flow runs, newest first (see ``plait flow-run ls``)."""
        from plait._store.history import list_flow_runs

        return list_flow_runs(self._checked(), **filters)

    def flow_run(self, flow_run_id: str) -> dict[str, Any]:
        """One flow run with its task runs, states and edges (see ``plait flow-run inspect``)."""
        from plait._store.history import get_flow_run

        return get_flow_run(self._checked(), flow_run_id)

    def logs(self, flow_run_id: str) -> list[dict[str, Any]]:
        from plait._store.history import get_logs

        return get_logs(self._checked(), flow_run_id)

    def _checked(self) -> Any:
        """The database after a flush and crash detection (what ``plait flow-run`` sees)."""
        from plait._recovery import detect_crashed_quietly

        self.flush()
        db = self.database()
        detect_crashed_quietly(db)
        return db


def reset_state() -> None:
    """Forget what the process keeps between calls, for a fresh start after the settings
    changed: the recorder (flushed first) and its journal, the database engines, the loaded
    plugins with the storage built from their schemes, cached notification rules, the
    connections to a plait server (blocks' and custom events'), what it knows of concurrency
    limits and plait's logging handlers.
    (docs/architecture.md lists every piece of module-level state.)"""
    from plait import events, notifications, plugins
    from plait._limits import reset_limits
    from plait._logging import reset_logging
    from plait._recorder import reset_recorder
    from plait._store.database import Database
    from plait.blocks import _remote

    reset_recorder()
    Database.dispose_all()
    plugins.reset_plugins()
    notifications.clear_cache()
    _remote.reset_sessions()
    events.reset_sessions()
    reset_limits()
    reset_logging()


POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test?connect_timeout=5"


@contextlib.contextmanager
def throwaway_postgres_database(prefix: str = "plait_test", admin_url: str | None = None) -> Iterator[str]:
    """A fresh PostgreSQL database for a test; yields its SQLAlchemy URL, drops it after.

    The server is ``PLAIT_TEST_POSTGRES_URL`` (a URL of an existing database to connect to
    for CREATE/DROP DATABASE), by default the local one on 127.0.0.1:5432. When it does not
    answer, a pytest test is skipped with the reason — or failed when
    ``PLAIT_REQUIRE_POSTGRES=1`` (CI) — and other callers get ``ConnectionError``.
    """
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    url = make_url(admin_url or os.environ.get("PLAIT_TEST_POSTGRES_URL") or POSTGRES_ADMIN_URL)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        admin.dispose()
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        _postgres_unavailable(f"PostgreSQL not reachable on {url.host}:{url.port or 5432}: {detail}")
    try:
        yield url.set(database=name, query={}).render_as_string(hide_password=False)
    finally:
        reset_state()  # plait's own pooled connections would block the drop
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def _postgres_unavailable(reason: str) -> None:
    if "pytest" in sys.modules:
        import pytest

        if os.environ.get("PLAIT_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    raise ConnectionError(reason)


@contextlib.contextmanager
def plait_test_harness(database_url: str | None = None, keep: bool = False) -> Iterator[PlaitTestHarness]:
    """Point plait at a fresh temporary home (and SQLite database unless one is given)."""
    saved = {name: os.environ.get(name) for name in _VARS}
    home = Path(tempfile.mkdtemp(prefix="plait-test-"))
    url = database_url or f"sqlite:///{home / 'plait.db'}"
    reset_state()
    os.environ["PLAIT_HOME"] = str(home)
    os.environ["PLAIT_DATABASE_URL"] = url
    os.environ.pop("PLAIT_RESULT_STORAGE", None)
    try:
        yield PlaitTestHarness(home=home, database_url=url)
    finally:
        reset_state()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
