"""Discovery through the plait.plugins entry point, the exported API, the import rules."""

from __future__ import annotations

import ast
from pathlib import Path

import plait.plugins
import plait_sqlalchemy
from plait_sqlalchemy import AsyncSqlAlchemyConnector, DatabaseCredentials, SqlAlchemyConnector

PACKAGE = Path(plait_sqlalchemy.__file__).parent


def test_blocks_are_discovered_once_installed() -> None:
    plait.plugins.reset_plugins()
    classes = plait.plugins.block_classes()
    assert classes["database-credentials"] is DatabaseCredentials
    assert classes["sqlalchemy-connector"] is SqlAlchemyConnector
    assert classes["async-sqlalchemy-connector"] is AsyncSqlAlchemyConnector
    info = next(p for p in plait.plugins.plugins() if p.name == "plait_sqlalchemy")
    assert info.loaded and info.distribution == "plait-sqlalchemy"
    assert info.requires_plait == "<0.2,>=0.1"
    assert not [d for d in plait.plugins.diagnoses() if d.plugin == "plait_sqlalchemy"]


def test_tasks_are_registered() -> None:
    names = {t.name for owner, t in plait.plugins.registered_tasks() if owner == "plait_sqlalchemy"}
    assert names == {
        "sqlalchemy_query", "sqlalchemy_execute", "sqlalchemy_execute_many",
        "sqlalchemy_async_query", "sqlalchemy_async_execute", "sqlalchemy_async_execute_many",
    }


def test_exported_members() -> None:
    assert sorted(plait_sqlalchemy.__all__) == [
        "AsyncSqlAlchemyConnector", "DatabaseConnectionError", "DatabaseCredentials", "DriverNotInstalledError",
        "SqlAlchemyConnector", "async_execute", "async_execute_many", "async_query", "execute", "execute_many",
        "query",
    ]
    for name in plait_sqlalchemy.__all__:
        assert getattr(plait_sqlalchemy, name) is not None


def test_only_plaits_public_api_is_imported() -> None:
    public = {"plait", "plait.blocks", "plait.hookspecs", "plait.testing", "plait.results", "plait.exceptions",
              "plait.plugins"}
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            modules = []
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            for module in modules:
                if module == "plait" or module.startswith("plait."):
                    assert module in public, f"{path.name} imports {module}, which is not plait's public API"


def test_modules_stay_small_and_typed() -> None:
    assert (PACKAGE / "py.typed").exists()
    for path in PACKAGE.glob("*.py"):
        assert len(path.read_text().splitlines()) < 500, path.name
