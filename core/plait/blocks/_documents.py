"""Saving and loading blocks: block documents in the database.

A saved block is a row of ``block_documents``: its type's slug, a name, the checksum of the
schema it was saved with, and its values as JSON. Secret values are encrypted
(``{"$secret": token}``, see ``plait.blocks._crypto``); nested blocks are saved by reference
(``{"$ref": document_id}``, also listed in ``block_document_references``). A nested block
that was never saved gets an anonymous document of its own (``anonymous-<id>``), which lives
and dies with the block that holds it.

Every write happens in one transaction; every read decrypts, resolves references and
validates with the block's class before returning anything.
"""

from __future__ import annotations

import difflib
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterator

from pydantic import BaseModel, Secret, SecretBytes, SecretStr, ValidationError

from plait.blocks._base import Block, is_secret_annotation
from plait.exceptions import (
    BlockError,
    BlockNotFound,
    BlockSchemaMismatch,
    BlockValidationError,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Row

__all__ = [
    "ANONYMOUS_PREFIX",
    "MASK",
    "validate_name",
    "split_reference",
    "save_block",
    "load_block",
    "delete_block",
    "list_documents",
    "block_types",
    "get_block_class",
    "load_document",
    "block_to_dict",
    "register_block_secrets",
    "secret_leaves",
    "describe_schema_change",
    "validation_message",
]

ANONYMOUS_PREFIX = "anonymous-"
MASK = "***"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_NAME_RULE = (
    "use lowercase letters, digits, '-', '_' and '.', starting with a letter or digit "
    "(e.g. 'prod-db' or 'warehouse.eu')"
)
_MAX_NAME = 200


# -- names -------------------------------------------------------------------------------------
def validate_name(name: Any) -> str:
    """``name`` if it is a valid block document name, else a BlockError stating the rule."""
    if not isinstance(name, str) or not name:
        raise BlockError(f"a block needs a name: {_NAME_RULE}")
    if len(name) > _MAX_NAME:
        raise BlockError(f"block name {name[:40]!r}... is too long (at most {_MAX_NAME} characters)")
    if not _NAME_RE.match(name):
        raise BlockError(f"invalid block name {name!r}: {_NAME_RULE}")
    if name.startswith(ANONYMOUS_PREFIX):
        raise BlockError(f"invalid block name {name!r}: names starting with {ANONYMOUS_PREFIX!r} are "
                         "reserved for nested blocks saved without a name")
    return name


def split_reference(reference: str) -> tuple[str | None, str]:
    """``"slug/name"`` -> ``("slug", "name")``; ``"name"`` -> ``(None, "name")``."""
    if not isinstance(reference, str) or not reference.strip():
        raise BlockError("give a block name, or 'slug/name' (e.g. 'aws-credentials/prod')")
    reference = reference.strip()
    if "/" in reference:
        slug, _, name = reference.partition("/")
        if not slug or not name:
            raise BlockError(f"{reference!r} is not a block reference; use 'slug/name' (e.g. 'aws-credentials/prod')")
        return slug, name
    return None, reference


def _label(slug: str, name: str) -> str:
    return f"{slug}/{name}"


def _is_anonymous(name: str | None) -> bool:
    return bool(name) and name.startswith(ANONYMOUS_PREFIX)  # type: ignore[union-attr]


# -- database plumbing ---------------------------------------------------------------------------
def _tables() -> Any:
    from plait._store import models

    return models


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _database() -> Any:
    from plait._store.database import get_database

    return get_database()


class _Transaction:
    """``with _Transaction("save a block in") as conn:`` — one transaction, database errors
    turned into ``DatabaseError`` naming the database (password masked)."""

    def __init__(self, action: str, write: bool = True) -> None:
        self.action = action
        self.write = write
        self.db = _database()
        self._ctx: Any = None

    def __enter__(self) -> Connection:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            self._ctx = self.db.engine.begin() if self.write else self.db.engine.connect()
            return self._ctx.__enter__()
        except SQLAlchemyError as exc:
            raise self.db.error(exc, self.action) from None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        from sqlalchemy.exc import IntegrityError, SQLAlchemyError

        try:
            self._ctx.__exit__(exc_type, exc, tb)
        except IntegrityError:
            raise
        except SQLAlchemyError as err:
            raise self.db.error(err, self.action) from None
        if isinstance(exc, SQLAlchemyError) and not isinstance(exc, IntegrityError):
            raise self.db.error(exc, self.action) from None
        return False


def _run_write(action: str, work: Callable[[Connection], Any]) -> Any:
    """Run ``work(conn)`` in one transaction; retry once when a concurrent writer won a race
    on a unique key (the retry sees its row)."""
    from sqlalchemy.exc import IntegrityError

    for attempt in (1, 2):
        try:
            with _Transaction(action) as conn:
                return work(conn)
        except IntegrityError as exc:
            if attempt == 2:
                raise _database().error(exc, action) from None
    raise AssertionError("unreachable")


def _read(action: str, work: Callable[[Connection], Any]) -> Any:
    with _Transaction(action, write=False) as conn:
        return work(conn)


# -- rows --------------------------------------------------------------------------------------
def _doc_by_name(conn: Connection, slug: str, name: str) -> Row | None:
    from sqlalchemy import select

    t = _tables().BlockDocumentModel.__table__
    return conn.execute(select(t).where(t.c.slug == slug, t.c.name == name)).first()


def _doc_by_id(conn: Connection, doc_id: str) -> Row | None:
    from sqlalchemy import select

    t = _tables().BlockDocumentModel.__table__
    return conn.execute(select(t).where(t.c.id == doc_id)).first()


def _registry() -> dict[str, type[Block]]:
    from plait import plugins

    return plugins.block_classes()


def _plugin_owner(slug: str) -> str | None:
    from plait import plugins

    plugins.get_plugin_manager()
    state = getattr(plugins, "_state", None)
    owners = getattr(getattr(state, "registry", None), "block_owner", {}) or {}
    return owners.get(slug)


def _upsert(conn: Connection, table: Any, values: dict[str, Any], key: str, update: bool) -> None:
    """Insert ``values`` into ``table``; on a conflict on ``key`` update the row (or leave it)."""
    from sqlalchemy import select

    dialect = conn.dialect.name
    if dialect in ("postgresql", "sqlite"):
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        stmt = insert(table).values(**values)
        if update:
            stmt = stmt.on_conflict_do_update(
                index_elements=[key], set_={k: v for k, v in values.items() if k != key}
            )
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=[key])
        conn.execute(stmt)
        return
    exists = conn.execute(select(table.c[key]).where(table.c[key] == values[key])).first()
    if exists is None:
        conn.execute(table.insert().values(**values))
    elif update:
        conn.execute(table.update().where(table.c[key] == values[key]).values(**values))


def _record_type(conn: Connection, cls: type[Block], now: datetime) -> str:
    """Upsert the type's row and its schema's row; returns the schema checksum."""
    models = _tables()
    owner = _plugin_owner(cls.block_type_slug) if _registry().get(cls.block_type_slug) is cls else None
    _upsert(
        conn,
        models.BlockTypeModel.__table__,
        {
            "slug": cls.block_type_slug,
            "name": cls.block_type_name,
            "description": cls.block_description or "",
            "capabilities": sorted(cls.capabilities or ()),
            "plugin": owner,
            "updated": now,
        },
        "slug",
        update=True,
    )
    checksum = cls.schema_checksum()
    _upsert(
        conn,
        models.BlockSchemaModel.__table__,
        {
            "checksum": checksum,
            "slug": cls.block_type_slug,
            "json_schema": cls.model_json_schema(),
            "secret_fields": cls.secret_fields(),
            "created": now,
        },
        "checksum",
        update=False,
    )
    return checksum


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
    from plait._logging import register_secret

    for value in secret_leaves(block):
        register_secret(value)


# -- encoding ------------------------------------------------------------------------------------
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


@dataclass
class _Saved:
    """What a save wrote, to update the Python objects once the transaction committed."""

    marks: list[tuple[Block, str, str]] = field(default_factory=list)  # (block, id, name)


def _child_reference(conn: Connection, child: Block, now: datetime, saved: _Saved) -> str:
    """The document id a parent should reference for ``child``: its own saved document
    when it has one, else a new anonymous document holding its values."""
    name = child._document_name
    if name and not _is_anonymous(name):
        row = _doc_by_id(conn, child._document_id) if child._document_id else None
        if row is None or row.slug != child.block_type_slug:
            row = _doc_by_name(conn, child.block_type_slug, name)
        if row is not None:
            return str(row.id)
    doc_id = str(uuid.uuid4())
    _write(conn, child, f"{ANONYMOUS_PREFIX}{doc_id}", now, saved, existing=None, doc_id=doc_id)
    return doc_id


def _write(
    conn: Connection,
    block: Block,
    name: str,
    now: datetime,
    saved: _Saved,
    existing: Row | None,
    doc_id: str | None = None,
) -> str:
    """Insert (or, given ``existing``, replace) the document of ``block``; returns its id."""
    from sqlalchemy import select

    models = _tables()
    docs = models.BlockDocumentModel.__table__
    refs = models.BlockDocumentReferenceModel.__table__
    cls = type(block)
    checksum = _record_type(conn, cls, now)
    secret, nested = _field_kinds(cls)
    data: dict[str, Any] = {}
    references: list[tuple[str, str]] = []
    plain_names = set()
    for fname in cls.model_fields:
        value = getattr(block, fname)
        if fname in nested and _contains_block(value):

            def ref(child: Block, _f: str = fname) -> dict[str, str]:
                child_id = _child_reference(conn, child, now, saved)
                references.append((_f, child_id))
                return {"$ref": child_id}

            data[fname] = _map_blocks(value, ref)
        elif fname in secret:
            from plait.blocks._crypto import encrypt_value

            data[fname] = None if value is None else {"$secret": encrypt_value(_reveal(value))}
        else:
            plain_names.add(fname)
    data.update(_plain_fields(block, plain_names))
    data = {fname: data[fname] for fname in cls.model_fields}  # declaration order

    old_children: list[str] = []
    if existing is not None:
        doc_id = str(existing.id)
        old_children = [
            str(r.child_document_id)
            for r in conn.execute(select(refs.c.child_document_id).where(refs.c.parent_document_id == doc_id))
        ]
        conn.execute(refs.delete().where(refs.c.parent_document_id == doc_id))
        conn.execute(
            docs.update()
            .where(docs.c.id == doc_id)
            .values(schema_checksum=checksum, data=data, updated=now)
        )
    else:
        doc_id = doc_id or str(uuid.uuid4())
        conn.execute(
            docs.insert().values(
                id=doc_id, name=name, slug=cls.block_type_slug, schema_checksum=checksum,
                data=data, created=now, updated=now,
            )
        )
    if references:
        conn.execute(
            refs.insert(),
            [
                {"id": str(uuid.uuid4()), "parent_document_id": doc_id, "field_name": f, "child_document_id": c}
                for f, c in references
            ],
        )
    _drop_orphans(conn, [c for c in old_children if c not in {c2 for _, c2 in references}])
    saved.marks.append((block, doc_id, name))
    return doc_id


def _drop_orphans(conn: Connection, candidates: list[str]) -> None:
    """Delete anonymous documents among ``candidates`` that nothing references any more,
    and, in turn, their own anonymous children."""
    from sqlalchemy import func, select

    models = _tables()
    docs = models.BlockDocumentModel.__table__
    refs = models.BlockDocumentReferenceModel.__table__
    pending = list(dict.fromkeys(candidates))
    while pending:
        doc_id = pending.pop()
        row = _doc_by_id(conn, doc_id)
        if row is None or not _is_anonymous(row.name):
            continue
        users = conn.execute(select(func.count()).select_from(refs).where(refs.c.child_document_id == doc_id)).scalar()
        if users:
            continue
        children = [
            str(r.child_document_id)
            for r in conn.execute(select(refs.c.child_document_id).where(refs.c.parent_document_id == doc_id))
        ]
        conn.execute(refs.delete().where(refs.c.parent_document_id == doc_id))
        conn.execute(docs.delete().where(docs.c.id == doc_id))
        pending.extend(children)


def save_in(conn: Connection, block: Block, name: str, overwrite: bool, now: datetime, saved: _Saved) -> tuple[str, str]:
    """Save ``block`` as ``name`` on ``conn`` (inside the caller's transaction).

    Returns:
        ``(document id, "created" | "updated")``.
    """
    slug = block.block_type_slug
    existing = _doc_by_name(conn, slug, name)
    if existing is not None and not overwrite:
        raise BlockError(f"block {_label(slug, name)!r} already exists; pass overwrite=True (or --overwrite)")
    doc_id = _write(conn, block, name, now, saved, existing)
    return doc_id, ("created" if existing is None else "updated")


def _mark(saved: _Saved) -> None:
    for obj, doc_id, doc_name in saved.marks:
        obj._document_id = doc_id
        obj._document_name = doc_name
        register_block_secrets(obj)


def save_block(block: Block, name: str, overwrite: bool = False) -> str:
    validate_name(name)
    if not type(block).block_type_slug:
        raise BlockError("the Block base class cannot be saved; subclass it with typed fields")

    def work(conn: Connection) -> tuple[str, _Saved]:
        saved = _Saved()
        doc_id, _ = save_in(conn, block, name, overwrite, _now(), saved)
        return doc_id, saved

    doc_id, saved = _run_write("save a block in", work)
    _mark(saved)
    return doc_id


# -- decoding ------------------------------------------------------------------------------------
def _suggest(word: str, candidates: Any) -> str:
    matches = difflib.get_close_matches(word, sorted(set(candidates)), n=3, cutoff=0.6)
    if not matches:
        return ""
    return "; did you mean " + " or ".join(repr(m) for m in matches) + "?"


def _known_slugs(conn: Connection | None) -> set[str]:
    slugs = set(_registry())
    if conn is not None:
        from sqlalchemy import select

        t = _tables().BlockDocumentModel.__table__
        slugs |= {str(r[0]) for r in conn.execute(select(t.c.slug).distinct())}
    return slugs


def _unknown_type(slug: str, conn: Connection | None = None) -> BlockNotFound:
    return BlockNotFound(
        f"no block type {slug!r} is registered{_suggest(slug, _known_slugs(conn))} "
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


def _class_for(slug: str, hints: list[type[Block]] | None, label: str, conn: Connection) -> type[Block]:
    for hint in hints or ():
        if hint is not Block and hint.block_type_slug == slug:
            return hint
    cls = _registry().get(slug)
    if cls is not None:
        return cls
    if not hints:
        raise _unknown_type(slug, conn)
    raise BlockNotFound(
        f"block {label!r} is of type {slug!r}, which no installed plugin registers"
        f"{_suggest(slug, _known_slugs(conn))} (see `plait block types`)"
    )


def mask_values(text: str, secrets: Any) -> str:
    """``text`` with each of ``secrets`` (strings of 4+ characters) replaced by ``***``."""
    for secret in sorted({s for s in secrets if isinstance(s, str) and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def _error_text(err: Any, secrets: Any) -> str:
    """pydantic's message for one error. Its own rules never quote the input; a message a
    validator wrote itself might, so those have ``secrets`` masked."""
    from typing import get_args

    from pydantic_core.core_schema import ErrorType

    msg = str(err.get("msg", "invalid value"))
    if err.get("type") in ("value_error", "assertion_error") or err.get("type") not in get_args(ErrorType):
        msg = mask_values(msg, secrets)
    return msg


def validation_message(exc: ValidationError, what: str, secrets: Any = ()) -> str:
    """One line per problem: the field's dotted path and pydantic's rule, never the input
    (and none of ``secrets``, should a validator have quoted one)."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(the block as a whole)"
        parts.append(f"field {loc!r}: {_error_text(err, secrets)}")
    return f"{what}: " + "; ".join(parts)


def _type_label(prop: dict[str, Any]) -> str:
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
    conn: Connection, row: Row, cls: type[Block], exc: ValidationError, secrets: Any = ()
) -> BlockSchemaMismatch:
    from sqlalchemy import select

    t = _tables().BlockSchemaModel.__table__
    stored = conn.execute(select(t.c.json_schema).where(t.c.checksum == row.schema_checksum)).first()
    changes = describe_schema_change(stored[0], cls.model_json_schema()) if stored is not None else []
    if not changes:
        changes = [
            f"{'.'.join(str(p) for p in err.get('loc', ())) or '(block)'!r}: {_error_text(err, secrets)}"
            for err in exc.errors(include_url=False, include_input=False)
        ]
    return BlockSchemaMismatch(
        f"block {_label(row.slug, row.name)!r} was saved with an older schema of {cls.__name__}; "
        f"changed fields: {'; '.join(changes)}. Update it: load the values, fix them and "
        "save(..., overwrite=True), or re-apply your blocks file."
    )


def _decrypt_error(label: str) -> BlockError:
    return BlockError(
        f"cannot decrypt the secrets of block {label!r}: the encryption key differs from the one they "
        "were saved with (PLAIT_ENCRYPTION_KEY or $PLAIT_HOME/encryption.key). Nothing was changed."
    )


def _decode_values(
    conn: Connection,
    row: Row,
    cls: type[Block],
    label: str,
    child: Callable[[Row, list[type[Block]] | None, str], Any],
    revealed: list[str] | None = None,
) -> dict[str, Any]:
    """The stored values of ``row`` with secrets decrypted and ``$ref`` handed to ``child``."""
    from plait.blocks._crypto import DecryptError, decrypt_value

    from sqlalchemy import select

    models = _tables()
    refs = models.BlockDocumentReferenceModel.__table__
    schemas = models.BlockSchemaModel.__table__
    secret, _ = _field_kinds(cls)
    nested = cls.nested_block_fields()
    # Which stored fields hold references, and which secrets, as they were saved.
    ref_fields = {
        str(r[0]) for r in conn.execute(select(refs.c.field_name).where(refs.c.parent_document_id == row.id))
    }
    if row.schema_checksum != cls.schema_checksum():
        stored = conn.execute(
            select(schemas.c.secret_fields).where(schemas.c.checksum == row.schema_checksum)
        ).first()
        if stored is not None:
            secret = secret | {str(n) for n in stored[0] or () if "." not in str(n)}
    values: dict[str, Any] = {}
    for key, raw in (row.data or {}).items():
        if key in secret and isinstance(raw, dict) and set(raw) == {"$secret"}:
            try:
                values[key] = decrypt_value(raw["$secret"])
            except DecryptError:
                raise _decrypt_error(label) from None
            if revealed is not None:
                revealed.extend(_string_leaves(values[key]))
        elif key in ref_fields:

            def resolve(value: Any, _key: str = key) -> Any:
                if isinstance(value, dict):
                    if set(value) == {"$ref"} and isinstance(value["$ref"], str):
                        target = _doc_by_id(conn, value["$ref"])
                        if target is None:
                            raise BlockError(
                                f"block {label!r} refers in field {_key!r} to a block that no longer "
                                "exists; save it again with a value for that field (overwrite=True)"
                            )
                        return child(target, nested.get(_key), f"{label} field {_key!r}")
                    return {k: resolve(v) for k, v in value.items()}
                if isinstance(value, list):
                    return [resolve(v) for v in value]
                return value

            values[key] = resolve(raw)
        else:
            values[key] = raw
    return values


def _instantiate(conn: Connection, row: Row, hints: list[type[Block]] | None, context: str = "") -> Block:
    label = _label(row.slug, row.name)
    cls = _class_for(row.slug, hints, label, conn)

    def child(target: Row, child_hints: list[type[Block]] | None, where: str) -> Block:
        return _instantiate(conn, target, child_hints, where)

    revealed: list[str] = []
    values = _decode_values(conn, row, cls, label, child, revealed)
    try:
        block = cls.model_validate(values)
    except ValidationError as exc:
        if row.schema_checksum != cls.schema_checksum():
            raise _mismatch(conn, row, cls, exc, revealed) from None
        where = f" (nested in {context})" if context else ""
        what = f"saved block {label!r}{where} is not a valid {cls.__name__}"
        raise BlockValidationError(validation_message(exc, what, revealed)) from None
    block._document_id = str(row.id)
    block._document_name = str(row.name)
    return block


def _resolve_slug(cls: type[Block], reference: str) -> tuple[str | None, str]:
    """(slug, name) for ``cls.load(reference)``; slug None means "the class's own or one of its
    registered subclasses"."""
    slug, name = split_reference(reference)
    if cls is Block:
        if slug is None:
            raise BlockError(
                f"Block.load() needs 'slug/name' (e.g. Block.load('aws-credentials/{name}')); "
                f"or call load() on the block's class: MyBlock.load({name!r})"
            )
        return slug, name
    if slug is None:
        return None, name
    if slug != cls.block_type_slug:
        registered = _registry().get(slug)
        if registered is None or not issubclass(registered, cls):
            kind = f"type {slug!r}" if registered is None else f"a {registered.__name__} ({slug!r})"
            raise BlockError(
                f"{reference!r} names a block of {kind}, not a {cls.__name__} ({cls.block_type_slug!r}); "
                f"use Block.load({reference!r}) or {cls.__name__}.load({name!r})"
            )
    return slug, name


def _candidate_slugs(cls: type[Block]) -> list[str]:
    slugs = [cls.block_type_slug] if cls is not Block else []
    slugs += sorted(s for s, c in _registry().items() if issubclass(c, cls) and s not in slugs)
    return slugs


def _names(conn: Connection, slug: str | None = None) -> list[str]:
    from sqlalchemy import select

    t = _tables().BlockDocumentModel.__table__
    query = select(t.c.name)
    if slug is not None:
        query = query.where(t.c.slug == slug)
    return [str(r[0]) for r in conn.execute(query) if not _is_anonymous(r[0])]


def _find(conn: Connection, cls: type[Block], reference: str) -> Row:
    """The document ``cls.load(reference)`` means, or BlockNotFound with suggestions."""
    from sqlalchemy import select

    slug, name = _resolve_slug(cls, reference)
    if slug is not None:
        row = _doc_by_name(conn, slug, name)
        if row is not None:
            return row
        if slug not in _known_slugs(conn):
            raise _unknown_type(slug, conn)
        raise BlockNotFound(
            f"no saved block {_label(slug, name)!r}{_suggest(name, _names(conn, slug))} (see `plait block ls`)"
        )
    slugs = _candidate_slugs(cls)
    t = _tables().BlockDocumentModel.__table__
    rows = conn.execute(select(t).where(t.c.name == name, t.c.slug.in_(slugs))).fetchall() if slugs else []
    own = [r for r in rows if r.slug == cls.block_type_slug]
    if own:
        return own[0]
    if len(rows) == 1:
        return rows[0]
    if len(rows) > 1:
        options = ", ".join(repr(_label(r.slug, r.name)) for r in rows)
        raise BlockError(f"several blocks are named {name!r} ({options}); load one as 'slug/name'")
    others = conn.execute(select(t.c.slug).where(t.c.name == name)).fetchall()
    hint = ""
    if others:
        hint = " (a block of another type has that name: " + ", ".join(repr(_label(r[0], name)) for r in others) + ")"
    pool = [n for s in slugs for n in _names(conn, s)]
    raise BlockNotFound(
        f"no saved {cls.__name__} block named {name!r}{hint}{_suggest(name, pool)} (see `plait block ls`)"
    )


def load_block(cls: type[Block], reference: str) -> Block:
    def work(conn: Connection) -> Block:
        row = _find(conn, cls, reference)
        hints = [cls] if cls is not Block else None
        return _instantiate(conn, row, hints)

    block = _read("read blocks from", work)
    register_block_secrets(block)  # nested blocks' secrets included
    return block


def load_document(reference: str) -> Block:
    """The saved block ``reference`` names: ``"slug/name"``, or a name no other type uses.

    Raises:
        BlockNotFound: No such block (close matches suggested).
        BlockError: A bare name used by several types.
    """
    slug, name = split_reference(reference)
    if slug is not None:
        return load_block(Block, reference)

    def work(conn: Connection) -> Block:
        from sqlalchemy import select

        t = _tables().BlockDocumentModel.__table__
        rows = conn.execute(select(t).where(t.c.name == name)).fetchall()
        if not rows:
            raise BlockNotFound(f"no saved block named {name!r}{_suggest(name, _names(conn))} (see `plait block ls`)")
        if len(rows) > 1:
            options = ", ".join(repr(_label(r.slug, r.name)) for r in rows)
            raise BlockError(f"several blocks are named {name!r} ({options}); give 'slug/name'")
        return _instantiate(conn, rows[0], None)

    block = _read("read blocks from", work)
    register_block_secrets(block)
    return block


# -- delete and list -----------------------------------------------------------------------------
def delete_block(cls: type[Block], reference: str) -> None:
    from sqlalchemy import select

    models = _tables()
    docs = models.BlockDocumentModel.__table__
    refs = models.BlockDocumentReferenceModel.__table__

    def work(conn: Connection) -> None:
        row = _find(conn, cls, reference)
        users = conn.execute(
            select(refs.c.parent_document_id, refs.c.field_name).where(refs.c.child_document_id == row.id)
        ).fetchall()
        if users:
            names = []
            for parent_id, field_name in users:
                parent = _doc_by_id(conn, parent_id)
                where = _label(parent.slug, parent.name) if parent is not None else str(parent_id)
                owner = _named_owner(conn, parent) if parent is not None and _is_anonymous(parent.name) else None
                inside = f", nested in {owner!r}" if owner else ""
                names.append(f"{where!r} (field {field_name!r}{inside})")
            raise BlockError(
                f"block {_label(row.slug, row.name)!r} is used by block {', '.join(names)}; delete that block "
                "or save it without this one first"
            )
        children = [
            str(r[0]) for r in conn.execute(select(refs.c.child_document_id).where(refs.c.parent_document_id == row.id))
        ]
        conn.execute(refs.delete().where(refs.c.parent_document_id == row.id))
        conn.execute(docs.delete().where(docs.c.id == row.id))
        _drop_orphans(conn, children)

    _run_write("delete a block from", work)


def _named_owner(conn: Connection, row: Row) -> str | None:
    """``slug/name`` of the named block an anonymous document belongs to."""
    from sqlalchemy import select

    refs = _tables().BlockDocumentReferenceModel.__table__
    for _ in range(32):  # nesting depth; guards against a damaged, cyclic store
        parent_id = conn.execute(
            select(refs.c.parent_document_id).where(refs.c.child_document_id == row.id)
        ).scalar()
        parent = _doc_by_id(conn, parent_id) if parent_id else None
        if parent is None:
            return None
        if not _is_anonymous(parent.name):
            return _label(parent.slug, parent.name)
        row = parent
    return None


def list_documents(slug: str | None = None, include_anonymous: bool = False) -> list[dict[str, Any]]:
    """Saved blocks, by type then name: ``{name, slug, type_name, id, created, updated}``.

    Args:
        slug: Only blocks of this type.
        include_anonymous: Also nested blocks saved without a name (``anonymous-<id>``).
    """
    return _list(None if slug is None else [slug], include_anonymous)


def _list(slugs: list[str] | None, include_anonymous: bool) -> list[dict[str, Any]]:
    from sqlalchemy import select

    models = _tables()
    docs = models.BlockDocumentModel.__table__
    types = models.BlockTypeModel.__table__

    def work(conn: Connection) -> list[Any]:
        query = (
            select(docs.c.id, docs.c.name, docs.c.slug, docs.c.created, docs.c.updated, types.c.name.label("type_name"))
            .select_from(docs.outerjoin(types, types.c.slug == docs.c.slug))
            .order_by(docs.c.slug, docs.c.name)
        )
        if slugs is not None:
            query = query.where(docs.c.slug.in_(slugs))
        return conn.execute(query).fetchall()

    registry = _registry()
    rows = []
    for r in _read("read blocks from", work):
        if not include_anonymous and _is_anonymous(r.name):
            continue
        cls = registry.get(r.slug)
        rows.append({
            "name": r.name,
            "slug": r.slug,
            "type_name": cls.block_type_name if cls is not None else (r.type_name or r.slug),
            "id": r.id,
            "created": _iso(r.created),
            "updated": _iso(r.updated),
        })
    return rows


def list_for_class(cls: type[Block]) -> list[dict[str, Any]]:
    return _list(None if cls is Block else _candidate_slugs(cls), include_anonymous=False)


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


# -- showing ------------------------------------------------------------------------------------
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
    plain = {n for n in cls.model_fields if n not in secret and not (n in nested and _contains_block(getattr(block, n)))}
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


# -- comparing (blocks files) --------------------------------------------------------------------
def canonical_values(block: Block) -> dict[str, Any]:
    """Plain, comparable values of ``block``: secrets revealed, a nested block that is saved
    under a name as ``{"$block": "slug/name"}``, any other nested block as its own values."""
    from plait.blocks._crypto import _to_plain

    cls = type(block)
    secret, nested = _field_kinds(cls)
    plain = {n for n in cls.model_fields if n not in secret and not (n in nested and _contains_block(getattr(block, n)))}
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


def stored_canonical_values(conn: Connection, row: Row, cls: type[Block]) -> dict[str, Any]:
    """``canonical_values`` of a stored document, without building the block (decrypts)."""
    from pydantic_core import to_jsonable_python

    from plait.blocks._crypto import _to_plain

    label = _label(row.slug, row.name)

    def child(target: Row, hints: list[type[Block]] | None, where: str) -> Any:
        if not _is_anonymous(target.name):
            return {"$block": _label(target.slug, target.name)}
        target_cls = _class_for(target.slug, hints, _label(target.slug, target.name), conn)
        return stored_canonical_values(conn, target, target_cls)

    values = _decode_values(conn, row, cls, label, child)
    secret, _ = _field_kinds(cls)
    for key in secret & set(values):
        if values[key] is not None:
            values[key] = to_jsonable_python(_to_plain(values[key]))
    return values


# -- from the environment ------------------------------------------------------------------------
def block_from_env(cls: type[Block], prefix: str) -> Block:
    """Build ``cls`` from ``<PREFIX><FIELD>`` variables (nested: ``<PREFIX><FIELD>__<INNER>``)."""
    import json

    from pydantic import create_model
    from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

    if cls is Block:
        raise BlockError("Block.from_env() needs a block class: MyBlock.from_env('MY_')")

    class _Base(BaseSettings):
        model_config = SettingsConfigDict(
            env_prefix=prefix, env_nested_delimiter="__", case_sensitive=False, extra="ignore",
        )

    settings_cls = create_model(  # type: ignore[call-overload]
        f"{cls.__name__}Environment",
        __base__=_Base,
        **{name: (info.annotation, None) for name, info in cls.model_fields.items()},
    )
    raw = {k: v for k, v in EnvSettingsSource(settings_cls)().items() if k in cls.model_fields}
    secret, _ = _field_kinds(cls)
    for key in secret & set(raw):
        # A secret dict given as JSON text (pydantic-settings parses only plain dict fields).
        if isinstance(raw[key], str) and raw[key].lstrip().startswith(("{", "[")):
            try:
                raw[key] = json.loads(raw[key])
            except ValueError:
                pass
    try:
        block = cls.model_validate(raw)
    except ValidationError as exc:
        parts = []
        nested = cls.nested_block_fields()
        for err in exc.errors(include_url=False, include_input=False):
            loc = [str(p) for p in err.get("loc", ()) if not isinstance(p, int)]
            var = (prefix + "__".join(loc)).upper() if loc else f"{prefix}*"
            what = f"set {var}" if err.get("type") == "missing" else f"check {var}"
            if err.get("type") == "missing" and len(loc) == 1 and loc[0] in nested:
                inner = [n for n, i in nested[loc[0]][0].model_fields.items() if i.is_required()]
                what = "set " + ", ".join(f"{var}__{n.upper()}" for n in inner) if inner else what
            env_secrets = [leaf for k, v in raw.items() if k in secret for leaf in _string_leaves(v)]
            parts.append(f"field {'.'.join(loc) or '(block)'!r}: {_error_text(err, env_secrets)} ({what})")
        raise BlockValidationError(
            f"cannot build {cls.__name__} from environment variables {prefix}*: " + "; ".join(parts)
        ) from None
    register_block_secrets(block)
    return block
