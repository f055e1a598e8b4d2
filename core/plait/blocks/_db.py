"""Database plumbing for block documents: transactions, row look-ups and upserts.

Every write happens in one transaction (retried once when a concurrent writer won a race on a
unique key); database errors are turned into ``DatabaseError`` naming the database.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Row


# -- transactions ------------------------------------------------------------------------------
def _tables() -> Any:
    from plait._store import models

    return models


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _database() -> Any:
    from plait._store.database import get_database

    return get_database()


class _Transaction:
    """``with _Transaction("save a block in") as conn:`` — one transaction, database errors
    turned into ``DatabaseError`` naming the database (password masked)."""

    def __init__(self, action: str, write: bool = True) -> None:
        self.action = action
        self.write = write
        self.db = _database()
        self._ctx: Any = None

    def __enter__(self) -> Connection:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            self._ctx = self.db.engine.begin() if self.write else self.db.engine.connect()
            return self._ctx.__enter__()
        except SQLAlchemyError as exc:
            raise self.db.error(exc, self.action) from None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        from sqlalchemy.exc import IntegrityError, SQLAlchemyError

        try:
            self._ctx.__exit__(exc_type, exc, tb)
        except IntegrityError:
            raise
        except SQLAlchemyError as err:
            raise self.db.error(err, self.action) from None
        if isinstance(exc, SQLAlchemyError) and not isinstance(exc, IntegrityError):
            raise self.db.error(exc, self.action) from None
        return False


def _run_write(action: str, work: Callable[[Connection], Any]) -> Any:
    """Run ``work(conn)`` in one transaction; retry once when a concurrent writer won a race
    on a unique key (the retry sees its row)."""
    from sqlalchemy.exc import IntegrityError

    for attempt in (1, 2):
        try:
            with _Transaction(action) as conn:
                return work(conn)
        except IntegrityError as exc:
            if attempt == 2:
                raise _database().error(exc, action) from None
    raise AssertionError("unreachable")


def _read(action: str, work: Callable[[Connection], Any]) -> Any:
    with _Transaction(action, write=False) as conn:
        return work(conn)


# -- rows --------------------------------------------------------------------------------------
def _doc_by_name(conn: Connection, slug: str, name: str) -> Row | None:
    from sqlalchemy import select

    t = _tables().BlockDocumentModel.__table__
    return conn.execute(select(t).where(t.c.slug == slug, t.c.name == name)).first()


def _doc_by_id(conn: Connection, doc_id: str) -> Row | None:
    from sqlalchemy import select

    t = _tables().BlockDocumentModel.__table__
    return conn.execute(select(t).where(t.c.id == doc_id)).first()


def _upsert(conn: Connection, table: Any, values: dict[str, Any], key: str, update: bool) -> None:
    """Insert ``values`` into ``table``; on a conflict on ``key`` update the row (or leave it)."""
    from sqlalchemy import select

    dialect = conn.dialect.name
    if dialect in ("postgresql", "sqlite"):
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        stmt = insert(table).values(**values)
        if update:
            stmt = stmt.on_conflict_do_update(
                index_elements=[key], set_={k: v for k, v in values.items() if k != key}
            )
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=[key])
        conn.execute(stmt)
        return
    exists = conn.execute(select(table.c[key]).where(table.c[key] == values[key])).first()
    if exists is None:
        conn.execute(table.insert().values(**values))
    elif update:
        conn.execute(table.update().where(table.c[key] == values[key]).values(**values))
