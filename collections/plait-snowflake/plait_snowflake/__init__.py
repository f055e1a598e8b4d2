"""plait-snowflake: Snowflake in plait flows.

    from plait import flow
    from plait_snowflake import SnowflakeConnector, snowflake_query

    @flow
    def open_orders() -> list[dict]:
        connector = SnowflakeConnector.load("analytics")
        return snowflake_query("SELECT id, total FROM orders WHERE status = ?", connector, ["open"])

Blocks: ``SnowflakeCredentials``, ``SnowflakeConnector``.
Tasks: ``snowflake_query``, ``snowflake_multi_query``, ``snowflake_load_rows``,
``snowflake_load_dataframe``.
Flow: ``snowflake_copy_run_history`` (plait's run history into Snowflake tables). See README.md.
"""

from plait_snowflake.connector import SnowflakeConnector
from plait_snowflake.credentials import SnowflakeCredentials
from plait_snowflake.errors import PandasNotInstalledError, SnowflakeConnectionError, SnowflakeCredentialsError
from plait_snowflake.history import snowflake_copy_run_history
from plait_snowflake.tasks import (
    snowflake_load_dataframe,
    snowflake_load_rows,
    snowflake_multi_query,
    snowflake_query,
)

__version__ = "0.2.0"

__all__ = [
    "PandasNotInstalledError",
    "SnowflakeConnectionError",
    "SnowflakeConnector",
    "SnowflakeCredentials",
    "SnowflakeCredentialsError",
    "snowflake_copy_run_history",
    "snowflake_load_dataframe",
    "snowflake_load_rows",
    "snowflake_multi_query",
    "snowflake_query",
]
