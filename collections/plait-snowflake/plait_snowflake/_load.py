"""Loading rows into a table, without I/O: identifiers checked (they cannot be bound),
rows made uniform, Snowflake column types chosen for ``create=True``, DataFrames turned into
plain Python rows. The tasks in ``plait_snowflake.tasks`` run the statements built here.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from plait_snowflake.errors import PANDAS_HINT, PandasNotInstalledError

__all__ = ["LoadPlan", "plan_rows", "dataframe_rows", "require_pandas"]

_PLAIN = r"[A-Za-z_][A-Za-z0-9_$]*"
_QUOTED = r'"(?:[^"]|"")+"'
_PART = rf"(?:{_PLAIN}|{_QUOTED})"
_IDENTIFIER = re.compile(rf"^{_PART}$")
_TABLE = re.compile(rf"^{_PART}(?:\.{_PART}){{0,2}}$")
_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(?: [A-Za-z][A-Za-z0-9_]*)*(?:\(\s*\d+\s*(?:,\s*\d+\s*)?\))?$")


def table_name(table: str) -> str:
    """``table`` if it is a (database.schema.)table name Snowflake reads as one identifier each."""
    if not isinstance(table, str) or not _TABLE.match(table.strip()):
        raise ValueError(
            f"table {table!r} is not a table name: give NAME, SCHEMA.NAME or DATABASE.SCHEMA.NAME, each part a "
            'plain identifier (letters, digits, _ and $) or double-quoted ("My Table")'
        )
    return table.strip()


def column_name(name: Any, quote: bool) -> str:
    """A column name for SQL: quoted exactly as given when ``quote``, else checked as is."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"column names must be non-empty strings, got {name!r}")
    if quote:
        return '"' + name.replace('"', '""') + '"'
    if not _IDENTIFIER.match(name):
        raise ValueError(
            f"column {name!r} is not a plain identifier (letters, digits, _ and $, not starting with a digit): "
            "rename it, or pass quote_identifiers=True to use the names exactly as given (case-sensitive)"
        )
    return name


class LoadPlan:
    """The statements and values of one load: ``create`` (or None), ``insert``, ``rows``."""

    def __init__(self, create: str | None, insert: str | None, rows: list[list[Any]]) -> None:
        self.create = create
        self.insert = insert
        self.rows = rows


def plan_rows(
    table: str,
    rows: Iterable[Mapping[str, Any] | Sequence[Any]],
    columns: Sequence[str] | None = None,
    create: bool = False,
    column_types: Mapping[str, str] | None = None,
    quote_identifiers: bool = False,
) -> LoadPlan:
    """What to run to load ``rows`` (dicts, or tuples in column order) into ``table``."""
    target = table_name(table)
    if isinstance(columns, str):
        raise TypeError("columns must be a list of column names, not one string")
    names, values = _uniform(rows, list(columns) if columns is not None else None)
    sql_names = [column_name(n, quote_identifiers) for n in names] if names is not None else None
    if sql_names is not None and len({n.upper() if not quote_identifiers else n for n in sql_names}) < len(sql_names):
        raise ValueError(f"the same column appears twice in {names}")
    types = dict(column_types or {})
    if types and not create:
        raise ValueError("column_types is only used with create=True")
    create_sql = None
    if create:
        if names is None:
            raise ValueError(
                "create=True needs column names: pass columns=[...] or give the rows as dicts"
            )
        unknown = sorted(set(types) - set(names))
        if unknown:
            raise ValueError(f"column_types names column(s) that are not loaded: {', '.join(unknown)}")
        definitions = []
        for index, (name, sql_name) in enumerate(zip(names, sql_names or [], strict=True)):
            kind = types.get(name) or infer_type(name, (row[index] for row in values))
            if not _TYPE.match(kind.strip()):
                raise ValueError(f"column_types[{name!r}] = {kind!r} is not a Snowflake type such as 'NUMBER(38, 2)'")
            definitions.append(f"{sql_name} {kind.strip()}")
        create_sql = f"CREATE TABLE IF NOT EXISTS {target} ({', '.join(definitions)})"
    if not values:
        return LoadPlan(create_sql, None, [])
    width = len(values[0])
    listed = f" ({', '.join(sql_names)})" if sql_names is not None else ""
    insert = f"INSERT INTO {target}{listed} VALUES ({', '.join('?' * width)})"
    return LoadPlan(create_sql, insert, values)


def _uniform(
    rows: Iterable[Mapping[str, Any] | Sequence[Any]], columns: list[str] | None
) -> tuple[list[str] | None, list[list[Any]]]:
    """(column names or None, each row as a list of values in that order)."""
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Iterable):
        raise TypeError(f"rows must be a list of dicts or of tuples, got {type(rows).__name__}")
    rows = list(rows)
    if not rows:
        return columns, []
    if isinstance(rows[0], Mapping):
        names = columns if columns is not None else [str(k) for k in rows[0]]
        out = []
        for number, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise TypeError(
                    f"row {number} is a {type(row).__name__} but row 0 is a dict: give every row the same way"
                )
            missing = [n for n in names if n not in row]
            if missing:
                raise ValueError(f"row {number} has no value for column(s) {', '.join(missing)}")
            if columns is None and len(row) != len(names):
                extra = [str(k) for k in row if k not in names]
                raise ValueError(
                    f"row {number} has column(s) {', '.join(extra)} that row 0 does not have; pass columns=[...] "
                    "to choose the columns to load"
                )
            out.append([row[n] for n in names])
        return names, out
    width = len(columns) if columns is not None else None
    out = []
    for number, row in enumerate(rows):
        if isinstance(row, (str, bytes, Mapping)) or not isinstance(row, Sequence):
            raise TypeError(
                f"row {number} is a {type(row).__name__}: give every row as a tuple (or list) of values, or every "
                "row as a dict"
            )
        width = len(row) if width is None else width
        if len(row) != width:
            what = "columns" if columns is not None else "values in row 0"
            raise ValueError(f"row {number} has {len(row)} values but there are {width} {what}")
        out.append(list(row))
    return columns, out


_SIMPLE_TYPES: dict[type, str] = {
    str: "VARCHAR",
    bytes: "BINARY",
    bytearray: "BINARY",
    dt.date: "DATE",
    dt.time: "TIME",
}


def infer_type(name: str, values: Iterable[Any]) -> str:
    """A Snowflake column type for ``values`` (Nones ignored; no value at all: VARCHAR)."""
    kinds: set[str] = set()
    scale = 0
    for value in values:
        if value is None:
            continue
        if isinstance(value, bool):
            kinds.add("BOOLEAN")
        elif isinstance(value, int):
            kinds.add("int")
        elif isinstance(value, float):
            kinds.add("FLOAT")
        elif isinstance(value, Decimal):
            kinds.add("decimal")
            exponent = value.as_tuple().exponent
            if isinstance(exponent, int):
                scale = max(scale, min(-exponent, 37))
        elif isinstance(value, dt.datetime):
            kinds.add("TIMESTAMP_TZ" if value.tzinfo is not None else "TIMESTAMP_NTZ")
        else:
            kind = next((k for t, k in _SIMPLE_TYPES.items() if isinstance(value, t)), None)
            if kind is None:
                raise TypeError(
                    f"cannot choose a Snowflake type for column {name!r} (a {type(value).__name__} value); "
                    f"pass column_types={{{name!r}: '...'}}, e.g. 'VARCHAR' or 'VARIANT'"
                )
            kinds.add(kind)
    if not kinds:
        return "VARCHAR"
    if kinds <= {"int"}:
        return "NUMBER(38, 0)"
    if kinds <= {"int", "decimal"}:
        return f"NUMBER(38, {scale})"
    if kinds <= {"int", "FLOAT", "decimal"}:
        return "FLOAT"
    if len(kinds) == 1:
        return kinds.pop()
    raise TypeError(
        f"column {name!r} mixes values of kinds {', '.join(sorted(kinds))}; pass column_types={{{name!r}: '...'}}"
    )


# -- pandas ----------------------------------------------------------------------------------
def require_pandas() -> Any:
    """The pandas module, or PandasNotInstalledError saying what to install."""
    try:
        import pandas
    except ImportError:
        raise PandasNotInstalledError(
            f"snowflake_load_dataframe needs pandas, which is not installed: {PANDAS_HINT}"
        ) from None
    return pandas


def dataframe_rows(df: Any) -> tuple[list[str], list[list[Any]]]:
    """(column names, rows of plain Python values) of a pandas DataFrame: numpy scalars as
    Python numbers, Timestamps as datetimes, NaN / NaT / NA as None."""
    pd = require_pandas()
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    names = [str(c) for c in df.columns]
    if len(set(names)) < len(names):
        raise ValueError(f"the DataFrame has duplicate column names: {names}")
    columns = [[_python_value(v, pd) for v in df.iloc[:, i].tolist()] for i in range(df.shape[1])]
    return names, [list(row) for row in zip(*columns, strict=True)] if columns else []


def _python_value(value: Any, pd: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, pd.Timedelta):
        raise TypeError("Timedelta values cannot be loaded into Snowflake; convert them to numbers first")
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":
        value = item()
        if isinstance(value, float) and math.isnan(value):
            return None
    return value
