"""Dashboard pages for blocks (types, saved documents, create / edit / delete) and the
collections registry; and the JSON-schema forms that the block and "run now" pages share.

Secrets never reach the browser: documents come from the API masked (``"***"``, shown as
``********``), and a secret field of a form is always rendered empty. Editing a block, a
secret left blank is sent as ``{"$keep": true}``: the API keeps the value it stores.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from plait.client import ApiError, ApiNotFound
from plait.server.ui._base import check_csrf, form_data, render, ui_api

__all__ = ["router", "schema_fields", "parse_schema_form", "field_errors"]

router = APIRouter()

_MASKED = "***"  # what the API answers for a secret value
_REF = re.compile(r"^#/(?:\$defs|definitions)/(.+)$")


# -- JSON schema -> form fields ---------------------------------------------------------------------
def _resolve(node: Any, defs: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    """``node`` with a local ``$ref`` followed (its own keys win, as pydantic writes them)."""
    if not isinstance(node, dict):
        return {}
    ref = node.get("$ref")
    if isinstance(ref, str) and depth < 20:
        match = _REF.match(ref)
        target = defs.get(match.group(1)) if match else None
        if isinstance(target, dict):
            merged = {**_resolve(target, defs, depth + 1), **{k: v for k, v in node.items() if k != "$ref"}}
            return merged
    return node


def _kind(spec: dict[str, Any], defs: dict[str, Any]) -> tuple[str, dict[str, Any], bool]:
    """(widget kind, the effective schema, nullable) of one property."""
    nullable = False
    options = spec.get("anyOf") or spec.get("oneOf")
    if isinstance(options, list):
        real = [_resolve(o, defs) for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
        nullable = len(real) < len(options)
        if len(real) == 1:
            spec = {**real[0], **{k: v for k, v in spec.items() if k not in ("anyOf", "oneOf")}}
        else:
            return "json", spec, nullable
    if spec.get("format") == "password" or spec.get("writeOnly"):
        return "password", spec, nullable
    if "enum" in spec:
        return "enum", spec, nullable
    if "const" in spec:
        return "enum", {**spec, "enum": [spec["const"]]}, nullable
    kind = spec.get("type")
    if isinstance(kind, list):
        nullable = nullable or "null" in kind
        rest = [k for k in kind if k != "null"]
        kind = rest[0] if len(rest) == 1 else None
    if kind in ("string", "integer", "number", "boolean"):
        return str(kind), spec, nullable
    if kind == "array":
        items = _resolve(spec.get("items") or {}, defs)
        if items.get("type") == "string" and not (items.get("format") == "password" or items.get("writeOnly")):
            return "lines", spec, nullable
    return "json", spec, nullable


def schema_fields(
    schema: dict[str, Any] | None,
    values: dict[str, Any] | None = None,
    *,
    secret_fields: list[str] | tuple[str, ...] = (),
    errors: dict[str, str] | None = None,
    use_defaults: bool = True,
) -> list[dict[str, Any]]:
    """The form fields of a JSON schema's top-level properties, for ``_schema_form.html``.

    Each field: ``{name, label, kind, required, description, value, options, secret, error}``
    where ``kind`` is string / integer / number / boolean / enum / lines (array of strings) /
    json / password and ``value`` is the text the input starts with. A secret field (format
    ``password``, ``writeOnly``, or named in ``secret_fields``) never carries a value.
    """
    schema = schema or {}
    defs = dict(schema.get("$defs") or schema.get("definitions") or {})
    required = set(schema.get("required") or [])
    values = values or {}
    secrets = {s.split(".")[0] for s in secret_fields if "." not in s}
    fields = []
    for name, raw in (schema.get("properties") or {}).items():
        spec = _resolve(raw, defs)
        kind, spec, nullable = _kind(spec, defs)
        if name in secrets and kind in ("string", "json"):
            kind = "password"
        if name in values:
            current = values[name]
        elif use_defaults and "default" in spec:
            current = spec["default"]
        else:
            current = None
        options = [json.dumps(v) for v in spec.get("enum", [])] if kind == "enum" else []
        fields.append({
            "name": name,
            "label": spec.get("title") or name,
            "kind": kind,
            "required": name in required,
            "nullable": nullable,
            "description": spec.get("description") or raw.get("description") or "",
            "value": "" if kind == "password" else _as_text(kind, current),
            "checked": bool(current) if kind == "boolean" else False,
            "options": options,
            "secret": kind == "password",
            "error": (errors or {}).get(name, ""),
        })
    return fields


def _as_text(kind: str, value: Any) -> str:
    if value is None:
        return ""
    if kind == "enum":
        return json.dumps(value)
    if kind == "lines":
        return "\n".join(str(v) for v in value) if isinstance(value, list) else str(value)
    if kind == "json":
        return json.dumps(value, indent=2, sort_keys=True, default=str)
    if kind == "boolean":
        return ""
    return str(value)


def parse_schema_form(
    fields: list[dict[str, Any]], form: dict[str, str], *, keep_blank_secrets: bool = False
) -> tuple[dict[str, Any], dict[str, str]]:
    """The values a posted schema form holds, and an error per field it could not read.

    A blank optional field is left out (the default applies); a blank secret, when
    ``keep_blank_secrets``, is sent as ``{"$keep": true}`` (the API keeps the stored value),
    else it is an error if required.
    """
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field in fields:
        name, kind = field["name"], field["kind"]
        key = f"f.{name}"
        if kind == "boolean":
            values[name] = form.get(key) == "on"
            continue
        text = form.get(key, "")
        if kind not in ("password", "string") or not text:
            text = text.strip()
        if text == "":
            if field["secret"] and keep_blank_secrets:
                values[name] = {"$keep": True}
            elif field["required"]:
                errors[name] = "required"
            continue
        try:
            values[name] = _parse(kind, text)
        except ValueError as exc:
            errors[name] = str(exc)
    return values, errors


def _parse(kind: str, text: str) -> Any:
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"a whole number, not {text[:40]!r}") from None
    if kind == "number":
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"a number, not {text[:40]!r}") from None
        return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number
    if kind == "enum":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    if kind == "lines":
        return [line.strip() for line in text.splitlines() if line.strip()]
    if kind == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    return text


_CLIENT_NOTE = re.compile(r" \(plait server at [^()]*\)$")
_PROBLEM = re.compile(r"(?:parameter|field) '([^']+)'")


def field_errors(exc: ApiError, names: list[str]) -> tuple[dict[str, str], str]:
    """An API refusal split into messages by the form field they name, and the rest."""
    message = _CLIENT_NOTE.sub("", exc.message)  # the client's "(plait server at URL: ...)" is no news here
    head, _, tail = message.partition(": ")
    parts = [p.strip() for p in (tail or message).split("; ") if p.strip()]
    errors: dict[str, str] = {}
    rest = []
    for part in parts:
        match = _PROBLEM.search(part)
        name = match.group(1).split(".")[0] if match else None
        if name in names:
            errors[name] = f"{errors[name]}; {part}" if name in errors else part
        else:
            rest.append(part)
    for item in exc.detail if isinstance(exc.detail, list) else []:
        field = str(item.get("field") or "") if isinstance(item, dict) else ""
        leaf = field.split(".")[-1]
        if leaf in names and leaf not in errors:
            errors[leaf] = str(item.get("message", ""))
    general = message if not errors else ("; ".join(rest) if rest else "")
    return errors, general


# -- collections registry ------------------------------------------------------------------------
async def _collections(request: Request) -> dict[str, Any] | None:
    """``GET /api/v1/collections`` as the browser's key: None when the server has no registry."""
    async with ui_api(request) as api:
        try:
            found: dict[str, Any] = await api.collections()
        except ApiNotFound:
            return None
    return found


def _owners(registry: dict[str, Any] | None) -> dict[str, str]:
    """Block type slug -> the collection (or "built in") that provides it, by the registry."""
    if not registry:
        return {}
    found = {block["slug"]: "built in" for block in (registry.get("builtin") or {}).get("blocks", [])}
    for name, collection in (registry.get("collections") or {}).items():
        for block in collection.get("blocks", []):
            found[block["slug"]] = name
    return found


def _plugin_owner(registry: dict[str, Any] | None, plugin: str | None) -> str | None:
    if not registry or not plugin:
        return None
    for name, collection in (registry.get("collections") or {}).items():
        if plugin in (collection.get("entry_points") or {}):
            return str(name)
    return None


# -- blocks -----------------------------------------------------------------------------------------
@router.get("/blocks")
async def blocks_page(request: Request, type: str | None = None) -> Response:  # noqa: A002 - the query's name
    """Block types and saved blocks (filter ``?type=slug``)."""
    async with ui_api(request) as api:
        types = await api.block_types()
        documents = await api.block_documents(type=type or None)
    collections = await _collections(request)
    registry = collections["registry"] if collections else None
    owners = _owners(registry)
    for item in types:
        item["collection"] = owners.get(item["slug"]) or _plugin_owner(registry, item.get("plugin")) or ""
    return render(request, "blocks.html", active="blocks", types=types, documents=documents, type=type or "")


@router.get("/blocks/{slug}")
async def block_type_page(request: Request, slug: str) -> Response:
    """One block type: its schema, capabilities, collection, and its saved blocks."""
    async with ui_api(request) as api:
        try:
            block_type = await api.block_type(slug)
        except ApiNotFound:
            return render(request, "not_found.html", status=404, what="block type", ref=slug)
        documents = await api.block_documents(type=slug)
    collections = await _collections(request)
    registry = collections["registry"] if collections else None
    collection = _owners(registry).get(slug) or _plugin_owner(registry, block_type.get("plugin")) or ""
    return render(request, "block_type.html", active="blocks", t=block_type, documents=documents,
                  collection=collection, fields=schema_fields(block_type.get("json_schema"),
                                                              secret_fields=block_type.get("secret_fields", [])))


def _form_page(request: Request, block_type: dict[str, Any], *, name: str, editing: bool,
               fields: list[dict[str, Any]], error: str = "", status: int = 200) -> Response:
    return render(request, "block_form.html", status=status, active="blocks", t=block_type, block_name=name,
                  editing=editing, fields=fields, error=error)


@router.get("/blocks/{slug}/new")
async def new_block_page(request: Request, slug: str) -> Response:
    """The form for a new block of a type, generated from its schema."""
    async with ui_api(request) as api:
        try:
            block_type = await api.block_type(slug)
        except ApiNotFound:
            return render(request, "not_found.html", status=404, what="block type", ref=slug)
    fields = schema_fields(block_type.get("json_schema"), secret_fields=block_type.get("secret_fields", []))
    return _form_page(request, block_type, name="", editing=False, fields=fields)


@router.get("/blocks/{slug}/{name}/edit")
async def edit_block_page(request: Request, slug: str, name: str) -> Response:
    """The form for a saved block, its values filled in except its secrets."""
    async with ui_api(request) as api:
        try:
            block_type = await api.block_type(slug)
            document = await api.block_document(slug, name)
        except ApiNotFound:
            return render(request, "not_found.html", status=404, what="block", ref=f"{slug}/{name}")
    values = {k: v for k, v in document.get("data", {}).items() if v != _MASKED}
    fields = schema_fields(block_type.get("json_schema"), values, secret_fields=block_type.get("secret_fields", []),
                           use_defaults=False)
    return _form_page(request, block_type, name=name, editing=True, fields=fields)


@router.post("/blocks/{slug}/save", dependencies=[Depends(check_csrf)])
async def save_block(request: Request, slug: str) -> Response:
    """Save a block from its form (new, or replacing the one being edited)."""
    form = await form_data(request)
    name = form.get("name", "").strip()
    editing = form.get("editing") == "1"
    async with ui_api(request) as api:
        try:
            block_type = await api.block_type(slug)
        except ApiNotFound:
            return render(request, "not_found.html", status=404, what="block type", ref=slug)
        secret_fields = block_type.get("secret_fields", [])
        fields = schema_fields(block_type.get("json_schema"), secret_fields=secret_fields)
        values, errors = parse_schema_form(fields, form, keep_blank_secrets=editing)
        if not name:
            errors["__name"] = "give the block a name"
        if errors:
            shown = schema_fields(block_type.get("json_schema"), _public(values, fields),
                                  secret_fields=secret_fields, errors=errors, use_defaults=False)
            return _form_page(request, block_type, name=name, editing=editing, fields=shown,
                              error=errors.get("__name", "fix the fields marked below"), status=422)
        info = {k: block_type.get(k) for k in ("slug", "name", "description", "capabilities", "secret_fields",
                                               "block_fields", "json_schema")}
        info["slug"] = slug
        try:
            await api.save_block_document(slug, name, values, info, overwrite=editing)
        except ApiError as exc:
            if exc.status is None or exc.status >= 500 or exc.status in (401, 403):
                raise
            errors, general = field_errors(exc, [f["name"] for f in fields])
            shown = schema_fields(block_type.get("json_schema"), _public(values, fields),
                                  secret_fields=secret_fields, errors=errors, use_defaults=False)
            return _form_page(request, block_type, name=name, editing=editing, fields=shown,
                              error=general or "fix the fields marked below", status=422)
    return RedirectResponse(f"/blocks/{quote(slug, safe='')}/{quote(name, safe='')}", status_code=303)


def _public(values: dict[str, Any], fields: list[dict[str, Any]]) -> dict[str, Any]:
    """Posted values to show again in the form: never a secret."""
    secret = {f["name"] for f in fields if f["secret"]}
    return {k: v for k, v in values.items() if k not in secret}


@router.post("/blocks/{slug}/{name}/delete", dependencies=[Depends(check_csrf)])
async def delete_block(request: Request, slug: str, name: str) -> Response:
    """Delete a saved block (the API refuses while another block uses it)."""
    async with ui_api(request) as api:
        try:
            await api.delete_block_document(slug, name)
        except ApiNotFound:
            return render(request, "not_found.html", status=404, what="block", ref=f"{slug}/{name}")
    return RedirectResponse(f"/blocks/{quote(slug, safe='')}", status_code=303)


@router.get("/blocks/{slug}/{name}")
async def block_document_page(request: Request, slug: str, name: str) -> Response:
    """One saved block, secrets shown as ``********``."""
    async with ui_api(request) as api:
        try:
            document = await api.block_document(slug, name)
        except ApiNotFound:
            return render(request, "not_found.html", status=404, what="block", ref=f"{slug}/{name}")
        try:
            block_type = await api.block_type(slug)
        except ApiNotFound:
            block_type = {"slug": slug, "name": document.get("type_name") or slug, "secret_fields": []}
    return render(request, "block_document.html", active="blocks", d=document, t=block_type,
                  rows=_document_rows(document.get("data", {})))


def _document_rows(data: dict[str, Any], prefix: str = "") -> list[dict[str, Any]]:
    """Each value of a document as ``{name, value, secret, nested}`` (nested blocks flattened)."""
    rows: list[dict[str, Any]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(value.get("$block"), dict):
            inner = value["$block"]
            label = inner.get("name") or "(nested, no name)"
            rows.append({"name": name, "value": f"block {inner.get('slug', '')}/{label}", "secret": False,
                         "nested": True, "slug": inner.get("slug"), "ref": inner.get("name")})
            rows.extend(_document_rows(inner.get("data") or {}, prefix=f"{name}."))
        elif value == _MASKED:
            rows.append({"name": name, "value": "********", "secret": True, "nested": False})
        else:
            rows.append({"name": name, "value": value, "secret": False, "nested": False})
    return rows


# -- collections ------------------------------------------------------------------------------------
def _installs(registry: dict[str, Any], statuses: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_name = {s["name"]: s for s in statuses}
    rows = []
    for name, collection in sorted((registry.get("collections") or {}).items()):
        install = collection.get("install") or {}
        rows.append({**collection, "name": name, "status": by_name.get(name, {}),
                     "command": f"pip install {name}", "pinned": f"pip install {install.get('pip') or name}"})
    return rows


@router.get("/collections")
async def collections_page(request: Request) -> Response:
    """The registry: every collection, its version and compatibility, how to install it."""
    found = await _collections(request)
    if found is None:
        return render(request, "collections.html", active="collections", registry=None, rows=[], extra=[])
    registry = found["registry"]
    rows = _installs(registry, found.get("statuses", []))
    listed = {row["name"] for row in rows}
    extra = [s for s in found.get("statuses", []) if s["name"] not in listed]
    return render(request, "collections.html", active="collections", registry=registry, rows=rows, extra=extra)


@router.get("/collections/{name}")
async def collection_page(request: Request, name: str) -> Response:
    """One collection: its blocks, tasks with signatures and docs, versions, install command."""
    found = await _collections(request)
    collection = ((found or {}).get("registry") or {}).get("collections", {}).get(name) if found else None
    if collection is None:
        return render(request, "not_found.html", status=404, what="collection", ref=name)
    assert found is not None  # a collection was found in it
    row = _installs({"collections": {name: collection}}, found.get("statuses", []))[0]
    return render(request, "collection.html", active="collections", c=row, plait=found["registry"].get("plait", {}))
