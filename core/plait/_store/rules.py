"""The notification rules repository: every SQL statement about ``notification_rules``.

Callers get ``NotificationRule`` records, never SQLAlchemy rows; database errors become
``DatabaseError`` naming the database (password masked). See ``plait.notifications`` for what
a rule means and how it is matched against flow run state changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Table, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from plait._store.database import Database, get_database
from plait._store.models import NOTIFICATION_RULES

__all__ = ["NotificationRule", "RuleNameTaken", "insert_rule", "list_rules", "delete_rule"]

# Short names for the tables this module speaks of.
_N: Table = NOTIFICATION_RULES


@dataclass(frozen=True, slots=True)
class NotificationRule:
    """A stored rule: notify through ``block`` (``slug/name``) when a flow run whose name
    matches the glob ``flow_name`` and that carries every tag in ``tags`` enters one of
    ``states`` (state type names)."""

    id: str
    name: str
    block: str
    flow_name: str
    tags: list[str] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    enabled: bool = True
    created: datetime | None = None


class RuleNameTaken(Exception):
    """Another rule already has this name (names are unique)."""


def list_rules(database: Database | None = None, *, enabled_only: bool = False) -> list[NotificationRule]:
    """Every rule (or only the enabled ones, which is what matching needs), oldest first.

    Raises:
        DatabaseError: The database cannot be read.
    """
    db = database or get_database()
    query = select(_N).order_by(_N.c.created, _N.c.name)
    if enabled_only:
        query = query.where(_N.c.enabled.is_(True))
    try:
        with db.engine.connect() as conn:
            rows = conn.execute(query).all()
    except SQLAlchemyError as exc:
        raise db.error(exc, "read") from None
    return [
        NotificationRule(
            id=str(r.id), name=str(r.name), block=str(r.block), flow_name=str(r.flow_name),
            tags=list(r.tags or []), states=list(r.states or []), enabled=bool(r.enabled), created=r.created,
        )
        for r in rows
    ]


def insert_rule(rule: NotificationRule, database: Database | None = None) -> None:
    """Store a new rule.

    Raises:
        RuleNameTaken: A rule with this name exists (a concurrent creator counts too).
        DatabaseError: The database cannot be written.
    """
    db = database or get_database()
    try:
        with db.engine.begin() as conn:
            if conn.execute(select(_N.c.id).where(_N.c.name == rule.name)).first() is not None:
                raise RuleNameTaken(rule.name)
            conn.execute(
                _N.insert().values(
                    id=rule.id, name=rule.name, block=rule.block, flow_name=rule.flow_name, tags=list(rule.tags),
                    states=list(rule.states), enabled=rule.enabled, created=rule.created,
                )
            )
    except IntegrityError:
        raise RuleNameTaken(rule.name) from None
    except SQLAlchemyError as exc:
        raise db.error(exc, "write to") from None


def delete_rule(rule_id: str, database: Database | None = None) -> bool:
    """Delete the rule with this id; whether there was one.

    Raises:
        DatabaseError: The database cannot be written.
    """
    db = database or get_database()
    try:
        with db.engine.begin() as conn:
            deleted = conn.execute(_N.delete().where(_N.c.id == rule_id)).rowcount
    except SQLAlchemyError as exc:
        raise db.error(exc, "write to") from None
    return bool(deleted)
