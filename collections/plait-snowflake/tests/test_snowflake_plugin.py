"""Discovery through the plait.plugins entry point, the exported API, the import rules."""

from __future__ import annotations

import ast
from pathlib import Path

import plait.plugins
import plait_snowflake
from plait.blocks import get_block_class
from plait_snowflake import SnowflakeConnector, SnowflakeCredentials
from plait_snowflake.tasks import TASKS

PACKAGE = Path(plait_snowflake.__file__).parent


def test_blocks_are_discovered_once_installed() -> None:
    plait.plugins.reset_plugins()
    classes = plait.plugins.block_classes()
    assert classes["snowflake-credentials"] is SnowflakeCredentials
    assert classes["snowflake-connector"] is SnowflakeConnector
    assert get_block_class("snowflake-connector") is SnowflakeConnector
    assert "credentials" in SnowflakeCredentials.capabilities
    info = next(p for p in plait.plugins.plugins() if p.name == "plait_snowflake")
    assert info.loaded and info.distribution == "plait-snowflake"
    assert info.requires_plait == "<0.2,>=0.1"
    assert not [d for d in plait.plugins.diagnoses() if d.plugin == "plait_snowflake"]


def test_tasks_are_registered() -> None:
    ours = [t for owner, t in plait.plugins.registered_tasks() if owner == "plait_snowflake"]
    assert ours == list(TASKS)
    assert {t.name for t in ours} == {
        "snowflake_query", "snowflake_multi_query", "snowflake_load_rows", "snowflake_load_dataframe",
    }


def test_exported_members() -> None:
    assert sorted(plait_snowflake.__all__) == [
        "PandasNotInstalledError", "SnowflakeConnectionError", "SnowflakeConnector", "SnowflakeCredentials",
        "SnowflakeCredentialsError", "snowflake_load_dataframe", "snowflake_load_rows", "snowflake_multi_query",
        "snowflake_query",
    ]
    for name in plait_snowflake.__all__:
        assert getattr(plait_snowflake, name) is not None


def test_only_plaits_public_api_is_imported_and_pandas_stays_optional() -> None:
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
        top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        for node in top_level:
            names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            assert not any(n and n.split(".")[0] == "pandas" for n in names), f"{path.name} imports pandas at load"


def test_modules_stay_small_and_typed() -> None:
    assert (PACKAGE / "py.typed").exists()
    for path in PACKAGE.glob("*.py"):
        assert len(path.read_text().splitlines()) < 500, path.name
