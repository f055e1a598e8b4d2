"""The variables repository: every SQL statement about ``variables``.

A variable is a named JSON value (``plait.variables``): checking the name and the value is
the caller's job; this module stores what it is given. Rows come back as dicts, times as
ISO 8601 text in UTC.

Setting and unsetting a variable emit ``variable.created``, ``variable.updated`` and
``variable.deleted`` on ``variable/<name>`` in the same transaction; their payload names the
variable and its tags, never its value (which may be large).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from plait._runs import utcnow
from plait._store.database import Database
from plait._store.events import record_event
from plait._store.models import VARIABLES

__all__ = ["VARIABLES", "VariableExists", "set_variable", "get_variable", "list_variables", "delete_variable"]

VARIABLES: Table = VARIABLES
_V = VARIABLES


class VariableExists(ValueError):
    """A variable of that name exists already (and overwriting was not asked for)."""


def _exists(name: str) -> VariableExists:
    return VariableExists(f"variable {name!r} already exists; pass overwrite=True (CLI: --overwrite) to "
                          "replace its value")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _record(row: Row[Any]) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "value": row.value, "tags": list(row.tags or []),
            "created": _iso(row.created), "updated": _iso(row.updated)}


def _row(conn: Connection, name: str, *, lock: bool = False) -> Row[Any] | None:
    query = select(_V).where(_V.c.name == name)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()  # SQLite's write transaction holds the whole file
    return conn.execute(query).first()


def _event(conn: Connection, kind: str, row: Row[Any]) -> None:
    record_event(conn, kind, f"variable/{row.name}", {"id": row.id, "name": row.name, "tags": list(row.tags or [])})


def set_variable(
    db: Database, name: str, value: Any, *, tags: list[str] | None = None, overwrite: bool = False
) -> tuple[dict[str, Any], str]:
    """Store ``value`` under ``name``; emits ``variable.created`` or ``variable.updated``.

    Args:
        tags: The variable's tags; None keeps those of an existing variable (none for a new one).
        overwrite: Replace the value of an existing variable instead of refusing.

    Returns:
        ``(variable, outcome)``, outcome ``"created"`` or ``"updated"``.

    Raises:
        VariableExists: The name is taken and ``overwrite`` is False.
        DatabaseError: The database cannot be written.
    """
    now = utcnow()
    try:
        with db.connect("set a variable in", write=True, races=True) as conn:
            row = _row(conn, name, lock=True)
            if row is not None:
                if not overwrite:
                    raise _exists(name)
                changes: dict[str, Any] = {"value": value, "updated": now}
                if tags is not None:
                    changes["tags"] = list(tags)
                conn.execute(update(_V).where(_V.c.id == row.id).values(**changes))
                outcome = "updated"
                row_id = row.id
            else:
                row_id = str(uuid.uuid4())
                conn.execute(_V.insert().values(id=row_id, name=name, value=value, tags=list(tags or []),
                                                created=now, updated=now))
                outcome = "created"
            saved = conn.execute(select(_V).where(_V.c.id == row_id)).one()
            _event(conn, f"variable.{outcome}", saved)
    except IntegrityError:
        # another writer created it between our read and insert
        if not overwrite:
            raise _exists(name) from None
        return set_variable(db, name, value, tags=tags, overwrite=True)
    return _record(saved), outcome


def get_variable(db: Database, name: str) -> dict[str, Any] | None:
    """The variable ``name``, or None when there is none.

    Raises:
        DatabaseError: The database cannot be read.
    """
    with db.connect("read variables from") as conn:
        row = _row(conn, name)
    return _record(row) if row is not None else None


def list_variables(db: Database) -> list[dict[str, Any]]:
    """Every variable by name.

    Raises:
        DatabaseError: The database cannot be read.
    """
    with db.connect("read variables from") as conn:
        rows = conn.execute(select(_V).order_by(_V.c.name)).all()
    return [_record(r) for r in rows]


def delete_variable(db: Database, name: str) -> dict[str, Any] | None:
    """Delete the variable ``name``; emits ``variable.deleted``.

    Returns:
        The variable as it was, or None when there was none (nothing happened).

    Raises:
        DatabaseError: The database cannot be written.
    """
    with db.connect("delete a variable in", write=True) as conn:
        row = _row(conn, name, lock=True)
        if row is None:
            return None
        conn.execute(delete(_V).where(_V.c.id == row.id))
        _event(conn, "variable.deleted", row)
    return _record(row)
