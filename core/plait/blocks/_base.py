"""The Block base class: a typed, documented, savable piece of configuration.

A block type has a slug (``"aws-credentials"``), a display name, a description,
capabilities (``"read-path"``, ``"write-path"``, ``"run-infrastructure"``, ``"notify"``…),
a JSON schema and secret fields, all derived from the class. Persistence (save/load, secrets
encrypted at rest, nested blocks by reference) lives in ``plait.blocks._documents``.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, ClassVar, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Secret, SecretBytes, SecretStr

__all__ = ["Block", "SecretDict", "is_secret_annotation"]

SecretDict = Secret[dict[str, Any]]
"""A dict whose whole value is secret (e.g. extra connection arguments holding tokens)."""

_SECRET_TYPES = (SecretStr, SecretBytes, Secret)


def is_secret_annotation(annotation: Any) -> bool:
    """True when a field's type is (or optionally is) a pydantic secret type."""
    if isinstance(annotation, type) and issubclass(annotation, _SECRET_TYPES):
        return True
    origin = get_origin(annotation)
    if isinstance(origin, type) and issubclass(origin, Secret):
        return True
    return any(is_secret_annotation(arg) for arg in get_args(annotation) if arg is not type(None))


def _block_classes(annotation: Any) -> list[type[Block]]:
    if isinstance(annotation, type) and issubclass(annotation, Block):
        return [annotation]
    return [c for arg in get_args(annotation) for c in _block_classes(arg)]


def _kebab(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", name).lower()


class Block(BaseModel):
    """Base class of every block. Subclass it, add typed fields with descriptions, and set:

    Attributes:
        block_type_slug: Unique id of the type (default: the class name in kebab-case).
        block_type_name: Display name (default: the class name).
        block_description: What the block is for (default: the class docstring's first paragraph).
        capabilities: What the block can do, e.g. ``("read-path", "write-path")``.
        code_example: A short snippet showing how to use the block.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, arbitrary_types_allowed=True)

    block_type_slug: ClassVar[str] = ""
    block_type_name: ClassVar[str] = ""
    block_description: ClassVar[str] = ""
    capabilities: ClassVar[tuple[str, ...]] = ()
    code_example: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Derive unset metadata per class, never inheriting the parent's slug or name.
        if "block_type_slug" not in cls.__dict__:
            cls.block_type_slug = _kebab(cls.__name__)
        if "block_type_name" not in cls.__dict__:
            cls.block_type_name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", cls.__name__)
        if "block_description" not in cls.__dict__:
            doc = (cls.__doc__ or "").strip()
            cls.block_description = doc.split("\n\n")[0].replace("\n", " ").strip()

    # -- metadata ------------------------------------------------------------------------
    @classmethod
    def secret_fields(cls) -> list[str]:
        """Dotted names of every secret field, nested blocks included (``credentials.password``)."""
        names: list[str] = []
        for name, field in cls.model_fields.items():
            if is_secret_annotation(field.annotation):
                names.append(name)
            for nested in _block_classes(field.annotation):
                names.extend(f"{name}.{inner}" for inner in nested.secret_fields())
        return names

    @classmethod
    def nested_block_fields(cls) -> dict[str, list[type[Block]]]:
        """Fields that hold other blocks (saved by reference)."""
        return {
            name: classes
            for name, field in cls.model_fields.items()
            if (classes := _block_classes(field.annotation))
        }

    @classmethod
    def block_schema(cls) -> dict[str, Any]:
        """The type's JSON schema plus plait's metadata, stable across runs."""
        schema = cls.model_json_schema()
        return {
            "block_type_slug": cls.block_type_slug,
            "block_type_name": cls.block_type_name,
            "description": cls.block_description,
            "capabilities": sorted(cls.capabilities),
            "secret_fields": cls.secret_fields(),
            "json_schema": schema,
        }

    @classmethod
    def schema_checksum(cls) -> str:
        """Changes whenever the fields (names, types, defaults, required) change."""
        canonical = json.dumps(cls.model_json_schema(), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
