"""Saving and deleting blocks: block documents in the database.

A saved block is a row of ``block_documents``: its type's slug, a name, the checksum of the
schema it was saved with, and its values as JSON (see ``plait.blocks._encoding``). A nested
block that was never saved gets an anonymous document of its own (``anonymous-<id>``), which
lives and dies with the block that holds it.

Every write happens in one transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from plait.blocks._db import _doc_by_id, _doc_by_name, _now, _run_write, _tables
from plait.blocks._encoding import _encode_values
from plait.blocks._load import _find
from plait.blocks._references import ANONYMOUS_PREFIX, _is_anonymous, _label, validate_name
from plait.blocks._types import _record_type
from plait.blocks._values import register_block_secrets
from plait.exceptions import BlockError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Row

    from plait.blocks._base import Block

__all__ = ["save_block", "save_in", "delete_block"]


# -- save --------------------------------------------------------------------------------------
@dataclass
class _Saved:
    """What a save wrote, to update the Python objects once the transaction committed."""

    marks: list[tuple[Block, str, str]] = field(default_factory=list)  # (block, id, name)


def _child_reference(conn: Connection, child: Block, now: datetime, saved: _Saved) -> str:
    """The document id a parent should reference for ``child``: its own saved document
    when it has one, else a new anonymous document holding its values."""
    name = child._document_name
    if name and not _is_anonymous(name):
        row = _doc_by_id(conn, child._document_id) if child._document_id else None
        if row is None or row.slug != child.block_type_slug:
            row = _doc_by_name(conn, child.block_type_slug, name)
        if row is not None:
            return str(row.id)
    doc_id = str(uuid.uuid4())
    _write(conn, child, f"{ANONYMOUS_PREFIX}{doc_id}", now, saved, existing=None, doc_id=doc_id)
    return doc_id


def _write(
    conn: Connection,
    block: Block,
    name: str,
    now: datetime,
    saved: _Saved,
    existing: Row | None,
    doc_id: str | None = None,
) -> str:
    """Insert (or, given ``existing``, replace) the document of ``block``; returns its id."""
    from sqlalchemy import select

    models = _tables()
    docs = models.BlockDocumentModel.__table__
    refs = models.BlockDocumentReferenceModel.__table__
    cls = type(block)
    checksum = _record_type(conn, cls, now)
    references: list[tuple[str, str]] = []

    def child_id(fname: str, child: Block) -> str:
        child_doc_id = _child_reference(conn, child, now, saved)
        references.append((fname, child_doc_id))
        return child_doc_id

    data = _encode_values(block, child_id)

    old_children: list[str] = []
    if existing is not None:
        doc_id = str(existing.id)
        old_children = [
            str(r.child_document_id)
            for r in conn.execute(select(refs.c.child_document_id).where(refs.c.parent_document_id == doc_id))
        ]
        conn.execute(refs.delete().where(refs.c.parent_document_id == doc_id))
        conn.execute(
            docs.update()
            .where(docs.c.id == doc_id)
            .values(schema_checksum=checksum, data=data, updated=now)
        )
    else:
        doc_id = doc_id or str(uuid.uuid4())
        conn.execute(
            docs.insert().values(
                id=doc_id, name=name, slug=cls.block_type_slug, schema_checksum=checksum,
                data=data, created=now, updated=now,
            )
        )
    if references:
        conn.execute(
            refs.insert(),
            [
                {"id": str(uuid.uuid4()), "parent_document_id": doc_id, "field_name": f, "child_document_id": c}
                for f, c in references
            ],
        )
    _drop_orphans(conn, [c for c in old_children if c not in {c2 for _, c2 in references}])
    saved.marks.append((block, doc_id, name))
    return doc_id


def _drop_orphans(conn: Connection, candidates: list[str]) -> None:
    """Delete anonymous documents among ``candidates`` that nothing references any more,
    and, in turn, their own anonymous children."""
    from sqlalchemy import func, select

    models = _tables()
    docs = models.BlockDocumentModel.__table__
    refs = models.BlockDocumentReferenceModel.__table__
    pending = list(dict.fromkeys(candidates))
    while pending:
        doc_id = pending.pop()
        row = _doc_by_id(conn, doc_id)
        if row is None or not _is_anonymous(row.name):
            continue
        users = conn.execute(select(func.count()).select_from(refs).where(refs.c.child_document_id == doc_id)).scalar()
        if users:
            continue
        children = [
            str(r.child_document_id)
            for r in conn.execute(select(refs.c.child_document_id).where(refs.c.parent_document_id == doc_id))
        ]
        conn.execute(refs.delete().where(refs.c.parent_document_id == doc_id))
        conn.execute(docs.delete().where(docs.c.id == doc_id))
        pending.extend(children)


def save_in(conn: Connection, block: Block, name: str, overwrite: bool, now: datetime, saved: _Saved) -> tuple[str, str]:
    """Save ``block`` as ``name`` on ``conn`` (inside the caller's transaction).

    Returns:
        ``(document id, "created" | "updated")``.
    """
    slug = block.block_type_slug
    existing = _doc_by_name(conn, slug, name)
    if existing is not None and not overwrite:
        raise BlockError(f"block {_label(slug, name)!r} already exists; pass overwrite=True (or --overwrite)")
    doc_id = _write(conn, block, name, now, saved, existing)
    return doc_id, ("created" if existing is None else "updated")


def _mark(saved: _Saved) -> None:
    for obj, doc_id, doc_name in saved.marks:
        obj._document_id = doc_id
        obj._document_name = doc_name
        register_block_secrets(obj)


def save_block(block: Block, name: str, overwrite: bool = False) -> str:
    validate_name(name)
    if not type(block).block_type_slug:
        raise BlockError("the Block base class cannot be saved; subclass it with typed fields")

    def work(conn: Connection) -> tuple[str, _Saved]:
        saved = _Saved()
        doc_id, _ = save_in(conn, block, name, overwrite, _now(), saved)
        return doc_id, saved

    doc_id, saved = _run_write("save a block in", work)
    _mark(saved)
    return doc_id


# -- delete ------------------------------------------------------------------------------------
def delete_block(cls: type[Block], reference: str) -> None:
    from sqlalchemy import select

    models = _tables()
    docs = models.BlockDocumentModel.__table__
    refs = models.BlockDocumentReferenceModel.__table__

    def work(conn: Connection) -> None:
        row = _find(conn, cls, reference)
        users = conn.execute(
            select(refs.c.parent_document_id, refs.c.field_name).where(refs.c.child_document_id == row.id)
        ).fetchall()
        if users:
            names = []
            for parent_id, field_name in users:
                parent = _doc_by_id(conn, parent_id)
                where = _label(parent.slug, parent.name) if parent is not None else str(parent_id)
                owner = _named_owner(conn, parent) if parent is not None and _is_anonymous(parent.name) else None
                inside = f", nested in {owner!r}" if owner else ""
                names.append(f"{where!r} (field {field_name!r}{inside})")
            raise BlockError(
                f"block {_label(row.slug, row.name)!r} is used by block {', '.join(names)}; delete that block "
                "or save it without this one first"
            )
        children = [
            str(r[0]) for r in conn.execute(select(refs.c.child_document_id).where(refs.c.parent_document_id == row.id))
        ]
        conn.execute(refs.delete().where(refs.c.parent_document_id == row.id))
        conn.execute(docs.delete().where(docs.c.id == row.id))
        _drop_orphans(conn, children)

    _run_write("delete a block from", work)


def _named_owner(conn: Connection, row: Row) -> str | None:
    """``slug/name`` of the named block an anonymous document belongs to."""
    from sqlalchemy import select

    refs = _tables().BlockDocumentReferenceModel.__table__
    for _ in range(32):  # nesting depth; guards against a damaged, cyclic store
        parent_id = conn.execute(
            select(refs.c.parent_document_id).where(refs.c.child_document_id == row.id)
        ).scalar()
        parent = _doc_by_id(conn, parent_id) if parent_id else None
        if parent is None:
            return None
        if not _is_anonymous(parent.name):
            return _label(parent.slug, parent.name)
        row = parent
    return None
