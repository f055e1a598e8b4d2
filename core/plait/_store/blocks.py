"""The blocks repository: every SQL statement about block documents, the references between
them, block types and their schemas.

Callers get plain records (``BlockDocument``, ``BlockReference``, ...), never SQLAlchemy rows,
and work inside one unit of work::

    from plait._store.blocks import transact

    def work(tx: BlocksTransaction) -> BlockDocument | None:
        return tx.get_by_name("webhook", "ops")

    doc = transact(work, action="read blocks from")

A unit of work is one database transaction, and a read sees one consistent snapshot:

- A **read** on SQLite begins its transaction explicitly (pysqlite begins none before a
  SELECT, so each SELECT would see the newest commit); on PostgreSQL it runs at REPEATABLE
  READ. A load that follows a parent's reference to a nested document therefore never meets
  a document a concurrent overwrite deleted after the parent was read.
- A **write** on SQLite takes the write lock up front (``BEGIN IMMEDIATE``), so writers queue
  (``busy_timeout``) instead of failing when one read a snapshot another has since changed;
  on PostgreSQL each document a write reads by name or id is locked (``FOR UPDATE``) for the
  rest of the transaction, so two overwrites of one block, or a delete and a save that
  references the block, run one after the other.

Every document a write inserts, replaces or deletes adds a ``block.saved`` /
``block.deleted`` event (``plait._store.events``; payload: id, slug, name and, for saves,
``action`` created|updated — never a value), stored just before the transaction commits.

Database errors become ``DatabaseError`` naming the database (password masked); a write that
lost a race on a unique key, a deadlock or a serialization failure is retried.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Table, func, select
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from plait._store.database import Database, get_database
from plait._store.events import insert_events, new_event
from plait._store.models import (
    BLOCK_DOCUMENT_REFERENCES,
    BLOCK_DOCUMENTS,
    BLOCK_SCHEMAS,
    BLOCK_TYPES,
)

__all__ = [
    "BlockDocument",
    "BlockListing",
    "BlockReference",
    "BlockSchemaRecord",
    "BlockTypeRecord",
    "BlocksTransaction",
    "session",
    "transact",
]

# Short names for the tables this module speaks of.
_D: Table = BLOCK_DOCUMENTS
_R: Table = BLOCK_DOCUMENT_REFERENCES
_S: Table = BLOCK_SCHEMAS
_T: Table = BLOCK_TYPES

# PostgreSQL SQLSTATEs worth another try: serialization_failure, deadlock_detected.
_RETRY_SQLSTATES = ("40001", "40P01")
_WRITE_ATTEMPTS = 3

T = TypeVar("T")


# -- records -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BlockDocument:
    """A saved block as stored: values as JSON (secrets encrypted, nested blocks ``$ref``)."""

    id: str
    name: str
    slug: str
    schema_checksum: str
    data: dict[str, Any]
    created: datetime | None
    updated: datetime | None


@dataclass(frozen=True, slots=True)
class BlockListing:
    """One line of a listing: a document without its values, with its type's stored name."""

    id: str
    name: str
    slug: str
    type_name: str | None
    created: datetime | None
    updated: datetime | None


@dataclass(frozen=True, slots=True)
class BlockReference:
    """Document ``parent_id`` holds document ``child_id`` in its field ``field_name``."""

    parent_id: str
    field_name: str
    child_id: str


@dataclass(frozen=True, slots=True)
class BlockTypeRecord:
    """A block type's row: its slug and display metadata."""

    slug: str
    name: str
    description: str
    capabilities: list[str]
    plugin: str | None


@dataclass(frozen=True, slots=True)
class BlockSchemaRecord:
    """One version of a type's JSON schema, keyed by its checksum."""

    checksum: str
    slug: str
    json_schema: dict[str, Any]
    secret_fields: list[str]


def _document(row: Row[Any]) -> BlockDocument:
    return BlockDocument(
        id=str(row.id), name=str(row.name), slug=str(row.slug), schema_checksum=str(row.schema_checksum),
        data=dict(row.data or {}), created=row.created, updated=row.updated,
    )


# -- the unit of work --------------------------------------------------------------------------
class BlocksTransaction:
    """The repository's operations, all inside one database transaction.

    Get one from ``session()`` or ``transact()``; it is only valid inside them. In a write
    transaction, ``get_by_name`` and ``get_by_id`` lock the document they return.
    """

    def __init__(self, conn: Connection, *, write: bool) -> None:
        self._conn = conn
        self.write = write
        # block.saved / block.deleted events, stored when the transaction commits
        self.events: list[dict[str, Any]] = []

    def _note(self, kind: str, doc_id: str, slug: str, name: str, now: datetime | None = None, **extra: Any) -> None:
        payload = {"id": doc_id, "slug": slug, "name": name, **extra}
        self.events.append(new_event(kind, f"block/{slug}/{name}", payload, now))

    # -- documents -----------------------------------------------------------------------------
    def _one(self, *where: Any) -> BlockDocument | None:
        query = select(_D).where(*where)
        if self.write:
            query = query.with_for_update()  # SQLite has no row locks: BEGIN IMMEDIATE holds all
        row = self._conn.execute(query).first()
        return _document(row) if row is not None else None

    def get_by_name(self, slug: str, name: str) -> BlockDocument | None:
        """The document of type ``slug`` named ``name``."""
        return self._one(_D.c.slug == slug, _D.c.name == name)

    def get_by_id(self, doc_id: str) -> BlockDocument | None:
        """The document with this id."""
        return self._one(_D.c.id == doc_id)

    def find_by_name(self, name: str, slugs: Sequence[str] | None = None) -> list[BlockDocument]:
        """Documents named ``name`` (of any type, or of one of ``slugs``), by type slug."""
        query = select(_D).where(_D.c.name == name).order_by(_D.c.slug)
        if slugs is not None:
            if not slugs:
                return []
            query = query.where(_D.c.slug.in_(list(slugs)))
        return [_document(r) for r in self._conn.execute(query)]

    def names(self, slug: str | None = None) -> list[str]:
        """Every document name (of type ``slug``), anonymous ones included."""
        query = select(_D.c.name).order_by(_D.c.name)
        if slug is not None:
            query = query.where(_D.c.slug == slug)
        return [str(r[0]) for r in self._conn.execute(query)]

    def slugs(self) -> set[str]:
        """The type slugs that have at least one document."""
        return {str(r[0]) for r in self._conn.execute(select(_D.c.slug).distinct())}

    def listing(self, slugs: Sequence[str] | None = None) -> list[BlockListing]:
        """Documents without their values, by type slug then name (of ``slugs`` only)."""
        query = (
            select(_D.c.id, _D.c.name, _D.c.slug, _D.c.created, _D.c.updated, _T.c.name.label("type_name"))
            .select_from(_D.outerjoin(_T, _T.c.slug == _D.c.slug))
            .order_by(_D.c.slug, _D.c.name)
        )
        if slugs is not None:
            query = query.where(_D.c.slug.in_(list(slugs)))
        return [
            BlockListing(str(r.id), str(r.name), str(r.slug), r.type_name, r.created, r.updated)
            for r in self._conn.execute(query)
        ]

    def insert_document(
        self, *, doc_id: str, name: str, slug: str, schema_checksum: str, data: dict[str, Any], now: datetime
    ) -> None:
        """Add a document (a unique (slug, name) clash raises IntegrityError, retried by
        ``transact``)."""
        self._conn.execute(
            _D.insert().values(
                id=doc_id, name=name, slug=slug, schema_checksum=schema_checksum, data=data, created=now, updated=now
            )
        )
        self._note("block.saved", doc_id, slug, name, now, action="created")

    def replace_document(self, doc_id: str, *, schema_checksum: str, data: dict[str, Any], now: datetime) -> None:
        """Give a document new values (its id, name, type and creation time stay)."""
        updated = self._conn.execute(
            _D.update().where(_D.c.id == doc_id).values(schema_checksum=schema_checksum, data=data, updated=now)
            .returning(_D.c.slug, _D.c.name)
        ).first()
        if updated is not None:
            self._note("block.saved", doc_id, str(updated.slug), str(updated.name), now, action="updated")

    def delete_document(self, doc_id: str) -> list[str]:
        """Delete a document and the references it holds; returns the ids it referenced."""
        children = self.children_of(doc_id)
        self._conn.execute(_R.delete().where(_R.c.parent_document_id == doc_id))
        deleted = self._conn.execute(_D.delete().where(_D.c.id == doc_id).returning(_D.c.slug, _D.c.name)).first()
        if deleted is not None:
            self._note("block.deleted", doc_id, str(deleted.slug), str(deleted.name))
        return children

    # -- references ----------------------------------------------------------------------------
    def references_of(self, parent_id: str) -> list[BlockReference]:
        """The references document ``parent_id`` holds."""
        query = select(_R.c.field_name, _R.c.child_document_id).where(_R.c.parent_document_id == parent_id)
        return [BlockReference(parent_id, str(r[0]), str(r[1])) for r in self._conn.execute(query)]

    def children_of(self, parent_id: str) -> list[str]:
        """Ids of the documents ``parent_id`` references (each once, in no set order)."""
        return list(dict.fromkeys(r.child_id for r in self.references_of(parent_id)))

    def users_of(self, child_id: str) -> list[BlockReference]:
        """The references that point at document ``child_id``."""
        query = select(_R.c.parent_document_id, _R.c.field_name).where(_R.c.child_document_id == child_id)
        return [BlockReference(str(r[0]), str(r[1]), child_id) for r in self._conn.execute(query)]

    def count_users(self, child_id: str) -> int:
        """How many references point at document ``child_id``."""
        query = select(func.count()).select_from(_R).where(_R.c.child_document_id == child_id)
        return int(self._conn.execute(query).scalar() or 0)

    def set_references(self, parent_id: str, references: Iterable[tuple[str, str]]) -> None:
        """Replace the references ``parent_id`` holds by ``(field_name, child_id)`` pairs."""
        self._conn.execute(_R.delete().where(_R.c.parent_document_id == parent_id))
        rows = [
            {"id": str(uuid.uuid4()), "parent_document_id": parent_id, "field_name": f, "child_document_id": c}
            for f, c in references
        ]
        if rows:
            self._conn.execute(_R.insert(), rows)

    def path_between(self, start_ids: Iterable[str], target_id: str) -> list[BlockReference] | None:
        """A chain of references from one of ``start_ids`` to ``target_id``, or None.

        The chain is empty when ``target_id`` is itself among ``start_ids``. Follows the
        stored references breadth first, one query per level, each document once.
        """
        frontier = list(dict.fromkeys(start_ids))
        if target_id in frontier:
            return []
        came_from: dict[str, BlockReference | None] = {doc_id: None for doc_id in frontier}
        while frontier:
            query = select(_R.c.parent_document_id, _R.c.field_name, _R.c.child_document_id).where(
                _R.c.parent_document_id.in_(frontier)
            )
            next_frontier: list[str] = []
            for parent, field_name, child in self._conn.execute(query):
                child = str(child)
                if child in came_from:
                    continue
                came_from[child] = BlockReference(str(parent), str(field_name), child)
                if child == target_id:
                    chain: list[BlockReference] = []
                    step = came_from[child]
                    while step is not None:
                        chain.append(step)
                        step = came_from[step.parent_id]
                    return chain[::-1]
                next_frontier.append(child)
            frontier = next_frontier
        return None

    def drop_orphans(self, candidates: Iterable[str], *, anonymous_prefix: str) -> list[str]:
        """Delete the anonymous documents (named ``anonymous_prefix...``) among
        ``candidates`` that nothing references any more, then, in turn, their own anonymous
        children; returns the deleted ids."""
        pending = list(dict.fromkeys(candidates))
        seen: set[str] = set()
        deleted: list[str] = []
        while pending:
            doc_id = pending.pop()
            if doc_id in seen:
                continue
            seen.add(doc_id)
            doc = self.get_by_id(doc_id)
            if doc is None or not doc.name.startswith(anonymous_prefix) or self.count_users(doc_id):
                continue
            pending.extend(self.delete_document(doc_id))
            deleted.append(doc_id)
        return deleted

    # -- types and schemas ---------------------------------------------------------------------
    def record_type(self, block_type: BlockTypeRecord, schema: BlockSchemaRecord, now: datetime) -> None:
        """Upsert the type's row (metadata refreshed) and add its schema's row if new."""
        self._upsert(
            _T,
            {
                "slug": block_type.slug, "name": block_type.name, "description": block_type.description,
                "capabilities": list(block_type.capabilities), "plugin": block_type.plugin, "updated": now,
            },
            "slug",
            update=True,
        )
        self._upsert(
            _S,
            {
                "checksum": schema.checksum, "slug": schema.slug, "json_schema": schema.json_schema,
                "secret_fields": list(schema.secret_fields), "created": now,
            },
            "checksum",
            update=False,
        )

    def schema(self, checksum: str) -> BlockSchemaRecord | None:
        """The stored schema with this checksum."""
        row = self._conn.execute(select(_S).where(_S.c.checksum == checksum)).first()
        if row is None:
            return None
        return BlockSchemaRecord(
            str(row.checksum), str(row.slug), dict(row.json_schema or {}), list(row.secret_fields or [])
        )

    def _upsert(self, table: Table, values: dict[str, Any], key: str, update: bool) -> None:
        """Insert ``values``; on a conflict on ``key`` update the row (or leave it)."""
        dialect = self._conn.dialect.name
        if dialect in ("postgresql", "sqlite"):
            from sqlalchemy.dialects import postgresql, sqlite

            stmt: Any = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table).values(**values)
            if update:
                stmt = stmt.on_conflict_do_update(
                    index_elements=[key], set_={k: v for k, v in values.items() if k != key}
                )
            else:
                stmt = stmt.on_conflict_do_nothing(index_elements=[key])
            self._conn.execute(stmt)
            return
        exists = self._conn.execute(select(table.c[key]).where(table.c[key] == values[key])).first()
        if exists is None:
            self._conn.execute(table.insert().values(**values))
        elif update:
            self._conn.execute(table.update().where(table.c[key] == values[key]).values(**values))


# -- transactions ------------------------------------------------------------------------------
def _begin(conn: Connection, write: bool) -> None:
    """Start the transaction for a read or a write (see the module docstring)."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        dbapi = conn.connection.dbapi_connection
        # In-memory databases share one connection; never BEGIN inside a running transaction.
        if not getattr(dbapi, "in_transaction", False):
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
    elif dialect == "postgresql" and not write:
        conn.execution_options(isolation_level="REPEATABLE READ")
        conn.begin()
    else:
        conn.begin()


@contextmanager
def _raw_session(db: Database, write: bool) -> Iterator[BlocksTransaction]:
    with db.engine.connect() as conn:
        _begin(conn, write)
        tx = BlocksTransaction(conn, write=write)
        try:
            yield tx
            if write:
                insert_events(conn, tx.events)  # last: on PostgreSQL it holds the events lock until commit
        except BaseException:
            conn.rollback()
            raise
        if write:
            conn.commit()
        else:
            conn.rollback()  # a read changes nothing; ending it frees the snapshot


@contextmanager
def session(*, action: str, write: bool = False, database: Database | None = None) -> Iterator[BlocksTransaction]:
    """One transaction on the blocks tables: ``with session(action="read blocks from") as tx``.

    Args:
        action: What is done, completing "Cannot <action> the plait database" in errors.
        write: Whether the transaction writes (commit at the end; see the module docstring).
        database: The database (default: the one the settings name).

    Raises:
        DatabaseError: The database cannot be reached, read or written.
    """
    db = database or get_database()
    try:
        with _raw_session(db, write) as tx:
            yield tx
    except SQLAlchemyError as exc:
        raise db.error(exc, action) from None


def _retryable(exc: SQLAlchemyError) -> bool:
    if isinstance(exc, IntegrityError):
        return True  # a concurrent writer inserted the same (slug, name) first: the retry sees it
    code = getattr(getattr(exc, "orig", None), "sqlstate", None) or getattr(getattr(exc, "orig", None), "pgcode", None)
    return isinstance(exc, DBAPIError) and code in _RETRY_SQLSTATES


def transact(
    work: Callable[[BlocksTransaction], T], *, action: str, write: bool = False, database: Database | None = None
) -> T:
    """Run ``work(tx)`` in one transaction and return its result.

    A write that lost a race (unique key, deadlock, serialization failure) runs again from
    the start, so ``work`` must do nothing outside the database that it cannot repeat.
    Exceptions ``work`` raises roll the transaction back and propagate unchanged.

    Raises:
        DatabaseError: The database cannot be reached, read or written.
    """
    db = database or get_database()
    attempts = _WRITE_ATTEMPTS if write else 1
    for attempt in range(1, attempts + 1):
        try:
            with _raw_session(db, write) as tx:
                return work(tx)
        except SQLAlchemyError as exc:
            if attempt < attempts and _retryable(exc):
                continue
            raise db.error(exc, action) from None
    raise AssertionError("unreachable")
