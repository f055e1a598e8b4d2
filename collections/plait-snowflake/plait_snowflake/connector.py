"""``SnowflakeConnector``: run SQL on Snowflake from flows and tasks, one session reused."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import AliasChoices, Field, PrivateAttr, field_validator

from plait.blocks import Block
from plait_snowflake.credentials import SnowflakeCredentials

if TYPE_CHECKING:
    from snowflake.connector import SnowflakeConnection
    from snowflake.connector.cursor import SnowflakeCursor

__all__ = ["SnowflakeConnector", "Parameters"]

T = TypeVar("T")

Parameters = Sequence[Any]
"""Values for the statement's ``?`` placeholders, in order: ``["London", 3]``."""


class _Runtime:
    """The live state of one connector object: session, open cursors, transaction depth.

    Never saved, never compared (a connected and an unconnected connector with equal fields
    are equal), and never shared by a copy or a pickle: those start unconnected.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.connection: Any = None
        self.fingerprint: Any = None
        self.cursors: dict[Hashable, Any] = {}
        self.transaction_depth = 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Runtime)

    __hash__ = None  # type: ignore[assignment]

    def __copy__(self) -> _Runtime:
        return type(self)()

    def __deepcopy__(self, memo: dict[int, Any]) -> _Runtime:
        return type(self)()

    def __reduce__(self) -> tuple[type, tuple]:
        return (type(self), ())

    def __repr__(self) -> str:
        state = "connected" if self.connection is not None else "not connected"
        return f"<{state}, {len(self.cursors)} open cursor(s)>"


class SnowflakeConnector(Block):
    """Runs SQL on Snowflake with bound parameters, keeping one session open between calls.

    Statements use ``?`` placeholders with a list of values (``qmark`` style, bound by
    Snowflake, never formatted into the SQL). Rows come back as dicts keyed by column name as
    Snowflake reports it (unquoted names in upper case: ``{"ID": 1, "NAME": "ada"}``).
    Calling ``fetch_one`` or ``fetch_many`` again with the same SQL and parameters continues
    the same cursor; ``reset_cursors()`` starts them all over. Statements autocommit unless
    run inside ``with connector.transaction():``. The session opens on first use and is
    reused; ``close()`` (or leaving a ``with`` block) ends it.
    """

    block_type_slug: ClassVar[str] = "snowflake-connector"
    block_type_name: ClassVar[str] = "Snowflake Connector"
    capabilities: ClassVar[tuple[str, ...]] = ("query", "execute")
    code_example: ClassVar[str] = """\
from plait_snowflake import SnowflakeConnector, SnowflakeCredentials

SnowflakeConnector(
    credentials=SnowflakeCredentials.load("snowflake-etl"),
    warehouse="TRANSFORMING", database="ANALYTICS", schema_name="PUBLIC",
).save("analytics")

with SnowflakeConnector.load("analytics") as connector:
    connector.execute("CREATE TABLE IF NOT EXISTS customers (name VARCHAR, city VARCHAR)")
    connector.execute_many("INSERT INTO customers (name, city) VALUES (?, ?)", [("Ada", "London"), ("Grace", "NYC")])
    londoners = connector.fetch_all("SELECT name FROM customers WHERE city = ?", ["London"])
    while page := connector.fetch_many("SELECT * FROM customers ORDER BY name", size=500):
        ...
"""

    credentials: SnowflakeCredentials = Field(
        description="The account and login (a saved SnowflakeCredentials block, stored by reference)."
    )
    warehouse: str | None = Field(default=None, description="Warehouse that runs the queries (the user's default "
                                  "if empty).")
    database: str | None = Field(default=None, description="Database the session uses (the user's default if empty).")
    schema_name: str | None = Field(
        default=None,
        validation_alias=AliasChoices("schema_name", "schema"),
        description="Schema the session uses, within database (the user's default if empty). Named schema_name "
        "because pydantic models reserve 'schema'; 'schema=' is accepted as input too.",
    )
    fetch_size: int = Field(
        default=1,
        ge=1,
        description="How many rows fetch_many() returns when no size is given (like a DB-API cursor's arraysize).",
    )

    _runtime: _Runtime = PrivateAttr(default_factory=_Runtime)

    @field_validator("warehouse", "database", "schema_name")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank; leave it empty (None) for the user's default")
        return value

    # -- the session ---------------------------------------------------------------------------
    def _fingerprint(self) -> Any:
        """What the session depends on: a change (new credentials, another schema) means a new one."""
        return (self.credentials.model_dump(), self.warehouse, self.database, self.schema_name)

    def get_connection(self) -> SnowflakeConnection:
        """The connector's Snowflake session, opened on first use and reused by every method.

        Raises:
            plait_snowflake.SnowflakeConnectionError: Snowflake cannot be reached or refused
                the login (the message names account, user and the reason, never a secret).
            plait_snowflake.SnowflakeCredentialsError: The private key cannot be loaded.
        """
        rt = self._runtime
        with rt.lock:
            fingerprint = self._fingerprint()
            if rt.transaction_depth and rt.fingerprint != fingerprint:
                raise RuntimeError(
                    "the connector's credentials, warehouse, database or schema changed inside transaction(); "
                    "change them before or after it"
                )
            if rt.connection is not None and (rt.fingerprint != fingerprint or rt.connection.is_closed()):
                self.close()
            if rt.connection is None:
                rt.connection = self.credentials.get_connection(
                    warehouse=self.warehouse, database=self.database, schema=self.schema_name
                )
                rt.fingerprint = fingerprint
            return rt.connection

    @property
    def connected(self) -> bool:
        """Whether a session is open (it opens on first use)."""
        return self._runtime.connection is not None

    def _run(self, work: Callable[[SnowflakeConnection], T]) -> T:
        """``work(connection)``; when the session broke on the way, forget it (the next call
        opens a new one), then re-raise."""
        with self._runtime.lock:
            connection = self.get_connection()
            try:
                return work(connection)
            except BaseException:
                if connection.is_closed() and self._runtime.transaction_depth == 0:
                    self._drop_connection()
                raise

    def _new_cursor(self, connection: SnowflakeConnection) -> SnowflakeCursor:
        from snowflake.connector import DictCursor

        return connection.cursor(DictCursor)

    # -- reading -------------------------------------------------------------------------------
    def _cursor(self, sql: str, parameters: Parameters | None) -> SnowflakeCursor:
        values = bind(parameters)
        key = (check_sql(sql), _freeze(values))
        cursors = self._runtime.cursors
        if key not in cursors:

            def start(connection: SnowflakeConnection) -> SnowflakeCursor:
                cursor = self._new_cursor(connection)
                try:
                    cursor.execute(sql, values)
                except BaseException:
                    cursor.close()
                    raise
                return cursor

            cursors[key] = self._run(start)
        return cursors[key]

    def _read(self, sql: str, parameters: Parameters | None, read: Callable[[SnowflakeCursor], T]) -> T:
        with self._runtime.lock:
            cursor = self._cursor(sql, parameters)
            try:
                return self._run(lambda _: read(cursor))
            except BaseException:
                self._forget_cursor(cursor)
                raise

    def fetch_one(self, sql: str, parameters: Parameters | None = None) -> dict[str, Any] | None:
        """The next row of ``sql`` as a dict, or None when there are no more.

        Calling again with the same ``sql`` and ``parameters`` returns the row after it.

        Args:
            sql: SQL with ``?`` placeholders, e.g. ``"SELECT * FROM orders WHERE status = ?"``.
            parameters: Values for the placeholders, in order, e.g. ``["shipped"]``.
        """
        return self._read(sql, parameters, lambda cursor: cursor.fetchone())

    def fetch_many(
        self, sql: str, parameters: Parameters | None = None, size: int | None = None
    ) -> list[dict[str, Any]]:
        """The next ``size`` rows (default ``fetch_size``) of ``sql`` as dicts; fewer at the
        end, then ``[]``.

        Calling again with the same ``sql`` and ``parameters`` continues where this stopped,
        so ``while rows := connector.fetch_many(sql, size=500): ...`` reads a table in pages.
        """
        count = self._size(size)
        return self._read(sql, parameters, lambda cursor: list(cursor.fetchmany(count)))

    def fetch_all(self, sql: str, parameters: Parameters | None = None) -> list[dict[str, Any]]:
        """Every row of ``sql`` as dicts. Always runs the query afresh (open cursors of
        ``fetch_one``/``fetch_many`` are left as they are)."""
        values = bind(parameters)
        check_sql(sql)

        def work(connection: SnowflakeConnection) -> list[dict[str, Any]]:
            with self._new_cursor(connection) as cursor:
                cursor.execute(sql, values)
                return list(cursor.fetchall())

        return self._run(work)

    def reset_cursors(self) -> None:
        """Forget every open cursor: the next fetch of any query starts from its first row."""
        with self._runtime.lock:
            cursors = self._runtime.cursors
            while cursors:
                _, cursor = cursors.popitem()
                with contextlib.suppress(Exception):
                    cursor.close()

    def _forget_cursor(self, cursor: Any) -> None:
        cursors = self._runtime.cursors
        for key in [k for k, c in cursors.items() if c is cursor]:
            del cursors[key]
        with contextlib.suppress(Exception):
            cursor.close()

    def _size(self, size: int | None) -> int:
        size = self.fetch_size if size is None else size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a whole number >= 1, got {size!r}")
        return size

    # -- writing -------------------------------------------------------------------------------
    def execute(self, sql: str, parameters: Parameters | None = None) -> int:
        """Run one statement; return the number of rows it changed (Snowflake's rowcount; -1
        when it does not say). It commits at once unless inside ``transaction()``."""
        values = bind(parameters)
        check_sql(sql)

        def work(connection: SnowflakeConnection) -> int:
            with self._new_cursor(connection) as cursor:
                cursor.execute(sql, values)
                return _count(cursor.rowcount)

        return self._run(work)

    def execute_many(self, sql: str, seq_of_parameters: Iterable[Parameters]) -> int:
        """Run one statement once per list of values and return the total rows changed (0 for
        an empty list, where nothing runs). An INSERT goes to Snowflake as one statement with
        array binding. Commits at once unless inside ``transaction()``."""
        values = bind_many(seq_of_parameters)
        check_sql(sql)
        if not values:
            return 0

        def work(connection: SnowflakeConnection) -> int:
            with self._new_cursor(connection) as cursor:
                cursor.executemany(sql, values)
                return _count(cursor.rowcount)

        return self._run(work)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[SnowflakeConnector]:
        """``with connector.transaction():`` — the statements inside run in one transaction:
        ``BEGIN`` before, ``COMMIT`` after, ``ROLLBACK`` when the block raises (the error is
        re-raised). A transaction inside another joins it. Other threads using the same
        connector wait until it ends. Note that in Snowflake a DDL statement (CREATE, ALTER,
        DROP…) commits the open transaction.
        """
        rt = self._runtime
        with rt.lock:
            if rt.transaction_depth:
                rt.transaction_depth += 1
                try:
                    yield self
                finally:
                    rt.transaction_depth -= 1
                return
            connection = self.get_connection()
            _run_on(connection, "BEGIN")
            rt.transaction_depth = 1
            try:
                yield self
            except BaseException as exc:
                rt.transaction_depth = 0
                try:
                    _run_on(connection, "ROLLBACK")  # the session that began it, whatever changed since
                except Exception as rollback_error:
                    exc.add_note(f"ROLLBACK failed too: {rollback_error}")
                raise
            rt.transaction_depth = 0
            _run_on(connection, "COMMIT")

    # -- closing -------------------------------------------------------------------------------
    def close(self) -> None:
        """Close open cursors and end the session. The connector can be used again afterwards
        (it logs in again on the next call)."""
        with self._runtime.lock:
            self.reset_cursors()
            self._drop_connection()

    def _drop_connection(self) -> None:
        rt = self._runtime
        connection, rt.connection, rt.fingerprint = rt.connection, None, None
        rt.transaction_depth = 0
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def __enter__(self) -> SnowflakeConnector:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


# -- statements and parameters (no I/O) --------------------------------------------------------
def check_sql(sql: str) -> str:
    if not isinstance(sql, str):
        raise TypeError(f"sql must be a string, got {type(sql).__name__}")
    if not sql.strip():
        raise ValueError("sql is empty")
    return sql


def bind(parameters: Parameters | None) -> list[Any] | None:
    """The values for the ``?`` placeholders as a list; None means none. Values are sent to
    Snowflake as bind parameters, never formatted into the SQL."""
    if parameters is None:
        return None
    if isinstance(parameters, Mapping):
        raise TypeError(
            "parameters must be a list of values for the ? placeholders, e.g. ['London'] for "
            "'... WHERE city = ?'; got a mapping (plait-snowflake binds positionally, qmark style: named "
            ":name parameters are not supported)"
        )
    if isinstance(parameters, (str, bytes, bytearray, set, frozenset)) or not isinstance(parameters, Iterable):
        raise TypeError(
            "parameters must be a list of values for the ? placeholders, e.g. [42] for '... WHERE id = ?'; "
            f"got {type(parameters).__name__}"
        )
    return list(parameters)


def bind_many(seq_of_parameters: Iterable[Parameters]) -> list[list[Any]]:
    """One list of values per execution."""
    if isinstance(seq_of_parameters, (str, bytes, Mapping)) or not isinstance(seq_of_parameters, Iterable):
        raise TypeError(
            "seq_of_parameters must be a list of value lists (one per execution), e.g. [(1, 'ada'), (2, 'grace')]; "
            f"got {type(seq_of_parameters).__name__}"
        )
    values = []
    for one in seq_of_parameters:
        bound = bind(one)
        values.append(bound if bound is not None else [])
    return values


def _run_on(connection: SnowflakeConnection, sql: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql)


def _count(rowcount: int | None) -> int:
    return -1 if rowcount is None else int(rowcount)


def _freeze(value: Any) -> Hashable:
    if isinstance(value, Mapping):
        return ("__mapping__", tuple(sorted((str(k), _freeze(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        return ("__sequence__", tuple(_freeze(v) for v in value))
    try:
        hash(value)
    except TypeError:
        return ("__repr__", type(value).__qualname__, repr(value))
    return (type(value).__qualname__, value)
