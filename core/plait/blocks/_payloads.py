"""Blocks as payloads, the client side of saving and loading through a plait server.

A client sends a block's values in plain JSON with its type's schema information
(``block_payload``); after the server saved it, ``mark_saved`` remembers which documents the
block and its nested blocks are; a document read with its secrets becomes the block again
(``block_from_document``). The payload and document forms are described in
``plait.blocks._documents``, the server side.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from plait.blocks._references import _is_anonymous, _label
from plait.blocks._values import _string_leaves
from plait.exceptions import BlockError, BlockNotFound, BlockSchemaMismatch, BlockValidationError

if TYPE_CHECKING:
    from plait.blocks._base import Block

__all__ = ["MAX_DEPTH", "block_from_document", "block_payload", "mark_saved", "schema_checksum_of", "type_info"]

# Deeper nesting is refused: no block needs it, and walking it could exhaust the stack.
MAX_DEPTH = 32


def schema_checksum_of(json_schema: dict[str, Any]) -> str:
    """The checksum ``Block.schema_checksum()`` gives for a class with this JSON schema."""
    canonical = json.dumps(json_schema, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def type_info(cls: type[Block]) -> dict[str, Any]:
    """The ``type`` part of a payload for block class ``cls``.

    Raises:
        plait.exceptions.BlockError: The type holds its own type (it could never be saved).
    """
    return {
        "slug": cls.block_type_slug,
        "name": cls.block_type_name,
        "description": cls.block_description,
        "capabilities": sorted(cls.capabilities or ()),
        "secret_fields": cls.secret_fields(),
        "block_fields": sorted(cls.nested_block_fields()),
        "json_schema": cls.model_json_schema(),
        "schema_checksum": cls.schema_checksum(),
    }


def block_payload(block: Block) -> dict[str, Any]:
    """What a client sends to save ``block``: its type and its values, secrets in plain JSON
    (only send it to a server over a connection you trust, as for any credential).

    Raises:
        plait.exceptions.BlockError: The block type, or this block, contains itself.
    """
    from plait.blocks._base import check_block_type
    from plait.blocks._save import check_not_self_containing

    if not type(block).block_type_slug:
        raise BlockError("the Block base class cannot be saved; subclass it with typed fields")
    check_block_type(type(block))
    check_not_self_containing(block)
    return _payload(block)


def _payload(block: Block) -> dict[str, Any]:
    from pydantic_core import to_jsonable_python

    from plait.blocks._crypto import _to_plain
    from plait.blocks._values import _contains_block, _field_kinds, _map_blocks, _plain_fields, _reveal

    cls = type(block)
    secret, nested = _field_kinds(cls)
    data: dict[str, Any] = {}
    plain = set()
    for fname in cls.model_fields:
        value = getattr(block, fname)
        if fname in nested and _contains_block(value):
            data[fname] = _map_blocks(value, _nested_payload)
        elif fname in secret:
            data[fname] = None if value is None else to_jsonable_python(_to_plain(_reveal(value)))
        else:
            plain.add(fname)
    data.update(_plain_fields(block, plain))
    return {"type": type_info(cls), "data": {fname: data[fname] for fname in cls.model_fields}}


def _nested_payload(child: Block) -> dict[str, Any]:
    spec = _payload(child)
    name = child._document_name
    spec["name"] = name if name and not _is_anonymous(name) else None
    return {"$block": spec}


def mark_saved(block: Block, document: dict[str, Any]) -> None:
    """After a save through a server: remember on ``block`` and on its nested blocks which
    documents they are (as ``Block.save`` does), and mask their secrets in this process."""
    from plait.blocks._base import Block
    from plait.blocks._values import register_block_secrets

    def walk(value: Any, stored: Any) -> None:
        if isinstance(value, Block) and isinstance(stored, dict) and isinstance(stored.get("$block"), dict):
            mark(value, stored["$block"])
        elif isinstance(value, dict) and isinstance(stored, dict):
            for key, item in value.items():
                walk(item, stored.get(key))
        elif isinstance(value, (list, tuple)) and isinstance(stored, list):
            for item, stored_item in zip(value, stored, strict=False):
                walk(item, stored_item)

    def mark(current: Block, doc: dict[str, Any]) -> None:
        current._document_id = doc.get("id")
        current._document_name = doc.get("name")
        data = doc.get("data") or {}
        for fname in type(current).nested_block_fields():
            walk(getattr(current, fname, None), data.get(fname))

    mark(block, document)
    register_block_secrets(block)


def block_from_document(document: dict[str, Any], cls: type[Block] | None = None) -> Block:
    """The block a document read with its secrets describes, nested blocks included.

    Args:
        document: A document as ``read_document(..., include_secrets=True)`` returns it.
        cls: The class the caller expects (``MyBlock.load``); None: the registered class of
            the document's type.

    Raises:
        plait.exceptions.BlockError: The document was read without its secrets.
        plait.exceptions.BlockNotFound: No installed plugin registers the block's type.
        plait.exceptions.BlockSchemaMismatch: Saved with another schema of the class.
        plait.exceptions.BlockValidationError: The saved values are not valid.
    """
    from plait.blocks._base import Block
    from plait.blocks._values import register_block_secrets

    if not document.get("secrets_included"):
        raise BlockError(
            f"block {_label(str(document.get('slug')), str(document.get('name')))!r} was read without its "
            "secrets; read it with include_secrets=True (an API key with scope 'run' may)"
        )
    hints = [cls] if cls is not None and cls is not Block else None
    block = _build(document, hints, "")
    register_block_secrets(block)
    return block


def _build(doc: dict[str, Any], hints: list[type[Block]] | None, context: str, depth: int = 0) -> Block:
    from plait.blocks._base import Block
    from plait.blocks._crypto import _from_plain
    from plait.blocks._schema import validation_message
    from plait.blocks._types import _registry
    from plait.blocks._values import _field_kinds

    slug, name = str(doc.get("slug")), str(doc.get("name"))
    label = _label(slug, name)
    if depth > MAX_DEPTH:
        raise BlockError(f"block {label!r} is nested more than {MAX_DEPTH} levels deep")
    cls = next((h for h in hints or () if h is not Block and h.block_type_slug == slug), None)
    cls = cls or _registry().get(slug)
    if cls is None:
        raise BlockNotFound(
            f"block {label!r} is of type {slug!r}, which no installed plugin registers (see `plait block types`)"
        )
    secret, _ = _field_kinds(cls)
    nested = cls.nested_block_fields()
    here = f"{label} field "

    def resolve(value: Any, field: str) -> Any:
        if isinstance(value, dict):
            if set(value) == {"$block"} and isinstance(value["$block"], dict):
                return _build(value["$block"], nested.get(field), f"{here}{field!r}", depth + 1)
            return {k: resolve(v, field) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v, field) for v in value]
        return value

    values: dict[str, Any] = {}
    revealed: list[str] = []
    for key, raw in (doc.get("data") or {}).items():
        if key in nested:
            values[key] = resolve(raw, key)
        elif key in secret and raw is not None:
            values[key] = _from_plain(raw)
            revealed.extend(_string_leaves(values[key]))
        else:
            values[key] = raw
    try:
        block = cls.model_validate(values)
    except ValidationError as exc:
        where = f" (nested in {context})" if context else ""
        if doc.get("schema_checksum") != cls.schema_checksum():
            raise BlockSchemaMismatch(
                validation_message(exc, f"block {label!r}{where} was saved with another schema of {cls.__name__}",
                                   revealed)
                + ". Update it: load the values, fix them and save(..., overwrite=True), or re-apply your blocks file."
            ) from None
        raise BlockValidationError(
            validation_message(exc, f"saved block {label!r}{where} is not a valid {cls.__name__}", revealed)
        ) from None
    block._document_id = doc.get("id")
    block._document_name = name
    return block
