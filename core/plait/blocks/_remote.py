"""Blocks through a plait server: save, load, delete and list when ``PLAIT_API_URL`` is set.

A process that records to a server (a worker, a flow on a laptop) keeps no database and no
encryption key: it sends a block's values with its type's schema (``_documents.block_payload``)
to ``PUT /api/v1/blocks/documents/{slug}/{name}``, where the server encrypts the secrets with
its own key, and reads a block back with its secrets (``?include_secrets=true``, which needs
an API key of scope ``run``) to build it with its class (``_documents.block_from_document``).

Each entry point mirrors one of ``plait.blocks._load``/``_save`` (same arguments, same
results, same exception types: ``BlockNotFound`` for a missing block or type, ``BlockError``
for the rest, the server's message in it); those modules hand over to this one when
``active()`` says so. A server process itself always uses its own store (``local_only``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from plait.blocks._references import _is_anonymous, _label, _suggest, split_reference, validate_name
from plait.exceptions import BlockError, BlockNotFound, BlockValidationError

if TYPE_CHECKING:
    from plait._api import ApiSession
    from plait._api._core import Call
    from plait.blocks._base import Block

__all__ = [
    "active",
    "local_only",
    "save_block",
    "load_block",
    "load_document",
    "describe_document",
    "list_documents",
    "list_for_class",
    "delete_block",
]

_sessions: dict[Any, ApiSession] = {}
_sessions_lock = threading.Lock()
_local_only = False


def active() -> bool:
    """Whether blocks go through a plait server: ``PLAIT_API_URL`` is set and this process is
    not one that serves the blocks itself (see ``local_only``)."""
    if _local_only:
        return False
    from plait.settings import get_settings

    return get_settings().api_url is not None


def set_local_only(value: bool = True) -> None:
    """Make this process use its own store for blocks whatever ``PLAIT_API_URL`` says (a
    plait server calls this at start: it must never ask itself, or another server)."""
    global _local_only
    _local_only = value


@contextmanager
def local_only() -> Iterator[None]:
    """Blocks use the local store inside the ``with``, whatever ``PLAIT_API_URL`` says."""
    global _local_only
    before, _local_only = _local_only, True
    try:
        yield
    finally:
        _local_only = before


def _session() -> ApiSession:
    """One kept-alive session per server configuration (a flow loading ten blocks opens one
    connection, not ten)."""
    from plait._api import ApiConfig, ApiSession

    config = ApiConfig.from_settings()
    with _sessions_lock:
        session = _sessions.get(config)
        if session is None:
            session = _sessions[config] = ApiSession(config)
        return session


def _send(call: Call[Any], action: str, label: str) -> Any:
    """``call``'s answer; the API's errors as the block errors ``plait.blocks`` raises.

    Raises:
        BlockNotFound: The server has no such block or type.
        BlockValidationError: The server refused the values (422).
        BlockError: Anything else: no answer, a refused key, a conflict (the server's message).
    """
    from plait._api import ApiAuthError, ApiError, ApiNotFound

    session = _session()
    try:
        return session.call(call)
    except ApiNotFound as exc:
        raise BlockNotFound(f"{exc.message}") from None
    except ApiAuthError as exc:
        raise BlockError(f"cannot {action} block {label!r} through the plait server: {exc.message}") from None
    except ApiError as exc:
        if exc.status == 422:
            raise BlockValidationError(exc.message) from None
        raise BlockError(
            exc.message if exc.status in (400, 409) else f"cannot {action} block {label!r}: {exc.message}"
        ) from None


# -- reading -----------------------------------------------------------------------------------------
def _entries(slug: str | None = None, include_anonymous: bool = False) -> list[dict[str, Any]]:
    """Every saved block's listing entry on the server (of type ``slug``)."""
    session = _session()
    call = session.calls.block_documents(type=slug, include_anonymous=include_anonymous)
    entries: list[dict[str, Any]] = []
    current: Call[Any] | None = call
    while current is not None:
        page = _send(current, "list", slug or "*")
        entries.extend(page.items)
        current = current.follow(page) if current.follow is not None else None
    return entries


def _entry(raw: dict[str, Any]) -> dict[str, Any]:
    """A listing entry as ``plait.blocks.list_documents`` gives it (the type's display name
    from the installed class, as locally)."""
    from plait.blocks._types import _registry

    slug = str(raw.get("slug"))
    cls = _registry().get(slug)
    return {
        "name": raw.get("name"),
        "slug": slug,
        "type_name": cls.block_type_name if cls is not None else (raw.get("type_name") or slug),
        "id": raw.get("id"),
        "created": raw.get("created"),
        "updated": raw.get("updated"),
    }


def _document(slug: str, name: str) -> dict[str, Any]:
    session = _session()
    document: dict[str, Any] = _send(session.calls.block_document(slug, name, include_secrets=True), "load",
                                     _label(slug, name))
    return document


def _build(document: dict[str, Any], cls: type[Block] | None) -> Block:
    from plait.blocks._documents import block_from_document

    return block_from_document(document, cls)


def _find(cls: type[Block], reference: str) -> tuple[str, str]:
    """``(slug, name)`` of the saved block ``cls.load(reference)`` means, or BlockNotFound
    with suggestions (the same rules as the local store's)."""
    from plait.blocks._base import Block
    from plait.blocks._load import _resolve_slug
    from plait.blocks._types import _candidate_slugs, _registry

    slug, name = _resolve_slug(cls, reference)
    if slug is not None:
        return slug, name
    slugs = _candidate_slugs(cls)
    entries = [e for e in _entries() if not _is_anonymous(str(e.get("name")))]
    registry = _registry()
    named = [e for e in entries if e.get("name") == name]
    docs = [e for e in named if e["slug"] in slugs or _is_subclass(registry.get(e["slug"]), cls)]
    own = [e for e in docs if e["slug"] == cls.block_type_slug and cls is not Block]
    if own:
        return own[0]["slug"], name
    if len(docs) == 1:
        return docs[0]["slug"], name
    if len(docs) > 1:
        options = ", ".join(repr(_label(e["slug"], name)) for e in docs)
        raise BlockError(f"several blocks are named {name!r} ({options}); load one as 'slug/name'")
    hint = ""
    if named:
        hint = " (a block of another type has that name: " + ", ".join(
            repr(_label(e["slug"], name)) for e in named) + ")"
    pool = [str(e["name"]) for e in entries if e["slug"] in slugs]
    raise BlockNotFound(
        f"no saved {cls.__name__} block named {name!r}{hint}{_suggest(name, pool)} (see `plait block ls`)"
    )


def _is_subclass(candidate: type | None, cls: type[Block]) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, cls)


def _find_any(reference: str) -> tuple[str, str]:
    """``(slug, name)`` of the saved block ``reference`` names: ``"slug/name"``, or a name no
    other type uses."""
    slug, name = split_reference(reference)
    if slug is not None:
        return slug, name
    entries = [e for e in _entries() if not _is_anonymous(str(e.get("name")))]
    docs = [e for e in entries if e.get("name") == name]
    if not docs:
        names = [str(e["name"]) for e in entries]
        raise BlockNotFound(f"no saved block named {name!r}{_suggest(name, names)} (see `plait block ls`)")
    if len(docs) > 1:
        options = ", ".join(repr(_label(e["slug"], name)) for e in docs)
        raise BlockError(f"several blocks are named {name!r} ({options}); give 'slug/name'")
    return docs[0]["slug"], name


def load_block(cls: type[Block], reference: str) -> Block:
    """``cls.load(reference)`` through the server (see ``Block.load``)."""
    from plait.blocks._base import Block
    from plait.blocks._load import _resolve_slug

    hint = None if cls is Block else cls
    slug, name = _resolve_slug(cls, reference)
    if slug is None and hint is not None:
        # The class's own type first, as locally: one request in the usual case.
        try:
            document = _document(cls.block_type_slug, name)
        except BlockNotFound:
            pass
        else:
            return _build(document, hint)
    slug, name = _find(cls, reference)
    return _build(_document(slug, name), hint)


def load_document(reference: str) -> Block:
    """``plait.blocks.load_document(reference)`` through the server."""
    slug, name = _find_any(reference)
    return _build(_document(slug, name), None)


def describe_document(reference: str) -> dict[str, Any]:
    """The listing entry of the saved block ``reference`` names, without building it."""
    slug, name = _find_any(reference)
    for raw in _entries(slug, include_anonymous=_is_anonymous(name)):
        if raw.get("name") == name:
            return _entry(raw)
    raise BlockNotFound(f"no saved block {_label(slug, name)!r} (see `plait block ls`)")


def list_documents(slugs: list[str] | None, include_anonymous: bool = False) -> list[dict[str, Any]]:
    """Saved blocks on the server, by type then name (``plait.blocks.list_documents``)."""
    if slugs is not None and len(slugs) == 1:
        raw = _entries(slugs[0], include_anonymous)
    else:
        raw = [e for e in _entries(None, include_anonymous) if slugs is None or e.get("slug") in slugs]
    rows = [_entry(e) for e in raw if include_anonymous or not _is_anonymous(str(e.get("name")))]
    return sorted(rows, key=lambda e: (e["slug"], str(e["name"])))


def list_for_class(cls: type[Block]) -> list[dict[str, Any]]:
    """``cls.list()`` through the server."""
    from plait.blocks._base import Block
    from plait.blocks._types import _candidate_slugs

    return list_documents(None if cls is Block else _candidate_slugs(cls))


# -- writing -----------------------------------------------------------------------------------------
def save_block(block: Block, name: str, overwrite: bool = False) -> str:
    """``block.save(name, overwrite)`` through the server; returns the document's id."""
    from plait.blocks._documents import block_payload, mark_saved

    validate_name(name)
    payload = block_payload(block)  # refuses the base class and blocks that contain themselves
    slug = type(block).block_type_slug
    session = _session()
    document: dict[str, Any] = _send(session.calls.save_block_document(slug, name, payload, overwrite=overwrite),
                                     "save", _label(slug, name))
    mark_saved(block, document)
    return str(document.get("id"))


def delete_block(cls: type[Block], reference: str) -> None:
    """``cls.delete(reference)`` through the server (needs an API key of scope admin)."""
    slug, name = _find(cls, reference)
    session = _session()
    _send(session.calls.delete_block_document(slug, name), "delete", _label(slug, name))


def reset_sessions() -> None:
    """Close the kept-alive sessions (after the settings changed; ``plait.testing`` calls it)."""
    with _sessions_lock:
        sessions = list(_sessions.values())
        _sessions.clear()
    for session in sessions:
        session.close()
