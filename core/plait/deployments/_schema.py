"""Checking parameters against a stored parameter schema, where the flow itself is not loaded.

A deployment stores its flow's ``Flow.parameters`` (a JSON schema that pydantic made from the
signature). ``run_deployment`` and ``plait deployment run`` check what they send against it
before a run is created, so a typo or a wrong type is refused at once with the parameter's
name, not minutes later in a worker. The checks cover what pydantic writes for plain
signatures: ``type``, ``enum``/``const``, ``anyOf``/``oneOf``/``allOf``, ``$ref`` into
``$defs``, object ``properties``/``required``/``additionalProperties`` and array ``items``.
Formats (``date-time``...) and bounds are left to the flow's own validation when it runs.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

__all__ = ["schema_problems", "required_parameters"]

_MAX_DEPTH = 32
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list, tuple),
    "object": (dict, Mapping),
    "null": (type(None),),
}


def required_parameters(schema: Mapping[str, Any]) -> list[str]:
    """The names a run must give (the flow's parameters without defaults)."""
    return [str(name) for name in schema.get("required") or []]


def schema_problems(
    schema: Mapping[str, Any] | None, parameters: Mapping[str, Any], *, partial: bool = False
) -> list[str]:
    """What is wrong with ``parameters`` for a flow whose parameter schema is ``schema``.

    Args:
        schema: A flow's ``Flow.parameters``; None or ``{}`` (unknown) accepts anything.
        parameters: Values by parameter name, as JSON would carry them.
        partial: Do not report required parameters that are missing.

    Returns:
        One message per problem, each naming the parameter; empty when all is well.
    """
    if not schema or not isinstance(schema, Mapping):
        return []
    properties: Mapping[str, Any] = schema.get("properties") or {}
    defs: Mapping[str, Any] = schema.get("$defs") or {}
    problems = []
    for name, value in parameters.items():
        if name not in properties:
            if schema.get("additionalProperties", True) is False:
                close = difflib.get_close_matches(str(name), list(properties), n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"it takes: {', '.join(properties) or '(none)'}"
                problems.append(f"unknown parameter {name!r} ({hint})")
            continue
        problem = _mismatch(properties[name], value, defs, 0)
        if problem:
            problems.append(f"parameter {name!r}: {problem}")
    if not partial:
        problems += [f"parameter {name!r} is required" for name in required_parameters(schema)
                     if name not in parameters]
    return problems


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return f"a {type(value).__name__}"


def _is(kind: str, value: Any) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    accepted = _JSON_TYPES.get(kind)
    return True if accepted is None else isinstance(value, accepted)


def _mismatch(schema: Any, value: Any, defs: Mapping[str, Any], depth: int) -> str | None:
    """Why ``value`` does not fit ``schema``, or None when it does (or we cannot tell)."""
    if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _mismatch(defs.get(ref.removeprefix("#/$defs/")), value, defs, depth + 1)
    if "const" in schema and value != schema["const"]:
        return f"must be {schema['const']!r}"
    if "enum" in schema and value not in schema["enum"]:
        return "must be one of " + ", ".join(repr(v) for v in schema["enum"])
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            reasons = [_mismatch(option, value, defs, depth + 1) for option in options]
            if all(reasons):
                return "; or ".join(dict.fromkeys(r for r in reasons if r))
    for option in schema.get("allOf") or []:
        reason = _mismatch(option, value, defs, depth + 1)
        if reason:
            return reason
    kind = schema.get("type")
    kinds = [kind] if isinstance(kind, str) else list(kind) if isinstance(kind, list) else []
    if kinds and not any(_is(k, value) for k in kinds):
        wanted = " or ".join(("an " if k[0] in "aeiou" else "a ") + k for k in kinds)
        return f"must be {wanted}, got {_type_name(value)}"
    if isinstance(value, Mapping) and ("properties" in schema or "required" in schema):
        return _object_mismatch(schema, value, defs, depth)
    items = schema.get("items")
    if isinstance(value, (list, tuple)) and isinstance(items, Mapping):
        for i, item in enumerate(value):
            reason = _mismatch(items, item, defs, depth + 1)
            if reason:
                return f"item {i}: {reason}"
    return None


def _object_mismatch(schema: Mapping[str, Any], value: Mapping[str, Any], defs: Mapping[str, Any],
                     depth: int) -> str | None:
    properties: Mapping[str, Any] = schema.get("properties") or {}
    for field, field_value in value.items():
        if field in properties:
            reason = _mismatch(properties[field], field_value, defs, depth + 1)
            if reason:
                return f"field {field!r}: {reason}"
        elif schema.get("additionalProperties", True) is False:
            return f"unknown field {field!r}"
    missing = [str(f) for f in schema.get("required") or [] if f not in value]
    if missing:
        return "missing field " + ", ".join(repr(f) for f in missing)
    return None
