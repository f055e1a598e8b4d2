"""plait's collection conventions for plait-dbt (plait.testing.CollectionSuite): discovery,
declarations, block conformance, the exported API, the import rules and the docs page's flow;
and what the suite does not cover: README.md shows the docs page's flow."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import plait_dbt
from plait.blocks import Block
from plait.testing import BLOCK_CONFORMANCE_CHECKS, CollectionSuite
from plait_dbt import DbtCliProfile, DbtCoreOperation, DuckDbTargetConfigs, PostgresTargetConfigs
from plait_dbt.targets import SNOWFLAKE_AVAILABLE
from plait_sqlalchemy import DatabaseCredentials

CREDENTIALS = DatabaseCredentials(
    driver="postgresql+psycopg", host="db.example.com", port=5432, database="analytics",
    username="etl", password="s3cr3t-pass", query={"sslmode": "require"},
)
POSTGRES = PostgresTargetConfigs(credentials=CREDENTIALS, schema_name="analytics", threads=8)
DUCKDB = DuckDbTargetConfigs(path="warehouse.duckdb", schema_name="analytics", extensions=["httpfs"],
                             settings={"memory_limit": "1GB"}, extra_config={"retries": 2})
POSTGRES_PROFILE = DbtCliProfile(name="jaffle", target="prod", target_configs=POSTGRES)
# nothing secret in these, so there is nothing for the masking check to look at
WITHOUT_SECRETS = (
    DbtCliProfile(name="jaffle", target_configs=DUCKDB),
    DbtCliProfile(name="jaffle", existing_profiles_yml="~/.dbt/profiles.yml"),
)

EXAMPLES: dict[type[Block], list[Block]] = {
    DuckDbTargetConfigs: [DUCKDB],
    PostgresTargetConfigs: [POSTGRES],
    DbtCliProfile: [POSTGRES_PROFILE, *WITHOUT_SECRETS],
    DbtCoreOperation: [DbtCoreOperation(
        command="build --fail-fast", project_dir="/srv/jaffle", profile=POSTGRES_PROFILE, exclude=["tag:nightly"],
        vars={"start": "2024-01-01"}, retry_failed_only=False,
    )],
}
if SNOWFLAKE_AVAILABLE:  # the Snowflake target is registered only with plait-snowflake installed
    from plait_dbt import SnowflakeTargetConfigs
    from plait_snowflake import SnowflakeConnector, SnowflakeCredentials

    SNOWFLAKE = SnowflakeTargetConfigs(connector=SnowflakeConnector(
        credentials=SnowflakeCredentials(account="myorg-myaccount", user="ETL", password="sf-s3cr3t"),
        warehouse="WH", database="ANALYTICS", schema_name="MARTS",
    ))
    EXAMPLES[SnowflakeTargetConfigs] = [SNOWFLAKE]
    EXAMPLES[DbtCliProfile].append(DbtCliProfile(name="jaffle", target="prod", target_configs=SNOWFLAKE))

COLLECTION = Path(__file__).resolve().parents[1]
DOCS_PAGE = COLLECTION.parents[1] / "docs" / "collections" / "plait-dbt.md"


class TestPlaitDbt(CollectionSuite):
    package = plait_dbt
    examples = EXAMPLES
    # README.md shows the same flow (test_the_readme_shows_the_docs_pages_flow): it runs once
    docs = ["../../docs/collections/plait-dbt.md" if DOCS_PAGE.exists() else "README.md"]
    tasks = ["dbt_run"]
    requires_plait = ">=0.1,<0.2"
    exports = [
        "DbtCliProfile", "DbtCommandError", "DbtCoreOperation", "DbtError", "DbtNode", "DbtNodeError",
        "DbtNodeResult", "DbtNodeSkipped", "DbtNodeTranslator", "DbtProfileError", "DbtProjectNotFound", "DbtReentryError",
        "DbtRunResult", "DbtTargetConfigs", "DuckDbTargetConfigs", "PostgresTargetConfigs",
        "SnowflakeTargetConfigs", "dbt_run",
    ]

    def conformance_checks(self, example: Block) -> list[str] | None:
        if any(example is plain for plain in WITHOUT_SECRETS):
            return [name for name in BLOCK_CONFORMANCE_CHECKS if name != "secrets-masked"]
        return None


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def test_the_readme_shows_the_docs_pages_flow() -> None:
    if not DOCS_PAGE.exists():
        pytest.skip("the docs page is not here (installed without the repository)")
    assert python_blocks(COLLECTION / "README.md") == python_blocks(DOCS_PAGE)
