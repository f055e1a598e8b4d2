"""The Block base class: a typed, documented, savable piece of configuration.

A block type has a slug (``"aws-credentials"``), a display name, a description,
capabilities (``"read-path"``, ``"write-path"``, ``"run-infrastructure"``, ``"notify"``…),
a JSON schema and secret fields, all derived from the class. Persistence (save/load, secrets
encrypted at rest, nested blocks by reference) lives in ``plait.blocks._save`` and
``plait.blocks._load`` (stored value format: ``plait.blocks._encoding``); the methods here
delegate to them.
"""

from __future__ import annotations

import hashlib
import json
import re
import weakref
from typing import Any, ClassVar, Self, get_args, get_origin

from pydantic import BaseModel, ConfigDict, PrivateAttr, Secret, SecretBytes, SecretStr

from plait.exceptions import BlockError

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


def _fields(cls: type[Block]) -> dict[str, Any]:
    """``cls.model_fields``, with forward references resolved when they can be by now."""
    if not cls.__pydantic_complete__:
        try:
            cls.model_rebuild(raise_errors=False)
        except Exception:  # pydantic's own error for a broken class comes when it is used
            pass
    return cls.model_fields


# Classes whose whole tree of nested block types is known to hold no cycle.
_TREE_CHECKED: weakref.WeakSet[type] = weakref.WeakSet()


def _type_cycle(cls: type[Block], resolve: bool = True) -> list[str] | None:
    """``["A.b", "B.a"]`` when block types reachable from ``cls`` hold each other in a loop."""
    complete = True
    done: set[type] = set()

    def walk(current: type[Block], path: list[tuple[type[Block], str]]) -> list[str] | None:
        nonlocal complete
        fields = _fields(current) if resolve else current.model_fields
        complete = complete and bool(current.__pydantic_complete__)
        for name, info in fields.items():
            for nested in _block_classes(info.annotation):
                here = [*path, (current, name)]
                on_path = [c for c, _ in here]
                if nested in on_path:
                    return [f"{c.__name__}.{f}" for c, f in here[on_path.index(nested):]]
                if nested in done or nested in _TREE_CHECKED:
                    continue
                found = walk(nested, here)
                if found:
                    return found
        done.add(current)
        return None

    cycle = walk(cls, [])
    if cycle is None and complete:
        _TREE_CHECKED.add(cls)
    return cycle


def _type_cycle_error(cls: type[Block], cycle: list[str]) -> BlockError:
    first = cycle[0].split(".")[0]
    what = "holds itself" if first == cls.__name__ else f"holds {first}, which holds itself"
    return BlockError(
        f"block type {cls.__name__} {what}: {' → '.join(cycle)} → {first}. Blocks are saved by reference "
        "and loaded as a tree, so a block type cannot hold its own type, directly or through other block "
        f"types; give the field another type (e.g. str, the name of a saved block to load with "
        f"{first}.load(name))."
    )


def check_block_type(cls: type[Block]) -> None:
    """Refuse a block type whose fields hold its own type, directly or through others.

    Raises:
        plait.exceptions.BlockError: Naming the fields of the loop and the fix.
    """
    if cls in _TREE_CHECKED:
        return
    cycle = _type_cycle(cls)
    if cycle:
        raise _type_cycle_error(cls, cycle)


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

    # The saved document this instance was loaded from or saved as (None: never saved).
    _document_id: str | None = PrivateAttr(default=None)
    _document_name: str | None = PrivateAttr(default=None)

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

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        # Refuse a type that holds itself as soon as it is defined; a loop through a forward
        # reference not resolvable yet is refused when the type is first used (secret_fields).
        cycle = _type_cycle(cls, resolve=False)
        if cycle:
            raise _type_cycle_error(cls, cycle)

    # -- metadata ------------------------------------------------------------------------
    @classmethod
    def secret_fields(cls) -> list[str]:
        """Dotted names of every secret field, nested blocks included (``credentials.password``).

        Raises:
            plait.exceptions.BlockError: The type holds its own type (it could never be saved).
        """
        check_block_type(cls)
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

    # -- equality ------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        """Equal when of the same class with equal field values (secrets compared by value),
        whether or not either was saved or loaded."""
        if not isinstance(other, BaseModel):
            return NotImplemented
        if type(self) is not type(other):
            return False
        if self.__pydantic_extra__ != other.__pydantic_extra__:
            return False
        if _own_private(self) != _own_private(other):
            return False
        return all(self.__dict__.get(name) == other.__dict__.get(name) for name in type(self).model_fields)

    # -- persistence -----------------------------------------------------------------------
    def save(self, name: str, overwrite: bool = False) -> str:
        """Save the block as ``name`` (lowercase letters, digits, ``-``, ``_``, ``.``).

        Secret values are encrypted; nested blocks are saved by reference (a nested block
        that was never saved gets an anonymous document of its own). One transaction.

        Returns:
            The saved document's id.

        Raises:
            plait.exceptions.BlockError: Invalid name, or ``name`` taken and not ``overwrite``.
        """
        from plait.blocks._save import save_block

        return save_block(self, name, overwrite=overwrite)

    @classmethod
    def load(cls, name: str) -> Self:
        """Load a saved block: ``MyBlock.load("name")``, or ``Block.load("slug/name")``.

        Raises:
            plait.exceptions.BlockNotFound: No such block or type (close matches suggested).
            plait.exceptions.BlockSchemaMismatch: Saved with an incompatible older schema.
            plait.exceptions.BlockValidationError: The saved values are not valid.
            plait.exceptions.BlockError: The secrets were encrypted with another key.
        """
        from plait.blocks._load import load_block

        return load_block(cls, name)  # type: ignore[return-value]

    @classmethod
    def delete(cls, name: str) -> None:
        """Delete a saved block (same naming as ``load``); refuses while another block uses it.

        Raises:
            plait.exceptions.BlockNotFound: No such block.
            plait.exceptions.BlockError: Another saved block references it.
        """
        from plait.blocks._save import delete_block

        delete_block(cls, name)

    @classmethod
    def list(cls) -> list[dict[str, Any]]:  # noqa: A003 - the natural name
        """Saved blocks of this type (all types on ``Block``): ``{name, slug, type_name, id,
        created, updated}``, anonymous nested blocks left out."""
        from plait.blocks._load import list_for_class

        return list_for_class(cls)

    @classmethod
    def from_env(cls, prefix: str) -> Self:
        """Build the block from environment variables: field ``password`` from
        ``<PREFIX>PASSWORD``, a nested block's field from ``<PREFIX><FIELD>__<INNER>``;
        lists and dicts as JSON.

        Raises:
            plait.exceptions.BlockValidationError: A variable is missing or invalid (named).
        """
        from plait.blocks._env import block_from_env

        return block_from_env(cls, prefix)  # type: ignore[return-value]


_DOCUMENT_ATTRS = ("_document_id", "_document_name")


def _own_private(block: BaseModel) -> dict[str, Any]:
    private = block.__pydantic_private__ or {}
    return {k: v for k, v in private.items() if k not in _DOCUMENT_ATTRS}
