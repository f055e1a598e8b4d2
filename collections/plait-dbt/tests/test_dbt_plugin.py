"""Discovery through the plait.plugins entry point, the exported API, the import rules."""

from __future__ import annotations

import ast
from pathlib import Path

import plait.plugins
import plait_dbt
from plait_dbt import DbtCliProfile, DbtCoreOperation, DuckDbTargetConfigs, PostgresTargetConfigs
from plait_dbt.targets import SNOWFLAKE_AVAILABLE

PACKAGE = Path(plait_dbt.__file__).parent


def test_blocks_are_discovered_once_installed() -> None:
    plait.plugins.reset_plugins()
    classes = plait.plugins.block_classes()
    assert classes["dbt-cli-profile"] is DbtCliProfile
    assert classes["dbt-duckdb-target-configs"] is DuckDbTargetConfigs
    assert classes["dbt-postgres-target-configs"] is PostgresTargetConfigs
    assert classes["dbt-core-operation"] is DbtCoreOperation
    assert ("dbt-snowflake-target-configs" in classes) is SNOWFLAKE_AVAILABLE
    info = next(p for p in plait.plugins.plugins() if p.name == "plait_dbt")
    assert info.loaded and info.distribution == "plait-dbt"
    assert info.requires_plait == "<0.2,>=0.1"
    assert not [d for d in plait.plugins.diagnoses() if d.plugin == "plait_dbt"]


def test_the_dbt_task_is_registered() -> None:
    names = {t.name for owner, t in plait.plugins.registered_tasks() if owner == "plait_dbt"}
    assert names == {"dbt_run"}


def test_exported_members() -> None:
    assert sorted(plait_dbt.__all__) == [
        "DbtCliProfile", "DbtCommandError", "DbtCoreOperation", "DbtError", "DbtNode", "DbtNodeError",
        "DbtNodeResult", "DbtNodeSkipped", "DbtNodeTranslator", "DbtProfileError", "DbtProjectNotFound",
        "DbtRunResult", "DbtTargetConfigs", "DuckDbTargetConfigs", "PostgresTargetConfigs",
        "SnowflakeTargetConfigs", "dbt_run",
    ]
    for name in plait_dbt.__all__:
        assert getattr(plait_dbt, name) is not None


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
