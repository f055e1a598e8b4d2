"""Block values as stored in a document's ``data``, both ways.

Secret values are encrypted (``{"$secret": token}``, see ``plait.blocks._crypto``); nested
blocks are saved by reference (``{"$ref": document_id}``, also listed in
``block_document_references``); every other field is its pydantic JSON form.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from plait.blocks._references import _is_anonymous, _label
from plait.blocks._types import _class_for
from plait.blocks._values import _contains_block, _field_kinds, _map_blocks, _plain_fields, _reveal, _string_leaves
from plait.exceptions import BlockError

if TYPE_CHECKING:
    from plait._store.blocks import BlockDocument, BlocksTransaction
    from plait.blocks._base import Block

__all__ = ["stored_canonical_values", "Chain", "DamagedDocument", "cycle_error"]

# The documents a load is inside of, outermost first: (document id, "slug/name", field name).
Chain = tuple[tuple[str, str, str], ...]


# -- encoding ----------------------------------------------------------------------------------
def _encode_values(block: Block, child_id: Callable[[str, Block], str]) -> dict[str, Any]:
    """The ``data`` of ``block``'s document, in declaration order; ``child_id(field, child)``
    gives the document id each nested block is referenced by."""
    cls = type(block)
    secret, nested = _field_kinds(cls)
    data: dict[str, Any] = {}
    plain_names = set()
    for fname in cls.model_fields:
        value = getattr(block, fname)
        if fname in nested and _contains_block(value):

            def ref(child: Block, _f: str = fname) -> dict[str, str]:
                return {"$ref": child_id(_f, child)}

            data[fname] = _map_blocks(value, ref)
        elif fname in secret:
            from plait.blocks._crypto import encrypt_value

            data[fname] = None if value is None else {"$secret": encrypt_value(_reveal(value))}
        else:
            plain_names.add(fname)
    data.update(_plain_fields(block, plain_names))
    return {fname: data[fname] for fname in cls.model_fields}  # declaration order


# -- decoding ----------------------------------------------------------------------------------
class DamagedDocument(BlockError):
    """A stored document plait's save could not have written: a secret that is not an
    encrypted token, a reference to a deleted document, a cycle. Saving the block again with
    new values repairs it (so a blocks file that does so reports it as updated)."""


def _decrypt_error(label: str) -> BlockError:
    return BlockError(
        f"cannot decrypt the secrets of block {label!r}: the encryption key differs from the one they "
        "were saved with (PLAIT_ENCRYPTION_KEY or $PLAIT_HOME/encryption.key). Nothing was changed."
    )


def _damaged_secret(label: str, field: str, value: Any) -> BlockError:
    # Never show the value itself: whatever it is, it was meant to be secret.
    kind = "null" if value is None else f"a {type(value).__name__}"
    return DamagedDocument(
        f"block {label!r} holds a damaged secret in field {field!r}: its stored \"$secret\" is {kind}, "
        "not an encrypted token (plait's save never writes that). Save the block again with a value for "
        "that field (overwrite=True), or re-apply your blocks file."
    )


def cycle_error(chain: Chain, target: BlockDocument) -> DamagedDocument:
    """The error for a load that met ``target`` again inside itself (a cyclic store)."""
    ids = [doc_id for doc_id, _, _ in chain]
    start = ids.index(target.id)
    loop = " → ".join(f"{label} field {field!r}" for _, label, field in chain[start:])
    first = chain[start][1]
    return DamagedDocument(
        f"block {first!r} contains itself: {loop} → {_label(target.slug, target.name)}. A block cannot "
        "contain itself; plait refuses to save such a cycle, so this one was written by an older plait or "
        "by hand. Break it: save one of these blocks again with another value for that field "
        "(overwrite=True), or delete one of them."
    )


def _decode_values(
    tx: BlocksTransaction,
    doc: BlockDocument,
    cls: type[Block],
    label: str,
    child: Callable[[BlockDocument, list[type[Block]] | None, str], Any],
    revealed: list[str] | None = None,
) -> dict[str, Any]:
    """The stored values of ``doc`` with secrets decrypted and each ``$ref`` handed to
    ``child(target document, class hints, field name)``."""
    from plait.blocks._crypto import DecryptError, decrypt_value

    secret, _ = _field_kinds(cls)
    nested = cls.nested_block_fields()
    # Which stored fields hold references, and which secrets, as they were saved.
    ref_fields = {r.field_name for r in tx.references_of(doc.id)}
    if doc.schema_checksum != cls.schema_checksum():
        stored = tx.schema(doc.schema_checksum)
        if stored is not None:
            secret = secret | {str(n) for n in stored.secret_fields if "." not in str(n)}
    values: dict[str, Any] = {}
    for key, raw in doc.data.items():
        if key in secret and isinstance(raw, dict) and set(raw) == {"$secret"}:
            if not isinstance(raw["$secret"], str):
                raise _damaged_secret(label, key, raw["$secret"])
            try:
                values[key] = decrypt_value(raw["$secret"])
            except DecryptError:
                raise _decrypt_error(label) from None
            if revealed is not None:
                revealed.extend(_string_leaves(values[key]))
        elif key in ref_fields:

            def resolve(value: Any, _key: str = key) -> Any:
                if isinstance(value, dict):
                    if set(value) == {"$ref"} and isinstance(value["$ref"], str):
                        target = tx.get_by_id(value["$ref"])
                        if target is None:
                            raise DamagedDocument(
                                f"block {label!r} refers in field {_key!r} to a block that no longer "
                                "exists; save it again with a value for that field (overwrite=True)"
                            )
                        return child(target, nested.get(_key), _key)
                    return {k: resolve(v) for k, v in value.items()}
                if isinstance(value, list):
                    return [resolve(v) for v in value]
                return value

            values[key] = resolve(raw)
        else:
            values[key] = raw
    return values


def stored_canonical_values(
    tx: BlocksTransaction, doc: BlockDocument, cls: type[Block], chain: Chain = ()
) -> dict[str, Any]:
    """``canonical_values`` of a stored document, without building the block (decrypts)."""
    from pydantic_core import to_jsonable_python

    from plait.blocks._crypto import _to_plain

    label = _label(doc.slug, doc.name)

    def child(target: BlockDocument, hints: list[type[Block]] | None, field: str) -> Any:
        if not _is_anonymous(target.name):
            return {"$block": _label(target.slug, target.name)}
        inner = (*chain, (doc.id, label, field))
        if any(target.id == doc_id for doc_id, _, _ in inner):
            raise cycle_error(inner, target)
        target_cls = _class_for(target.slug, hints, _label(target.slug, target.name), tx)
        return stored_canonical_values(tx, target, target_cls, inner)

    values = _decode_values(tx, doc, cls, label, child)
    secret, _ = _field_kinds(cls)
    for key in secret & set(values):
        if values[key] is not None:
            values[key] = to_jsonable_python(_to_plain(values[key]))
    return values
