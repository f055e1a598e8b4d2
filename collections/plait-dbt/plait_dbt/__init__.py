"""plait-dbt: dbt Core projects in plait flows, one task run per dbt node.

    from plait import flow
    from plait_dbt import DbtCliProfile, DuckDbTargetConfigs, dbt_run

    @flow
    def transform():
        profile = DbtCliProfile(name="jaffle", target_configs=DuckDbTargetConfigs(path="jaffle.duckdb"))
        dbt_run("build", project_dir="jaffle", profile=profile)

Blocks: ``DbtCliProfile``, ``DuckDbTargetConfigs``, ``PostgresTargetConfigs``,
``SnowflakeTargetConfigs`` (with plait-snowflake), ``DbtCoreOperation``.
Task: ``dbt_run``. Extension point: ``DbtNodeTranslator``. See README.md.
"""

from plait_dbt.artifacts import DbtNodeResult, DbtRunResult
from plait_dbt.exceptions import (
    DbtCommandError,
    DbtError,
    DbtNodeError,
    DbtNodeSkipped,
    DbtProfileError,
    DbtProjectNotFound,
    DbtReentryError,
)
from plait_dbt.operation import DbtCoreOperation
from plait_dbt.profiles import DbtCliProfile
from plait_dbt.targets import DbtTargetConfigs, DuckDbTargetConfigs, PostgresTargetConfigs, SnowflakeTargetConfigs
from plait_dbt.tasks import dbt_run
from plait_dbt.translator import DbtNode, DbtNodeTranslator

__version__ = "0.2.0"

__all__ = [
    "DbtCliProfile",
    "DbtCommandError",
    "DbtCoreOperation",
    "DbtError",
    "DbtNode",
    "DbtNodeError",
    "DbtNodeResult",
    "DbtNodeSkipped",
    "DbtReentryError",
    "DbtNodeTranslator",
    "DbtProfileError",
    "DbtProjectNotFound",
    "DbtRunResult",
    "DbtTargetConfigs",
    "DuckDbTargetConfigs",
    "PostgresTargetConfigs",
    "SnowflakeTargetConfigs",
    "dbt_run",
]
