"""Saved blocks as data: saving, reading and deleting block documents without the block's
Python class, and the form in which a plait server and its clients exchange them.

A plait server keeps blocks for processes whose block classes it may not have installed (a
worker's collection, a user's own type), and it holds the encryption key, which clients never
see. So a client sends a block's values in plain JSON together with its type's schema
information (``block_payload``); the server encrypts the secrets with its own key and writes
the very rows ``Block.save`` writes (``save_document``), so a process with the class can load
the block from the database as well as through the server (``read_document`` there, then
``block_from_document`` in ``plait.blocks._payloads``).

A payload (what ``PUT /api/v1/blocks/documents/{slug}/{name}`` takes)::

    {"type": {"slug", "name", "description", "capabilities", "secret_fields",
              "block_fields", "json_schema", "schema_checksum"},
     "data": {field: value}}

- a secret field (a top-level name of ``secret_fields``) holds its plain value, bytes as
  ``{"$b64": ...}``, or null;
- a field of ``block_fields`` holds nested blocks, also inside lists and dicts, each as
  ``{"$block": "slug/name"}`` (a saved block) or ``{"$block": {"name", "type", "data"}}``
  (its values; it is referenced as the saved block ``name`` when that exists, else saved as
  an anonymous document of its own, as ``Block.save`` does);
- every other field holds its pydantic JSON value.

``POST /api/v1/blocks/apply`` takes ``{"blocks": [payload + {"name"}]}`` and saves them all
in one transaction (``save_documents``).

A document (what the server answers)::

    {"id", "name", "slug", "type_name", "schema_checksum", "created", "updated",
     "secrets_included", "data"}

with secret values ``"***"`` unless read with secrets, and nested blocks resolved inline as
``{"$block": {"id", "name", "slug", "schema_checksum", "created", "updated", "data"}}``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from plait._batch import clean_json
from plait._masking import MASK, register_secret
from plait.blocks._db import _iso, _now
from plait.blocks._encoding import Chain, DamagedDocument, _damaged_secret, _decrypt_error, cycle_error
from plait.blocks._payloads import MAX_DEPTH, schema_checksum_of
from plait.blocks._references import ANONYMOUS_PREFIX, _is_anonymous, _label, _suggest, validate_name
from plait.blocks._values import _string_leaves
from plait.exceptions import BlockError, BlockNotFound, BlockValidationError

if TYPE_CHECKING:
    from plait._store.blocks import BlockDocument, BlockListing, BlocksTransaction
    from plait._store.database import Database

__all__ = [
    "BlockTypeInfo",
    "DocumentExists",
    "DocumentInUse",
    "InvalidDocument",
    "UndecryptableDocument",
    "UnknownBlockType",
    "delete_document",
    "known_slugs",
    "list_document_entries",
    "read_document",
    "register_stored_secrets",
    "save_document",
    "save_documents",
    "unknown_type",
]

_SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_NESTED_FORMS = '{"$block": "slug/name"} or {"$block": {"name", "type", "data"}}'
_SLUG_RULE = "letters, digits, '-', '_' and '.', starting with a letter or digit (e.g. 'aws-credentials')"


class UnknownBlockType(BlockNotFound):
    """Neither an installed plugin nor a saved block knows the block type."""


class DocumentExists(BlockError):
    """The block's name is taken and the save does not overwrite."""


class DocumentInUse(BlockError):
    """Another saved block references the block that was to be deleted."""


class InvalidDocument(BlockValidationError):
    """A payload that does not describe a block; the message names the part that is wrong."""


class UndecryptableDocument(BlockError):
    """The block's secrets were encrypted with another key than the current one."""


class BlockTypeInfo(BaseModel):
    """What a block type is, sent with its values so that a server without the type's class
    can store them: the metadata and schema that ``Block.save`` records for the type."""

    model_config = ConfigDict(extra="forbid")

    slug: str | None = Field(default=None, description="The type's slug; must equal the slug of the URL.")
    name: str = Field(default="", max_length=500, description="Display name (default: the slug).")
    description: str = Field(default="", max_length=20_000, description="What the block is for.")
    capabilities: list[str] = Field(default_factory=list, description="E.g. ['read-path', 'write-path'].")
    secret_fields: list[str] = Field(
        default_factory=list, description="Dotted names of the secret fields, nested blocks' included."
    )
    block_fields: list[str] = Field(default_factory=list, description="Fields that hold nested blocks.")
    json_schema: dict[str, Any] = Field(description="The pydantic JSON schema of the type's fields.")
    schema_checksum: str | None = Field(
        default=None, description="'sha256:...' of the canonical json_schema; checked when given."
    )
    plugin: str | None = Field(default=None, description="The plugin that registers the type, if any.")

    @field_validator("slug", "name", "description", "plugin")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("holds a NUL character, which no database stores in text")
        return value


# -- the server side: saving by schema -------------------------------------------------------------
def _check_slug(slug: Any) -> str:
    if not isinstance(slug, str) or not _SLUG_RE.match(slug):
        raise InvalidDocument(f"invalid block type slug {str(slug)[:60]!r}: use {_SLUG_RULE}")
    return slug


def _parse_type(raw: Any, where: str, slug: str | None = None) -> tuple[BlockTypeInfo, str]:
    """The validated type of a payload and its schema checksum."""
    if isinstance(raw, BlockTypeInfo):
        info = raw
    else:
        try:
            info = BlockTypeInfo.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err.get('loc', ())) or '(the type)'}: {err.get('msg')}"
                for err in exc.errors(include_url=False, include_input=False)[:3]
            )
            raise InvalidDocument(f"{where}type: {problems}") from None
    if slug is None:
        slug = _check_slug(info.slug)
    elif info.slug is not None and info.slug != slug:
        raise InvalidDocument(f"{where}type.slug {info.slug[:60]!r} differs from the block type {slug!r} of the URL")
    _check_unicode(info.json_schema, f"{where}type.json_schema")
    checksum = schema_checksum_of(info.json_schema)
    if info.schema_checksum is not None and info.schema_checksum != checksum:
        raise InvalidDocument(
            f"{where}type.schema_checksum does not match type.json_schema (it is {checksum}); send the schema "
            "the checksum was computed from, or leave the checksum out"
        )
    properties = info.json_schema.get("properties")
    if isinstance(properties, dict):
        declared = [n.split(".")[0] for n in info.secret_fields] + list(info.block_fields)
        unknown = [n for n in declared if n not in properties]
        if unknown:
            raise InvalidDocument(
                f"{where}type names field {unknown[0][:60]!r} as secret or nested, but type.json_schema has no "
                "such property"
            )
    return info.model_copy(update={"slug": slug, "name": info.name or slug}), checksum


def _check_fields(info: BlockTypeInfo, data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidDocument(f"{where}data: an object of field values")
    properties = info.json_schema.get("properties")
    if isinstance(properties, dict):
        unknown = [k for k in data if k not in properties]
        if unknown:
            fields = ", ".join(list(properties)[:30]) or "(none)"
            raise InvalidDocument(
                f"{where}data: block type {info.slug!r} has no field {str(unknown[0])[:60]!r}; its fields: {fields}"
            )
    required = info.json_schema.get("required")
    if isinstance(required, list):
        missing = [r for r in required if isinstance(r, str) and r not in data]
        if missing:
            raise InvalidDocument(f"{where}data: field {missing[0][:60]!r} is required by block type {info.slug!r}")
    return data


_KEEP = {"$keep": True}  # a secret field's value that keeps what the saved block holds


class _Writer:
    """One save by schema, inside one write transaction."""

    def __init__(self, tx: BlocksTransaction, now: datetime) -> None:
        self.tx = tx
        self.now = now
        self.secrets: list[str] = []  # plain secret texts seen, masked in this process afterwards

    def record_type(self, info: BlockTypeInfo, checksum: str) -> None:
        from plait._store.blocks import BlockSchemaRecord, BlockTypeRecord

        slug = str(info.slug)
        self.tx.record_type(
            BlockTypeRecord(slug=slug, name=info.name, description=info.description,
                            capabilities=sorted(info.capabilities), plugin=info.plugin),
            BlockSchemaRecord(checksum=checksum, slug=slug, json_schema=info.json_schema,
                              secret_fields=list(info.secret_fields)),
            self.now,
        )

    def encode(
        self, info: BlockTypeInfo, data: dict[str, Any], where: str, depth: int,
        existing: BlockDocument | None = None,
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """The stored ``data`` (secrets encrypted, nested blocks ``$ref``) and the references.

        A secret field given as ``{"$keep": true}`` keeps the value ``existing`` stores for it
        (a form that never saw the secret can save the rest of the block)."""
        from plait.blocks._crypto import encrypt_value

        secret = {n for n in info.secret_fields if "." not in n}
        nested = set(info.block_fields)
        references: list[tuple[str, str]] = []
        out: dict[str, Any] = {}
        for key, value in data.items():
            if value == _KEEP:
                stored = existing.data.get(key) if existing is not None else None
                if key not in secret or not _is_secret_value(stored):
                    raise InvalidDocument(f"{where}data.{key}: {{\"$keep\": true}} keeps a secret the saved block "
                                          "holds; this block holds none there: send its value")
                out[key] = stored
            elif key in secret:
                if value is not None:
                    self.secrets.extend(_string_leaves(value))
                out[key] = None if value is None else {"$secret": encrypt_value(value)}
            elif key in nested:

                def child(spec: Any, _key: str = key) -> str:
                    child_id = self.child(spec, f"{where}data.{_key}: ", depth + 1)
                    references.append((_key, child_id))
                    return child_id

                out[key] = _map_nested(value, child)
            elif _is_secret_value(value):
                # Reads take this shape for an encrypted value: a plain field may not fake one.
                raise InvalidDocument(f"{where}data.{key}: {{\"$secret\": ...}} is how stored secrets are kept; "
                                      "a field that is not in type.secret_fields cannot hold it")
            else:
                out[key] = value
        return out, references

    def child(self, spec: Any, where: str, depth: int) -> str:
        """The document id a parent references for the nested block ``spec``."""
        if depth > MAX_DEPTH:
            raise InvalidDocument(f"{where}blocks nested more than {MAX_DEPTH} levels deep")
        if isinstance(spec, str):
            slug, _, name = spec.partition("/")
            if not slug or not name:
                raise InvalidDocument(f"{where}{{\"$block\": ...}} takes 'slug/name' of a saved block")
            if _is_anonymous(name):
                raise InvalidDocument(f"{where}{spec[:80]!r} names a nested block saved without a name; "
                                      "give its values instead")
            doc = self.tx.get_by_name(slug, name)
            if doc is None:
                raise InvalidDocument(f"{where}no saved block {spec[:80]!r}{_suggest(name, self._names(slug))}")
            return doc.id
        if not isinstance(spec, dict) or not {"type", "data"} <= set(spec) or set(spec) - {"type", "data", "name"}:
            raise InvalidDocument(f"{where}a nested block is {_NESTED_FORMS}")
        info, checksum = _parse_type(spec["type"], where)
        saved_name = spec.get("name")
        if saved_name is not None and not isinstance(saved_name, str):
            raise InvalidDocument(f"{where}name: the nested block's saved name, or null")
        if saved_name and not _is_anonymous(saved_name):
            doc = self.tx.get_by_name(str(info.slug), saved_name)
            if doc is not None:
                return doc.id
        doc_id = str(uuid.uuid4())
        self.write(info, checksum, _check_fields(info, spec["data"], where), f"{ANONYMOUS_PREFIX}{doc_id}",
                   where, depth, existing=None, doc_id=doc_id)
        return doc_id

    def write(
        self,
        info: BlockTypeInfo,
        checksum: str,
        data: dict[str, Any],
        name: str,
        where: str,
        depth: int,
        existing: BlockDocument | None,
        doc_id: str | None = None,
    ) -> str:
        """Insert (or, given ``existing``, replace) one document; returns its id."""
        self.record_type(info, checksum)
        stored, references = self.encode(info, data, where, depth, existing)
        old_children: list[str] = []
        if existing is not None:
            doc_id = existing.id
            # Only an existing document can be referenced already, so only it can close a loop.
            for fname, child_id in references:
                chain = self.tx.path_between([child_id], doc_id)
                if chain is not None:
                    label = _label(existing.slug, existing.name)
                    raise InvalidDocument(
                        f"cannot save block {label!r}: its field {fname!r} leads back to the block itself; a block "
                        "cannot contain itself (directly or through other blocks); point the field at another block"
                    )
            old_children = self.tx.children_of(doc_id)
            self.tx.replace_document(doc_id, schema_checksum=checksum, data=stored, now=self.now)
        else:
            doc_id = doc_id or str(uuid.uuid4())
            self.tx.insert_document(doc_id=doc_id, name=name, slug=str(info.slug), schema_checksum=checksum,
                                    data=stored, now=self.now)
        self.tx.set_references(doc_id, references)
        kept = {c for _, c in references}
        self.tx.drop_orphans([c for c in old_children if c not in kept], anonymous_prefix=ANONYMOUS_PREFIX)
        return doc_id

    def _names(self, slug: str) -> list[str]:
        return [n for n in self.tx.names(slug) if not _is_anonymous(n)]


def _check_unicode(value: Any, where: str) -> None:
    """Refuse a lone surrogate (``"\\ud800"`` is valid JSON): it could be stored, but never
    answered back in UTF-8. Refused rather than replaced, as it may be part of a secret."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidDocument(
            f"{where}: a text holds an unpaired surrogate code point (e.g. \\ud800), which is not valid "
            "Unicode; send valid UTF-8 text"
        ) from None


def _map_nested(value: Any, child: Callable[[Any], str]) -> Any:
    """``value`` with each ``{"$block": spec}`` replaced by ``{"$ref": child(spec)}``."""
    if isinstance(value, dict):
        if set(value) == {"$block"}:
            return {"$ref": child(value["$block"])}
        return {k: _map_nested(v, child) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_nested(v, child) for v in value]
    return value


def save_document(
    database: Database, slug: str, name: str, payload: dict[str, Any], *, overwrite: bool = False
) -> tuple[dict[str, Any], bool]:
    """Save a block from its payload, without its class: secrets encrypted with this
    process's key, nested blocks saved by reference. One transaction.

    Returns:
        The saved document (secrets masked) and whether it was created (else replaced).

    Raises:
        InvalidDocument: The payload does not describe a block (the message names the part).
        DocumentExists: ``name`` is taken and not ``overwrite``.
        plait.exceptions.BlockError: An invalid name.
        plait.exceptions.DatabaseError: The database cannot be written.
    """
    return _save(database, [(slug, name, payload)], overwrite=overwrite, placed=False)[0]


def save_documents(
    database: Database, blocks: list[tuple[str, str, dict[str, Any]]]
) -> list[tuple[dict[str, Any], bool]]:
    """Save several blocks from their ``(slug, name, payload)``, in order and in one
    transaction: all or none (a blocks file applied through a server). Each replaces a saved
    block of its name; a nested ``{"$block": {"name": ...}}`` finds one saved earlier in the list.

    Returns:
        Per block, in order: the saved document (secrets masked) and whether it was created.

    Raises:
        InvalidDocument: A payload that does not describe a block, a block listed twice, a
            save that would make a block contain itself; the message starts with the block's
            place (``blocks[1] 'webhook/ops': ...``). Nothing was written.
        plait.exceptions.BlockError: An invalid name (placed the same way).
        plait.exceptions.DatabaseError: The database cannot be written.
    """
    return _save(database, blocks, overwrite=True, placed=True)


def _placed(exc: BlockError, where: str) -> BlockError:
    """``exc`` with its message starting with ``where`` (a block's place in a list)."""
    message = str(exc)
    return exc if message.startswith(where) else type(exc)(f"{where}{message}")


def _save(
    database: Database, blocks: list[tuple[str, str, dict[str, Any]]], *, overwrite: bool, placed: bool
) -> list[tuple[dict[str, Any], bool]]:
    """``save_document`` of each block in one transaction; ``placed``: errors say which block."""
    from plait._store.blocks import transact

    checked = []
    seen: dict[tuple[str, str], int] = {}
    for index, (slug, name, payload) in enumerate(blocks):
        where = f"blocks[{index}] {_label(str(slug)[:60], str(name)[:60])!r}: " if placed else ""
        try:
            validate_name(name)
            slug = _check_slug(slug)
            if not isinstance(payload, dict) or set(payload) - {"type", "data"} or "type" not in payload:
                raise InvalidDocument("a block payload is {\"type\": {...}, \"data\": {...}}")
            info, checksum = _parse_type(payload["type"], where, slug)
            data = _check_fields(info, payload.get("data", {}), where)
            _check_unicode(data, f"{where}data")
        except BlockError as exc:
            raise _placed(exc, where) from None
        first = seen.setdefault((slug, name), index)
        if first != index:
            raise InvalidDocument(f"{where}listed twice (first as blocks[{first}]); list each block once")
        checked.append((where, slug, name, info, checksum, data))

    def work(tx: BlocksTransaction) -> tuple[list[tuple[dict[str, Any], bool]], list[str]]:
        writer = _Writer(tx, _now())
        saved = []
        for where, slug, name, info, checksum, data in checked:
            existing = tx.get_by_name(slug, name)
            if existing is not None and not overwrite:
                raise DocumentExists(f"block {_label(slug, name)!r} already exists; pass overwrite=True (through "
                                     "the API: ?overwrite=true)")
            try:
                doc_id = writer.write(info, checksum, data, name, where, 0, existing)
            except InvalidDocument as exc:  # e.g. a cycle: say which block would close it
                raise _placed(exc, where) from None
            doc = tx.get_by_id(doc_id)
            assert doc is not None  # written just now, in this transaction
            saved.append((_document(tx, doc, include_secrets=False, type_name=info.name), existing is None))
        return saved, writer.secrets

    action = "save blocks in" if placed else "save a block in"
    results, secrets = transact(work, action=action, write=True, database=database)
    for text in secrets:
        register_secret(text)
    return results


# -- the server side: reading, listing and deleting ------------------------------------------------
def _is_secret_value(raw: Any) -> bool:
    return isinstance(raw, dict) and set(raw) == {"$secret"}


def _document(
    tx: BlocksTransaction, doc: BlockDocument, *, include_secrets: bool, type_name: str | None = None,
    chain: Chain = (), secrets: list[str] | None = None,
) -> dict[str, Any]:
    """``doc`` as the API shows it; ``chain`` holds the documents it is nested in."""
    from plait.blocks._crypto import DecryptError, _to_plain, decrypt_value

    label = _label(doc.slug, doc.name)
    stored = tx.schema(doc.schema_checksum)
    secret = {n for n in stored.secret_fields if "." not in n} if stored is not None else set()
    ref_fields = {r.field_name for r in tx.references_of(doc.id)}

    def resolve(value: Any, field: str) -> Any:
        if isinstance(value, dict):
            if set(value) == {"$ref"} and isinstance(value["$ref"], str):
                target = tx.get_by_id(value["$ref"])
                if target is None:
                    raise DamagedDocument(
                        f"block {label!r} refers in field {field!r} to a block that no longer exists; save it "
                        "again with a value for that field (overwrite=True)"
                    )
                inner = (*chain, (doc.id, label, field))
                if any(target.id == doc_id for doc_id, _, _ in inner):
                    raise cycle_error(inner, target)
                return {"$block": _document(tx, target, include_secrets=include_secrets, chain=inner,
                                            secrets=secrets)}
            return {k: resolve(v, field) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v, field) for v in value]
        return value

    data: dict[str, Any] = {}
    for key, raw in doc.data.items():
        if _is_secret_value(raw):  # by its shape too: a value that looks encrypted is never shown
            token = raw["$secret"]
            if not include_secrets:
                data[key] = MASK
                continue
            if not isinstance(token, str):
                raise _damaged_secret(label, key, token)
            try:
                value = _to_plain(decrypt_value(token))
            except DecryptError:
                raise UndecryptableDocument(str(_decrypt_error(label))) from None
            if secrets is not None:
                secrets.extend(_string_leaves(value))
            data[key] = value
        elif key in secret and raw is not None:
            data[key] = raw if include_secrets else MASK
        elif key in ref_fields:
            data[key] = resolve(raw, key)
        else:
            data[key] = raw
    out: dict[str, Any] = {
        "id": doc.id, "name": doc.name, "slug": doc.slug, "schema_checksum": doc.schema_checksum,
        "created": _iso(doc.created), "updated": _iso(doc.updated), "data": clean_json(data),
    }
    if not chain:
        out = {**out, "type_name": type_name, "secrets_included": include_secrets}
    return out


def _not_found(tx: BlocksTransaction, slug: str, name: str) -> BlockNotFound:
    if slug not in known_slugs(tx):
        return unknown_type(tx, slug)
    names = [n for n in tx.names(slug) if not _is_anonymous(n)]
    return BlockNotFound(f"no saved block {_label(slug, name)!r}{_suggest(name, names)}")


def _type_name(tx: BlocksTransaction, doc: BlockDocument) -> str | None:
    return next((entry.type_name for entry in tx.listing([doc.slug]) if entry.id == doc.id), None)


def read_document(database: Database, slug: str, name: str, *, include_secrets: bool = False) -> dict[str, Any]:
    """The saved block ``slug/name`` as a document, nested blocks resolved inline; secret
    values ``"***"`` unless ``include_secrets`` (then decrypted, and masked in this process's
    own output from now on).

    Raises:
        plait.exceptions.BlockNotFound: No such block (close names suggested).
        UndecryptableDocument: The secrets were encrypted with another key.
        plait.blocks._encoding.DamagedDocument: The stored document is damaged (named).
        plait.exceptions.DatabaseError: The database cannot be read.
    """
    from plait._store.blocks import transact

    def work(tx: BlocksTransaction) -> tuple[dict[str, Any], list[str]]:
        doc = tx.get_by_name(slug, name)
        if doc is None:
            raise _not_found(tx, slug, name)
        secrets: list[str] = []
        found = _document(tx, doc, include_secrets=include_secrets, type_name=_type_name(tx, doc), secrets=secrets)
        return found, secrets

    document, secrets = transact(work, action="read blocks from", database=database)
    for text in secrets:
        register_secret(text)
    return document


def register_stored_secrets(database: Database) -> int:
    """Mask, in this process's own output and in what it stores, the secrets of every saved
    block (a server calls it at start: it then masks secrets it holds but has not read since).

    Returns:
        How many secret values were registered; blocks whose secrets do not decrypt with
        this process's key are passed over.

    Raises:
        plait.exceptions.DatabaseError: The database cannot be read.
    """
    from plait._store.blocks import transact
    from plait.blocks._crypto import DecryptError, decrypt_value

    def work(tx: BlocksTransaction) -> list[str]:
        found: list[str] = []
        for entry in tx.listing():
            doc = tx.get_by_id(entry.id)
            for raw in (doc.data if doc is not None else {}).values():
                if _is_secret_value(raw) and isinstance(raw["$secret"], str):
                    try:
                        found.extend(_string_leaves(decrypt_value(raw["$secret"])))
                    except DecryptError:
                        continue
        return found

    secrets = transact(work, action="read blocks from", database=database)
    for text in secrets:
        register_secret(text)
    return len(set(secrets))


def _entry(doc: BlockListing) -> dict[str, Any]:
    return {"name": doc.name, "slug": doc.slug, "type_name": doc.type_name or doc.slug, "id": doc.id,
            "created": _iso(doc.created), "updated": _iso(doc.updated)}


def list_document_entries(
    database: Database, slug: str | None = None, *, include_anonymous: bool = False
) -> list[dict[str, Any]]:
    """Saved blocks by type then name: ``{name, slug, type_name, id, created, updated}``.

    Raises:
        plait.exceptions.BlockNotFound: ``slug`` is no type the store or a plugin knows.
        plait.exceptions.DatabaseError: The database cannot be read.
    """
    from plait._store.blocks import transact

    def work(tx: BlocksTransaction) -> list[BlockListing]:
        if slug is not None and slug not in known_slugs(tx):
            raise unknown_type(tx, slug)
        return tx.listing(None if slug is None else [slug])

    docs = transact(work, action="read blocks from", database=database)
    return [_entry(d) for d in docs if include_anonymous or not _is_anonymous(d.name)]


def delete_document(database: Database, slug: str, name: str) -> dict[str, Any]:
    """Delete the saved block ``slug/name`` (and the anonymous blocks nested in it).

    Returns:
        Its listing entry, as it was.

    Raises:
        plait.exceptions.BlockNotFound: No such block.
        DocumentInUse: Another saved block references it (named).
        plait.exceptions.DatabaseError: The database cannot be written.
    """
    from plait._store.blocks import transact
    from plait.blocks._save import _named_owner

    def work(tx: BlocksTransaction) -> dict[str, Any]:
        doc = tx.get_by_name(slug, name)
        if doc is None:
            raise _not_found(tx, slug, name)
        entry = next(_entry(e) for e in tx.listing([slug]) if e.id == doc.id)
        children = tx.children_of(doc.id)
        users = []
        for ref in tx.users_of(doc.id):
            # A user the block itself leads to is part of a cycle through it (a damaged store).
            if ref.parent_id != doc.id and tx.path_between(children, ref.parent_id) is None:
                users.append(ref)
        if users:
            names = []
            for ref in users:
                parent = tx.get_by_id(ref.parent_id)
                where = _label(parent.slug, parent.name) if parent is not None else ref.parent_id
                owner = _named_owner(tx, parent) if parent is not None and _is_anonymous(parent.name) else None
                names.append(f"{where!r} (field {ref.field_name!r}{f', nested in {owner!r}' if owner else ''})")
            raise DocumentInUse(
                f"block {_label(slug, name)!r} is used by block {', '.join(names)}; delete that block or save it "
                "without this one first"
            )
        tx.drop_orphans(tx.delete_document(doc.id), anonymous_prefix=ANONYMOUS_PREFIX)
        return entry

    result: dict[str, Any] = transact(work, action="delete a block from", write=True, database=database)
    return result


# -- the server side: unknown types ----------------------------------------------------------------
def known_slugs(tx: BlocksTransaction) -> set[str]:
    """Slugs of the types of saved documents and of the types plugins register."""
    from plait.blocks._types import _known_slugs as known

    return known(tx)


def unknown_type(tx: BlocksTransaction, slug: str) -> UnknownBlockType:
    """The error for block type ``slug``, which neither ``tx``'s store nor a plugin knows
    (close slugs suggested)."""
    from plait.blocks._types import _unknown_type as unknown

    return UnknownBlockType(str(unknown(slug, tx)))
