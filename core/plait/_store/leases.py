"""Service leases: one row per background service of the plait server, naming the process
that may run it until the lease expires.

Several servers can serve one PostgreSQL database; each runs the same service loops (crash
detection, later the scheduler), but a loop acts only while ``acquire_lease`` says its
server holds the lease. A holder renews well before ``expires_at``; a server that dies stops
renewing and another one takes over once the lease has expired. Times are the servers' own
clocks (UTC): keep them in sync to well within a lease's time to live.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Table, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from plait._runs import utcnow
from plait._store.database import Database
from plait._store.models import SERVICE_LEASES

__all__ = ["acquire_lease", "renew_lease", "release_lease", "lease_holder", "SERVICE_LEASES"]

SERVICE_LEASES: Table = SERVICE_LEASES  # migration 0006
_L = SERVICE_LEASES


def _check(name: str, holder: str, ttl: float) -> None:
    if not name or len(name) > 100:
        raise ValueError(f"a lease name is 1 to 100 characters, not {name!r}")
    if not holder or len(holder) > 200:
        raise ValueError(f"a lease holder is 1 to 200 characters, not {holder!r}")
    if not ttl > 0:
        raise ValueError(f"a lease's time to live must be positive seconds, not {ttl!r}")


def _insert_if_absent(db: Database) -> Any:
    if db.dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(_L).on_conflict_do_nothing(index_elements=[_L.c.name])
    if db.dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(_L).on_conflict_do_nothing(index_elements=[_L.c.name])
    return insert(_L)  # elsewhere a lost race raises IntegrityError: taken as "not ours"


def acquire_lease(db: Database, name: str, holder: str, ttl: float) -> bool:
    """Take the lease ``name`` for ``holder`` for ``ttl`` seconds, if it is free, expired or
    already ``holder``'s (then it is renewed).

    Returns:
        Whether ``holder`` holds the lease now.

    Raises:
        ValueError: An empty or too long name or holder, or a ttl that is not positive.
        DatabaseError: The store cannot be written.
    """
    _check(name, holder, ttl)
    now = utcnow()
    expires = now + timedelta(seconds=ttl)
    try:
        with db.engine.begin() as conn:
            taken = conn.execute(
                update(_L)
                .where(_L.c.name == name, or_(_L.c.holder == holder, _L.c.expires_at < now))
                .values(holder=holder, expires_at=expires)
            ).rowcount
            if taken:
                return True
            if conn.scalar(select(_L.c.name).where(_L.c.name == name)) is not None:
                return False  # someone else holds it
            # another server may insert it between our SELECT and our INSERT: then it holds it.
            # RETURNING says whether ours went in (psycopg reports no rowcount for it).
            inserted = conn.execute(
                _insert_if_absent(db).values(name=name, holder=holder, expires_at=expires).returning(_L.c.name)
            ).first()
            return inserted is not None
    except IntegrityError:
        return False
    except SQLAlchemyError as exc:
        raise db.error(exc, "write") from None


def renew_lease(db: Database, name: str, holder: str, ttl: float) -> bool:
    """Extend ``holder``'s lease ``name`` by ``ttl`` seconds from now.

    Returns:
        False when ``holder`` does not hold it (another server took it after it expired).

    Raises:
        ValueError: An empty or too long name or holder, or a ttl that is not positive.
        DatabaseError: The store cannot be written.
    """
    _check(name, holder, ttl)
    expires = utcnow() + timedelta(seconds=ttl)
    try:
        with db.engine.begin() as conn:
            return bool(conn.execute(
                update(_L).where(_L.c.name == name, _L.c.holder == holder).values(expires_at=expires)
            ).rowcount)
    except SQLAlchemyError as exc:
        raise db.error(exc, "write") from None


def release_lease(db: Database, name: str, holder: str) -> bool:
    """Give the lease up (a server stopping), so another one may take it at once.

    Returns:
        Whether ``holder`` held it.

    Raises:
        DatabaseError: The store cannot be written.
    """
    try:
        with db.engine.begin() as conn:
            return bool(conn.execute(delete(_L).where(_L.c.name == name, _L.c.holder == holder)).rowcount)
    except SQLAlchemyError as exc:
        raise db.error(exc, "write") from None


def lease_holder(db: Database, name: str) -> dict[str, Any] | None:
    """``{name, holder, expires_at (ISO 8601), expired}`` of the lease, or None if nobody holds it.

    Raises:
        DatabaseError: The store cannot be read.
    """
    try:
        with db.engine.connect() as conn:
            row = conn.execute(select(_L).where(_L.c.name == name)).first()
    except SQLAlchemyError as exc:
        raise db.error(exc) from None
    if row is None:
        return None
    return {
        "name": row.name, "holder": row.holder, "expires_at": row.expires_at.isoformat(),
        "expired": row.expires_at < utcnow(),
    }
