"""What the sync and async connectors share and that does no I/O: their fields, how a
statement and its parameters are checked and bound, how open cursors are keyed, how rows
become dicts. ``SqlAlchemyConnector`` and ``AsyncSqlAlchemyConnector`` are thin drivers
over this (the httpx ``BaseClient`` pattern).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Any, ClassVar

from pydantic import Field
from sqlalchemy import Row, text
from sqlalchemy.sql.base import Executable

from plait.blocks import Block
from plait_sqlalchemy.credentials import DatabaseCredentials

__all__ = ["ConnectorBase", "Runtime", "Statement", "Parameters"]

Statement = str | Executable
"""SQL text with ``:name`` bind parameters, or any SQLAlchemy executable (``select(...)``)."""

Parameters = Mapping[str, Any]
"""Values for the statement's bind parameters, by name."""


class Runtime:
    """The live state of one connector object (engine, connection, open cursors).

    Never saved, never compared (two connectors with equal fields are equal whether or not
    either has connected), and never shared by a deep copy or a pickle: those start unconnected.
    """

    def __init__(self) -> None:
        self.engine: Any = None
        self.connection: Any = None
        self.fingerprint: Any = None
        self.cursors: dict[Hashable, Any] = {}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Runtime)

    __hash__ = None  # type: ignore[assignment]

    def __copy__(self) -> Runtime:
        return type(self)()

    def __deepcopy__(self, memo: dict[int, Any]) -> Runtime:
        return type(self)()

    def __reduce__(self) -> tuple[type, tuple]:
        return (type(self), ())

    def __repr__(self) -> str:
        state = "connected" if self.connection is not None else "not connected"
        return f"<{state}, {len(self.cursors)} open cursor(s)>"


class ConnectorBase(Block):
    """Fields and I/O-free helpers of both connectors (not a block type of its own)."""

    credentials: DatabaseCredentials = Field(
        description="The database to connect to (a saved DatabaseCredentials block, stored by reference)."
    )
    fetch_size: int = Field(
        default=1,
        ge=1,
        description="How many rows fetch_many() returns when no size is given (like a DB-API "
        "cursor's arraysize).",
    )
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra keyword arguments for SQLAlchemy's create_engine / create_async_engine, "
        "e.g. {'pool_pre_ping': true, 'echo': false}. Put secrets in the credentials, not here.",
    )

    capabilities: ClassVar[tuple[str, ...]] = ("query", "execute")

    def _fingerprint(self) -> Any:
        """What the engine depends on: a change (e.g. new credentials) means a new engine."""
        return (self.credentials.get_url(), repr(sorted(self.engine_kwargs.items())))

    def _size(self, size: int | None) -> int:
        size = self.fetch_size if size is None else size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a whole number >= 1, got {size!r}")
        return size


def statement(sql: Statement) -> Executable:
    """``sql`` ready to execute: text becomes ``sqlalchemy.text`` (``:name`` binds)."""
    if isinstance(sql, str):
        if not sql.strip():
            raise ValueError("sql is empty")
        return text(sql)
    if isinstance(sql, Executable):
        return sql
    raise TypeError(f"sql must be a string or a SQLAlchemy statement, got {type(sql).__name__}")


def bind(parameters: Parameters | None) -> dict[str, Any]:
    """The bind values as a dict; ``None`` means none. Values are always sent to the driver
    as parameters, never formatted into the SQL."""
    if parameters is None:
        return {}
    if not isinstance(parameters, Mapping):
        raise TypeError(
            "parameters must be a mapping of bind names to values, e.g. {'id': 7} for "
            f"'... WHERE id = :id'; got {type(parameters).__name__}"
        )
    return dict(parameters)


def bind_many(seq_of_parameters: Iterable[Parameters]) -> list[dict[str, Any]]:
    """One dict of bind values per execution."""
    if isinstance(seq_of_parameters, (str, bytes, Mapping)) or not isinstance(seq_of_parameters, Iterable):
        raise TypeError(
            "seq_of_parameters must be a list of mappings (one per execution), e.g. "
            f"[{{'id': 1}}, {{'id': 2}}]; got {type(seq_of_parameters).__name__}"
        )
    return [bind(p) for p in seq_of_parameters]


def counts_executemany(connection: Any) -> bool:
    """Whether the driver reports the total rowcount of an executemany (asyncpg does not:
    there ``execute_many`` runs the statements one by one, in the same transaction)."""
    return bool(getattr(connection.dialect, "supports_sane_multi_rowcount", True))


def _freeze(value: Any) -> Hashable:
    if isinstance(value, Mapping):
        return ("__mapping__", tuple(sorted((str(k), _freeze(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        return ("__sequence__", tuple(_freeze(v) for v in value))
    if isinstance(value, (set, frozenset)):
        return ("__set__", tuple(sorted(repr(_freeze(v)) for v in value)))
    try:
        hash(value)
    except TypeError:
        return ("__repr__", type(value).__qualname__, repr(value))
    return (type(value).__qualname__, value)


class _Same:
    """Keys a statement object by identity (SQLAlchemy overloads ``==`` on some clauses)."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.obj is self.obj

    def __hash__(self) -> int:
        return id(self.obj)


def cursor_key(sql: Statement, parameters: dict[str, Any]) -> Hashable:
    """Which open cursor a fetch continues: the same SQL text (or the same statement object)
    with equal parameters."""
    return (sql if isinstance(sql, str) else _Same(sql), _freeze(parameters))


def as_dict(row: Row[Any] | None) -> dict[str, Any] | None:
    """A row as ``{column: value}``; ``None`` stays ``None``."""
    return None if row is None else row._asdict()


def as_dicts(rows: Iterable[Row[Any]]) -> list[dict[str, Any]]:
    return [row._asdict() for row in rows]
