"""``AsyncSqlAlchemyConnector``: the same API as ``SqlAlchemyConnector``, with ``async def``
methods over SQLAlchemy's asyncio engine (asyncpg or psycopg for PostgreSQL, aiosqlite for
SQLite)."""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
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
    from sqlalchemy import CursorResult
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["AsyncSqlAlchemyConnector"]

T = TypeVar("T")


class _AsyncRuntime(Runtime):
    def __init__(self) -> None:
        super().__init__()
        self.lock: asyncio.Lock | None = None
        self.loop: asyncio.AbstractEventLoop | None = None


class AsyncSqlAlchemyConnector(ConnectorBase):
    """Runs SQL on a database from async code, with bound parameters and one reused connection.

    The async twin of ``SqlAlchemyConnector``: the same methods as coroutines, rows as dicts,
    ``fetch_one``/``fetch_many`` continuing a cursor for the same SQL and parameters,
    ``execute``/``execute_many`` committing, ``async with`` and ``await close()`` releasing
    the connection. Drivers: ``postgresql+asyncpg``, ``postgresql+psycopg``,
    ``sqlite+aiosqlite`` (plain ``sqlite`` is switched to it). The driver returns each query's
    rows at once; the cursor hands them out in pieces.
    """

    block_type_slug: ClassVar[str] = "async-sqlalchemy-connector"
    block_type_name: ClassVar[str] = "Async SQLAlchemy Connector"
    code_example: ClassVar[str] = """\
from plait_sqlalchemy import AsyncSqlAlchemyConnector, DatabaseCredentials

credentials = DatabaseCredentials(driver="postgresql+asyncpg", host="localhost", database="shop",
                                  username="etl", password="...")
AsyncSqlAlchemyConnector(credentials=credentials).save("shop-async")

async def newest_orders() -> list[dict]:
    async with AsyncSqlAlchemyConnector.load("shop-async") as connector:
        return await connector.fetch_many("SELECT * FROM orders ORDER BY placed DESC", size=10)
"""

    _runtime: _AsyncRuntime = PrivateAttr(default_factory=_AsyncRuntime)

    # -- engine and connection -----------------------------------------------------------
    def get_engine(self) -> AsyncEngine:
        """The connector's ``AsyncEngine``, created on first use (``engine_kwargs`` applied)
        and reused within one event loop."""
        rt = self._runtime
        fingerprint = self._fingerprint()
        if rt.engine is not None and rt.fingerprint != fingerprint:
            self._abandon()  # the credentials or engine_kwargs changed since
        if rt.engine is None:
            rt.engine = self.credentials.get_async_engine(**self.engine_kwargs)
            rt.fingerprint = fingerprint
        return rt.engine

    async def get_connection(self) -> AsyncConnection:
        """The connector's connection, opened on first use and reused by every method.

        Raises:
            plait_sqlalchemy.DatabaseConnectionError: The database cannot be reached.
        """
        async with self._locked():
            return await self._connection()

    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        """One operation at a time; connections never cross event loops (a connector used
        from a new loop starts over with a new engine)."""
        rt = self._runtime
        loop = asyncio.get_running_loop()
        if rt.loop is not loop:
            if rt.loop is not None:
                self._abandon()
            rt.loop, rt.lock = loop, asyncio.Lock()
        assert rt.lock is not None
        async with rt.lock:
            yield

    async def _connection(self) -> AsyncConnection:
        rt = self._runtime
        if rt.engine is not None and rt.fingerprint != self._fingerprint():
            await self._close()  # the credentials or engine_kwargs changed since
        engine = self.get_engine()
        if rt.connection is None or rt.connection.closed:
            try:
                rt.connection = await engine.connect()
            except Exception as exc:
                raise connection_error(self.credentials, exc) from None
        return rt.connection

    async def _run(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """``await work(connection)``; on failure roll back and forget open cursors, re-raise."""
        connection = await self._connection()
        try:
            return await work(connection)
        except BaseException:
            await self._recover(connection)
            raise

    async def _recover(self, connection: AsyncConnection) -> None:
        self._close_cursors()
        try:
            await connection.rollback()
        except Exception:  # a broken connection: start over with a new one next time
            await self._drop_connection()

    # -- reading -------------------------------------------------------------------------
    async def _cursor(self, sql: Statement, parameters: Parameters | None) -> CursorResult[Any]:
        values = bind(parameters)
        key = cursor_key(sql, values)
        cursors = self._runtime.cursors
        if key not in cursors:
            stmt = statement(sql)
            cursors[key] = await self._run(lambda connection: connection.execute(stmt, values))
        return cursors[key]

    async def fetch_one(self, sql: Statement, parameters: Parameters | None = None) -> dict[str, Any] | None:
        """The next row of ``sql`` as a dict, or None when there are no more.

        Calling again with the same ``sql`` and ``parameters`` returns the row after it.
        """
        async with self._locked():
            result = await self._cursor(sql, parameters)
            return as_dict(result.fetchone())

    async def fetch_many(
        self, sql: Statement, parameters: Parameters | None = None, size: int | None = None
    ) -> list[dict[str, Any]]:
        """The next ``size`` rows (default ``fetch_size``) of ``sql`` as dicts; fewer at the
        end, then ``[]``. The same ``sql`` and ``parameters`` again continue where this stopped."""
        count = self._size(size)
        async with self._locked():
            result = await self._cursor(sql, parameters)
            return as_dicts(result.fetchmany(count))

    async def fetch_all(self, sql: Statement, parameters: Parameters | None = None) -> list[dict[str, Any]]:
        """Every row of ``sql`` as dicts; always runs the query afresh."""
        values = bind(parameters)
        stmt = statement(sql)

        async def work(connection: AsyncConnection) -> list[dict[str, Any]]:
            return as_dicts((await connection.execute(stmt, values)).fetchall())

        async with self._locked():
            return await self._run(work)

    async def reset_cursors(self) -> None:
        """Forget every open cursor: the next fetch of any query starts from its first row."""
        async with self._locked():
            self._close_cursors()

    def _close_cursors(self) -> None:
        cursors = self._runtime.cursors
        while cursors:
            _, result = cursors.popitem()
            with contextlib.suppress(Exception):
                result.close()  # buffered: closing does no I/O

    # -- writing -------------------------------------------------------------------------
    async def execute(self, sql: Statement, parameters: Parameters | None = None) -> int:
        """Run one statement and commit; returns the number of rows it changed."""
        values = bind(parameters)
        stmt = statement(sql)

        async def work(connection: AsyncConnection) -> int:
            result = await connection.execute(stmt, values)
            count = result.rowcount
            result.close()
            await connection.commit()
            return count

        async with self._locked():
            return await self._run(work)

    async def execute_many(self, sql: Statement, seq_of_parameters: Iterable[Parameters]) -> int:
        """Run one statement once per set of parameters, in one transaction, and commit;
        returns the total number of rows changed (0 for an empty list, where nothing runs)."""
        values = bind_many(seq_of_parameters)
        stmt = statement(sql)
        if not values:
            return 0

        async def work(connection: AsyncConnection) -> int:
            if counts_executemany(connection):
                result = await connection.execute(stmt, values)
                count = result.rowcount
                result.close()
            else:
                count = 0
                for one in values:
                    result = await connection.execute(stmt, one)
                    count += max(result.rowcount, 0)
                    result.close()
            await connection.commit()
            return count

        async with self._locked():
            return await self._run(work)

    # -- closing -------------------------------------------------------------------------
    async def close(self) -> None:
        """Close open cursors and the connection, and dispose of the engine. The connector
        can be used again afterwards (it reconnects on the next call)."""
        async with self._locked():
            await self._close()

    async def _close(self) -> None:
        rt = self._runtime
        self._close_cursors()
        await self._drop_connection()
        if rt.engine is not None:
            engine, rt.engine, rt.fingerprint = rt.engine, None, None
            await engine.dispose()

    async def _drop_connection(self) -> None:
        rt = self._runtime
        connection, rt.connection = rt.connection, None
        if connection is not None:
            try:
                await connection.close()
            except Exception:
                with contextlib.suppress(Exception):
                    await connection.invalidate()

    def _abandon(self) -> None:
        """Let go of an engine and connection that belong to another (maybe closed) event
        loop, without awaiting anything on it."""
        rt = self._runtime
        self._close_cursors()
        engine, connection = rt.engine, rt.connection
        rt.engine = rt.connection = rt.fingerprint = None
        with warnings.catch_warnings(), contextlib.suppress(Exception):
            warnings.simplefilter("ignore")
            if connection is not None:  # out of the pool; the driver's object is dropped
                connection.sync_connection.detach()
            if engine is not None:
                engine.sync_engine.dispose(close=False)

    async def __aenter__(self) -> AsyncSqlAlchemyConnector:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()
