"""``DatabaseCredentials``: where a database is and how to log in, as a SQLAlchemy URL.

Give either the separate fields (``driver``, ``host``, ``port``, ``database``, ``username``,
``password``, ``query``) or one ``url``; never both. The password (and the whole ``url``) is
secret: it is encrypted when saved, masked in ``repr``, JSON output and every error message
this module raises, and only ``get_url()`` holds it in clear (as a ``sqlalchemy.URL``, whose
own ``str`` and ``repr`` mask it too).
"""

from __future__ import annotations

import asyncio
import re
import threading
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator
from sqlalchemy import URL, literal, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from plait import PlaitError, mask_secrets, mask_url
from plait.blocks import CredentialsBlock

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["DatabaseCredentials", "DatabaseConnectionError", "DriverNotInstalledError"]


class DatabaseConnectionError(PlaitError):
    """A database could not be reached or logged into.

    The message names the URL with its password masked, the reason the driver gave, and what
    to check next; it never contains a secret.
    """


class DriverNotInstalledError(DatabaseConnectionError):
    """The Python package behind a driver (``psycopg``, ``asyncpg``, ``aiosqlite``…) is missing;
    the message says what to ``pip install``."""


# Python module a DB-API driver imports -> what to pip install for it.
_PACKAGES = {
    "psycopg": "psycopg[binary]",
    "psycopg2": "psycopg2-binary",
    "asyncpg": "asyncpg",
    "pg8000": "pg8000",
    "aiosqlite": "aiosqlite",
    "pymysql": "PyMySQL",
    "MySQLdb": "mysqlclient",
    "aiomysql": "aiomysql",
    "asyncmy": "asyncmy",
    "pyodbc": "pyodbc",
    "pymssql": "pymssql",
    "oracledb": "oracledb",
    "cx_Oracle": "oracledb (cx_Oracle's successor; use the 'oracle+oracledb' driver)",
    "greenlet": "'sqlalchemy[asyncio]'",
}

# Drivers that only work one way, and their twin for the other (same database file).
_SYNC_TWIN = {"sqlite+aiosqlite": "sqlite+pysqlite"}
_ASYNC_TWIN = {"sqlite": "sqlite+aiosqlite", "sqlite+pysqlite": "sqlite+aiosqlite"}

_DRIVER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\+[A-Za-z][A-Za-z0-9_]*)?$")
_FIELD_STYLE = ("driver", "host", "port", "database", "username", "password", "query")

# What a failure's text says -> what to check next.
_HINTS = (
    (("password authentication failed", "access denied", "authentication failed", "login failed"),
     "check username and password"),
    (("role", "does not exist"), "check username: no such user on the server"),
    (("database", "does not exist"), "check database: it does not exist on the server (create it first)"),
    (("unknown database",), "check database: it does not exist on the server (create it first)"),
    (("unable to open database file",), "check that the SQLite file's directory exists and is writable"),
    (("resolve host",), "check host: the name does not resolve"),
    (("name or service not known",), "check host: the name does not resolve"),
    (("nodename nor servname",), "check host: the name does not resolve"),
    (("connect call failed",), "check that the server is running and accepts connections at that host and port"),
    (("refused",), "check that the server is running and accepts connections at that host and port"),
    (("timeout",), "check that the host is reachable (firewall, VPN) and the port is right"),
    (("timed out",), "check that the host is reachable (firewall, VPN) and the port is right"),
)


class DatabaseCredentials(CredentialsBlock):
    """How to reach a SQL database through SQLAlchemy: a driver, host, port, database, login.

    Use the separate fields, or a single ``url`` (``postgresql+psycopg://user:pw@host/db``),
    not both. The ``driver`` is a SQLAlchemy dialect plus DB-API driver, for example
    ``postgresql+psycopg``, ``postgresql+asyncpg``, ``sqlite`` or ``mysql+pymysql``; its
    Python package must be installed. For SQLite, ``database`` is the file's path.
    """

    model_config = ConfigDict(hide_input_in_errors=True)  # never echo a URL holding a password

    block_type_slug: ClassVar[str] = "database-credentials"
    block_type_name: ClassVar[str] = "Database Credentials"
    code_example: ClassVar[str] = """\
from plait_sqlalchemy import DatabaseCredentials

DatabaseCredentials(
    driver="postgresql+psycopg", host="db.example.com", port=5432,
    database="analytics", username="etl", password="...",
).save("analytics")

credentials = DatabaseCredentials.load("analytics")
credentials.test_connection()
engine = credentials.get_engine()
"""

    driver: str | None = Field(
        default=None,
        description="SQLAlchemy dialect and driver, e.g. 'postgresql+psycopg', 'postgresql+asyncpg', "
        "'sqlite', 'mysql+pymysql'. Required unless url is given.",
        examples=["postgresql+psycopg", "sqlite"],
    )
    host: str | None = Field(default=None, description="Server host name or IP address.")
    port: int | None = Field(default=None, ge=1, le=65535, description="Server port (the driver's default if empty).")
    database: str | None = Field(default=None, description="Database name; for SQLite, the path of the file.")
    username: str | None = Field(default=None, description="User to log in as.")
    password: SecretStr | None = Field(default=None, description="Password of the user (secret).")
    query: dict[str, str] = Field(
        default_factory=dict,
        description="Extra URL query parameters passed to the driver, e.g. {'sslmode': 'require', "
        "'connect_timeout': '10'}.",
    )
    url: SecretStr | None = Field(
        default=None,
        description="The whole SQLAlchemy URL (driver://user:password@host:port/database?options), "
        "secret as a whole; instead of the separate fields.",
    )

    @field_validator("driver")
    @classmethod
    def _check_driver(cls, value: str | None) -> str | None:
        if value is not None and not _DRIVER.match(value):
            raise ValueError("driver must look like 'dialect' or 'dialect+driver', e.g. 'postgresql+psycopg'")
        return value

    @model_validator(mode="after")
    def _one_style(self) -> DatabaseCredentials:
        if self.url is not None:
            mixed = [name for name in _FIELD_STYLE if getattr(self, name) not in (None, {})]
            if mixed:
                raise ValueError(
                    f"give either url or the separate fields, not both: url was given together with "
                    f"{', '.join(mixed)}; put everything in url, or leave url empty"
                )
            try:
                make_url(self.url.get_secret_value())
            except ArgumentError:
                raise ValueError(
                    "url is not a valid SQLAlchemy URL; expected driver://user:password@host:port/database, "
                    "e.g. postgresql+psycopg://etl:...@db.example.com:5432/analytics"
                ) from None
        elif self.password is not None and not self.username:
            raise ValueError("password is given without username; set username too")
        elif self.driver is None:
            raise ValueError(
                "driver is required (e.g. 'postgresql+psycopg' or 'sqlite') together with host, port, "
                "database, username and password; or give the whole url instead"
            )
        return self

    # -- URLs ----------------------------------------------------------------------------
    def get_url(self) -> URL:
        """The SQLAlchemy URL, password included (``str()`` and ``repr()`` of it mask it)."""
        if self.url is not None:
            return make_url(self.url.get_secret_value())
        return URL.create(
            drivername=self.driver or "",
            username=self.username,
            password=self.password.get_secret_value() if self.password is not None else None,
            host=self.host,
            port=self.port,
            database=self.database,
            query=dict(self.query),
        )

    def rendered_url(self) -> str:
        """The URL as text with the password (and password-like query values) as ``***``."""
        return _masked(self.get_url())

    # -- engines -------------------------------------------------------------------------
    def get_engine(self, **kwargs: Any) -> Engine:
        """A new synchronous ``sqlalchemy.Engine`` (``kwargs`` go to ``create_engine``).

        An async-only SQLite driver (``sqlite+aiosqlite``) is replaced by its sync twin.

        Raises:
            DriverNotInstalledError: The driver's package is missing (says what to install).
            DatabaseConnectionError: The driver is async-only or unknown.
        """
        from sqlalchemy import create_engine

        url = self.get_url()
        if url.drivername in _SYNC_TWIN:
            url = url.set(drivername=_SYNC_TWIN[url.drivername])
        dialect = self._dialect(url)
        if getattr(dialect, "is_async", False):
            raise DatabaseConnectionError(
                f"driver {url.drivername!r} of {_masked(url)} is async-only: use "
                "AsyncSqlAlchemyConnector or get_async_engine(), or a driver that works both ways "
                "such as 'postgresql+psycopg'"
            )
        try:
            return create_engine(url, **kwargs)
        except Exception as exc:
            raise _engine_error(exc, url) from None

    def get_async_engine(self, **kwargs: Any) -> AsyncEngine:
        """A new ``sqlalchemy.ext.asyncio.AsyncEngine`` (``kwargs`` go to ``create_async_engine``).

        Plain SQLite (``sqlite``, ``sqlite+pysqlite``) becomes ``sqlite+aiosqlite``;
        ``postgresql+psycopg`` uses psycopg's async mode.

        Raises:
            DriverNotInstalledError: The driver's package is missing (says what to install).
            DatabaseConnectionError: The driver cannot be used asynchronously, or is unknown.
        """
        url = self.get_url()
        if url.drivername in _ASYNC_TWIN:
            url = url.set(drivername=_ASYNC_TWIN[url.drivername])
        if not getattr(self._dialect(url, asynchronous=True), "is_async", False):
            raise DatabaseConnectionError(
                f"driver {url.drivername!r} of {_masked(url)} is not async: use an async "
                "driver such as 'postgresql+asyncpg', 'postgresql+psycopg' or 'sqlite+aiosqlite'"
            )
        try:
            from sqlalchemy.ext.asyncio import create_async_engine

            return create_async_engine(url, **kwargs)
        except Exception as exc:
            raise _engine_error(exc, url) from None

    def is_async_driver(self) -> bool:
        """True when the driver only works asynchronously (e.g. ``postgresql+asyncpg``)."""
        url = self.get_url()
        if url.drivername in _SYNC_TWIN:
            return True
        return bool(getattr(self._dialect(url), "is_async", False))

    def _dialect(self, url: URL, asynchronous: bool = False) -> Any:
        """The dialect class (the DB-API package is not imported yet)."""
        try:
            return url.get_dialect(_is_async=asynchronous)
        except Exception as exc:
            raise _engine_error(exc, url) from None

    # -- checking ------------------------------------------------------------------------
    def test_connection(self) -> None:
        """Connect and run ``SELECT 1``; return None, or raise naming the masked URL and why.

        Async-only drivers are tested on a private event loop in a worker thread, so this
        works inside and outside a running loop.

        Raises:
            DriverNotInstalledError: The driver's package is missing.
            DatabaseConnectionError: The server is unreachable, the login is refused, the
                database does not exist…
        """
        if self.is_async_driver():
            _run_in_thread(self._test_async)
            return
        engine = self.get_engine()
        try:
            with engine.connect() as connection:
                connection.execute(select(literal(1))).scalar()
        except Exception as exc:
            raise connection_error(self, exc) from None
        finally:
            engine.dispose()

    async def _test_async(self) -> None:
        engine = self.get_async_engine()
        try:
            async with engine.connect() as connection:
                await connection.execute(select(literal(1)))
        except Exception as exc:
            raise connection_error(self, exc) from None
        finally:
            await engine.dispose()


# -- helpers (shared with the connectors) ----------------------------------------------------
def _masked(url: URL) -> str:
    """``url`` as text with its password and password-like query values as ``***`` (plait's
    ``mask_url``: scheme, user, host, port and database stay)."""
    return mask_url(url.render_as_string(hide_password=False))


def _url_secrets(url: URL) -> list[str]:
    """The URL as SQLAlchemy writes it, when it holds a secret (a password, a ``sslpassword=``
    query value): masking it hides those in every form a driver's message may quote."""
    rendered = url.render_as_string(hide_password=False)
    return [rendered] if mask_url(rendered) != rendered else []


def _reason(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    text = " ".join(line if line[-1] in ".:;!?" or line is lines[-1] else f"{line}." for line in lines)
    text = re.sub(r"\s*\(Background on this error at: [^)]*\)", "", text)
    return text or type(original).__name__


def _hint(reason: str) -> str:
    lowered = reason.lower()
    for words, hint in _HINTS:
        if all(word in lowered for word in words):
            return hint
    return ""


def connection_error(credentials: DatabaseCredentials, exc: BaseException) -> DatabaseConnectionError:
    """The error to raise when connecting with ``credentials`` failed with ``exc``."""
    if isinstance(exc, DatabaseConnectionError):
        return exc
    url = credentials.get_url()
    if isinstance(exc, ImportError):
        return _engine_error(exc, url)
    reason = mask_secrets(_reason(exc), extra=[credentials, *_url_secrets(url)])
    hint = _hint(reason)
    message = f"cannot connect to {_masked(url)}: {reason}"
    return DatabaseConnectionError(f"{message}; {hint}" if hint else message)


def _engine_error(exc: BaseException, url: URL) -> DatabaseConnectionError:
    rendered = _masked(url)
    if isinstance(exc, ImportError):
        module = (getattr(exc, "name", None) or "").split(".")[0]
        if not module and "greenlet" in str(exc):
            module = "greenlet"
        package = _PACKAGES.get(module, module or "the driver's package")
        return DriverNotInstalledError(
            f"driver {url.drivername!r} for {rendered} needs the Python package {module or '?'!r}, "
            f"which is not installed: pip install {package}"
        )
    if isinstance(exc, NoSuchModuleError):
        known = "'postgresql+psycopg'" if url.drivername.startswith("postgres") else "'postgresql+psycopg', 'sqlite'"
        return DriverNotInstalledError(
            f"unknown driver {url.drivername!r} for {rendered}: SQLAlchemy has no such dialect; "
            f"fix the driver (e.g. {known}) or install the package that provides it"
        )
    reason = mask_secrets(_reason(exc), extra=_url_secrets(url))
    return DatabaseConnectionError(f"cannot create an engine for {rendered}: {reason}")


def _run_in_thread(make_coroutine: Any) -> Any:
    """Run ``make_coroutine()`` to completion on a fresh event loop in a worker thread."""
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["value"] = asyncio.run(make_coroutine())
        except BaseException as exc:  # handed back to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=work, name="plait-sqlalchemy-check", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")
