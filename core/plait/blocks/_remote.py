"""Blocks through a plait server: save, load, delete and list when ``PLAIT_API_URL`` is set.

A process that records to a server (a worker, a flow on a laptop) keeps no database and no
encryption key: it sends a block's values with its type's schema (``_payloads.block_payload``)
to ``PUT /api/v1/blocks/documents/{slug}/{name}``, where the server encrypts the secrets with
its own key, and reads a block back with its secrets (``?include_secrets=true``, which needs
an API key of scope ``run``) to build it with its class (``_payloads.block_from_document``).

Each entry point mirrors one of ``plait.blocks._load``/``_save``/``_apply`` (same arguments,
same results, same exception types: ``BlockNotFound`` for a missing block or type,
``BlockError`` for the rest, the server's message in it); those modules hand over to this one
when ``active()`` says so. A server process itself always uses its own store (``local_only``).

A blocks file (``apply_blocks``) is read, resolved and validated in this process, compared
with the saved blocks read from the server with their secrets, and its changed blocks are
sent in one ``POST /api/v1/blocks/apply``, which saves them in one transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from plait.blocks._references import _is_anonymous, _label, _suggest, split_reference, validate_name
from plait.exceptions import BlockError, BlockNotFound, BlockValidationError

if TYPE_CHECKING:
    from pathlib import Path

    from plait._api import ApiSession
    from plait._api._core import Call
    from plait.blocks._apply import ApplyResult, Edges, _Entry
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
    "apply_blocks",
    "KeyRefused",
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


class KeyRefused(BlockError):
    """The server refused the API key (401) or found its scope too small (403).

    Attributes:
        status: 401 or 403.
        scope: The key's scope the server named (on a 403), else None.
    """

    def __init__(self, message: str, status: int | None, scope: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.scope = scope


def _send(call: Call[Any], action: str, label: str) -> Any:
    """``call``'s answer; the API's errors as the block errors ``plait.blocks`` raises.

    Raises:
        BlockNotFound: The server has no such block or type.
        BlockValidationError: The server refused the values (422).
        KeyRefused: The server refused the key, or its scope (a ``BlockError``).
        plait.blocks._encoding.DamagedDocument: The saved block is damaged (the server says how).
        BlockError: Anything else: no answer, a conflict (the server's message).
    """
    from plait._api import ApiAuthError, ApiError, ApiNotFound
    from plait.blocks._encoding import DamagedDocument

    session = _session()
    try:
        return session.call(call)
    except ApiNotFound as exc:
        raise BlockNotFound(f"{exc.message}") from None
    except ApiAuthError as exc:
        has = exc.detail.get("has") if isinstance(exc.detail, dict) else None
        raise KeyRefused(f"cannot {action} block {label!r} through the plait server: {exc.message}", exc.status,
                         has if isinstance(has, str) else None) from None
    except ApiError as exc:
        if exc.status == 422:
            raise BlockValidationError(exc.message) from None
        if exc.status == 409 and exc.code == "damaged_block":
            raise DamagedDocument(exc.message) from None
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
    from plait.blocks._payloads import block_from_document

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
    from plait.blocks._payloads import block_payload, mark_saved

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


# -- blocks files ------------------------------------------------------------------------------------
def _stored_canonical(data: dict[str, Any], nested: set[str]) -> dict[str, Any]:
    """``canonical_values`` of a saved block from its document read with secrets: a nested
    block saved under a name as ``{"$block": "slug/name"}``, an anonymous one as its values
    (the comparison ``plait.blocks._encoding.stored_canonical_values`` makes locally)."""
    from plait.blocks._types import _registry

    def resolve(value: Any) -> Any:
        if isinstance(value, dict):
            inner = value.get("$block") if set(value) == {"$block"} else None
            if isinstance(inner, dict) and {"slug", "name", "data"} <= set(inner):
                slug, name = str(inner["slug"]), str(inner["name"])
                if not _is_anonymous(name):
                    return {"$block": _label(slug, name)}
                cls = _registry().get(slug)
                inner_nested = set(cls.nested_block_fields()) if cls is not None else set(inner["data"] or {})
                return _stored_canonical(inner["data"] or {}, inner_nested)
            return {k: resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v) for v in value]
        return value

    return {key: resolve(value) if key in nested else value for key, value in data.items()}


def _document_edges(document: dict[str, Any]) -> Edges:
    """The named blocks a document holds (its nested blocks are inline), through its anonymous parts."""
    edges: Edges = []

    def walk(data: dict[str, Any], prefix: str, depth: int) -> None:
        def visit(value: Any, field: str) -> None:
            if isinstance(value, dict):
                inner = value.get("$block") if set(value) == {"$block"} else None
                if isinstance(inner, dict) and {"slug", "name", "data"} <= set(inner):
                    name = str(inner["name"])
                    if not _is_anonymous(name):
                        edges.append((prefix + field, _label(str(inner["slug"]), name)))
                    elif depth < 64 and isinstance(inner["data"], dict):  # the server bounds nesting too
                        walk(inner["data"], f"{prefix}{field}.", depth + 1)
                    return
                for item in value.values():
                    visit(item, field)
            elif isinstance(value, list):
                for item in value:
                    visit(item, field)

        for key, value in data.items():
            visit(value, key)

    walk(document.get("data") or {}, "", 0)
    return edges


class _ServerBlocks:
    """The blocks saved on the server, as a blocks file is compared with them
    (``plait.blocks._apply.SavedBlocks``); each document is read once, with its secrets."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # each saved block read, or why it could not be (not found, damaged)
        self.documents: dict[tuple[str, str], dict[str, Any] | BlockError] = {}

    def refused(self, exc: KeyRefused) -> BlockError:
        from plait.exceptions import BlocksFileError

        if exc.status != 403:
            return BlocksFileError(f"{self.path}: {exc}. Nothing was written.")
        has = f" (this key has scope {exc.scope!r})" if exc.scope else ""
        return BlocksFileError(
            f"{self.path}: applying a blocks file through the plait server needs an API key with scope 'run' or "
            f"'admin'{has}: it compares each block with the saved one, secret values included, and saves the "
            "changed ones. Set PLAIT_API_KEY to such a key (`plait server api-key create NAME --scope run` on the "
            "server). Nothing was written."
        )

    def read(self, slug: str, name: str) -> dict[str, Any]:
        """The saved block ``slug/name`` read with its secrets (once per apply).

        Raises:
            BlockNotFound: There is no such block.
            plait.blocks._encoding.DamagedDocument: It is damaged.
            BlockError: Its secrets do not decrypt, or the server cannot be asked.
        """
        from plait.blocks._encoding import DamagedDocument

        key = (slug, name)
        if key not in self.documents:
            try:
                self.documents[key] = _document(slug, name)
            except KeyRefused as exc:
                raise self.refused(exc) from None
            except (BlockNotFound, DamagedDocument) as exc:
                self.documents[key] = exc
        found = self.documents[key]
        if isinstance(found, BlockError):
            raise found
        return found

    def load(self, reference: str) -> Block:
        slug, name = split_reference(reference)
        return _build(self.read(str(slug), name), None)

    def action(self, block: Block, name: str) -> str:
        from plait.blocks._encoding import DamagedDocument
        from plait.blocks._values import canonical_values

        try:
            document = self.read(block.block_type_slug, name)
        except BlockNotFound:
            return "created"
        except DamagedDocument:
            return "updated"  # the file's values replace what cannot be read (as locally)
        if document.get("schema_checksum") != type(block).schema_checksum():
            return "updated"
        stored = _stored_canonical(document.get("data") or {}, set(type(block).nested_block_fields()))
        return "unchanged" if stored == canonical_values(block) else "updated"

    def edges(self, label: str) -> Edges:
        from plait.blocks._encoding import DamagedDocument

        slug, name = split_reference(label)
        try:
            return _document_edges(self.read(str(slug), name))
        except (BlockNotFound, DamagedDocument):
            return []  # no saved block, or one the server cannot show: it closes no loop here


def apply_blocks(path: Path, entries: list[_Entry], dry_run: bool = False) -> list[ApplyResult]:
    """``plait.blocks.apply_blocks_file`` through the server: the entries (read, and their
    ``${env:...}`` substituted, here) are built and validated here and compared with the saved
    blocks; unless ``dry_run``, the changed ones are saved in one request, all or none.

    Needs an API key with scope ``run``: comparing reads the saved secrets.

    Raises:
        plait.exceptions.BlocksFileError: As for a local apply, and for a key that may not
            read secrets or save (the scope named); then nothing was written.
    """
    from dataclasses import replace

    from plait._api import ApiAuthError, ApiError
    from plait._api._core import as_dict
    from plait.blocks._apply import plan_apply
    from plait.blocks._payloads import block_payload, mark_saved
    from plait.exceptions import BlocksFileError

    saved = _ServerBlocks(path)
    blocks, results = plan_apply(path, entries, saved)
    changed = [i for i, result in enumerate(results) if result.action != "unchanged"]
    if dry_run or not changed:
        return results
    body = []
    for i in changed:
        try:
            body.append({**block_payload(blocks[i]), "name": entries[i].name})
        except BlockError as exc:
            raise BlocksFileError(f"{path}: block #{entries[i].index} {entries[i].label!r}: {exc}") from None
    session = _session()
    try:
        answer = session.call(session.calls.call("POST", "/blocks/apply", as_dict, body={"blocks": body}))
    except ApiAuthError as exc:
        has = exc.detail.get("has") if isinstance(exc.detail, dict) else None
        raise saved.refused(KeyRefused(exc.message, exc.status, has if isinstance(has, str) else None)) from None
    except ApiError as exc:
        if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:  # refused: nothing written
            raise BlocksFileError(f"{path}: the plait server refused the blocks, nothing was written: "
                                  f"{exc.message}") from None
        raise BlocksFileError(  # no answer, say: the blocks may or may not have been saved
            f"{path}: applying the blocks through the plait server failed: {exc.message}. Applying is idempotent: "
            "run `plait block apply` again (see `plait block ls` for what is saved)"
        ) from None
    items = answer.get("items")
    if not isinstance(items, list) or len(items) != len(changed):
        raise BlocksFileError(f"{path}: the plait server's answer to POST /blocks/apply lists "
                              f"{len(items) if isinstance(items, list) else 'no'} blocks, not {len(changed)}; "
                              "see `plait block ls` for what it saved")
    results = list(results)
    for i, item in zip(changed, items, strict=True):
        mark_saved(blocks[i], item.get("document") or {})
        if item.get("action") in ("created", "updated"):
            results[i] = replace(results[i], action=item["action"])
    return results


def reset_sessions() -> None:
    """Close the kept-alive sessions (after the settings changed; ``plait.testing`` calls it)."""
    with _sessions_lock:
        sessions = list(_sessions.values())
        _sessions.clear()
    for session in sessions:
        session.close()
