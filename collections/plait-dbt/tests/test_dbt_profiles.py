"""Profiles: what profiles.yml each target renders, validation naming the field at fault, and
the private directory a run's profiles.yml lives in. No dbt command runs here."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from pydantic import ValidationError

from plait_dbt import (
    DbtCliProfile,
    DbtProfileError,
    DbtTargetConfigs,
    DuckDbTargetConfigs,
    PostgresTargetConfigs,
)
from plait_sqlalchemy import DatabaseCredentials


def pg_credentials(**changes: Any) -> DatabaseCredentials:
    fields = dict(driver="postgresql+psycopg", host="db.example.com", port=6543, database="analytics",
                  username="etl", password="s3cr3t-pass")
    fields.update(changes)
    return DatabaseCredentials(**{k: v for k, v in fields.items() if v is not None})


def test_duckdb_profile_renders_the_dbt_duckdb_target(tmp_path: Path) -> None:
    profile = DbtCliProfile(
        name="jaffle", target="dev",
        target_configs=DuckDbTargetConfigs(path="~/w.duckdb", schema_name="analytics", threads=2,
                                           extensions=["httpfs"], settings={"memory_limit": "1GB"},
                                           extra_config={"filesystems": []}),
    )
    assert yaml.safe_load(profile.profiles_yml()) == {
        "jaffle": {"target": "dev", "outputs": {"dev": {
            "type": "duckdb", "path": str(Path("~/w.duckdb").expanduser()), "schema": "analytics",
            "extensions": ["httpfs"], "settings": {"memory_limit": "1GB"}, "threads": 2, "filesystems": [],
        }}}
    }
    assert profile.secret_values() == []


def test_postgres_profile_renders_credentials_and_masks_the_password() -> None:
    credentials = pg_credentials(query={"sslmode": "require", "connect_timeout": "10"})
    profile = DbtCliProfile(name="jaffle", target="prod",
                            target_configs=PostgresTargetConfigs(credentials=credentials, schema_name="marts"))
    expected = {"type": "postgres", "host": "db.example.com", "port": 6543, "user": "etl", "dbname": "analytics",
                "schema": "marts", "password": "s3cr3t-pass", "sslmode": "require", "connect_timeout": 10, "threads": 4}
    assert yaml.safe_load(profile.profiles_yml(reveal_secrets=True))["jaffle"]["outputs"]["prod"] == expected
    masked = profile.profiles_yml()
    assert "s3cr3t-pass" not in masked and "password: '**********'" in masked
    assert profile.secret_values() == ["s3cr3t-pass"]
    assert "s3cr3t-pass" not in repr(profile)

    from_url = PostgresTargetConfigs(credentials=DatabaseCredentials(url="postgresql://etl:pw%40x@db:5433/wh"))
    rendered = from_url.target_dict(reveal_secrets=True)
    assert (rendered["host"], rendered["port"], rendered["user"], rendered["password"], rendered["dbname"]) == (
        "db", 5433, "etl", "pw@x", "wh")


@pytest.mark.parametrize(("changes", "field"), [
    ({"host": None}, "credentials.host"),
    ({"username": None, "password": None}, "credentials.username"),
    ({"database": None}, "credentials.database"),
])
def test_postgres_target_names_the_missing_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match=f"{field} is required for a dbt-postgres target"):
        PostgresTargetConfigs(credentials=pg_credentials(**changes))


def test_postgres_target_refuses_other_databases_and_unknown_options() -> None:
    with pytest.raises(ValidationError, match="credentials.driver is 'sqlite'"):
        PostgresTargetConfigs(credentials=DatabaseCredentials(driver="sqlite", database="x.db"))
    with pytest.raises(ValidationError, match=r"credentials.query\['gssencmode'\] is not a setting dbt-postgres knows"):
        PostgresTargetConfigs(credentials=pg_credentials(query={"gssencmode": "disable"}))


def test_profile_names_what_is_missing() -> None:
    with pytest.raises(ValidationError, match="target_configs is required .*DuckDbTargetConfigs") as missing:
        DbtCliProfile(name="jaffle")
    assert missing.value.errors()[0]["type"] == "value_error"
    with pytest.raises(ValidationError, match=r"name\n  Field required"):
        DbtCliProfile(target_configs=DuckDbTargetConfigs(path="x.duckdb"))  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match=r"target_configs\.DuckDbTargetConfigs\.path\n  Field required"):
        DbtCliProfile(name="jaffle", target_configs={"schema_name": "main"})
    with pytest.raises(ValidationError, match="either target_configs or existing_profiles_yml, not both"):
        DbtCliProfile(name="j", target_configs=DuckDbTargetConfigs(path="x"), existing_profiles_yml="p.yml")


def test_extra_config_may_not_repeat_a_field() -> None:
    profile = DbtCliProfile(name="j", target_configs=DuckDbTargetConfigs(path="x", extra_config={"schema": "other"}))
    with pytest.raises(DbtProfileError, match="extra_config repeats schema"):
        profile.profiles_yml()


def test_jinja_in_a_secret_is_kept_literal() -> None:
    profile = DbtCliProfile(name="j", target_configs=PostgresTargetConfigs(credentials=pg_credentials(password="a{{b}}c")))
    output = yaml.safe_load(profile.profiles_yml(reveal_secrets=True))["j"]["outputs"]["dev"]
    assert output["password"] == "{% raw %}a{{b}}c{% endraw %}"


def test_generated_profiles_yml_lives_in_a_private_directory_removed_afterwards() -> None:
    profile = DbtCliProfile(name="j", target_configs=PostgresTargetConfigs(credentials=pg_credentials()))
    with profile.profiles_dir() as directory:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert stat.S_IMODE((directory / "profiles.yml").stat().st_mode) == 0o600
        assert "s3cr3t-pass" in (directory / "profiles.yml").read_text()
    assert not directory.exists()
    with pytest.raises(RuntimeError), profile.profiles_dir() as directory:
        raise RuntimeError("dbt blew up")
    assert not directory.exists()


def test_existing_profiles_yml(tmp_path: Path) -> None:
    text = yaml.safe_dump({"jaffle": {"target": "dev", "outputs": {"dev": {"type": "duckdb", "path": "x"}}}})
    (tmp_path / "profiles.yml").write_text(text)
    (tmp_path / "team.yml").write_text(text)
    for given in (tmp_path, tmp_path / "profiles.yml"):
        with DbtCliProfile(name="jaffle", existing_profiles_yml=str(given)).profiles_dir() as directory:
            assert directory == tmp_path
    with DbtCliProfile(name="jaffle", existing_profiles_yml=str(tmp_path / "team.yml")).profiles_dir() as directory:
        assert (directory / "profiles.yml").read_text() == text and directory != tmp_path
    assert not directory.exists() and (tmp_path / "team.yml").exists()
    with pytest.raises(DbtProfileError, match=r"does not define the profile 'shop' \(it defines: jaffle\)"):
        with DbtCliProfile(name="shop", existing_profiles_yml=str(tmp_path)).profiles_dir():
            pass
    with pytest.raises(DbtProfileError, match="existing_profiles_yml: there is no file"):
        with DbtCliProfile(name="shop", existing_profiles_yml=str(tmp_path / "nope.yml")).profiles_dir():
            pass


def test_a_missing_adapter_says_what_to_install() -> None:
    class ClickHouseTargetConfigs(DbtTargetConfigs):
        """A target for an adapter that is not installed."""

        adapter_type: ClassVar[str] = "clickhouse_not_installed"
        adapter_package: ClassVar[str] = "dbt-clickhouse"

        def _target_fields(self, reveal_secrets: bool) -> dict[str, Any]:
            return {"host": "localhost"}

    with pytest.raises(DbtProfileError, match="pip install dbt-clickhouse"):
        ClickHouseTargetConfigs().check_adapter()


# -- Snowflake: rendering only (no live connection) -----------------------------------------------
plait_snowflake = pytest.importorskip("plait_snowflake", reason="plait-snowflake is not installed")


def snowflake_profile(**credentials: Any) -> DbtCliProfile:
    from plait_dbt import SnowflakeTargetConfigs

    connector = plait_snowflake.SnowflakeConnector(
        credentials=plait_snowflake.SnowflakeCredentials(account="myorg-myaccount", user="ETL", role="TRANSFORMER",
                                                         **credentials),
        warehouse="TRANSFORMING", database="ANALYTICS", schema_name="MARTS",
    )
    return DbtCliProfile(name="jaffle", target="prod", target_configs=SnowflakeTargetConfigs(connector=connector, threads=8))


def rendered(profile: DbtCliProfile) -> dict[str, Any]:
    return yaml.safe_load(profile.profiles_yml(reveal_secrets=True))["jaffle"]["outputs"]["prod"]


BASE = {"type": "snowflake", "account": "myorg-myaccount", "user": "ETL", "role": "TRANSFORMER",
        "warehouse": "TRANSFORMING", "database": "ANALYTICS", "schema": "MARTS", "threads": 8}


def test_snowflake_password_profile() -> None:
    profile = snowflake_profile(password="sf-pass-123")
    assert rendered(profile) == {**BASE, "password": "sf-pass-123"}
    assert "sf-pass-123" not in profile.profiles_yml() and profile.secret_values() == ["sf-pass-123"]


def test_snowflake_key_pair_profiles(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.BestAvailableEncryption(b"key-pass")).decode()
    inline = snowflake_profile(private_key=pem, private_key_passphrase="key-pass")
    assert rendered(inline) == {**BASE, "private_key": pem, "private_key_passphrase": "key-pass"}
    assert "PRIVATE KEY" not in inline.profiles_yml()
    assert set(inline.secret_values()) == {pem, "key-pass"}

    (tmp_path / "rsa_key.p8").write_text(pem)
    from_file = snowflake_profile(private_key_path=str(tmp_path / "rsa_key.p8"), private_key_passphrase="key-pass")
    assert rendered(from_file) == {**BASE, "private_key_path": str(tmp_path / "rsa_key.p8"),
                                   "private_key_passphrase": "key-pass"}


def test_snowflake_oauth_and_sso_profiles() -> None:
    assert rendered(snowflake_profile(token="oauth-token-1")) == {**BASE, "token": "oauth-token-1", "authenticator": "oauth"}
    assert rendered(snowflake_profile(authenticator="externalbrowser")) == {**BASE, "authenticator": "externalbrowser"}


def test_snowflake_target_names_the_missing_field() -> None:
    from plait_dbt import SnowflakeTargetConfigs

    connector = plait_snowflake.SnowflakeConnector(
        credentials=plait_snowflake.SnowflakeCredentials(account="myorg-myaccount", user="ETL", password="pw-1234"),
        warehouse="WH", schema_name="MARTS",
    )
    with pytest.raises(ValidationError, match="connector.database is required for a dbt-snowflake target"):
        SnowflakeTargetConfigs(connector=connector)
