"""Automations over the API: save (create / update / unchanged), list, get (with the actions
taken lately), enable, disable, delete, and the actions an automation took.

An automation is a trigger and its actions, saved by name (``plait.automations``); routes
take its name (a ``/`` in it percent-encoded or not) or its id. The list holds the
notification rules too, as read-only automations (``source: "notification-rule"``), so one
list answers where every alert comes from; ``plait notification`` changes those. An
automation that ``plait deploy`` made for a deployment's triggers (``source:
"deployment:<id>"``) can be enabled and disabled here, but replacing or deleting it is the
deployment's business (409). Answers mask the values a user wrote: a secret the server
knows, a webhook call's credential headers, a token in its URL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from plait._store.database import Database
from plait.server._deps import Caller, database, require
from plait.server._errors import ERROR_RESPONSES, ApiProblem, ErrorOut
from plait.server._params import limit_query
from plait.server.routes.deployments import ROWS, JsonObject, answer, refusal, store_call

__all__ = ["router"]

router = APIRouter(tags=["automations"])

Store = Annotated[Database, Depends(database)]
Reader = Annotated[Caller, Depends(require("read"))]
Admin = Annotated[Caller, Depends(require("admin"))]

Key = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$", examples=["dbt-after-load"],
                          description="The automation's name (a '/' in it may be percent-encoded) or id.")]
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "A deployment or a notification rule manages it"}}
CONFLICTS = {**ERROR_RESPONSES, **_CONFLICT}
_EXAMPLE = {
    "name": "dbt-after-load",
    "description": "Refresh the models of a table when its raw load completes.",
    "trigger": {"type": "event", "posture": "reactive", "expect": ["flow-run.completed"],
                "match": {"payload.flow_name": "raw-load"}},
    "actions": [{"type": "run-deployment", "deployment": "dbt/refresh",
                 "parameters": {"table": "{{ flow_run.parameters.table }}"}}],
}


# -- models ----------------------------------------------------------------------------------------
class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class AutomationActionOut(_Open):
    """One action of one firing, recorded before it is taken."""

    id: str
    automation_id: str | None = None
    automation_name: str | None = None
    firing_id: str | None = None
    position: int | None = None
    type: str | None = None
    status: str = Field(description="pending, running, done, failed or skipped.")
    action: dict[str, Any] | None = Field(default=None, description="The action's spec (masked).")
    created: str | None = None
    started: str | None = None
    finished: str | None = None
    flow_run_id: str | None = Field(default=None, description="The flow run a run-deployment action made.")
    result: Any = None
    error: str | None = None
    event_id: str | None = Field(default=None, description="The event that fired the trigger.")
    event_kind: str | None = None


class AutomationOut(_Open):
    """An automation: its trigger and actions. ``source``: null (made through the API or the
    CLI), ``"deployment:<id>"`` (made by ``plait deploy``) or ``"notification-rule"``
    (read-only)."""

    id: str
    name: str
    description: str = ""
    enabled: bool
    trigger: dict[str, Any]
    actions: list[dict[str, Any]]
    source: str | None = None
    read_only: bool | None = Field(default=None, description="True for a notification rule.")
    created: str | None = None
    updated: str | None = None


class AutomationDetailOut(AutomationOut):
    recent_actions: list[AutomationActionOut] = Field(default_factory=list, description="The last 20, newest first.")


class AutomationsPage(BaseModel):
    items: list[AutomationOut]
    next_cursor: str | None = Field(default=None, description="Always null: every automation is in one page.")


class AutomationActionsPage(BaseModel):
    items: list[AutomationActionOut]
    next_cursor: str | None = Field(default=None, description="Always null.")


class SavedAutomationOut(BaseModel):
    automation: AutomationOut
    outcome: Literal["created", "updated", "unchanged"]


# -- errors ----------------------------------------------------------------------------------------
def _missing(key: str) -> Callable[[str], ApiProblem]:
    def problem(message: str = "") -> ApiProblem:
        return ApiProblem(
            404, "automation_not_found",
            message or f"no automation {key!r}; `plait automation ls` (GET /automations) lists them",
            {"resource": "automation", "id": key},
        )
    return problem


def _invalid(message: str) -> ApiProblem:
    return refusal(422, "invalid_automation", message)


def _conflict(message: str) -> ApiProblem:
    return refusal(409, "automation_read_only", message)


def _shown(row: dict[str, Any]) -> Any:
    from plait.automations._manage import shown_automation

    return answer(shown_automation(row))


def _find(db: Database, key: str) -> dict[str, Any]:
    from plait.automations._manage import find_automation

    return store_call(lambda: find_automation(db, key), missing=_missing(key), refused=lambda m: _missing(key)(m))


def _changeable(db: Database, row: dict[str, Any], what: str, *, deployments_too: bool) -> None:
    from plait.automations._manage import refusal_to_change

    why = refusal_to_change(db, row, what, deployments_too=deployments_too)
    if why is not None:
        raise _conflict(why)


# -- routes ----------------------------------------------------------------------------------------
@router.get("/automations", response_model=AutomationsPage, **ROWS, responses=ERROR_RESPONSES,
            summary="List automations")
def list_automations(db: Store, caller: Reader) -> Any:
    """Every automation by name, the notification rules among them (read-only, ``source``
    ``"notification-rule"``)."""
    from plait.automations._manage import all_automations

    return {"items": [_shown(r) for r in all_automations(db)], "next_cursor": None}


@router.post("/automations", response_model=SavedAutomationOut, **ROWS, status_code=201,
             responses={**CONFLICTS, 200: {"model": SavedAutomationOut,
                                           "description": "An automation of that name, updated or unchanged"}},
             summary="Create or update an automation")
def save_automation(
    spec: Annotated[JsonObject, Body(description="The automation: name, description, enabled, trigger, actions "
                                                 "(docs/automations.md).", examples=[_EXAMPLE])],
    response: Response, db: Store, caller: Admin,
) -> Any:
    """Save an automation by its name (needs scope admin): 201 when created, 200 when an
    automation of that name was updated or found unchanged (``outcome`` says which). 422
    names each bad field by its path (``trigger.within``, ``actions.0.deployment``, a
    template's line and column); 409 when a deployment manages the automation of that name."""
    from plait.automations._manage import AutomationReadOnly, save_checked, validated
    from plait.automations._model import AutomationSpecError

    try:
        checked = validated(spec)
    except AutomationSpecError as exc:
        raise _invalid(str(exc)) from None
    try:
        row, outcome = save_checked(db, checked)
    except AutomationReadOnly as exc:
        raise _conflict(str(exc)) from None
    except (KeyError, IndexError):
        raise
    except (LookupError, ValueError) as exc:
        raise _invalid(str(exc)) from None
    response.status_code = 201 if outcome == "created" else 200
    return {"automation": _shown(row), "outcome": outcome}


@router.get("/automations/{key:path}/actions", response_model=AutomationActionsPage, **ROWS,
            responses=ERROR_RESPONSES, summary="List the actions of an automation")
def list_automation_actions(
    key: Key,
    db: Store,
    caller: Reader,
    status: Annotated[Literal["pending", "running", "done", "failed", "skipped"] | None,
                      Query(description="Only actions in this status.")] = None,
    limit: int = limit_query(100, 1000),
) -> Any:
    """The actions the automation took or is taking, newest first; a deleted automation's
    are still listed by its name (a notification rule has none: its deliveries are not
    recorded as actions)."""
    from plait._store.automations import list_automation_actions as stored_actions
    from plait.automations._manage import shown_action
    from plait.automations._rules import SOURCE

    try:
        row: dict[str, Any] | None = _find(db, key)
    except ApiProblem:
        row = None
    if row is not None and row.get("source") == SOURCE:
        return {"items": [], "next_cursor": None}
    found = store_call(lambda: stored_actions(db, automation=row["id"] if row else key, status=status, limit=limit),
                       missing=_missing(key), refused=_invalid)
    if row is None and not found:
        raise _missing(key)("")
    return {"items": [answer(shown_action(a)) for a in found], "next_cursor": None}


def _set_enabled(db: Database, key: str, enabled: bool) -> Any:
    from plait._store.automations import set_automation_enabled

    row = _find(db, key)
    _changeable(db, row, "enable" if enabled else "disable", deployments_too=False)
    changed = store_call(lambda: set_automation_enabled(db, row["id"], enabled), missing=_missing(key),
                         refused=_conflict)
    return _shown(changed)


@router.post("/automations/{key:path}/enable", response_model=AutomationOut, **ROWS, responses=CONFLICTS,
             summary="Enable an automation")
def enable_automation(key: Key, db: Store, caller: Admin) -> Any:
    """Enable it (needs scope admin): its trigger counts the events that follow."""
    return _set_enabled(db, key, True)


@router.post("/automations/{key:path}/disable", response_model=AutomationOut, **ROWS, responses=CONFLICTS,
             summary="Disable an automation")
def disable_automation(key: Key, db: Store, caller: Admin) -> Any:
    """Disable it (needs scope admin): it takes no action until enabled again."""
    return _set_enabled(db, key, False)


@router.get("/automations/{key:path}", response_model=AutomationDetailOut, **ROWS, responses=ERROR_RESPONSES,
            summary="Get an automation")
def get_automation(key: Key, db: Store, caller: Reader) -> Any:
    """One automation by name or id, with ``recent_actions``: its last 20, newest first."""
    from plait.automations._manage import with_recent_actions

    row = _find(db, key)
    return _shown(store_call(lambda: with_recent_actions(db, row), missing=_missing(key), refused=_invalid))


@router.delete("/automations/{key:path}", response_model=AutomationOut, **ROWS, responses=CONFLICTS,
               summary="Delete an automation")
def delete_automation(key: Key, db: Store, caller: Admin) -> Any:
    """Delete it (needs scope admin); answers what was deleted. 409 for one a deployment or a
    notification rule manages."""
    from plait._store.automations import delete_automation as stored_delete

    row = _find(db, key)
    _changeable(db, row, "delete", deployments_too=True)
    return _shown(store_call(lambda: stored_delete(db, row["id"]), missing=_missing(key), refused=_conflict))
