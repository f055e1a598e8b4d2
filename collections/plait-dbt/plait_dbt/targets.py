"""Target configurations: where a dbt profile's target points, one block per warehouse.

Each renders the ``outputs.<target>`` mapping of a ``profiles.yml``:

- ``DuckDbTargetConfigs``: a DuckDB file (dbt-duckdb);
- ``PostgresTargetConfigs``: a PostgreSQL database, from plait-sqlalchemy's
  ``DatabaseCredentials`` (dbt-postgres);
- ``SnowflakeTargetConfigs``: Snowflake, from plait-snowflake's ``SnowflakeConnector``
  (dbt-snowflake; needs ``pip install 'plait-dbt[snowflake]'``).

Secrets (passwords, private keys, tokens) stay in their credentials blocks; they are only
written into the private ``profiles.yml`` of one dbt run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, model_validator

from plait.blocks import Block
from plait_dbt.exceptions import DbtProfileError
from plait_sqlalchemy import DatabaseCredentials

__all__ = [
    "DbtTargetConfigs",
    "DuckDbTargetConfigs",
    "PostgresTargetConfigs",
    "SnowflakeTargetConfigs",
    "SNOWFLAKE_AVAILABLE",
    "TARGET_CONFIG_CLASSES",
]

MASK = "**********"


def _reveal(value: Any) -> Any:
    """The clear value of a pydantic secret (bytes decoded), or ``value`` itself."""
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    if isinstance(value, bytes):
        value = value.decode()
    return value


class DbtTargetConfigs(Block):
    """Base of the target configurations: the adapter type, threads and extra settings.

    Subclasses set ``adapter_type`` and ``adapter_package`` and implement
    ``_target_fields``.
    """

    adapter_type: ClassVar[str] = ""
    adapter_package: ClassVar[str] = ""

    threads: int = Field(default=4, ge=1, description="How many dbt nodes run at the same time.")
    extra_config: dict[str, Any] = Field(
        default_factory=dict,
        description="More settings of the target, written into profiles.yml as they are (for example "
        "{'retries': 3}). Not secret: keep secrets in the credentials.",
    )

    def _target_fields(self, reveal_secrets: bool) -> dict[str, Any]:
        raise NotImplementedError

    def secret_values(self) -> list[str]:
        """The clear values of every secret this target writes into profiles.yml."""
        clear = self._target_fields(reveal_secrets=True)
        masked = self._target_fields(reveal_secrets=False)
        return [str(v) for k, v in clear.items() if masked.get(k) == MASK and v]

    def target_dict(self, reveal_secrets: bool = False) -> dict[str, Any]:
        """The target's mapping in profiles.yml; secrets shown as ``**********`` unless
        ``reveal_secrets``.

        Raises:
            DbtProfileError: ``extra_config`` repeats a setting the block already writes.
        """
        fields = self._target_fields(reveal_secrets)
        out: dict[str, Any] = {"type": self.adapter_type, **fields, "threads": self.threads}
        clash = sorted(set(self.extra_config) & set(out))
        if clash:
            raise DbtProfileError(
                f"{type(self).__name__}.extra_config repeats {', '.join(clash)}, which the block already "
                f"writes; set them through the block's own fields instead"
            )
        out.update(self.extra_config)
        return out

    def check_adapter(self) -> None:
        """Raise DbtProfileError unless the dbt adapter for this target is installed."""
        adapter = f"dbt.adapters.{self.adapter_type}"
        if importlib.util.find_spec("dbt") is None or importlib.util.find_spec(adapter) is None:
            raise DbtProfileError(
                f"{type(self).__name__} needs the dbt adapter {self.adapter_package!r}, which is not installed: "
                f"pip install {self.adapter_package}"
            )


class DuckDbTargetConfigs(DbtTargetConfigs):
    """A dbt target on DuckDB (dbt-duckdb): a database file, a schema and extensions.

    The file is created on the first run. Relative paths are relative to the directory
    the flow runs in; ``~`` is expanded.
    """

    block_type_slug: ClassVar[str] = "dbt-duckdb-target-configs"
    block_type_name: ClassVar[str] = "dbt DuckDB Target Configs"
    adapter_type: ClassVar[str] = "duckdb"
    adapter_package: ClassVar[str] = "dbt-duckdb"
    code_example: ClassVar[str] = """\
from plait_dbt import DbtCliProfile, DuckDbTargetConfigs

DbtCliProfile(
    name="jaffle", target="dev",
    target_configs=DuckDbTargetConfigs(path="warehouse.duckdb", schema_name="analytics", extensions=["httpfs"]),
).save("jaffle-duckdb")
"""

    path: str = Field(
        description="The DuckDB database: a file path (created if missing), ':memory:', or a MotherDuck 'md:' URL.",
        min_length=1,
    )
    schema_name: str = Field(default="main", min_length=1, description="Schema dbt builds into (dbt's `schema`).")
    extensions: list[str] = Field(
        default_factory=list, description="DuckDB extensions to install and load, e.g. ['httpfs', 'parquet']."
    )
    settings: dict[str, Any] = Field(
        default_factory=dict, description="DuckDB settings, e.g. {'memory_limit': '2GB', 'threads': 4}."
    )

    def _target_fields(self, reveal_secrets: bool) -> dict[str, Any]:
        path = self.path
        if not (path == ":memory:" or path.startswith("md:") or "://" in path):
            path = str(Path(path).expanduser())
        out: dict[str, Any] = {"path": path, "schema": self.schema_name}
        if self.extensions:
            out["extensions"] = list(self.extensions)
        if self.settings:
            out["settings"] = dict(self.settings)
        return out


# libpq settings dbt-postgres accepts, taken from DatabaseCredentials.query.
_POSTGRES_OPTIONS = {
    "sslmode": str,
    "sslcert": str,
    "sslkey": str,
    "sslrootcert": str,
    "connect_timeout": int,
    "application_name": str,
    "keepalives_idle": int,
    "search_path": str,
    "role": str,
    "retries": int,
}


class PostgresTargetConfigs(DbtTargetConfigs):
    """A dbt target on PostgreSQL (dbt-postgres), reusing a plait-sqlalchemy DatabaseCredentials.

    Host, port, database, user and password come from the credentials (separate fields or
    url); libpq options in ``credentials.query`` (sslmode, connect_timeout, role,
    search_path, ...) are passed on to dbt.
    """

    block_type_slug: ClassVar[str] = "dbt-postgres-target-configs"
    block_type_name: ClassVar[str] = "dbt Postgres Target Configs"
    adapter_type: ClassVar[str] = "postgres"
    adapter_package: ClassVar[str] = "dbt-postgres"
    code_example: ClassVar[str] = """\
from plait_dbt import DbtCliProfile, PostgresTargetConfigs
from plait_sqlalchemy import DatabaseCredentials

credentials = DatabaseCredentials.load("analytics")
DbtCliProfile(
    name="jaffle", target="prod",
    target_configs=PostgresTargetConfigs(credentials=credentials, schema_name="analytics", threads=8),
).save("jaffle-prod")
"""

    credentials: DatabaseCredentials = Field(
        description="The PostgreSQL server and login (a plait-sqlalchemy DatabaseCredentials block)."
    )
    schema_name: str = Field(default="public", min_length=1, description="Schema dbt builds into (dbt's `schema`).")

    @model_validator(mode="after")
    def _check_credentials(self) -> PostgresTargetConfigs:
        self._target_fields(reveal_secrets=False)  # raises naming the missing field
        return self

    def _target_fields(self, reveal_secrets: bool) -> dict[str, Any]:
        url = self.credentials.get_url()
        if url.get_backend_name() != "postgresql":
            raise DbtProfileError(
                f"credentials.driver is {url.drivername!r}, but dbt-postgres needs a PostgreSQL database: "
                "use a driver such as 'postgresql+psycopg'"
            )
        for name, value in (("host", url.host), ("username", url.username), ("database", url.database)):
            if not value:
                raise DbtProfileError(
                    f"credentials.{name} is required for a dbt-postgres target; set it on the DatabaseCredentials"
                )
        out: dict[str, Any] = {
            "host": url.host,
            "port": url.port or 5432,
            "user": url.username,
            "dbname": url.database,
            "schema": self.schema_name,
        }
        if url.password is not None:
            out["password"] = str(url.password) if reveal_secrets else MASK
        for key, value in url.query.items():
            kind = _POSTGRES_OPTIONS.get(key)
            if kind is None:
                known = ", ".join(sorted(_POSTGRES_OPTIONS))
                raise DbtProfileError(
                    f"credentials.query[{key!r}] is not a setting dbt-postgres knows; use one of: {known}"
                )
            text = value if isinstance(value, str) else value[-1]
            try:
                out[key] = kind(text)
            except ValueError:
                raise DbtProfileError(f"credentials.query[{key!r}] must be a whole number") from None
        return out


# -- Snowflake (optional: needs plait-snowflake) ----------------------------------------------
_SNOWFLAKE_IMPORT_ERROR = ""
try:
    from plait_snowflake import SnowflakeConnector
except Exception as exc:  # not installed, or broken: Snowflake targets explain how to fix it
    SnowflakeConnector = None  # type: ignore[assignment,misc]
    _SNOWFLAKE_IMPORT_ERROR = f"{type(exc).__name__}: {exc}"

SNOWFLAKE_AVAILABLE = SnowflakeConnector is not None
"""Whether plait-snowflake is installed, so that ``SnowflakeTargetConfigs`` is a real block."""

# SnowflakeCredentials.authenticator values that mean "pick from the secrets given".
_IMPLICIT_AUTHENTICATORS = {"", "snowflake", "snowflake_jwt"}

if SnowflakeConnector is not None:

    class SnowflakeTargetConfigs(DbtTargetConfigs):
        """A dbt target on Snowflake (dbt-snowflake), reusing a plait-snowflake SnowflakeConnector.

        Account, user, role and the secret (password, key pair, OAuth token or an SSO
        authenticator) come from ``connector.credentials``; warehouse, database and schema
        from the connector.
        """

        block_type_slug: ClassVar[str] = "dbt-snowflake-target-configs"
        block_type_name: ClassVar[str] = "dbt Snowflake Target Configs"
        adapter_type: ClassVar[str] = "snowflake"
        adapter_package: ClassVar[str] = "dbt-snowflake"
        code_example: ClassVar[str] = """\
from plait_dbt import DbtCliProfile, SnowflakeTargetConfigs
from plait_snowflake import SnowflakeConnector

DbtCliProfile(
    name="jaffle", target="prod",
    target_configs=SnowflakeTargetConfigs(connector=SnowflakeConnector.load("analytics"), threads=8),
).save("jaffle-snowflake")
"""

        connector: SnowflakeConnector = Field(  # type: ignore[valid-type]
            description="The Snowflake account, login, warehouse, database and schema (a plait-snowflake "
            "SnowflakeConnector block)."
        )

        @model_validator(mode="after")
        def _check_connector(self) -> SnowflakeTargetConfigs:
            self._target_fields(reveal_secrets=False)
            return self

        def _target_fields(self, reveal_secrets: bool) -> dict[str, Any]:
            connector = self.connector
            credentials = connector.credentials
            out: dict[str, Any] = {}
            for key, owner, name in (
                ("account", credentials, "account"),
                ("user", credentials, "user"),
                ("database", connector, "database"),
                ("schema", connector, "schema_name"),
            ):
                value = getattr(owner, name, None)
                if not value:
                    where = f"connector.credentials.{name}" if owner is credentials else f"connector.{name}"
                    raise DbtProfileError(f"{where} is required for a dbt-snowflake target; set it on the block")
                out[key] = value
            for key, owner, name in (
                ("role", credentials, "role"),
                ("warehouse", connector, "warehouse"),
                ("host", credentials, "host"),
                ("port", credentials, "port"),
                ("protocol", credentials, "protocol"),
                ("connect_timeout", credentials, "login_timeout"),
                ("query_tag", credentials, "query_tag"),
            ):
                value = getattr(owner, name, None)
                if value:
                    out[key] = value
            secret = {k: _reveal(getattr(credentials, k, None)) for k in
                      ("password", "private_key", "private_key_path", "private_key_passphrase", "token")}
            authenticator = str(getattr(credentials, "authenticator", None) or "").strip()
            for key in ("password", "private_key", "private_key_passphrase", "token"):
                if secret[key]:
                    out[key] = secret[key] if reveal_secrets else MASK
            if secret["private_key_path"]:
                out["private_key_path"] = str(Path(str(secret["private_key_path"])).expanduser())
            if authenticator.lower() not in _IMPLICIT_AUTHENTICATORS:
                out["authenticator"] = authenticator
            elif secret["token"] and not (secret["password"] or secret["private_key"] or secret["private_key_path"]):
                out["authenticator"] = "oauth"
            return out

else:

    class SnowflakeTargetConfigs:  # type: ignore[no-redef]
        """Stand-in while plait-snowflake is not installed: explains how to install it."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise DbtProfileError(
                "SnowflakeTargetConfigs needs the plait-snowflake collection (and dbt-snowflake), which "
                f"could not be imported ({_SNOWFLAKE_IMPORT_ERROR}): pip install 'plait-dbt[snowflake]'"
            )


TARGET_CONFIG_CLASSES: tuple[type[DbtTargetConfigs], ...] = (
    (DuckDbTargetConfigs, PostgresTargetConfigs, SnowflakeTargetConfigs)  # type: ignore[assignment]
    if SNOWFLAKE_AVAILABLE
    else (DuckDbTargetConfigs, PostgresTargetConfigs)
)
"""The target configuration block types a DbtCliProfile accepts in this installation."""
