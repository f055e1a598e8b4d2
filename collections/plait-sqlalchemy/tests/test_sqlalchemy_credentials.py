"""DatabaseCredentials: two ways to give them, URLs, secrets kept secret, test_connection."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import URL, Engine, text

from plait.blocks import block_to_dict
from plait_sqlalchemy import DatabaseConnectionError, DatabaseCredentials, DriverNotInstalledError
from plait_sqlalchemy.credentials import connection_error

PASSWORD = "hunter2-Xq9!secret"


def field_credentials(**changes: object) -> DatabaseCredentials:
    values: dict = dict(
        driver="postgresql+psycopg", host="127.0.0.1", port=5432, database="test",
        username="postgres", password=PASSWORD, query={"connect_timeout": "5"},
    )
    values.update(changes)
    return DatabaseCredentials(**values)


# -- the two styles -------------------------------------------------------------------------
def test_credentials_from_fields_build_the_url() -> None:
    credentials = field_credentials()
    url = credentials.get_url()
    assert isinstance(url, URL)
    assert (url.drivername, url.host, url.port, url.database, url.username) == (
        "postgresql+psycopg", "127.0.0.1", 5432, "test", "postgres",
    )
    assert url.password == PASSWORD
    assert dict(url.query) == {"connect_timeout": "5"}


def test_credentials_from_url() -> None:
    credentials = DatabaseCredentials(url=f"postgresql+psycopg://etl:{PASSWORD}@db.example.com:6543/analytics")
    url = credentials.get_url()
    assert (url.drivername, url.host, url.port, url.database, url.username, url.password) == (
        "postgresql+psycopg", "db.example.com", 6543, "analytics", "etl", PASSWORD,
    )
    assert credentials.rendered_url() == "postgresql+psycopg://etl:***@db.example.com:6543/analytics"


def test_sqlite_file_from_fields(tmp_path: Path) -> None:
    credentials = DatabaseCredentials(driver="sqlite", database=str(tmp_path / "x.db"))
    assert credentials.rendered_url() == f"sqlite:///{tmp_path / 'x.db'}"
    credentials.test_connection()


def test_both_styles_together_are_rejected_naming_the_fields_not_the_values() -> None:
    with pytest.raises(ValidationError) as caught:
        DatabaseCredentials(url=f"postgresql://u:{PASSWORD}@h/d", host="h", password="other-secret")
    message = str(caught.value)
    assert "either url or the separate fields" in message
    assert "host, password" in message
    assert PASSWORD not in message and "other-secret" not in message


def test_neither_style_is_rejected() -> None:
    with pytest.raises(ValidationError, match="driver is required"):
        DatabaseCredentials(host="localhost")


def test_an_unparseable_url_is_rejected_without_echoing_it() -> None:
    with pytest.raises(ValidationError) as caught:
        DatabaseCredentials(url=f"not a url with {PASSWORD}")
    assert "not a valid SQLAlchemy URL" in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_a_password_without_username_is_rejected() -> None:
    with pytest.raises(ValidationError, match="password is given without username"):
        DatabaseCredentials(driver="postgresql+psycopg", host="h", password=PASSWORD)


def test_a_heroku_style_postgres_url_gets_a_hint() -> None:
    with pytest.raises(DriverNotInstalledError, match="unknown driver 'postgres'.*'postgresql\\+psycopg'"):
        DatabaseCredentials(url=f"postgres://u:{PASSWORD}@h/d").get_engine()


def test_a_malformed_driver_is_rejected() -> None:
    with pytest.raises(ValidationError, match="dialect\\+driver"):
        DatabaseCredentials(driver="postgres ql", host="h")


# -- secrets stay secret -------------------------------------------------------------------
@pytest.mark.parametrize(
    "credentials",
    [field_credentials(), DatabaseCredentials(url=f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1/test")],
    ids=["fields", "url"],
)
def test_password_masked_in_repr_json_and_rendered_url(credentials: DatabaseCredentials) -> None:
    assert PASSWORD not in repr(credentials)
    assert PASSWORD not in str(credentials)
    assert PASSWORD not in credentials.model_dump_json()
    assert PASSWORD not in json.dumps(block_to_dict(credentials), default=str)
    assert PASSWORD not in credentials.rendered_url()
    assert "***" in credentials.rendered_url()
    assert PASSWORD not in str(credentials.get_url()) and PASSWORD not in repr(credentials.get_url())
    assert credentials.get_url().password == PASSWORD  # only on purpose


def test_password_like_query_values_are_masked_too() -> None:
    credentials = field_credentials(query={"sslpassword": "key-pass-123", "sslmode": "require"})
    rendered = credentials.rendered_url()
    assert "key-pass-123" not in rendered
    assert "sslmode=require" in rendered


def test_error_messages_never_contain_the_password() -> None:
    credentials = field_credentials()
    raw = RuntimeError(f"driver said: could not log in as postgres with {PASSWORD} at 127.0.0.1")
    error = connection_error(credentials, raw)
    assert isinstance(error, DatabaseConnectionError)
    assert PASSWORD not in str(error)
    assert "postgresql+psycopg://postgres:***@127.0.0.1:5432/test" in str(error)


def test_error_messages_mask_every_form_the_password_takes() -> None:
    """A driver may quote the password escaped, URL-encoded, or inside the URL as SQLAlchemy
    writes it; the one masking function (plait.mask_secrets) hides each form."""
    from urllib.parse import quote_plus

    password = "p@ss w\\rd'x"  # needs URL-encoding; a space, a backslash and a quote
    credentials = field_credentials(password=password, query={"sslpassword": "key-pass-123", "sslmode": "require"})
    rendered = credentials.get_url().render_as_string(hide_password=False)
    raw = RuntimeError(
        f"login failed for {password!r} ({quote_plus(password)}) via {rendered}; sslpassword key-pass-123 rejected"
    )
    message = str(connection_error(credentials, raw))
    assert message.startswith(
        "cannot connect to postgresql+psycopg://postgres:***@127.0.0.1:5432/test?sslmode=require&sslpassword=***: "
    ), message
    assert 'login failed for "***" (***) via ***; sslpassword *** rejected' in message
    assert "ss w" not in message and "rd'x" not in message and "key-pass" not in message


def test_a_short_password_is_masked_as_a_whole_word() -> None:
    error = connection_error(field_credentials(password="pw1"), RuntimeError("password pw1 refused; pw12 is other"))
    assert "password *** refused; pw12 is other" in str(error)


# -- engines --------------------------------------------------------------------------------
def test_get_engine_gives_a_working_engine(tmp_path: Path) -> None:
    engine = DatabaseCredentials(driver="sqlite", database=str(tmp_path / "e.db")).get_engine(echo=False)
    assert isinstance(engine, Engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 40 + 2")).scalar() == 42
    engine.dispose()


def test_get_engine_refuses_an_async_only_driver_with_advice() -> None:
    with pytest.raises(DatabaseConnectionError, match="async-only.*AsyncSqlAlchemyConnector"):
        field_credentials(driver="postgresql+asyncpg").get_engine()


def test_get_async_engine_switches_plain_sqlite_to_aiosqlite(tmp_path: Path) -> None:
    engine = DatabaseCredentials(driver="sqlite", database=str(tmp_path / "a.db")).get_async_engine()
    assert engine.dialect.driver == "aiosqlite"
    assert engine.dialect.is_async


# (driver, the module it imports, what to pip install): the test uses one that is not installed here
MISSING_CANDIDATES = [
    ("postgresql+pg8000", "pg8000", "pg8000"),
    ("mssql+pymssql", "pymssql", "pymssql"),
    ("mysql+mysqldb", "MySQLdb", "mysqlclient"),
    ("mysql+pymysql", "pymysql", "PyMySQL"),
    ("postgresql+psycopg2", "psycopg2", "psycopg2-binary"),
]


def test_a_missing_driver_package_says_what_to_install() -> None:
    import importlib.util

    missing = [c for c in MISSING_CANDIDATES if importlib.util.find_spec(c[1]) is None]
    if not missing:
        pytest.skip("every candidate driver package is installed; none is missing to test with")
    driver, _module, package = missing[0]
    with pytest.raises(DriverNotInstalledError) as caught:
        field_credentials(driver=driver).test_connection()
    assert f"pip install {package}" in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_an_unknown_driver_is_named() -> None:
    with pytest.raises(DriverNotInstalledError, match="unknown driver 'postgresql\\+nosuchdriver'"):
        field_credentials(driver="postgresql+nosuchdriver").get_engine()


# -- test_connection against real servers ------------------------------------------------------
@pytest.mark.parametrize("driver", ["postgresql+psycopg", "postgresql+asyncpg"])
def test_test_connection_fails_on_a_closed_port_naming_the_masked_url(driver: str) -> None:
    credentials = field_credentials(driver=driver, port=1, query={})
    with pytest.raises(DatabaseConnectionError) as caught:
        credentials.test_connection()
    message = str(caught.value)
    assert message.startswith(f"cannot connect to {driver}://postgres:***@127.0.0.1:1/test: ")
    assert "check that the server is running" in message
    assert PASSWORD not in message


def test_test_connection_fails_on_a_missing_sqlite_directory(tmp_path: Path) -> None:
    credentials = DatabaseCredentials(driver="sqlite", database=str(tmp_path / "missing" / "x.db"))
    with pytest.raises(DatabaseConnectionError, match="unable to open database file.*directory exists"):
        credentials.test_connection()


@pytest.mark.postgres
@pytest.mark.parametrize("driver", ["postgresql+psycopg", "postgresql+asyncpg"])
def test_test_connection_ok_on_postgres(postgres_credentials: Callable[[str], DatabaseCredentials], driver: str) -> None:
    assert postgres_credentials(driver).test_connection() is None


@pytest.mark.postgres
def test_test_connection_names_a_missing_database_and_an_unknown_user(postgres_database: str) -> None:
    missing = field_credentials(database=f"{postgres_database}_missing", password=None)
    with pytest.raises(DatabaseConnectionError, match="does not exist.*check database"):
        missing.test_connection()
    stranger = field_credentials(database=postgres_database, username="no_such_role_xyz")
    with pytest.raises(DatabaseConnectionError) as caught:
        stranger.test_connection()
    assert "no_such_role_xyz" in str(caught.value) and PASSWORD not in str(caught.value)


@pytest.mark.postgres
def test_test_connection_works_inside_a_running_event_loop(
    postgres_credentials: Callable[[str], DatabaseCredentials],
) -> None:
    import asyncio

    async def main() -> None:
        postgres_credentials("postgresql+asyncpg").test_connection()

    asyncio.run(main())
