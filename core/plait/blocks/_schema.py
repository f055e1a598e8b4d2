"""Explaining invalid values: validation messages that never quote an input (nor a secret),
and, for a document saved with an older schema of its class, the "changed fields" between
that schema and the current one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from plait._masking import mask
from plait.blocks._references import _label
from plait.exceptions import BlockSchemaMismatch

if TYPE_CHECKING:
    from plait._store.blocks import BlockDocument, BlocksTransaction
    from plait.blocks._base import Block

__all__ = ["describe_schema_change", "validation_message"]


# -- validation messages -----------------------------------------------------------------------
def _error_text(err: Any, secrets: Any) -> str:
    """pydantic's message for one error. Its own rules never quote the input; a message a
    validator wrote itself might, so those have ``secrets`` (and every registered secret)
    masked by the one masking function."""
    from typing import get_args

    from pydantic_core.core_schema import ErrorType

    msg = str(err.get("msg", "invalid value"))
    if err.get("type") in ("value_error", "assertion_error") or err.get("type") not in get_args(ErrorType):
        msg = mask(msg, extra=secrets)
    return msg


def validation_message(exc: ValidationError, what: str, secrets: Any = ()) -> str:
    """One line per problem: the field's dotted path and pydantic's rule, never the input
    (and none of ``secrets``, should a validator have quoted one)."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(the block as a whole)"
        parts.append(f"field {loc!r}: {_error_text(err, secrets)}")
    return f"{what}: " + "; ".join(parts)


# -- schema changes ----------------------------------------------------------------------------
def _type_label(prop: Any) -> str:  # a schema property: a dict, or junk in a damaged schema
    if not isinstance(prop, dict):
        return "any"
    if "$ref" in prop:
        return str(prop["$ref"]).rsplit("/", 1)[-1]
    for key in ("anyOf", "oneOf"):
        if key in prop:
            return " | ".join(_type_label(p) for p in prop[key])
    if "allOf" in prop and len(prop["allOf"]) == 1:
        return _type_label(prop["allOf"][0])
    if "const" in prop:
        return repr(prop["const"])
    if "enum" in prop:
        return "one of " + ", ".join(repr(v) for v in prop["enum"])
    kind = prop.get("type")
    if isinstance(kind, list):
        return " | ".join(str(k) for k in kind)
    if kind == "array" and "items" in prop:
        return f"array of {_type_label(prop['items'])}"
    return str(kind) if kind else "any"


def describe_schema_change(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable differences between two model JSON schemas' fields."""
    old_props = old.get("properties", {}) or {}
    new_props = new.get("properties", {}) or {}
    old_req = set(old.get("required", []) or [])
    new_req = set(new.get("required", []) or [])
    changes = []
    for name in new_props:
        if name not in old_props:
            changes.append(f"added {'required' if name in new_req else 'optional'} {name!r}")
    for name in old_props:
        if name not in new_props:
            changes.append(f"removed {name!r}")
    for name in new_props:
        if name in old_props:
            before, after = _type_label(old_props[name]), _type_label(new_props[name])
            if before != after:
                changes.append(f"{name!r} changed type {before} → {after}")
            elif name in new_req and name not in old_req:
                changes.append(f"{name!r} is now required")
    return changes


def _mismatch(
    tx: BlocksTransaction, doc: BlockDocument, cls: type[Block], exc: ValidationError, secrets: Any = ()
) -> BlockSchemaMismatch:
    stored = tx.schema(doc.schema_checksum)
    changes = describe_schema_change(stored.json_schema, cls.model_json_schema()) if stored is not None else []
    if not changes:
        changes = [
            f"{'.'.join(str(p) for p in err.get('loc', ())) or '(block)'!r}: {_error_text(err, secrets)}"
            for err in exc.errors(include_url=False, include_input=False)
        ]
    return BlockSchemaMismatch(
        f"block {_label(doc.slug, doc.name)!r} was saved with an older schema of {cls.__name__}; "
        f"changed fields: {'; '.join(changes)}. Update it: load the values, fix them and "
        "save(..., overwrite=True), or re-apply your blocks file."
    )
