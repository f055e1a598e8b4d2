"""Configuration over the API: notification rules, the collections registry, and the plugin
diagnostics ``plait plugins ls`` shows, as the server sees them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from plait._masking import mask
from plait._store.database import Database
from plait.registry import Registry
from plait.server._deps import Caller, database, require
from plait.server._errors import ERROR_RESPONSES, ApiProblem, ErrorOut

__all__ = ["router"]

router = APIRouter()

Store = Annotated[Database, Depends(database)]
Reader = Annotated[Caller, Depends(require("read"))]
Runner = Annotated[Caller, Depends(require("run"))]
Admin = Annotated[Caller, Depends(require("admin"))]
_CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": ErrorOut, "description": "A rule with this name exists"}}
_NOTIFY = "notify"
_NO_NUL = r"^[^\x00]*$"  # PostgreSQL stores no NUL in text


# -- notification rules ----------------------------------------------------------------------------
class RuleOut(BaseModel):
    """Notify through ``block`` when a flow run whose flow name matches the glob
    ``flow_name`` and which carries every one of ``tags`` enters one of ``states``."""

    id: str
    name: str
    block: str = Field(description="The notification block, 'slug/name'.")
    block_slug: str
    block_name: str
    flow_name: str = Field(description="Glob over flow names ('*': every flow).")
    tags: list[str]
    states: list[str] = Field(description="State types, e.g. ['FAILED', 'CRASHED'].")
    enabled: bool
    created: str | None


class RulesPage(BaseModel):
    items: list[RuleOut]
    next_cursor: str | None = Field(default=None, description="Always null: every rule is in one page.")


class RuleIn(BaseModel):
    """A new rule (what ``plait notification create`` takes)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"block": "webhook/ops", "flow_name": "etl-*", "tags": ["prod"], "states": ["failed", "crashed"]}]
    })

    block: str = Field(min_length=1, max_length=401, description="A saved notification block: 'slug/name', "
                       "or its name when no other type uses it.")
    flow_name: str = Field(default="*", min_length=1, max_length=500, pattern=_NO_NUL,
                           description="Glob over flow names.")
    tags: list[str] = Field(default_factory=list, max_length=100, description="Every one must be on the run.")
    states: list[str] | None = Field(default=None, max_length=20,
                                     description="State types, any case (default: FAILED and CRASHED).")
    name: str | None = Field(default=None, max_length=200, pattern=_NO_NUL,
                             description="Unique name (default: made up).")
    enabled: bool = True


def _rule_out(rule: Any) -> dict[str, Any]:
    slug, _, block_name = rule.block.partition("/")
    return {
        "id": rule.id, "name": rule.name, "block": rule.block, "block_slug": slug, "block_name": block_name,
        "flow_name": rule.flow_name, "tags": list(rule.tags), "states": list(rule.states),
        "enabled": bool(rule.enabled), "created": rule.created.isoformat() if rule.created else None,
    }


def _invalid_rule(message: str, field: str) -> ApiProblem:
    return ApiProblem(422, "invalid_rule", message, [{"in": "body", "field": field, "message": message}])


def _notification_block(db: Database, reference: str) -> tuple[str, str]:
    """(slug, name) of the saved block ``reference`` names, refusing a type known not to notify."""
    from plait.blocks._documents import list_document_entries
    from plait.server.routes.blocks import document_type

    reference = reference.strip()
    slug, _, name = reference.rpartition("/")
    entries = [e for e in list_document_entries(db) if e["name"] == name and (not slug or e["slug"] == slug)]
    if not entries:
        raise ApiProblem(404, "block_not_found", f"no saved block {reference!r} (the rule's block); save it "
                         "first, or see GET /blocks/documents")
    if len(entries) > 1:
        options = ", ".join(repr(f"{e['slug']}/{e['name']}") for e in entries)
        raise _invalid_rule(f"several blocks are named {name!r} ({options}); give 'slug/name'", "block")
    slug, name = entries[0]["slug"], entries[0]["name"]
    info = document_type(db, slug)
    # A type whose class the server lacks has capabilities it cannot check: the rule is kept.
    if info["installed"] and _NOTIFY not in info["capabilities"]:
        raise _invalid_rule(f"block {slug}/{name} cannot send notifications: type {slug!r} lacks the "
                            f"'{_NOTIFY}' capability", "block")
    return slug, name


@router.get("/notification-rules", response_model=RulesPage, responses=ERROR_RESPONSES,
            tags=["notification rules"])
def list_notification_rules(db: Store, caller: Reader) -> Any:
    """Every notification rule, oldest first."""
    from plait._store.rules import list_rules

    return {"items": [_rule_out(r) for r in list_rules(db)], "next_cursor": None}


@router.post("/notification-rules", response_model=RuleOut, status_code=201,
             responses={**ERROR_RESPONSES, **_CONFLICT}, tags=["notification rules"])
def create_notification_rule(
    rule: RuleIn, db: Store, caller: Runner
) -> Any:
    """Create a rule: notify through a saved notification block when a matching flow run
    enters one of the states."""
    from plait import notifications
    from plait._store.rules import NotificationRule, RuleNameTaken, insert_rule

    try:
        states = notifications.normalize_states(rule.states)
    except ValueError as exc:
        raise _invalid_rule(str(exc), "states") from None
    tags = list(dict.fromkeys(t.strip() for t in rule.tags))
    if any(not t for t in tags):
        raise _invalid_rule("a tag cannot be empty", "tags")
    flow_name = rule.flow_name.strip()
    if not flow_name:
        raise _invalid_rule("the flow name glob cannot be empty; use '*' for every flow", "flow_name")
    name = rule.name.strip() if rule.name is not None else None
    if name == "":
        raise _invalid_rule("a rule name cannot be empty", "name")
    slug, block_name = _notification_block(db, rule.block)
    rule_id = str(uuid.uuid4())
    stored = NotificationRule(
        id=rule_id, name=name or f"{block_name}-{rule_id[:8]}", block=f"{slug}/{block_name}", flow_name=flow_name,
        tags=tags, states=states, enabled=rule.enabled, created=datetime.now(UTC),
    )
    try:
        insert_rule(stored, db)
    except RuleNameTaken:
        raise ApiProblem(409, "rule_exists", f"a notification rule named {stored.name!r} already exists; "
                         "choose another name") from None
    finally:
        notifications.clear_cache()
    return _rule_out(stored)


@router.delete("/notification-rules/{rule_id}", response_model=RuleOut, responses=ERROR_RESPONSES,
               tags=["notification rules"])
def delete_notification_rule(
    rule_id: Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$",
                                 description="The rule's id.")],
    db: Store,
    caller: Admin,
) -> Any:
    """Delete a rule; answers what was deleted."""
    from plait import notifications
    from plait._store.rules import delete_rule, list_rules

    found = next((r for r in list_rules(db) if r.id == rule_id), None)
    if found is None or not delete_rule(rule_id, db):
        raise ApiProblem(404, "rule_not_found", f"no notification rule has id {rule_id!r}; see GET "
                         "/notification-rules")
    notifications.clear_cache()
    return _rule_out(found)


# -- collections -----------------------------------------------------------------------------------
class CollectionStatusOut(BaseModel):
    """A collection as installed on the server (``plait collection ls``)."""

    name: str
    description: str
    registry_version: str | None
    installed_version: str | None
    plait_range: str | None
    installed_plait_range: str | None
    status: str = Field(description="installed, not installed, outdated, incompatible or unlisted.")


class CollectionsOut(BaseModel):
    registry: Registry = Field(description="The registry.json document the server reads.")
    statuses: list[CollectionStatusOut] = Field(
        description="Each collection's status on the server, then installed plugins the registry does not list."
    )


@router.get("/collections", response_model=CollectionsOut, responses=ERROR_RESPONSES, tags=["collections"])
def get_collections(caller: Reader) -> Any:
    """The collections registry (registry.json) and what of it the server has installed."""
    from plait.registry import RegistryError, collection_statuses, load_registry

    try:
        loaded = load_registry()
    except RegistryError as exc:
        raise ApiProblem(404, "registry_unavailable", f"the server has no collections registry: {exc}") from None
    return {"registry": loaded.registry, "statuses": collection_statuses(loaded)}


# -- plugins ---------------------------------------------------------------------------------------
class PluginOut(BaseModel):
    """A plugin the server discovered (entry point group plait.plugins)."""

    name: str
    module: str
    distribution: str | None
    version: str | None
    requires_plait: str | None
    loaded: bool
    hooks: list[str]
    status: str = Field(description="loaded, not imported, failed or incompatible.")
    default: bool = Field(description="A built-in default plugin.")
    declares: dict[str, list[str]] = Field(description="What it declares it provides, by kind.")


class DiagnosisOut(BaseModel):
    """Why a plugin (or one of its hooks) is not working, and what to do."""

    plugin: str
    version: str | None
    reason: str
    fix: str


class PluginsOut(BaseModel):
    plugins: list[PluginOut]
    diagnoses: list[DiagnosisOut]


@router.get("/plugins", response_model=PluginsOut, responses=ERROR_RESPONSES, tags=["plugins"])
def get_plugins(
    caller: Reader,
    load: Annotated[bool, Query(description="Import every plugin first, to find every problem now (needs a key "
                                "with scope 'admin').")] = False,
) -> Any:
    """The server's plugins and the problems found with them (``plait plugins ls``)."""
    from plait import plugins

    if load:
        if not caller.allows("admin"):
            raise ApiProblem(403, "forbidden", "load=true imports plugin code on the server and needs an API key "
                             f"with scope 'admin'; the key {caller.name!r} has scope {caller.scope!r}",
                             {"needs": "admin", "has": caller.scope})
        plugins.load_all()
    return {
        "plugins": [info.as_dict() for info in plugins.plugins()],
        "diagnoses": [
            {"plugin": d.plugin, "version": d.version, "reason": mask(d.reason), "fix": mask(d.fix)}
            for d in plugins.diagnoses()
        ],
    }
