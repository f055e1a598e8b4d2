"""A block's values in memory: its secrets (revealed, masked, registered for log masking),
its nested blocks, and the plain JSON forms built from them (``block_to_dict`` for showing,
``canonical_values`` for comparing with what is stored)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from pydantic import BaseModel, Secret, SecretBytes, SecretStr

from plait._masking import MASK, register_secret
from plait.blocks._base import Block, is_secret_annotation
from plait.blocks._references import _is_anonymous, _label

__all__ = ["MASK", "block_to_dict", "canonical_values", "register_block_secrets", "secret_leaves"]


# -- secrets -----------------------------------------------------------------------------------
def _top_level_secret_fields(cls: type[Block]) -> set[str]:
    names = {name for name in cls.secret_fields() if "." not in name}
    names |= {name for name, info in cls.model_fields.items() if is_secret_annotation(info.annotation)}
    return names & set(cls.model_fields)


def _reveal(value: Any) -> Any:
    """``value`` with every pydantic secret replaced by its plain value."""
    if isinstance(value, (SecretStr, SecretBytes, Secret)):
        return _reveal(value.get_secret_value())
    if isinstance(value, BaseModel):
        return {name: _reveal(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, dict):
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_reveal(v) for v in value]
    return value


def _string_leaves(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, bytes):
        yield value.decode("utf-8", "replace")
    elif isinstance(value, dict):
        for item in value.values():
            yield from _string_leaves(item)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _string_leaves(item)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield str(value)


def secret_leaves(block: Block) -> list[str]:
    """Every secret string held by ``block`` and its nested blocks (SecretDict leaves too)."""
    found: list[str] = []

    def walk(value: Any, secret: bool) -> None:
        if isinstance(value, (SecretStr, SecretBytes, Secret)):
            found.extend(_string_leaves(value.get_secret_value()))
        elif isinstance(value, Block):
            secrets = _top_level_secret_fields(type(value))
            for name in type(value).model_fields:
                walk(getattr(value, name, None), name in secrets)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item, secret)
        elif isinstance(value, (list, tuple, set, frozenset)):
            for item in value:
                walk(item, secret)
        elif secret and value is not None:
            found.extend(_string_leaves(value))

    walk(block, False)
    return [s for s in dict.fromkeys(found) if s]


def register_block_secrets(block: Block) -> None:
    """Have run logs, state messages and console output show ``***`` for the block's secrets."""
    for value in secret_leaves(block):
        register_secret(value)


# -- nested blocks and plain fields ------------------------------------------------------------
def _contains_block(value: Any) -> bool:
    if isinstance(value, Block):
        return True
    if isinstance(value, dict):
        return any(_contains_block(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_contains_block(v) for v in value)
    return False


def _map_blocks(value: Any, fn: Callable[[Block], Any]) -> Any:
    if isinstance(value, Block):
        return fn(value)
    if isinstance(value, dict):
        return {k: _map_blocks(v, fn) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_map_blocks(v, fn) for v in value]
    from pydantic_core import to_jsonable_python

    return to_jsonable_python(value)


def _plain_fields(block: Block, names: set[str]) -> dict[str, Any]:
    """JSON values of the non-secret, non-block fields ``names`` (pydantic mode="json")."""
    from pydantic_core import to_jsonable_python

    if not names:
        return {}
    dumped = block.model_dump(mode="json", include=names, warnings=False)
    for name in names - set(dumped):  # fields declared with exclude=True
        dumped[name] = to_jsonable_python(getattr(block, name))
    return dumped


def _field_kinds(cls: type[Block]) -> tuple[set[str], set[str]]:
    return _top_level_secret_fields(cls), set(cls.nested_block_fields())


# -- showing -----------------------------------------------------------------------------------
def _jsonable_reveal(value: Any) -> Any:
    from pydantic_core import to_jsonable_python

    def fix(v: Any) -> Any:
        if isinstance(v, bytes):
            return v.decode("utf-8", "backslashreplace")
        if isinstance(v, dict):
            return {str(k): fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v

    return to_jsonable_python(fix(_reveal(value)), fallback=str)


def block_to_dict(block: Block, reveal_secrets: bool = False) -> dict[str, Any]:
    """The block's values as JSON-safe data; secret values are ``"***"`` unless
    ``reveal_secrets`` (nested blocks become nested dicts, masked the same way)."""
    cls = type(block)
    secret, nested = _field_kinds(cls)
    plain = {
        n for n in cls.model_fields if n not in secret and not (n in nested and _contains_block(getattr(block, n)))
    }
    out = _plain_fields(block, plain)
    for fname in cls.model_fields:
        value = getattr(block, fname)
        if fname in nested and _contains_block(value):
            out[fname] = _map_blocks(value, lambda child: block_to_dict(child, reveal_secrets))
        elif fname in secret:
            if value is None:
                out[fname] = None
            else:
                out[fname] = _jsonable_reveal(value) if reveal_secrets else MASK
    return {fname: out[fname] for fname in cls.model_fields}


# -- comparing (blocks files) ------------------------------------------------------------------
def canonical_values(block: Block) -> dict[str, Any]:
    """Plain, comparable values of ``block``: secrets revealed, a nested block that is saved
    under a name as ``{"$block": "slug/name"}``, any other nested block as its own values."""
    from plait.blocks._crypto import _to_plain

    cls = type(block)
    secret, nested = _field_kinds(cls)
    plain = {
        n for n in cls.model_fields if n not in secret and not (n in nested and _contains_block(getattr(block, n)))
    }
    out = _plain_fields(block, plain)

    def child(value: Block) -> Any:
        if value._document_name and not _is_anonymous(value._document_name):
            return {"$block": _label(value.block_type_slug, value._document_name)}
        return canonical_values(value)

    for fname in cls.model_fields:
        value = getattr(block, fname)
        if fname in nested and _contains_block(value):
            out[fname] = _map_blocks(value, child)
        elif fname in secret:
            from pydantic_core import to_jsonable_python

            out[fname] = None if value is None else to_jsonable_python(_to_plain(_reveal(value)))
    return out
