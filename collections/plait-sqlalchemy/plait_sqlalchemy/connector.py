"""``SqlAlchemyConnector``: run SQL against a database from flows and tasks (synchronous)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import PrivateAttr

from plait_sqlalchemy._base import (
    ConnectorBase,
    Parameters,
    Runtime,
    Statement,
    as_dict,
    as_dicts,
    bind,
    bind_many,
    counts_executemany,
    cursor_key,
    statement,
)
from plait_sqlalchemy.credentials import connection_error

if TYPE_CHECKING:
    from sqlalchemy import Connection, CursorResult, Engine

__all__ = ["SqlAlchemyConnector"]

T = TypeVar("T")


class _SyncRuntime(Runtime):
    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.RLock()


class SqlAlchemyConnector(ConnectorBase):
    """Runs SQL on a database with bound parameters, keeping one connection open between calls.

    Rows come back as dicts (``{column: value}``). Calling ``fetch_one`` or ``fetch_many``
    again with the same SQL and parameters continues the same cursor where the last call
    stopped; other SQL starts a cursor of its own; ``reset_cursors()`` starts them all over.
    ``execute`` and ``execute_many`` commit. The engine and connection are created on first
    use and reused; ``close()`` (or leaving a ``with`` block) releases them.
    """

    block_type_slug: ClassVar[str] = "sqlalchemy-connector"
    block_type_name: ClassVar[str] = "SQLAlchemy Connector"
    code_example: ClassVar[str] = """\
from plait_sqlalchemy import DatabaseCredentials, SqlAlchemyConnector

connector = SqlAlchemyConnector(credentials=DatabaseCredentials(driver="sqlite", database="shop.db"))
connector.save("shop")

with SqlAlchemyConnector.load("shop") as connector:
    connector.execute("CREATE TABLE IF NOT EXISTS customers (name TEXT, city TEXT)")
    connector.execute_many(
        "INSERT INTO customers (name, city) VALUES (:name, :city)",
        [{"name": "Ada", "city": "London"}, {"name": "Grace", "city": "Arlington"}],
    )
    first_two = connector.fetch_many("SELECT * FROM customers ORDER BY name", size=2)
    londoners = connector.fetch_all("SELECT name FROM customers WHERE city = :city", {"city": "London"})
"""

    _runtime: _SyncRuntime = PrivateAttr(default_factory=_SyncRuntime)

    # -- engine and connection -----------------------------------------------------------
    def get_engine(self) -> Engine:
        """The connector's engine, created on first use (``engine_kwargs`` applied) and reused."""
        rt = self._runtime
        with rt.lock:
            fingerprint = self._fingerprint()
            if rt.engine is not None and rt.fingerprint != fingerprint:
                self.close()  # the credentials or engine_kwargs changed since
            if rt.engine is None:
                rt.engine = self.credentials.get_engine(**self.engine_kwargs)
                rt.fingerprint = fingerprint
            return rt.engine

    def get_connection(self) -> Connection:
        """The connector's connection, opened on first use and reused by every method.

        Raises:
            plait_sqlalchemy.DatabaseConnectionError: The database cannot be reached (the
                message names the masked URL and the reason).
        """
        rt = self._runtime
        with rt.lock:
            engine = self.get_engine()
            if rt.connection is None or rt.connection.closed:
                try:
                    rt.connection = engine.connect()
                except Exception as exc:
                    raise connection_error(self.credentials, exc) from None
            return rt.connection

    def _run(self, work: Callable[[Connection], T]) -> T:
        """``work(connection)``; on failure roll back and forget open cursors, then re-raise."""
        with self._runtime.lock:
            connection = self.get_connection()
            try:
                return work(connection)
            except BaseException:
                self._recover(connection)
                raise

    def _recover(self, connection: Connection) -> None:
        self._close_cursors()
        try:
            connection.rollback()
        except Exception:  # a broken connection: start over with a new one next time
            self._drop_connection()

    # -- reading -------------------------------------------------------------------------
    def _cursor(self, sql: Statement, parameters: Parameters | None) -> CursorResult[Any]:
        values = bind(parameters)
        key = cursor_key(sql, values)
        cursors = self._runtime.cursors
        if key not in cursors:
            stmt = statement(sql)
            cursors[key] = self._run(lambda connection: connection.execute(stmt, values))
        return cursors[key]

    def fetch_one(self, sql: Statement, parameters: Parameters | None = None) -> dict[str, Any] | None:
        """The next row of ``sql`` as a dict, or None when there are no more.

        Calling again with the same ``sql`` and ``parameters`` returns the row after it.

        Args:
            sql: SQL with ``:name`` bind parameters (or a SQLAlchemy statement).
            parameters: Values for the bind parameters, e.g. ``{"city": "London"}``.
        """
        with self._runtime.lock:
            result = self._cursor(sql, parameters)
            return self._run(lambda _: as_dict(result.fetchone()))

    def fetch_many(
        self, sql: Statement, parameters: Parameters | None = None, size: int | None = None
    ) -> list[dict[str, Any]]:
        """The next ``size`` rows (default ``fetch_size``) of ``sql`` as dicts; fewer at the
        end, then ``[]``.

        Calling again with the same ``sql`` and ``parameters`` continues where this stopped,
        so ``while rows := connector.fetch_many(sql, size=500): ...`` reads a table in pages.
        """
        count = self._size(size)
        with self._runtime.lock:
            result = self._cursor(sql, parameters)
            return self._run(lambda _: as_dicts(result.fetchmany(count)))

    def fetch_all(self, sql: Statement, parameters: Parameters | None = None) -> list[dict[str, Any]]:
        """Every row of ``sql`` as dicts. Always runs the query afresh (open cursors of
        ``fetch_one``/``fetch_many`` are left as they are)."""
        values = bind(parameters)
        stmt = statement(sql)
        return self._run(lambda connection: as_dicts(connection.execute(stmt, values).fetchall()))

    def reset_cursors(self) -> None:
        """Forget every open cursor: the next fetch of any query starts from its first row."""
        with self._runtime.lock:
            self._close_cursors()

    def _close_cursors(self) -> None:
        cursors = self._runtime.cursors
        while cursors:
            _, result = cursors.popitem()
            with contextlib.suppress(Exception):
                result.close()

    # -- writing -------------------------------------------------------------------------
    def execute(self, sql: Statement, parameters: Parameters | None = None) -> int:
        """Run one statement and commit; returns the number of rows it changed (the driver's
        rowcount, -1 when the driver cannot tell)."""
        values = bind(parameters)
        stmt = statement(sql)

        def work(connection: Connection) -> int:
            result = connection.execute(stmt, values)
            count = result.rowcount
            result.close()
            connection.commit()
            return count

        return self._run(work)

    def execute_many(self, sql: Statement, seq_of_parameters: Iterable[Parameters]) -> int:
        """Run one statement once per set of parameters, in one transaction, and commit;
        returns the total number of rows changed (0 for an empty list, where nothing runs)."""
        values = bind_many(seq_of_parameters)
        stmt = statement(sql)
        if not values:
            return 0

        def work(connection: Connection) -> int:
            if counts_executemany(connection):
                result = connection.execute(stmt, values)
                count = result.rowcount
                result.close()
            else:
                count = 0
                for one in values:
                    result = connection.execute(stmt, one)
                    count += max(result.rowcount, 0)
                    result.close()
            connection.commit()
            return count

        return self._run(work)

    # -- closing -------------------------------------------------------------------------
    def close(self) -> None:
        """Close open cursors and the connection, and dispose of the engine. The connector
        can be used again afterwards (it reconnects on the next call)."""
        rt = self._runtime
        with rt.lock:
            self._close_cursors()
            self._drop_connection()
            if rt.engine is not None:
                engine, rt.engine, rt.fingerprint = rt.engine, None, None
                engine.dispose()

    def _drop_connection(self) -> None:
        rt = self._runtime
        connection, rt.connection = rt.connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:
                with contextlib.suppress(Exception):
                    connection.invalidate()

    def __enter__(self) -> SqlAlchemyConnector:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
