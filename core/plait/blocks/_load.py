"""Loading and listing saved blocks.

A reference is ``slug/name`` or, on a block class, a bare name (the class's own type first,
then its registered subclasses). Every read decrypts, resolves references and validates with
the block's class before returning anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from plait.blocks import _remote
from plait.blocks._base import Block
from plait.blocks._db import _iso, _read
from plait.blocks._encoding import Chain, _decode_values, cycle_error
from plait.blocks._references import _is_anonymous, _label, _suggest, split_reference
from plait.blocks._schema import _mismatch, validation_message
from plait.blocks._types import _candidate_slugs, _class_for, _known_slugs, _registry, _unknown_type
from plait.blocks._values import register_block_secrets
from plait.exceptions import BlockError, BlockNotFound, BlockValidationError

if TYPE_CHECKING:
    from plait._store.blocks import BlockDocument, BlockListing, BlocksTransaction

__all__ = ["load_block", "load_document", "list_documents", "list_for_class", "describe_document"]


# -- building a block --------------------------------------------------------------------------
def _instantiate(
    tx: BlocksTransaction, doc: BlockDocument, hints: list[type[Block]] | None, context: str = "", chain: Chain = ()
) -> Block:
    """The block ``doc`` stores, nested blocks included; ``chain`` holds the documents this one
    is nested in, so that a cyclic store fails clearly instead of recursing without end."""
    label = _label(doc.slug, doc.name)
    cls = _class_for(doc.slug, hints, label, tx)

    def child(target: BlockDocument, child_hints: list[type[Block]] | None, field: str) -> Block:
        inner = (*chain, (doc.id, label, field))
        if any(target.id == doc_id for doc_id, _, _ in inner):
            raise cycle_error(inner, target)
        return _instantiate(tx, target, child_hints, f"{label} field {field!r}", inner)

    revealed: list[str] = []
    values = _decode_values(tx, doc, cls, label, child, revealed)
    try:
        block = cls.model_validate(values)
    except ValidationError as exc:
        if doc.schema_checksum != cls.schema_checksum():
            raise _mismatch(tx, doc, cls, exc, revealed) from None
        where = f" (nested in {context})" if context else ""
        what = f"saved block {label!r}{where} is not a valid {cls.__name__}"
        raise BlockValidationError(validation_message(exc, what, revealed)) from None
    block._document_id = doc.id
    block._document_name = doc.name
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


def _names(tx: BlocksTransaction, slug: str | None = None) -> list[str]:
    return [n for n in tx.names(slug) if not _is_anonymous(n)]


def _find(tx: BlocksTransaction, cls: type[Block], reference: str) -> BlockDocument:
    """The document ``cls.load(reference)`` means, or BlockNotFound with suggestions."""
    slug, name = _resolve_slug(cls, reference)
    if slug is not None:
        doc = tx.get_by_name(slug, name)
        if doc is not None:
            return doc
        if slug not in _known_slugs(tx):
            raise _unknown_type(slug, tx)
        raise BlockNotFound(
            f"no saved block {_label(slug, name)!r}{_suggest(name, _names(tx, slug))} (see `plait block ls`)"
        )
    # Only the types of documents with that name are looked up, so only the plugins that
    # declare those types are imported (not every plugin offering blocks).
    others = tx.find_by_name(name)
    registry = _registry()
    docs = [d for d in others if d.slug == cls.block_type_slug or _is_subclass(registry.get(d.slug), cls)]
    own = [d for d in docs if d.slug == cls.block_type_slug]
    if own:
        return own[0]
    if len(docs) == 1:
        return docs[0]
    if len(docs) > 1:
        options = ", ".join(repr(_label(d.slug, d.name)) for d in docs)
        raise BlockError(f"several blocks are named {name!r} ({options}); load one as 'slug/name'")
    slugs = _candidate_slugs(cls)
    hint = ""
    if others:
        hint = " (a block of another type has that name: " + ", ".join(repr(_label(d.slug, name)) for d in others) + ")"
    pool = [n for s in slugs for n in _names(tx, s)]
    raise BlockNotFound(
        f"no saved {cls.__name__} block named {name!r}{hint}{_suggest(name, pool)} (see `plait block ls`)"
    )


def _is_subclass(candidate: type | None, cls: type[Block]) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, cls)


def _find_any(tx: BlocksTransaction, reference: str) -> BlockDocument:
    """The document ``reference`` names: ``"slug/name"``, or a name no other type uses."""
    slug, name = split_reference(reference)
    if slug is not None:
        return _find(tx, Block, reference)
    docs = tx.find_by_name(name)
    if not docs:
        raise BlockNotFound(f"no saved block named {name!r}{_suggest(name, _names(tx))} (see `plait block ls`)")
    if len(docs) > 1:
        options = ", ".join(repr(_label(d.slug, d.name)) for d in docs)
        raise BlockError(f"several blocks are named {name!r} ({options}); give 'slug/name'")
    return docs[0]


# -- load --------------------------------------------------------------------------------------
def load_block(cls: type[Block], reference: str) -> Block:
    if _remote.active():
        return _remote.load_block(cls, reference)

    def work(tx: BlocksTransaction) -> Block:
        doc = _find(tx, cls, reference)
        hints = [cls] if cls is not Block else None
        return _instantiate(tx, doc, hints)

    block = _read("read blocks from", work)
    register_block_secrets(block)  # nested blocks' secrets included
    return block


def load_document(reference: str) -> Block:
    """The saved block ``reference`` names: ``"slug/name"``, or a name no other type uses.

    Raises:
        BlockNotFound: No such block (close matches suggested).
        BlockError: A bare name used by several types.
    """
    if _remote.active():
        return _remote.load_document(reference)
    slug, _ = split_reference(reference)
    if slug is not None:
        return load_block(Block, reference)
    block = _read("read blocks from", lambda tx: _instantiate(tx, _find_any(tx, reference), None))
    register_block_secrets(block)
    return block


def describe_document(reference: str) -> dict[str, Any]:
    """The listing entry of the saved block ``reference`` names (as ``load_document`` does),
    without building the block: it works when the block cannot be loaded (its type is not
    installed, its secrets were encrypted with another key, the store is damaged).

    Raises:
        BlockNotFound: No such block (close matches suggested).
        BlockError: A bare name used by several types.
    """
    if _remote.active():
        return _remote.describe_document(reference)


    def work(tx: BlocksTransaction) -> list[BlockListing]:
        doc = _find_any(tx, reference)
        return [entry for entry in tx.listing([doc.slug]) if entry.id == doc.id]

    return _entry(_read("read blocks from", work)[0], _registry())


# -- list --------------------------------------------------------------------------------------
def list_documents(slug: str | None = None, include_anonymous: bool = False) -> list[dict[str, Any]]:
    """Saved blocks, by type then name: ``{name, slug, type_name, id, created, updated}``.

    Args:
        slug: Only blocks of this type.
        include_anonymous: Also nested blocks saved without a name (``anonymous-<id>``).
    """
    return _list(None if slug is None else [slug], include_anonymous)


def _entry(doc: BlockListing, registry: Mapping[str, type[Block]]) -> dict[str, Any]:
    cls = registry.get(doc.slug)
    return {
        "name": doc.name,
        "slug": doc.slug,
        "type_name": cls.block_type_name if cls is not None else (doc.type_name or doc.slug),
        "id": doc.id,
        "created": _iso(doc.created),
        "updated": _iso(doc.updated),
    }


def _list(slugs: list[str] | None, include_anonymous: bool) -> list[dict[str, Any]]:
    if _remote.active():
        return _remote.list_documents(slugs, include_anonymous)
    registry = _registry()
    docs = _read("read blocks from", lambda tx: tx.listing(slugs))
    return [_entry(d, registry) for d in docs if include_anonymous or not _is_anonymous(d.name)]


def list_for_class(cls: type[Block]) -> list[dict[str, Any]]:
    return _list(None if cls is Block else _candidate_slugs(cls), include_anonymous=False)
