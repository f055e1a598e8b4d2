"""The API keys repository: every SQL statement about ``api_keys``.

A key looks like ``plait_<prefix>_<secret>``: ``prefix`` is 8 lowercase letters and digits,
shown in listings and used to find the key's row; the secret is 32 url-safe characters.
The store keeps only the SHA-256 of the whole key (a key is random and long, so a fast
hash is enough; nothing short like a password is ever hashed here). Checking a key compares
hashes in constant time. Listings, events and errors carry the name and prefix only.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, or_, select
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from plait._runs import utcnow
from plait._store.database import Database
from plait._store.events import record_event
from plait._store.models import API_KEYS

__all__ = [
    "SCOPES",
    "KEY_PREFIX",
    "create_api_key",
    "verify_api_key",
    "list_api_keys",
    "revoke_api_key",
    "api_keys_exist",
]

_K: Table = API_KEYS

SCOPES = ("read", "run", "admin")  # each allows what the ones before it allow
KEY_PREFIX = "plait_"
_PREFIX_LEN = 8
_SECRET_LEN = 32
_KEY_LEN = len(KEY_PREFIX) + _PREFIX_LEN + 1 + _SECRET_LEN
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_NAME_MAX = 100
# Writing last_used_at on every request would make every read a write.
_LAST_USED_EVERY = timedelta(minutes=1)



def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _record(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id, "name": row.name, "prefix": row.prefix, "scope": row.scope,
        "created": _iso(row.created), "expires_at": _iso(row.expires_at),
        "revoked_at": _iso(row.revoked_at), "last_used_at": _iso(row.last_used_at),
    }


_PUBLIC = (_K.c.id, _K.c.name, _K.c.prefix, _K.c.scope, _K.c.created, _K.c.expires_at, _K.c.revoked_at,
           _K.c.last_used_at)


def _digest(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError("an API key needs a name (e.g. 'ci' or 'worker-eu')")
    cleaned = str(name).strip()
    if len(cleaned) > _NAME_MAX or not cleaned.isprintable():
        raise ValueError(f"API key name {cleaned[:40]!r}: use at most {_NAME_MAX} printable characters")
    return cleaned


def create_api_key(
    db: Database, name: str, scope: str, expires_at: datetime | None = None
) -> tuple[dict[str, Any], str]:
    """Create a key; returns ``(its record, the key)``. The key is shown to nobody else and
    cannot be recovered: only its hash is stored.

    Args:
        db: The database.
        name: A unique name for the key (what it is for).
        scope: ``read``, ``run`` or ``admin``.
        expires_at: When the key stops working (none: never).

    Raises:
        ValueError: The name is taken or malformed, the scope is unknown, or ``expires_at``
            is not a future time.
        DatabaseError: The database cannot be written.
    """
    name = _check_name(name)
    if scope not in SCOPES:
        raise ValueError(f"unknown API key scope {scope!r}; use one of: {', '.join(SCOPES)}")
    now = utcnow()
    if expires_at is not None:
        if not isinstance(expires_at, datetime):
            raise ValueError(f"expires_at must be a datetime, not {type(expires_at).__name__}")
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        if expires_at <= now:
            raise ValueError(f"expires_at {expires_at.isoformat()} is not in the future")
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(_PREFIX_LEN))
    plaintext = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(24)}"  # 24 bytes -> 32 characters
    values = {
        "id": str(uuid.uuid4()), "name": name, "prefix": prefix, "hash": _digest(plaintext), "scope": scope,
        "created": now, "expires_at": expires_at, "revoked_at": None, "last_used_at": None,
    }
    try:
        with db.engine.begin() as conn:
            conn.execute(_K.insert().values(**values))
            record_event(conn, "api-key.created", f"api-key/{name}", {"name": name, "prefix": prefix, "scope": scope})
            row = conn.execute(select(*_PUBLIC).where(_K.c.id == values["id"])).one()
    except IntegrityError:
        raise ValueError(
            f"an API key named {name!r} already exists (revoked keys keep their name); choose another name"
        ) from None
    except SQLAlchemyError as exc:
        raise db.error(exc, "create an API key in") from None
    return _record(row), plaintext


def _looks_like_key(plaintext: Any) -> bool:
    return (
        isinstance(plaintext, str) and len(plaintext) == _KEY_LEN and plaintext.startswith(KEY_PREFIX)
        and plaintext[len(KEY_PREFIX) + _PREFIX_LEN] == "_"
    )


def verify_api_key(db: Database, plaintext: str) -> dict[str, Any] | None:
    """The record of the key ``plaintext`` when it is valid now; None for anything else
    (malformed, unknown, revoked or expired).

    Raises:
        DatabaseError: The database cannot be read.
    """
    if not _looks_like_key(plaintext):
        return None
    prefix = plaintext[len(KEY_PREFIX):len(KEY_PREFIX) + _PREFIX_LEN]
    digest = _digest(plaintext)
    now = utcnow()
    with db.connect("check an API key against") as conn:
        rows = conn.execute(select(*_PUBLIC, _K.c.hash).where(_K.c.prefix == prefix)).all()
        match = None
        for row in rows:  # compare every candidate, so timing tells nothing of which matched
            if hmac.compare_digest(row.hash, digest):
                match = row
        if match is None or match.revoked_at is not None:
            return None
        if match.expires_at is not None and match.expires_at <= now:
            return None
        touch = match.last_used_at is None or now - match.last_used_at >= _LAST_USED_EVERY
        if touch:
            conn.execute(_K.update().where(_K.c.id == match.id).values(last_used_at=now))
            conn.commit()
    record = _record(match)
    if touch:
        record["last_used_at"] = now.isoformat()
    return record


def list_api_keys(db: Database) -> list[dict[str, Any]]:
    """Every key's record (name, prefix, scope, times; never its hash), oldest first.

    Raises:
        DatabaseError: The database cannot be read.
    """
    with db.connect("read API keys from") as conn:
        rows = conn.execute(select(*_PUBLIC).order_by(_K.c.created, _K.c.name)).all()
    return [_record(r) for r in rows]


def revoke_api_key(db: Database, name_or_prefix: str) -> bool:
    """Revoke the key with this name (or, failing that, this prefix); it stops working at
    once. Returns whether a key was revoked (False: no such key, or revoked already).

    Raises:
        ValueError: The prefix matches several keys (give the name).
        DatabaseError: The database cannot be written.
    """
    wanted = str(name_or_prefix).strip()
    if not wanted:
        return False
    with db.connect("revoke an API key in", write=True) as conn:
        rows = conn.execute(
            select(_K.c.id, _K.c.name, _K.c.prefix, _K.c.scope, _K.c.revoked_at)
            .where(or_(_K.c.name == wanted, _K.c.prefix == wanted))
        ).all()
        named = [r for r in rows if r.name == wanted]
        chosen = named or rows
        if len(chosen) > 1:
            raise ValueError(f"{len(chosen)} API keys have the prefix {wanted!r}; revoke by name")
        if not chosen or chosen[0].revoked_at is not None:
            return False
        key = chosen[0]
        conn.execute(_K.update().where(_K.c.id == key.id).values(revoked_at=utcnow()))
        record_event(conn, "api-key.revoked", f"api-key/{key.name}",
                     {"name": key.name, "prefix": key.prefix, "scope": key.scope})
    return True


def api_keys_exist(db: Database) -> bool:
    """Whether any key was ever created (revoked and expired ones count: revoking the last
    key must not open a server that had auth).

    Raises:
        DatabaseError: The database cannot be read.
    """
    with db.connect("read API keys from") as conn:
        return conn.execute(select(_K.c.id).limit(1)).first() is not None
