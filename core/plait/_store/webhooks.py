"""The webhooks repository: every SQL statement about ``webhooks``.

A webhook is a named receiver, ``POST /api/v1/webhooks/<slug>``, that turns an HTTP call
into an event through its template. The slug (22 url-safe characters) is random, so the
URL names nothing; the caller proves itself with the webhook's own token (43 url-safe
characters), of which the store keeps only the SHA-256 (a random, long token needs no slow
hash). Checking a token compares hashes in constant time. Rows come back as dicts without
the hash, times as ISO 8601 text in UTC; the token is returned once, by ``create_webhook``
and ``rotate_webhook_token``.

Creating, changing and deleting a webhook emit ``webhook.created``, ``webhook.updated``
(``changed`` lists the fields, ``token`` for a rotation) and ``webhook.deleted`` on
``webhook/<name>`` in the same transaction; the token is in no event. The template is
stored as given: checking it is the caller's job (``plait.automations._templates``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from plait._batch import clean_text
from plait._masking import mask
from plait._runs import utcnow
from plait._store.database import Database
from plait._store.events import record_event
from plait._store.models import WEBHOOKS

__all__ = [
    "WEBHOOKS",
    "WebhookExists",
    "NAME_PATTERN",
    "PATH_PREFIX",
    "create_webhook",
    "list_webhooks",
    "get_webhook",
    "update_webhook",
    "rotate_webhook_token",
    "delete_webhook",
    "webhook_for_call",
    "token_matches",
    "record_webhook_call",
]

WEBHOOKS: Table = WEBHOOKS
_W = WEBHOOKS

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"
PATH_PREFIX = "/api/v1/webhooks/"
_NAME = re.compile(NAME_PATTERN)
_SLUG = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MAX_TEMPLATE = 100_000
_MAX_DESCRIPTION = 20_000


class WebhookExists(ValueError):
    """A webhook of that name exists already."""


# -- checks ------------------------------------------------------------------------------------------
def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"a webhook's name is 1 to 200 letters, digits, '.', '_' or '-', starting with a letter or "
                         f"digit (e.g. 'github-push'), not {name!r}")
    return name


def _check_template(template: Any) -> str:
    if not isinstance(template, str) or not template.strip():
        raise ValueError("a webhook needs a template: the Jinja2 text of the event it makes")
    if len(template) > _MAX_TEMPLATE:
        raise ValueError(f"a webhook's template is at most {_MAX_TEMPLATE:,} characters, not {len(template):,}")
    return mask(clean_text(template) or "")  # a secret plait knows is never stored in the clear


def _check_description(value: Any) -> str:
    if not isinstance(value, str) or len(value) > _MAX_DESCRIPTION:
        raise ValueError(f"a webhook's description is a text of at most {_MAX_DESCRIPTION:,} characters")
    return mask(clean_text(value) or "")


def _check_enabled(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"enabled is true or false, not {value!r}")
    return value


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _missing(name: str) -> LookupError:
    return LookupError(f"no webhook named {name!r}; `plait webhook ls` lists them, "
                       f"`plait webhook create {name}` makes it")


# -- rows ----------------------------------------------------------------------------------------------
def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _record(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id, "name": row.name, "slug": row.slug, "path": PATH_PREFIX + row.slug, "template": row.template,
        "description": row.description, "enabled": bool(row.enabled), "created": _iso(row.created),
        "updated": _iso(row.updated), "last_called_at": _iso(row.last_called_at),
    }


_PUBLIC = tuple(c for c in _W.c if c.name != "token_hash")


def _row(conn: Connection, name: str) -> Row[Any] | None:
    query = select(*_PUBLIC).where(_W.c.name == name)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).first()


def _event(conn: Connection, kind: str, name: str, payload: dict[str, Any]) -> None:
    record_event(conn, kind, f"webhook/{name}", {"name": name, **payload})


# -- writing ---------------------------------------------------------------------------------------------
def create_webhook(
    db: Database, name: str, template: str, *, description: str = "", enabled: bool = True
) -> tuple[dict[str, Any], str]:
    """Create the webhook ``name``; emits ``webhook.created``.

    Returns:
        ``(webhook, token)``: the webhook's dict and its token, which nobody can read back
        (only its hash is stored; ``rotate_webhook_token`` makes a new one).

    Raises:
        WebhookExists: The name is taken.
        ValueError: The name or a value is malformed (the message names it).
        DatabaseError: The database cannot be written.
    """
    _check_name(name)
    values = {"template": _check_template(template), "description": _check_description(description),
              "enabled": _check_enabled(enabled)}
    token = secrets.token_urlsafe(32)
    now = utcnow()
    row_id = str(uuid.uuid4())
    try:
        with db.connect("create a webhook in", write=True, races=True) as conn:
            conn.execute(_W.insert().values(id=row_id, name=name, slug=secrets.token_urlsafe(16),
                                            token_hash=_digest(token), created=now, updated=now,
                                            last_called_at=None, **values))
            saved = conn.execute(select(*_PUBLIC).where(_W.c.id == row_id)).one()
            _event(conn, "webhook.created", name, {"enabled": values["enabled"]})
    except IntegrityError:
        raise WebhookExists(f"a webhook named {name!r} already exists; choose another name, or change that one "
                            f"(`plait webhook inspect {name}`)") from None
    return _record(saved), token


def update_webhook(
    db: Database,
    name: str,
    *,
    template: str | None = None,
    description: str | None = None,
    enabled: bool | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Change the given fields of the webhook ``name`` (None: keep); emits ``webhook.updated``
    with ``changed`` when something did change.

    Returns:
        ``(webhook, changed)``: the webhook as it is now and the names of the fields that
        changed (empty: nothing did).

    Raises:
        LookupError: No webhook of that name.
        ValueError: A malformed value.
        DatabaseError: The database cannot be written.
    """
    wanted: dict[str, Any] = {}
    if template is not None:
        wanted["template"] = _check_template(template)
    if description is not None:
        wanted["description"] = _check_description(description)
    if enabled is not None:
        wanted["enabled"] = _check_enabled(enabled)
    with db.connect("change a webhook in", write=True) as conn:
        row = _row(conn, name)
        if row is None:
            raise _missing(name)
        changed = sorted(k for k, v in wanted.items() if row._mapping[k] != v)
        if not changed:
            return _record(row), []
        conn.execute(update(_W).where(_W.c.id == row.id).values(updated=utcnow(), **{k: wanted[k] for k in changed}))
        saved = conn.execute(select(*_PUBLIC).where(_W.c.id == row.id)).one()
        _event(conn, "webhook.updated", name, {"enabled": bool(saved.enabled), "changed": changed})
    return _record(saved), changed


def rotate_webhook_token(db: Database, name: str) -> tuple[dict[str, Any], str]:
    """Give the webhook ``name`` a new token (the old one stops working at once); emits
    ``webhook.updated`` with ``changed: ["token"]``.

    Returns:
        ``(webhook, token)``.

    Raises:
        LookupError: No webhook of that name.
        DatabaseError: The database cannot be written.
    """
    token = secrets.token_urlsafe(32)
    with db.connect("rotate a webhook's token in", write=True) as conn:
        row = _row(conn, name)
        if row is None:
            raise _missing(name)
        conn.execute(update(_W).where(_W.c.id == row.id).values(token_hash=_digest(token), updated=utcnow()))
        saved = conn.execute(select(*_PUBLIC).where(_W.c.id == row.id)).one()
        _event(conn, "webhook.updated", name, {"enabled": bool(saved.enabled), "changed": ["token"]})
    return _record(saved), token


def delete_webhook(db: Database, name: str) -> dict[str, Any]:
    """Delete the webhook ``name`` (its URL answers 404 from now on); emits ``webhook.deleted``.

    Returns:
        The webhook as it was.

    Raises:
        LookupError: No webhook of that name.
        DatabaseError: The database cannot be written.
    """
    with db.connect("delete a webhook in", write=True) as conn:
        row = _row(conn, name)
        if row is None:
            raise _missing(name)
        conn.execute(delete(_W).where(_W.c.id == row.id))
        _event(conn, "webhook.deleted", name, {"enabled": bool(row.enabled)})
    return _record(row)


# -- reading ---------------------------------------------------------------------------------------------
def list_webhooks(db: Database) -> list[dict[str, Any]]:
    """Every webhook by name (never a token or its hash).

    Raises:
        DatabaseError: The database cannot be read.
    """
    with db.connect("read webhooks from") as conn:
        rows = conn.execute(select(*_PUBLIC).order_by(_W.c.name)).all()
    return [_record(r) for r in rows]


def get_webhook(db: Database, name: str) -> dict[str, Any]:
    """The webhook ``name``.

    Raises:
        LookupError: No webhook of that name (the message says how to list or make one).
        DatabaseError: The database cannot be read.
    """
    with db.connect("read webhooks from") as conn:
        row = conn.execute(select(*_PUBLIC).where(_W.c.name == name)).first()
    if row is None:
        raise _missing(name)
    return _record(row)


def token_matches(token_hash: str, token: str | None) -> bool:
    """Whether ``token`` is the one whose SHA-256 is ``token_hash``, compared in constant
    time (a missing token is compared too, so timing tells nothing)."""
    given = _digest(token if isinstance(token, str) else "")
    return hmac.compare_digest(given, token_hash) and isinstance(token, str) and bool(token)


def webhook_for_call(db: Database, slug: str, token: str | None) -> dict[str, Any]:
    """The webhook a call to ``/webhooks/<slug>`` reaches, when ``token`` is its token.

    Raises:
        LookupError: No webhook has that slug, or it is disabled (the caller cannot tell
            which: both answer 404).
        PermissionError: The token is missing or wrong.
        DatabaseError: The database cannot be read.
    """
    if not isinstance(slug, str) or not _SLUG.match(slug):
        raise LookupError("no webhook at this URL")
    with db.connect("read webhooks from") as conn:
        row = conn.execute(select(*_PUBLIC, _W.c.token_hash).where(_W.c.slug == slug)).first()
    if row is None or not row.enabled:
        raise LookupError("no webhook at this URL (or it is disabled)")
    if not token_matches(row.token_hash, token):
        raise PermissionError("missing" if not token else "wrong")
    return _record(row)


def record_webhook_call(
    db: Database,
    webhook_id: str,
    kind: str,
    resource: str,
    payload: dict[str, Any],
    labels: dict[str, str],
) -> dict[str, Any]:
    """Store the event a call of the webhook ``webhook_id`` made and note the call's time
    (``last_called_at``), in one transaction.

    Returns:
        The stored event as ``list_events`` shows it (``seq`` and ``id`` included).

    Raises:
        ValueError: ``kind`` or ``resource`` is malformed.
        DatabaseError: The database cannot be written.
    """
    with db.connect("store a webhook's event in", write=True) as conn:
        conn.execute(update(_W).where(_W.c.id == webhook_id).values(last_called_at=utcnow()))
        return record_event(conn, kind, resource, payload, labels=labels or None)
