"""Block values as stored in a document's ``data``, both ways.

Secret values are encrypted (``{"$secret": token}``, see ``plait.blocks._crypto``); nested
blocks are saved by reference (``{"$ref": document_id}``, also listed in
``block_document_references``); every other field is its pydantic JSON form.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from plait.blocks._db import _doc_by_id, _tables
from plait.blocks._references import _is_anonymous, _label
from plait.blocks._types import _class_for
from plait.blocks._values import _contains_block, _field_kinds, _map_blocks, _plain_fields, _reveal, _string_leaves
from plait.exceptions import BlockError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Row

    from plait.blocks._base import Block

__all__ = ["stored_canonical_values"]


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
def _decrypt_error(label: str) -> BlockError:
    return BlockError(
        f"cannot decrypt the secrets of block {label!r}: the encryption key differs from the one they "
        "were saved with (PLAIT_ENCRYPTION_KEY or $PLAIT_HOME/encryption.key). Nothing was changed."
    )


def _decode_values(
    conn: Connection,
    row: Row,
    cls: type[Block],
    label: str,
    child: Callable[[Row, list[type[Block]] | None, str], Any],
    revealed: list[str] | None = None,
) -> dict[str, Any]:
    """The stored values of ``row`` with secrets decrypted and ``$ref`` handed to ``child``."""
    from plait.blocks._crypto import DecryptError, decrypt_value

    from sqlalchemy import select

    models = _tables()
    refs = models.BlockDocumentReferenceModel.__table__
    schemas = models.BlockSchemaModel.__table__
    secret, _ = _field_kinds(cls)
    nested = cls.nested_block_fields()
    # Which stored fields hold references, and which secrets, as they were saved.
    ref_fields = {
        str(r[0]) for r in conn.execute(select(refs.c.field_name).where(refs.c.parent_document_id == row.id))
    }
    if row.schema_checksum != cls.schema_checksum():
        stored = conn.execute(
            select(schemas.c.secret_fields).where(schemas.c.checksum == row.schema_checksum)
        ).first()
        if stored is not None:
            secret = secret | {str(n) for n in stored[0] or () if "." not in str(n)}
    values: dict[str, Any] = {}
    for key, raw in (row.data or {}).items():
        if key in secret and isinstance(raw, dict) and set(raw) == {"$secret"}:
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
                        target = _doc_by_id(conn, value["$ref"])
                        if target is None:
                            raise BlockError(
                                f"block {label!r} refers in field {_key!r} to a block that no longer "
                                "exists; save it again with a value for that field (overwrite=True)"
                            )
                        return child(target, nested.get(_key), f"{label} field {_key!r}")
                    return {k: resolve(v) for k, v in value.items()}
                if isinstance(value, list):
                    return [resolve(v) for v in value]
                return value

            values[key] = resolve(raw)
        else:
            values[key] = raw
    return values


def stored_canonical_values(conn: Connection, row: Row, cls: type[Block]) -> dict[str, Any]:
    """``canonical_values`` of a stored document, without building the block (decrypts)."""
    from pydantic_core import to_jsonable_python

    from plait.blocks._crypto import _to_plain

    label = _label(row.slug, row.name)

    def child(target: Row, hints: list[type[Block]] | None, where: str) -> Any:
        if not _is_anonymous(target.name):
            return {"$block": _label(target.slug, target.name)}
        target_cls = _class_for(target.slug, hints, _label(target.slug, target.name), conn)
        return stored_canonical_values(conn, target, target_cls)

    values = _decode_values(conn, row, cls, label, child)
    secret, _ = _field_kinds(cls)
    for key in secret & set(values):
        if values[key] is not None:
            values[key] = to_jsonable_python(_to_plain(values[key]))
    return values
