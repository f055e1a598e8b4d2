"""Saving and deleting blocks: block documents in the database.

A saved block is a row of ``block_documents``: its type's slug, a name, the checksum of the
schema it was saved with, and its values as JSON (see ``plait.blocks._encoding``). A nested
block that was never saved gets an anonymous document of its own (``anonymous-<id>``), which
lives and dies with the block that holds it.

Every write happens in one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from plait.blocks import _remote
from plait.blocks._base import check_block_type
from plait.blocks._db import _now, _run_write
from plait.blocks._encoding import _encode_values
from plait.blocks._load import _find
from plait.blocks._references import ANONYMOUS_PREFIX, _is_anonymous, _label, validate_name
from plait.blocks._types import _record_type
from plait.blocks._values import register_block_secrets
from plait.exceptions import BlockError

if TYPE_CHECKING:
    from plait._store.blocks import BlockDocument, BlockReference, BlocksTransaction
    from plait.blocks._base import Block

__all__ = ["save_block", "save_in", "delete_block", "check_not_self_containing"]


# -- cycles ------------------------------------------------------------------------------------
def _cycle_advice() -> str:
    return (
        "A block cannot contain itself, directly or through other blocks (they are saved by "
        "reference and loaded as a tree); point the field at another block."
    )


def _nested_blocks(value: Any) -> Iterator[Block]:
    """The blocks in a field's value (a block, or blocks inside lists and dicts)."""
    from plait.blocks._base import Block

    if isinstance(value, Block):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _nested_blocks(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _nested_blocks(item)


def check_not_self_containing(block: Block) -> None:
    """Refuse a block whose nested blocks, in memory, lead back to a block they are inside.

    Raises:
        BlockError: Naming the fields of the loop.
    """

    def walk(current: Block, path: list[tuple[int, str]]) -> None:
        for fname in type(current).nested_block_fields():
            here = [*path, (id(current), f"{type(current).__name__} field {fname!r}")]
            ids = [obj_id for obj_id, _ in here]
            for child in _nested_blocks(getattr(current, fname, None)):
                if id(child) in ids:
                    loop = " → ".join(step for _, step in here[ids.index(id(child)):])
                    raise BlockError(
                        f"cannot save this {type(block).__name__}: it contains itself ({loop} → the same "
                        f"{type(child).__name__} again). {_cycle_advice()}"
                    )
                walk(child, here)

    walk(block, [])


def _cycle_error(tx: BlocksTransaction, label: str, field_name: str, chain: list[BlockReference]) -> BlockError:
    """``label`` would reach itself again through ``field_name`` and then ``chain``."""
    steps = [f"{label} field {field_name!r}"]
    for ref in chain:
        parent = tx.get_by_id(ref.parent_id)
        where = _label(parent.slug, parent.name) if parent is not None else ref.parent_id
        steps.append(f"{where} field {ref.field_name!r}")
    return BlockError(
        f"cannot save block {label!r}: it would contain itself ({' → '.join(steps)} → {label}). {_cycle_advice()}"
    )


# -- save --------------------------------------------------------------------------------------
@dataclass
class _Saved:
    """What a save wrote, to update the Python objects once the transaction committed."""

    marks: list[tuple[Block, str, str]] = field(default_factory=list)  # (block, id, name)


def _child_reference(tx: BlocksTransaction, child: Block, now: datetime, saved: _Saved) -> str:
    """The document id a parent should reference for ``child``: its own saved document
    when it has one, else a new anonymous document holding its values."""
    name = child._document_name
    if name and not _is_anonymous(name):
        doc = tx.get_by_id(child._document_id) if child._document_id else None
        if doc is None or doc.slug != child.block_type_slug:
            doc = tx.get_by_name(child.block_type_slug, name)
        if doc is not None:
            return doc.id
    doc_id = str(uuid.uuid4())
    _write(tx, child, f"{ANONYMOUS_PREFIX}{doc_id}", now, saved, existing=None, doc_id=doc_id)
    return doc_id


def _write(
    tx: BlocksTransaction,
    block: Block,
    name: str,
    now: datetime,
    saved: _Saved,
    existing: BlockDocument | None,
    doc_id: str | None = None,
) -> str:
    """Insert (or, given ``existing``, replace) the document of ``block``; returns its id."""
    cls = type(block)
    checksum = _record_type(tx, cls, now)
    references: list[tuple[str, str]] = []

    def child_id(fname: str, child: Block) -> str:
        child_doc_id = _child_reference(tx, child, now, saved)
        references.append((fname, child_doc_id))
        return child_doc_id

    data = _encode_values(block, child_id)

    old_children: list[str] = []
    if existing is not None:
        doc_id = existing.id
        # Only an existing document can be referenced already, so only it can close a loop.
        for fname, child in references:
            chain = tx.path_between([child], doc_id)
            if chain is not None:
                raise _cycle_error(tx, _label(existing.slug, existing.name), fname, chain)
        old_children = tx.children_of(doc_id)
        tx.replace_document(doc_id, schema_checksum=checksum, data=data, now=now)
    else:
        doc_id = doc_id or str(uuid.uuid4())
        tx.insert_document(
            doc_id=doc_id, name=name, slug=cls.block_type_slug, schema_checksum=checksum, data=data, now=now
        )
    tx.set_references(doc_id, references)
    kept = {c for _, c in references}
    tx.drop_orphans([c for c in old_children if c not in kept], anonymous_prefix=ANONYMOUS_PREFIX)
    saved.marks.append((block, doc_id, name))
    return doc_id


def save_in(
    tx: BlocksTransaction, block: Block, name: str, overwrite: bool, now: datetime, saved: _Saved
) -> tuple[str, str]:
    """Save ``block`` as ``name`` in ``tx`` (inside the caller's transaction).

    Returns:
        ``(document id, "created" | "updated")``.
    """
    slug = block.block_type_slug
    existing = tx.get_by_name(slug, name)
    if existing is not None and not overwrite:
        raise BlockError(f"block {_label(slug, name)!r} already exists; pass overwrite=True (or --overwrite)")
    doc_id = _write(tx, block, name, now, saved, existing)
    return doc_id, ("created" if existing is None else "updated")


def _mark(saved: _Saved) -> None:
    for obj, doc_id, doc_name in saved.marks:
        obj._document_id = doc_id
        obj._document_name = doc_name
        register_block_secrets(obj)


def save_block(block: Block, name: str, overwrite: bool = False) -> str:
    if _remote.active():  # the server encrypts; its key never leaves it
        return _remote.save_block(block, name, overwrite)
    validate_name(name)
    if not type(block).block_type_slug:
        raise BlockError("the Block base class cannot be saved; subclass it with typed fields")
    check_block_type(type(block))
    check_not_self_containing(block)

    def work(tx: BlocksTransaction) -> tuple[str, _Saved]:
        saved = _Saved()
        doc_id, _ = save_in(tx, block, name, overwrite, _now(), saved)
        return doc_id, saved

    doc_id, saved = _run_write("save a block in", work)
    _mark(saved)
    return doc_id


# -- delete ------------------------------------------------------------------------------------
def delete_block(cls: type[Block], reference: str) -> None:
    if _remote.active():
        return _remote.delete_block(cls, reference)

    def work(tx: BlocksTransaction) -> None:
        doc = _find(tx, cls, reference)
        # A user that the block itself leads to is part of a cycle through it (a damaged
        # store): such users never stop a delete, or neither block of the cycle could go.
        reachable = set()
        children = tx.children_of(doc.id)
        users = []
        for ref in tx.users_of(doc.id):
            if ref.parent_id == doc.id or ref.parent_id in reachable:
                continue
            if tx.path_between(children, ref.parent_id) is not None:
                reachable.add(ref.parent_id)
                continue
            users.append(ref)
        if users:
            names = []
            for ref in users:
                parent = tx.get_by_id(ref.parent_id)
                where = _label(parent.slug, parent.name) if parent is not None else ref.parent_id
                owner = _named_owner(tx, parent) if parent is not None and _is_anonymous(parent.name) else None
                inside = f", nested in {owner!r}" if owner else ""
                names.append(f"{where!r} (field {ref.field_name!r}{inside})")
            raise BlockError(
                f"block {_label(doc.slug, doc.name)!r} is used by block {', '.join(names)}; delete that block "
                "or save it without this one first"
            )
        tx.drop_orphans(tx.delete_document(doc.id), anonymous_prefix=ANONYMOUS_PREFIX)

    _run_write("delete a block from", work)


def _named_owner(tx: BlocksTransaction, doc: BlockDocument) -> str | None:
    """``slug/name`` of the named block an anonymous document belongs to."""
    for _ in range(32):  # nesting depth; guards against a damaged, cyclic store
        users = tx.users_of(doc.id)
        parent = tx.get_by_id(users[0].parent_id) if users else None
        if parent is None:
            return None
        if not _is_anonymous(parent.name):
            return _label(parent.slug, parent.name)
        doc = parent
    return None
