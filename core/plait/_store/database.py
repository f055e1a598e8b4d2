"""Opening the run-history database: one Engine per URL, migrated on first use.

``Database.open(url)`` is cheap after the first call for a URL in a process. The first call
creates the engine, checks the schema revision with one query and only imports Alembic when
the database is behind (a fresh file, or an older plait wrote it). Every failure to reach,
create or write the database becomes a ``DatabaseError`` whose message names the URL with
its password masked and says what to check.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from plait._masking import mask
from plait.exceptions import DatabaseError
from plait.settings import get_settings, mask_url

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "Database",
    "get_database",
    "database_error",
    "absolute_database_url",
    "alembic_config",
    "HEAD_REVISION",
    "MIGRATIONS_DIR",
]

# The newest revision in migrations/versions. Kept here so the fast path needs no Alembic
# import; tests/test_store.py checks it against the scripts.
HEAD_REVISION = "0012"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")

_HINT = (
    "Check PLAIT_DATABASE_URL (or PLAIT_HOME for the default SQLite file) "
    "and that the server is running."
)
_SQLITE_BUSY_MS = 30_000
# Any fixed 64-bit key: every plait process agrees on it, nothing else should use it.
_PG_MIGRATION_LOCK = 0x706C616974  # "plait"
_RACE_MARKERS = ("already exists", "duplicate", "unique", "database is locked")

logger = logging.getLogger("plait.store")


# One encoder for every JSON column value: json.dumps(..., default=...) would build a new
# encoder per call, and a flush encodes two values per run. default=str: a value the engine
# failed to make JSON-safe must not poison a whole batch of records.
_json_dumps = json.JSONEncoder(default=str).encode


def _reason(exc: BaseException, password: str | None) -> str:
    """A one-line reason for ``exc``: the driver's words, without SQL, traceback or password."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        text = str(exc.orig)
    elif isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    text = "; ".join(lines[:2]).rstrip(".") or type(exc).__name__
    if len(text) > 300:
        text = text[:297] + "..."
    return mask(text, extra=(password,) if password else ())


def database_error(
    url: str, exc: BaseException | None, action: str = "open", reason: str | None = None
) -> DatabaseError:
    """Build the user-facing error for a failure on the database at ``url``.

    Args:
        url: The database URL as configured (it may hold a password; it is masked).
        exc: The underlying error.
        action: What failed, completing "Cannot <action> the plait database".
        reason: Use this reason instead of one derived from ``exc``.
    """
    try:
        password = make_url(url).password
    except Exception:  # an unparseable URL is already hidden by mask_url
        password = None
    if reason is None:
        reason = _reason(exc, str(password) if password else None) if exc else "unknown error"
    stop = "" if reason.endswith(("?", "!")) else "."
    return DatabaseError(f"Cannot {action} the plait database at {mask_url(url)}: {reason}{stop} {_HINT}")


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic ``Config`` for plait's migrations, built in code (no alembic.ini).

    Args:
        connection: An open connection the migrations should run on.
        url: Alternatively a URL for env.py to connect to (developer use).
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # busy_timeout first: switching to WAL needs a lock another process may hold.
        cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_MS}")
        # WAL lets CLI readers run while a flow writes; NORMAL sync is safe with WAL.
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def _build_engine(url: str) -> Engine:
    """Create (but do not connect) the engine for ``url``, preparing SQLite's directory."""
    try:
        parsed: URL = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: e.g. a non-numeric port
        raise database_error(
            url, None, reason="not a valid SQLAlchemy URL (expected e.g. sqlite:////path/plait.db "
            "or postgresql+psycopg://user:pass@host/db)",
        ) from None
    kwargs: dict[str, Any] = {"json_serializer": _json_dumps}
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
            # One shared connection, or every pooled connection would see its own empty DB.
            kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
        else:
            path = Path(database).expanduser()
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                why = f"cannot create the directory {path.parent} ({exc.strerror or exc})"
                raise database_error(url, exc, reason=why) from None
            parsed = parsed.set(database=str(path))
            kwargs["connect_args"] = {"timeout": _SQLITE_BUSY_MS / 1000}
    else:
        kwargs["pool_pre_ping"] = True  # survive a server restart in a long-lived process
        if backend == "postgresql":
            parsed = _postgres_defaults(parsed)
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ImportError) as exc:
        extra = " (pip install 'plait[postgres]')" if backend == "postgresql" else ""
        raise database_error(
            url, exc, reason=f"no SQLAlchemy driver for {parsed.drivername!r} is installed{extra}: {exc}"
        ) from None
    except SQLAlchemyError as exc:
        raise database_error(url, exc) from None
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
    return engine


def _postgres_defaults(parsed: URL) -> URL:
    # A bare postgresql:// means psycopg2 to SQLAlchemy; plait[postgres] installs psycopg 3.
    if parsed.drivername == "postgresql":
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername in ("postgresql+psycopg", "postgresql+psycopg2", "postgresql"):
        if "connect_timeout" not in parsed.query:
            # An unreachable host should fail in seconds, not after the OS TCP timeout.
            parsed = parsed.update_query_dict({"connect_timeout": "10"})
    return parsed


class Database:
    """One SQLAlchemy ``Engine`` for one database URL, with the schema kept at head.

    Use ``Database.open(url)`` (cached per URL per process) rather than the constructor.

    Attributes:
        engine: The SQLAlchemy engine; use ``engine.begin()`` / ``engine.connect()``.
        url_masked: The URL with its password replaced by ``***``, safe to show.
    """

    _cache: ClassVar[dict[str, Database]] = {}
    _cache_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        """Create the engine for ``url`` and, unless ``migrate`` is false, migrate it.

        Raises:
            DatabaseError: The database cannot be reached, created or migrated.
        """
        self._url = url
        self.url_masked = mask_url(url)
        self.engine: Engine = _build_engine(url)
        if migrate:
            try:
                self.migrate()
            except BaseException:
                self.engine.dispose()  # nobody will hold this half-opened Database
                raise

    def __repr__(self) -> str:
        return f"Database({self.url_masked!r})"

    @property
    def dialect(self) -> str:
        """Backend name: "sqlite", "postgresql", ..."""
        return self.engine.dialect.name

    @property
    def url_digest(self) -> str:
        """A short digest naming this database (files under PLAIT_HOME say which database
        they belong to by it, without writing the URL or its password to disk)."""
        return hashlib.sha256(self._url.encode()).hexdigest()[:20]

    def child_environment(self) -> dict[str, str]:
        """The variables that make a child process of plait's own open this database
        (``PLAIT_DATABASE_URL``). For that child's environment only: never log or show it."""
        return {"PLAIT_DATABASE_URL": self._url}

    def is_url(self, url: str) -> bool:
        """Whether this database was opened for ``url`` (without exposing the URL)."""
        return url == self._url

    def error(self, exc: BaseException, action: str = "open") -> DatabaseError:
        """A ``DatabaseError`` for ``exc`` naming this database (password masked)."""
        return database_error(self._url, exc, action)

    @contextmanager
    def connect(self, action: str = "read", *, write: bool = False, races: bool = False) -> Iterator[Connection]:
        """A connection for the repositories: in one transaction committed at the end when
        ``write``; driver errors surface as ``DatabaseError`` naming ``action`` (URL masked).
        With ``races``, a unique-key violation (a concurrent insert won) stays an
        ``IntegrityError`` for the caller to resolve."""
        try:
            with self.engine.begin() if write else self.engine.connect() as conn:
                yield conn
        except IntegrityError as exc:
            if races:
                raise
            raise self.error(exc, action) from None
        except SQLAlchemyError as exc:
            raise self.error(exc, action) from None

    # -- cache -----------------------------------------------------------------------------
    @classmethod
    def open(cls, url: str) -> Database:
        """The process-wide ``Database`` for ``url``, created and migrated on first use.

        Raises:
            DatabaseError: The database cannot be reached, created or migrated.
        """
        db = cls._cache.get(url)  # lock-free fast path; dict reads are atomic
        if db is not None:
            return db
        with cls._cache_lock:
            db = cls._cache.get(url)
            if db is None:
                db = cls._cache[url] = cls(url)
            return db

    @classmethod
    def dispose_all(cls) -> None:
        """Close every cached engine and forget them (tests; after changing settings)."""
        with cls._cache_lock:
            databases = list(cls._cache.values())
            cls._cache.clear()
        for db in databases:
            db.engine.dispose()

    @classmethod
    def _after_fork_in_child(cls) -> None:
        # Pooled connections belong to the parent: drop them without closing its sockets.
        cls._cache_lock = threading.Lock()
        for db in cls._cache.values():
            db.engine.dispose(close=False)
        cls._cache.clear()

    def dispose(self) -> None:
        """Close this database's pooled connections."""
        self.engine.dispose()

    # -- schema ----------------------------------------------------------------------------
    def current_revision(self) -> str | None:
        """The Alembic revision recorded in the database, or None for an empty database.

        Raises:
            DatabaseError: The database cannot be reached.
        """
        try:
            return self._revision()
        except SQLAlchemyError as exc:
            raise self.error(exc) from None

    def _revision(self) -> str | None:
        with self.engine.connect() as conn:
            return _read_revision(conn)

    def migrate(self) -> None:
        """Bring the schema to ``HEAD_REVISION``; a no-op (one query) when already there.

        Safe when several processes open a fresh database at once: migrations run under a
        lock (PostgreSQL advisory lock, SQLite write lock) and a lost race is re-checked.

        Raises:
            DatabaseError: The database cannot be reached, created or migrated.
        """
        attempts = 5
        for attempt in range(1, attempts + 1):
            try:
                # the first connection to a new SQLite file switches it to WAL, which can
                # meet another opener's lock: that is a race like the others, retried below
                if self._revision() == HEAD_REVISION:
                    return
                self._upgrade()
                return
            except SQLAlchemyError as exc:
                # Another process created the tables between our check and our DDL (only
                # possible on backends without a migration lock): look again.
                if attempt == attempts or not _looks_like_race(exc):
                    raise self.error(exc) from None
                logger.debug("schema upgrade raced another process (%s); re-checking", exc)
                time.sleep(0.1 * attempt)
            except DatabaseError:
                raise
            except Exception as exc:  # alembic.util.CommandError, OSError, ...
                raise self.error(exc, "migrate") from None

    def _upgrade(self) -> None:
        from alembic import command

        with self.engine.connect() as conn:
            with conn.begin():
                _lock_for_migration(conn)
                current = _read_revision_in_transaction(conn)
                if current == HEAD_REVISION:
                    return  # another process migrated while we waited for the lock
                if current is not None and not _is_known_revision(current):
                    raise RuntimeError(
                        f"its schema is at revision {current!r}, newer than this plait "
                        f"understands (head {HEAD_REVISION!r}); upgrade plait"
                    )
                logger.info("migrating %s from %s to %s", self.url_masked, current, HEAD_REVISION)
                command.upgrade(alembic_config(connection=conn), "head")


def _read_revision(conn: Connection) -> str | None:
    try:
        row = conn.exec_driver_sql("SELECT version_num FROM alembic_version").first()
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise
        conn.rollback()
        return None  # no alembic_version table yet: an empty database
    return row[0] if row else None


def _read_revision_in_transaction(conn: Connection) -> str | None:
    # Inside the migration transaction a failing SELECT would abort it on PostgreSQL.
    if not inspect(conn).has_table("alembic_version"):
        return None
    row = conn.exec_driver_sql("SELECT version_num FROM alembic_version").first()
    return row[0] if row else None


def _lock_for_migration(conn: Connection) -> None:
    """Serialise migrations across processes for the rest of ``conn``'s transaction."""
    name = conn.dialect.name
    if name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
    elif name == "sqlite":
        # pysqlite has not begun a transaction yet (it only does so before DML), so this
        # explicit one holds the write lock across the DDL; its commit() ends it.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _is_known_revision(revision: str) -> bool:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    return any(rev.revision == revision for rev in script.walk_revisions())


def _looks_like_race(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", None) or exc).lower()
    return any(marker in text for marker in _RACE_MARKERS)


def absolute_database_url(url: str) -> str:
    """``url`` with a relative SQLite path made absolute (for a child process that may start
    in another directory); other URLs, and URLs that do not parse, unchanged."""
    try:
        parsed = make_url(url)
    except Exception:
        return url  # an unparseable URL fails where it is used, with plait's own message
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return url
    absolute = str(Path(database).expanduser().resolve())
    if absolute == database:
        return url
    return parsed.set(database=absolute).render_as_string(hide_password=False)


def get_database() -> Database:
    """The ``Database`` for the current settings' ``effective_database_url``.

    Raises:
        DatabaseError: The database cannot be reached, created or migrated.
    """
    return Database.open(get_settings().effective_database_url)


os.register_at_fork(after_in_child=Database._after_fork_in_child)
