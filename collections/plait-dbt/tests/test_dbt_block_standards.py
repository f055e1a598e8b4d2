"""Every block of the collection passes plait's block conformance suite."""

from __future__ import annotations

import pytest

from plait.blocks import Block
from plait.testing import BLOCK_CONFORMANCE_CHECKS, assert_block_conforms
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

EXAMPLES: list[tuple[type[Block], Block]] = [
    (DuckDbTargetConfigs, DUCKDB),
    (PostgresTargetConfigs, POSTGRES),
    (DbtCliProfile, POSTGRES_PROFILE),
    (DbtCoreOperation, DbtCoreOperation(command="build --fail-fast", project_dir="/srv/jaffle", profile=POSTGRES_PROFILE,
                                        exclude=["tag:nightly"], vars={"start": "2024-01-01"}, retry_failed_only=False)),
]
IDS = ["duckdb-target", "postgres-target", "profile-postgres", "operation"]

if SNOWFLAKE_AVAILABLE:
    from plait_dbt import SnowflakeTargetConfigs
    from plait_snowflake import SnowflakeConnector, SnowflakeCredentials

    SNOWFLAKE = SnowflakeTargetConfigs(connector=SnowflakeConnector(
        credentials=SnowflakeCredentials(account="myorg-myaccount", user="ETL", password="sf-s3cr3t"),
        warehouse="WH", database="ANALYTICS", schema_name="MARTS",
    ))
    EXAMPLES += [(SnowflakeTargetConfigs, SNOWFLAKE),
                 (DbtCliProfile, DbtCliProfile(name="jaffle", target="prod", target_configs=SNOWFLAKE))]
    IDS += ["snowflake-target", "profile-snowflake"]


@pytest.mark.parametrize(("cls", "example"), EXAMPLES, ids=IDS)
def test_block_conforms(cls: type[Block], example: Block) -> None:
    assert_block_conforms(cls, example)


@pytest.mark.parametrize("example", [
    DbtCliProfile(name="jaffle", target_configs=DUCKDB),
    DbtCliProfile(name="jaffle", existing_profiles_yml="~/.dbt/profiles.yml"),
], ids=["profile-duckdb", "profile-existing-file"])
def test_profiles_without_secrets_conform(example: DbtCliProfile) -> None:
    # nothing secret in them, so there is nothing for the masking check to look at
    checks = [name for name in BLOCK_CONFORMANCE_CHECKS if name != "secrets-masked"]
    assert_block_conforms(DbtCliProfile, example, checks=checks)


def test_every_registered_block_has_an_example() -> None:
    from plait_dbt.plugin import BLOCK_CLASSES

    assert set(BLOCK_CLASSES) == {cls for cls, _ in EXAMPLES}
