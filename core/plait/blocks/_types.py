"""Block types: the classes plugins register, looked up by slug, and their rows in the store
(``block_types`` and the ``block_schemas`` each saved document points at by checksum)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from plait.blocks._base import Block
from plait.blocks._references import _suggest
from plait.exceptions import BlockNotFound

if TYPE_CHECKING:
    from collections.abc import Mapping

    from plait._store.blocks import BlocksTransaction

__all__ = ["block_types", "get_block_class"]


# -- registered classes ------------------------------------------------------------------------
def _registry() -> Mapping[str, type[Block]]:
    """Registered classes by slug: looking one up imports only the plugin that declares it;
    iterating imports every plugin that offers blocks."""
    from plait import plugins

    return plugins.block_registry()  # typed as plain `type` there: plugins cannot name Block


def _plugin_owner(slug: str) -> str | None:
    from plait import plugins

    return plugins.block_owner(slug)


def _candidate_slugs(cls: type[Block]) -> list[str]:
    slugs = [cls.block_type_slug] if cls is not Block else []
    slugs += sorted(s for s, c in _registry().items() if issubclass(c, cls) and s not in slugs)
    return slugs


def block_types() -> list[dict[str, Any]]:
    """Every registered block type, by slug: ``{slug, name, description, capabilities,
    secret_fields, plugin}``."""
    rows = []
    for slug, cls in sorted(_registry().items()):
        rows.append({
            "slug": slug,
            "name": cls.block_type_name,
            "description": cls.block_description,
            "capabilities": sorted(cls.capabilities or ()),
            "secret_fields": cls.secret_fields(),
            "plugin": _plugin_owner(slug),
        })
    return rows


# -- type rows ---------------------------------------------------------------------------------
def _record_type(tx: BlocksTransaction, cls: type[Block], now: datetime) -> str:
    """Upsert the type's row and its schema's row; returns the schema checksum."""
    from plait._store.blocks import BlockSchemaRecord, BlockTypeRecord

    owner = _plugin_owner(cls.block_type_slug) if _registry().get(cls.block_type_slug) is cls else None
    checksum = cls.schema_checksum()
    tx.record_type(
        BlockTypeRecord(
            slug=cls.block_type_slug,
            name=cls.block_type_name,
            description=cls.block_description or "",
            capabilities=sorted(cls.capabilities or ()),
            plugin=owner,
        ),
        BlockSchemaRecord(
            checksum=checksum,
            slug=cls.block_type_slug,
            json_schema=cls.model_json_schema(),
            secret_fields=cls.secret_fields(),
        ),
        now,
    )
    return checksum


# -- looking up a type -------------------------------------------------------------------------
def _known_slugs(tx: BlocksTransaction | None) -> set[str]:
    slugs = set(_registry())
    if tx is not None:
        slugs |= tx.slugs()
    return slugs


def _unknown_type(slug: str, tx: BlocksTransaction | None = None) -> BlockNotFound:
    return BlockNotFound(
        f"no block type {slug!r} is registered{_suggest(slug, _known_slugs(tx) - {slug})} "
        "(see `plait block types`; a type comes from an installed plugin)"
    )


def get_block_class(slug: str) -> type[Block]:
    """The registered class of block type ``slug``.

    Raises:
        BlockNotFound: No plugin registers ``slug`` (close matches suggested).
    """
    cls = _registry().get(slug)
    if cls is None:
        raise _unknown_type(slug)
    return cls


def _class_for(slug: str, hints: list[type[Block]] | None, label: str, tx: BlocksTransaction) -> type[Block]:
    for hint in hints or ():
        if hint is not Block and hint.block_type_slug == slug:
            return hint
    cls = _registry().get(slug)
    if cls is not None:
        return cls
    if not hints:
        raise _unknown_type(slug, tx)
    raise BlockNotFound(
        f"block {label!r} is of type {slug!r}, which no installed plugin registers"
        f"{_suggest(slug, _known_slugs(tx) - {slug})} (see `plait block types`)"
    )
