"""Loading and listing saved blocks.

A reference is ``slug/name`` or, on a block class, a bare name (the class's own type first,
then its registered subclasses). Every read decrypts, resolves references and validates with
the block's class before returning anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from plait.blocks._base import Block
from plait.blocks._db import _doc_by_name, _iso, _read, _tables
from plait.blocks._encoding import _decode_values
from plait.blocks._references import _is_anonymous, _label, _suggest, split_reference
from plait.blocks._schema import _mismatch, validation_message
from plait.blocks._types import _candidate_slugs, _class_for, _known_slugs, _registry, _unknown_type
from plait.blocks._values import register_block_secrets
from plait.exceptions import BlockError, BlockNotFound, BlockValidationError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Row

__all__ = ["load_block", "load_document", "list_documents", "list_for_class"]


# -- building a block --------------------------------------------------------------------------
def _instantiate(conn: Connection, row: Row, hints: list[type[Block]] | None, context: str = "") -> Block:
    label = _label(row.slug, row.name)
    cls = _class_for(row.slug, hints, label, conn)

    def child(target: Row, child_hints: list[type[Block]] | None, where: str) -> Block:
        return _instantiate(conn, target, child_hints, where)

    revealed: list[str] = []
    values = _decode_values(conn, row, cls, label, child, revealed)
    try:
        block = cls.model_validate(values)
    except ValidationError as exc:
        if row.schema_checksum != cls.schema_checksum():
            raise _mismatch(conn, row, cls, exc, revealed) from None
        where = f" (nested in {context})" if context else ""
        what = f"saved block {label!r}{where} is not a valid {cls.__name__}"
        raise BlockValidationError(validation_message(exc, what, revealed)) from None
    block._document_id = str(row.id)
    block._document_name = str(row.name)
    return block


# -- finding a document ------------------------------------------------------------------------
def _resolve_slug(cls: type[Block], reference: str) -> tuple[str | None, str]:
    """(slug, name) for ``cls.load(reference)``; slug None means "the class's own or one of its
    registered subclasses"."""
    slug, name = split_reference(reference)
    if cls is Block:
        if slug is None:
            raise BlockError(
                f"Block.load() needs 'slug/name' (e.g. Block.load('aws-credentials/{name}')); "
                f"or call load() on the block's class: MyBlock.load({name!r})"
            )
        return slug, name
    if slug is None:
        return None, name
    if slug != cls.block_type_slug:
        registered = _registry().get(slug)
        if registered is None or not issubclass(registered, cls):
            kind = f"type {slug!r}" if registered is None else f"a {registered.__name__} ({slug!r})"
            raise BlockError(
                f"{reference!r} names a block of {kind}, not a {cls.__name__} ({cls.block_type_slug!r}); "
                f"use Block.load({reference!r}) or {cls.__name__}.load({name!r})"
            )
    return slug, name


def _names(conn: Connection, slug: str | None = None) -> list[str]:
    from sqlalchemy import select

    t = _tables().BlockDocumentModel.__table__
    query = select(t.c.name)
    if slug is not None:
        query = query.where(t.c.slug == slug)
    return [str(r[0]) for r in conn.execute(query) if not _is_anonymous(r[0])]


def _find(conn: Connection, cls: type[Block], reference: str) -> Row:
    """The document ``cls.load(reference)`` means, or BlockNotFound with suggestions."""
    from sqlalchemy import select

    slug, name = _resolve_slug(cls, reference)
    if slug is not None:
        row = _doc_by_name(conn, slug, name)
        if row is not None:
            return row
        if slug not in _known_slugs(conn):
            raise _unknown_type(slug, conn)
        raise BlockNotFound(
            f"no saved block {_label(slug, name)!r}{_suggest(name, _names(conn, slug))} (see `plait block ls`)"
        )
    slugs = _candidate_slugs(cls)
    t = _tables().BlockDocumentModel.__table__
    rows = conn.execute(select(t).where(t.c.name == name, t.c.slug.in_(slugs))).fetchall() if slugs else []
    own = [r for r in rows if r.slug == cls.block_type_slug]
    if own:
        return own[0]
    if len(rows) == 1:
        return rows[0]
    if len(rows) > 1:
        options = ", ".join(repr(_label(r.slug, r.name)) for r in rows)
        raise BlockError(f"several blocks are named {name!r} ({options}); load one as 'slug/name'")
    others = conn.execute(select(t.c.slug).where(t.c.name == name)).fetchall()
    hint = ""
    if others:
        hint = " (a block of another type has that name: " + ", ".join(repr(_label(r[0], name)) for r in others) + ")"
    pool = [n for s in slugs for n in _names(conn, s)]
    raise BlockNotFound(
        f"no saved {cls.__name__} block named {name!r}{hint}{_suggest(name, pool)} (see `plait block ls`)"
    )


# -- load --------------------------------------------------------------------------------------
def load_block(cls: type[Block], reference: str) -> Block:
    def work(conn: Connection) -> Block:
        row = _find(conn, cls, reference)
        hints = [cls] if cls is not Block else None
        return _instantiate(conn, row, hints)

    block = _read("read blocks from", work)
    register_block_secrets(block)  # nested blocks' secrets included
    return block


def load_document(reference: str) -> Block:
    """The saved block ``reference`` names: ``"slug/name"``, or a name no other type uses.

    Raises:
        BlockNotFound: No such block (close matches suggested).
        BlockError: A bare name used by several types.
    """
    slug, name = split_reference(reference)
    if slug is not None:
        return load_block(Block, reference)

    def work(conn: Connection) -> Block:
        from sqlalchemy import select

        t = _tables().BlockDocumentModel.__table__
        rows = conn.execute(select(t).where(t.c.name == name)).fetchall()
        if not rows:
            raise BlockNotFound(f"no saved block named {name!r}{_suggest(name, _names(conn))} (see `plait block ls`)")
        if len(rows) > 1:
            options = ", ".join(repr(_label(r.slug, r.name)) for r in rows)
            raise BlockError(f"several blocks are named {name!r} ({options}); give 'slug/name'")
        return _instantiate(conn, rows[0], None)

    block = _read("read blocks from", work)
    register_block_secrets(block)
    return block


# -- list --------------------------------------------------------------------------------------
def list_documents(slug: str | None = None, include_anonymous: bool = False) -> list[dict[str, Any]]:
    """Saved blocks, by type then name: ``{name, slug, type_name, id, created, updated}``.

    Args:
        slug: Only blocks of this type.
        include_anonymous: Also nested blocks saved without a name (``anonymous-<id>``).
    """
    return _list(None if slug is None else [slug], include_anonymous)


def _list(slugs: list[str] | None, include_anonymous: bool) -> list[dict[str, Any]]:
    from sqlalchemy import select

    models = _tables()
    docs = models.BlockDocumentModel.__table__
    types = models.BlockTypeModel.__table__

    def work(conn: Connection) -> list[Any]:
        query = (
            select(docs.c.id, docs.c.name, docs.c.slug, docs.c.created, docs.c.updated, types.c.name.label("type_name"))
            .select_from(docs.outerjoin(types, types.c.slug == docs.c.slug))
            .order_by(docs.c.slug, docs.c.name)
        )
        if slugs is not None:
            query = query.where(docs.c.slug.in_(slugs))
        return conn.execute(query).fetchall()

    registry = _registry()
    rows = []
    for r in _read("read blocks from", work):
        if not include_anonymous and _is_anonymous(r.name):
            continue
        cls = registry.get(r.slug)
        rows.append({
            "name": r.name,
            "slug": r.slug,
            "type_name": cls.block_type_name if cls is not None else (r.type_name or r.slug),
            "id": r.id,
            "created": _iso(r.created),
            "updated": _iso(r.updated),
        })
    return rows


def list_for_class(cls: type[Block]) -> list[dict[str, Any]]:
    return _list(None if cls is Block else _candidate_slugs(cls), include_anonymous=False)
