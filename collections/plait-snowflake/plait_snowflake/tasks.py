"""Prebuilt tasks: query Snowflake and load rows or DataFrames from a flow, with a connector block.

Each is an ordinary ``@task``: call it in a flow, ``.submit()`` it, or give it retries with
``snowflake_query.with_options(retries=3)``. Values are always bound (``?`` placeholders),
never formatted into the SQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from plait import task
from plait_snowflake._load import dataframe_rows, plan_rows
from plait_snowflake.connector import Parameters, SnowflakeConnector

if TYPE_CHECKING:
    import pandas

__all__ = [
    "TASKS",
    "snowflake_load_dataframe",
    "snowflake_load_rows",
    "snowflake_multi_query",
    "snowflake_query",
]

DEFAULT_CHUNK_SIZE = 16_384


@task(name="snowflake_query")
def snowflake_query(
    query: str, connector: SnowflakeConnector, parameters: Parameters | None = None
) -> list[dict[str, Any]]:
    """Run a query and return every row as a dict ({COLUMN: value}).

    Args:
        query: SQL with ``?`` placeholders, e.g. ``"SELECT * FROM orders WHERE status = ?"``.
        connector: The Snowflake session to use.
        parameters: Values for the placeholders, in order, e.g. ``["shipped"]``.

    Example:
        snowflake_query("SELECT id, total FROM orders WHERE status = ?", SnowflakeConnector.load("analytics"), ["open"])
    """
    return connector.fetch_all(query, parameters)


@task(name="snowflake_multi_query")
def snowflake_multi_query(
    queries: Sequence[str | tuple[str, Parameters]], connector: SnowflakeConnector, as_transaction: bool = False
) -> list[list[dict[str, Any]]]:
    """Run several statements in order and return each one's rows (a list per statement).

    With ``as_transaction=True`` they run between ``BEGIN`` and ``COMMIT``; when one fails,
    everything is rolled back and the error re-raised. (In Snowflake a DDL statement such as
    CREATE commits the open transaction, so keep DDL out of a transaction.)

    Args:
        queries: SQL strings, or ``(sql, parameters)`` pairs for statements with ``?`` placeholders.
        connector: The Snowflake session to use.
        as_transaction: All or nothing.

    Example:
        snowflake_multi_query(["DELETE FROM daily WHERE day = CURRENT_DATE()",
                               "INSERT INTO daily SELECT CURRENT_DATE(), COUNT(*) FROM orders"],
                              SnowflakeConnector.load("analytics"), as_transaction=True)
    """
    if isinstance(queries, str):
        raise TypeError("queries must be a list of SQL strings (or (sql, parameters) pairs), not one string")
    statements = [_statement(item, number) for number, item in enumerate(queries)]

    def run() -> list[list[dict[str, Any]]]:
        return [connector.fetch_all(sql, parameters) for sql, parameters in statements]

    if not as_transaction:
        return run()
    with connector.transaction():
        return run()


def _statement(item: Any, number: int) -> tuple[str, Parameters | None]:
    if isinstance(item, str):
        return item, None
    if isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str):
        return item[0], item[1]
    raise TypeError(f"queries[{number}] must be a SQL string or a (sql, parameters) pair, got {item!r}")


@task(name="snowflake_load_rows")
def snowflake_load_rows(
    table: str,
    rows: Iterable[Mapping[str, Any] | Sequence[Any]],
    connector: SnowflakeConnector,
    columns: Sequence[str] | None = None,
    create: bool = False,
    column_types: Mapping[str, str] | None = None,
    quote_identifiers: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> int:
    """Insert rows (dicts, or tuples in column order) into a table; return how many.

    All rows go in one transaction (all or nothing), ``chunk_size`` rows per INSERT with
    array binding. With ``create=True`` the table is created first when missing, each
    column's type chosen from its values (int: NUMBER(38, 0), float: FLOAT, Decimal: NUMBER,
    str: VARCHAR, bool: BOOLEAN, date, datetime: TIMESTAMP_NTZ/TZ, bytes: BINARY) unless
    ``column_types`` names it.

    Args:
        table: ``NAME``, ``SCHEMA.NAME`` or ``DATABASE.SCHEMA.NAME`` (identifiers, checked).
        rows: Dicts (columns: the first row's keys, unless ``columns``) or tuples.
        connector: The Snowflake session to use.
        columns: Column names to load; for dict rows, which keys; for tuples, their order
            (None: tuples fill every column of the table in order).
        create: Create the table when it does not exist.
        column_types: Snowflake types by column for ``create``, e.g. ``{"ID": "NUMBER(10, 0)"}``.
        quote_identifiers: Use column names exactly as given (double-quoted, case-sensitive).
        chunk_size: Rows per INSERT statement.

    Example:
        snowflake_load_rows("PEOPLE", [{"ID": 1, "NAME": "Ada"}], SnowflakeConnector.load("analytics"), create=True)
    """
    plan = plan_rows(table, rows, columns, create, column_types, quote_identifiers)
    return _load(plan, connector, chunk_size)


@task(name="snowflake_load_dataframe")
def snowflake_load_dataframe(
    table: str,
    df: pandas.DataFrame,
    connector: SnowflakeConnector,
    create: bool = False,
    column_types: Mapping[str, str] | None = None,
    quote_identifiers: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> int:
    """Insert a pandas DataFrame's rows into a table (its columns by name); return how many.

    Works like ``snowflake_load_rows``: one transaction, ``chunk_size`` rows per INSERT with
    array binding, ``create=True`` makes the table from the columns' values. NaN, NaT and NA
    become NULL. Needs pandas: ``pip install 'plait-snowflake[pandas]'``.

    Args:
        table: ``NAME``, ``SCHEMA.NAME`` or ``DATABASE.SCHEMA.NAME``.
        df: The rows; column names are the table's columns.
        connector: The Snowflake session to use.
        create: Create the table when it does not exist.
        column_types: Snowflake types by column for ``create``.
        quote_identifiers: Use column names exactly as given (double-quoted, case-sensitive).
        chunk_size: Rows per INSERT statement.

    Example:
        snowflake_load_dataframe("SCORES", pandas.DataFrame({"ID": [1, 2], "SCORE": [0.5, 0.9]}),
                                 SnowflakeConnector.load("analytics"), create=True)
    """
    names, values = dataframe_rows(df)
    plan = plan_rows(table, values, names, create, column_types, quote_identifiers)
    return _load(plan, connector, chunk_size)


def _load(plan: Any, connector: SnowflakeConnector, chunk_size: int) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a whole number >= 1, got {chunk_size!r}")
    if plan.create:
        connector.execute(plan.create)  # DDL: outside the transaction (it would commit it)
    if not plan.rows:
        return 0
    rows = plan.rows
    loaded = 0
    with connector.transaction():
        for start in range(0, len(rows), chunk_size):
            chunk = rows[start:start + chunk_size]
            count = connector.execute_many(plan.insert, chunk)
            loaded += count if count >= 0 else len(chunk)
    return loaded


TASKS = (snowflake_query, snowflake_multi_query, snowflake_load_rows, snowflake_load_dataframe)
