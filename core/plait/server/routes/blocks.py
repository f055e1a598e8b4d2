"""Blocks over the API: types and their schemas, saved documents, saving and deleting.

The server stores blocks by schema (``plait.blocks._documents``): a client sends a block's
values with its type's schema information, and the server encrypts the secrets with its own
key, so neither the block's class nor the key need be where the other is. Secret values
leave the server only for ``?include_secrets=true`` from a key with scope ``run``; otherwise
they read ``"***"``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from plait._store.blocks import BlockListing, BlocksTransaction, transact
from plait._store.database import Database
from plait.blocks import Block
from plait.blocks._documents import (
    BlockTypeInfo,
    DocumentExists,
    DocumentInUse,
    UndecryptableDocument,
    UnknownBlockType,
    delete_document,
    list_document_entries,
    read_document,
    save_document,
    save_documents,
    unknown_type,
)
from plait.blocks._encoding import DamagedDocument
from plait.exceptions import BlockError, BlockNotFound
from plait.server._deps import Caller, database, require
from plait.server._errors import ERROR_RESPONSES, ApiProblem, ErrorOut

__all__ = ["router", "document_type", "document_types"]

router = APIRouter(tags=["blocks"])

Store = Annotated[Database, Depends(database)]
Reader = Annotated[Caller, Depends(require("read"))]
Runner = Annotated[Caller, Depends(require("run"))]
Admin = Annotated[Caller, Depends(require("admin"))]
# No control characters: no block has them, and PostgreSQL refuses NUL in a query.
_TEXT = r"^[^\x00-\x1f\x7f]+$"
Slug = Annotated[str, Path(min_length=1, max_length=200, pattern=_TEXT, examples=["api-token"],
                           description="The block type's slug, e.g. 'aws-credentials'.")]
Name = Annotated[str, Path(min_length=1, max_length=200, pattern=_TEXT, examples=["billing"],
                           description="The saved block's name, e.g. 'prod'.")]
_MAX_APPLY = 500  # blocks in one apply: far more than a blocks file holds, and a bounded transaction
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "Conflicts with what is stored (named in the message)"}
}


# -- response and request models -------------------------------------------------------------------
class BlockTypeOut(BaseModel):
    """A block type: installed on the server (a plugin registers its class) or known from
    saved blocks (stored by schema)."""

    slug: str
    name: str
    description: str
    capabilities: list[str] = Field(description="What the type can do; empty when unknown here.")
    secret_fields: list[str] = Field(description="Dotted names of the secret fields.")
    block_fields: list[str] = Field(description="Fields holding nested blocks (known for installed types).")
    plugin: str | None = Field(description="The plugin registering it, when installed on the server.")
    installed: bool = Field(description="Whether the type's class is installed on the server.")
    schema_checksum: str | None = Field(description="Checksum of the schema described.")


class BlockTypeDetailOut(BlockTypeOut):
    """A block type with its JSON schema (the installed class's, else the latest saved one's)."""

    json_schema: dict[str, Any]


class BlockTypesPage(BaseModel):
    items: list[BlockTypeOut]
    next_cursor: str | None = Field(default=None, description="Always null: every type is in one page.")


class BlockEntryOut(BaseModel):
    """A saved block, without its values."""

    name: str
    slug: str
    type_name: str
    id: str
    created: str | None
    updated: str | None


class BlockEntriesPage(BaseModel):
    items: list[BlockEntryOut]
    next_cursor: str | None = Field(default=None, description="Always null: every block is in one page.")


class BlockDocumentOut(BaseModel):
    """A saved block with its values. Secret values are ``"***"`` unless ``secrets_included``;
    nested blocks are resolved inline as ``{"$block": {id, name, slug, schema_checksum,
    created, updated, data}}``."""

    id: str
    name: str
    slug: str
    type_name: str | None
    schema_checksum: str
    created: str | None
    updated: str | None
    secrets_included: bool
    data: dict[str, Any]


class BlockPayloadIn(BaseModel):
    """A block to save: its type's schema information and its values.

    In ``data`` secret fields hold their plain values (bytes as ``{"$b64": ...}``), fields of
    ``type.block_fields`` hold nested blocks as ``{"$block": "slug/name"}`` or
    ``{"$block": {"name", "type", "data"}}``, and other fields their JSON values. Replacing a
    saved block (``overwrite``), a secret field given as ``{"$keep": true}`` keeps its stored
    value (a form that never saw the secret saves the rest).
    """

    model_config = ConfigDict(extra="forbid")

    type: BlockTypeInfo
    data: dict[str, Any] = Field(default_factory=dict)


_EXAMPLE = {
    "type": {
        "slug": "api-token", "name": "API Token", "description": "A token for the billing API.",
        "capabilities": [], "secret_fields": ["token"], "block_fields": [],
        "json_schema": {
            "title": "ApiToken", "type": "object", "additionalProperties": False, "required": ["service", "token"],
            "properties": {"service": {"title": "Service", "type": "string"},
                           "token": {"title": "Token", "type": "string", "format": "password", "writeOnly": True}},
        },
    },
    "data": {"service": "billing", "token": "s3cr3t-t0ken"},
}


class BlockApplyItemIn(BlockPayloadIn):
    """One block of an apply: the payload of ``PUT /blocks/documents/{slug}/{name}`` with the
    name to save it under (its slug is ``type.slug``, required here)."""

    name: str = Field(min_length=1, max_length=200, description="The name to save the block under.")


class BlocksApplyIn(BaseModel):
    """Blocks to save together, in order (a blocks file applied through the server)."""

    model_config = ConfigDict(extra="forbid")

    blocks: list[BlockApplyItemIn] = Field(
        max_length=_MAX_APPLY, description=f"The blocks, in order (at most {_MAX_APPLY}); each listed once."
    )


class BlockApplyItemOut(BaseModel):
    """What applying did to one block."""

    action: Literal["created", "updated"] = Field(description="Whether the block was new or replaced.")
    document: BlockDocumentOut


class BlocksApplyOut(BaseModel):
    items: list[BlockApplyItemOut] = Field(description="One per block of the request, in its order.")


class DeletedBlockOut(BaseModel):
    deleted: BlockEntryOut


# -- types: those of the installed plugins, and those of saved blocks -------------------------------
def _first_paragraph(text: Any) -> str:
    return str(text or "").strip().split("\n\n")[0].replace("\n", " ").strip()


def _installed_type(cls: type[Block]) -> dict[str, Any]:
    from plait import plugins

    try:
        schema, checksum = cls.model_json_schema(), cls.schema_checksum()
        secrets, nested = cls.secret_fields(), sorted(cls.nested_block_fields())
    except Exception:  # a plugin's broken type (no JSON schema, say) must not fail the listing
        schema, checksum, secrets, nested = {}, None, [], []
    return {
        "slug": cls.block_type_slug, "name": cls.block_type_name, "description": cls.block_description,
        "capabilities": sorted(cls.capabilities or ()), "secret_fields": secrets, "block_fields": nested,
        "plugin": plugins.block_owner(cls.block_type_slug), "installed": True, "schema_checksum": checksum,
        "json_schema": schema,
    }


def _later(one: datetime | None, other: datetime | None) -> bool:
    return one is not None and (other is None or one > other)


def _stored_types(tx: BlocksTransaction, slugs: list[str] | None) -> dict[str, dict[str, Any]]:
    """Types known from saved documents, each with the schema of its latest saved document.

    The store keeps each type's description and capabilities too, but offers no read of them
    yet; until it does, the description is the stored schema's and the capabilities are known
    only for types whose class is installed here.
    """
    newest: dict[str, BlockListing] = {}
    for entry in tx.listing(slugs):
        held = newest.get(entry.slug)
        if held is None or _later(entry.updated, held.updated):
            newest[entry.slug] = entry
    found = {}
    for slug, entry in newest.items():
        doc = tx.get_by_id(entry.id)
        schema = tx.schema(doc.schema_checksum) if doc is not None else None
        json_schema = schema.json_schema if schema is not None else {}
        found[slug] = {
            "slug": slug, "name": entry.type_name or slug,
            "description": _first_paragraph(json_schema.get("description")), "capabilities": [],
            "secret_fields": list(schema.secret_fields) if schema is not None else [],
            "block_fields": [], "plugin": None, "installed": False,
            "schema_checksum": doc.schema_checksum if doc is not None else None, "json_schema": json_schema,
        }
    return found


def _installed() -> Any:
    from plait import plugins

    return plugins.block_registry()  # looking one slug up imports only the plugin declaring it


def document_types(database: Database) -> list[dict[str, Any]]:
    """Every block type the server knows, by slug: those of installed plugins (imported to
    list them) and those of saved blocks (``BlockTypeOut`` fields).

    Raises:
        plait.exceptions.DatabaseError: The database cannot be read.
    """
    found = transact(lambda tx: _stored_types(tx, None), action="read blocks from", database=database)
    for slug, cls in _installed().items():
        found[slug] = _installed_type(cls)
    return [{k: v for k, v in found[slug].items() if k != "json_schema"} for slug in sorted(found)]


def document_type(database: Database, slug: str) -> dict[str, Any]:
    """One type with its JSON schema: the installed class's, else that of its latest saved block.

    Raises:
        plait.blocks._documents.UnknownBlockType: No plugin registers it and no saved block has it.
        plait.exceptions.DatabaseError: The database cannot be read.
    """
    cls = _installed().get(slug)
    if cls is not None:
        return _installed_type(cls)

    def work(tx: BlocksTransaction) -> dict[str, Any]:
        found = _stored_types(tx, [slug]).get(slug)
        if found is None:
            raise unknown_type(tx, slug)
        return found

    result: dict[str, Any] = transact(work, action="read blocks from", database=database)
    return result


# -- errors ----------------------------------------------------------------------------------------
def _problem(exc: BlockError) -> ApiProblem:
    """The API error for a failure of the blocks layer (its message never holds a secret)."""
    message = str(exc)
    if isinstance(exc, BlockNotFound):
        return ApiProblem(404, "block_type_not_found" if isinstance(exc, UnknownBlockType) else "block_not_found",
                          message)
    if isinstance(exc, DocumentExists):
        return ApiProblem(409, "block_exists", message)
    if isinstance(exc, DocumentInUse):
        return ApiProblem(409, "block_in_use", message)
    if isinstance(exc, UndecryptableDocument):
        return ApiProblem(409, "cannot_decrypt", message)
    if isinstance(exc, DamagedDocument):
        return ApiProblem(409, "damaged_block", message)
    return ApiProblem(422, "invalid_block", message)  # InvalidDocument, a bad name


# -- routes ----------------------------------------------------------------------------------------
@router.get("/blocks/types", response_model=BlockTypesPage, responses=ERROR_RESPONSES)
def list_block_types(db: Store, caller: Reader) -> dict[str, Any]:
    """Every block type the server knows: installed ones and those of saved blocks."""
    return {"items": document_types(db), "next_cursor": None}


@router.get("/blocks/types/{slug}", response_model=BlockTypeDetailOut, responses=ERROR_RESPONSES)
def get_block_type(slug: Slug, db: Store, caller: Reader) -> dict[str, Any]:
    """One block type with its JSON schema."""
    try:
        return document_type(db, slug)
    except BlockError as exc:
        raise _problem(exc) from None


@router.get("/blocks/documents", response_model=BlockEntriesPage, responses=ERROR_RESPONSES)
def list_block_documents(
    db: Store,
    caller: Reader,
    block_type: Annotated[
        str | None,
        Query(alias="type", min_length=1, max_length=200, pattern=_TEXT, description="Only blocks of this type."),
    ] = None,
    include_anonymous: Annotated[bool, Query(description="Also nested blocks saved without a name.")] = False,
) -> dict[str, Any]:
    """Saved blocks, by type then name, without their values."""
    try:
        items = list_document_entries(db, block_type, include_anonymous=include_anonymous)
    except BlockError as exc:
        raise _problem(exc) from None
    return {"items": items, "next_cursor": None}


@router.get(
    "/blocks/documents/{slug}/{name}", response_model=BlockDocumentOut, responses={**ERROR_RESPONSES, **_CONFLICT}
)
def get_block_document(
    response: Response,
    slug: Slug,
    name: Name,
    db: Store,
    caller: Reader,
    include_secrets: Annotated[
        bool, Query(description="Answer secret values in plain text (needs a key with scope 'run').")
    ] = False,
) -> dict[str, Any]:
    """One saved block with its values, nested blocks resolved inline."""
    if include_secrets and not caller.allows("run"):
        raise ApiProblem(
            403, "forbidden",
            f"include_secrets=true needs an API key with scope 'run'; the key {caller.name!r} has scope "
            f"{caller.scope!r} (without include_secrets, secret values read '***')",
            {"needs": "run", "has": caller.scope},
        )
    try:
        document = read_document(db, slug, name, include_secrets=include_secrets)
    except BlockError as exc:
        raise _problem(exc) from None
    if include_secrets:
        response.headers["Cache-Control"] = "no-store"
    return document


@router.put(
    "/blocks/documents/{slug}/{name}",
    response_model=BlockDocumentOut,
    responses={**ERROR_RESPONSES, **_CONFLICT, 201: {"model": BlockDocumentOut, "description": "Created"}},
)
def put_block_document(
    payload: Annotated[BlockPayloadIn, Body(openapi_examples={"api-token": {
        "summary": "A block type the server has no class for", "value": _EXAMPLE,
    }})],
    response: Response,
    slug: Slug,
    name: Name,
    db: Store,
    caller: Runner,
    overwrite: Annotated[bool, Query(description="Replace the block when one with this name exists.")] = False,
) -> dict[str, Any]:
    """Save a block (201 when created, 200 when replaced); answers it with secrets masked.

    The server encrypts the secret values with its own key; it needs no class for the type.
    """
    try:
        document, created = save_document(
            db, slug, name, {"type": payload.type, "data": payload.data}, overwrite=overwrite
        )
    except BlockError as exc:
        raise _problem(exc) from None
    response.status_code = 201 if created else 200
    return document


@router.post("/blocks/apply", response_model=BlocksApplyOut, responses=ERROR_RESPONSES)
def apply_blocks(
    body: Annotated[BlocksApplyIn, Body(openapi_examples={"one block": {
        "summary": "Save one block (created, or replaced when the name is taken)",
        "value": {"blocks": [{**_EXAMPLE, "name": "billing"}]},
    }})],
    db: Store,
    caller: Runner,
) -> dict[str, Any]:
    """Save several blocks in one transaction: all of them, or none.

    What ``plait block apply`` sends for the blocks of a file that changed (it compares them
    with the saved ones first). The blocks are saved in order, each replacing a saved block
    of its slug and name, so a nested ``{"$block": {"name": ..., "type", "data"}}`` refers to
    a block saved earlier in the same request.

    Answers ``{"items": [{"action": "created" | "updated", "document": {...}}]}``, one item per
    block in the request's order, each ``document`` as ``GET /blocks/documents/{slug}/{name}``
    answers it (secrets ``"***"``). A block that cannot be saved, or one listed twice, gets a
    422 whose message starts with its place (``blocks[1] 'webhook/ops': ...``), and then
    nothing was written.
    """
    items = []
    for index, block in enumerate(body.blocks):
        if block.type.slug is None:
            raise ApiProblem(422, "invalid_block", f"blocks[{index}] {block.name[:60]!r}: type.slug is required "
                             "(the block type's slug, e.g. 'webhook')")
        items.append((block.type.slug, block.name, {"type": block.type, "data": block.data}))
    try:
        saved = save_documents(db, items)
    except BlockError as exc:
        raise _problem(exc) from None
    return {"items": [{"action": "created" if created else "updated", "document": document}
                      for document, created in saved]}


@router.delete(
    "/blocks/documents/{slug}/{name}", response_model=DeletedBlockOut, responses={**ERROR_RESPONSES, **_CONFLICT}
)
def delete_block_document(slug: Slug, name: Name, db: Store, caller: Admin) -> dict[str, Any]:
    """Delete a saved block (and the blocks nested in it without a name of their own);
    refused (409) while another saved block uses it."""
    try:
        return {"deleted": delete_document(db, slug, name)}
    except BlockError as exc:
        raise _problem(exc) from None
