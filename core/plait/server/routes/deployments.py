"""Deployments over the API: save (create / update / unchanged), list, get, pause, resume,
delete, create a run, and the claim a ``serve`` process makes for its own deployment.

A deployment is named ``"<flow_name>/<deployment_name>"``; routes take that full name (its
``/`` percent-encoded or not) or the deployment's id. The shared pieces of the control-plane
routes (``work_pools``, ``control``) live here too: the JSON checks of request bodies
(nothing a backend cannot store gets in), the answer shaping (times as ISO 8601 UTC text,
user values masked) and the mapping of store refusals to API errors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from plait._masking import mask
from plait._store.database import Database
from plait.server._deps import Caller, database, require
from plait.server._errors import ERROR_RESPONSES, ApiProblem, ErrorOut
from plait.server._params import CursorQuery, HeldRunId, limit_query
from plait.server._wire import ID_PATTERN

__all__ = [
    "router",
    "ROWS",
    "NAME_PATTERN",
    "JsonObject",
    "Name",
    "OptionalText",
    "DeploymentOut",
    "FlowRunOut",
    "ClaimedRunOut",
    "ClaimedPage",
    "answer",
    "refusal",
    "store_call",
    "utc_or_none",
]

router = APIRouter(tags=["deployments"])

T = TypeVar("T")
Store = Annotated[Database, Depends(database)]
Reader = Annotated[Caller, Depends(require("read"))]
Runner = Annotated[Caller, Depends(require("run"))]
Admin = Annotated[Caller, Depends(require("admin"))]

# Names are one path segment: no control characters (PostgreSQL stores no NUL) and no "/",
# which separates a flow's name from its deployment's in "flow/name".
NAME_PATTERN = r"^[^\x00-\x1f\x7f/]+$"
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"
_MASKED_KEYS = frozenset({
    "parameters", "job_variables", "base_job_variables", "description", "state_message", "resume_input",
    "message", "reason",
})
_MAX_DEPTH = 64
# Answers carry the fields the store's rows have, no more: a declared field a row lacks is
# left out rather than answered as null (local and remote control planes answer alike).
ROWS: dict[str, Any] = {"response_model_exclude_unset": True}


# -- what a body may hold --------------------------------------------------------------------------
def _storable(value: Any) -> Any:
    """``value`` (decoded JSON) if every backend can store it: no NUL or lone surrogate in
    any text (keys too), no NaN or infinity, at most 64 levels deep.

    Raises:
        ValueError: Naming what is wrong (pydantic turns it into a 422 naming the field).
    """
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if depth > _MAX_DEPTH:
            raise ValueError(f"nested deeper than {_MAX_DEPTH} levels")
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError("holds NaN or an infinity, which JSON cannot carry")
        elif isinstance(item, dict):
            for key, inner in item.items():
                _check_text(str(key))
                pending.append((inner, depth + 1))
        elif isinstance(item, list):
            pending.extend((inner, depth + 1) for inner in item)
    return value


def _check_text(text: str) -> str:
    if "\x00" in text:
        raise ValueError("a text holds a NUL character, which no database stores")
    if not text.isascii() and any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        raise ValueError("a text holds an unpaired surrogate code point (e.g. \\ud800), which is not valid UTF-8")
    return text


JsonObject = Annotated[dict[str, Any], AfterValidator(_storable)]
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=NAME_PATTERN), AfterValidator(_check_text)]
OptionalText = Annotated[str | None, Field(default=None, max_length=4000, pattern=TEXT_PATTERN)]
Tag = Annotated[str, Field(min_length=1, max_length=200, pattern=TEXT_PATTERN), AfterValidator(_check_text)]
RunId = Annotated[str, Field(min_length=1, max_length=36, pattern=ID_PATTERN)]


def utc_or_none(value: datetime | None) -> datetime | None:
    """A time from a body in UTC (one without an offset is taken to be UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# -- answers ---------------------------------------------------------------------------------------
def _iso(moment: datetime) -> str:
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)).isoformat()


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked(v) for v in value]
    if isinstance(value, datetime):
        return _iso(value)
    return value


def answer(value: Any, *, masked: bool = True) -> Any:
    """A store row (or rows) as the API answers it: times as ISO 8601 text in UTC, and the
    values users write (parameters, job variables, descriptions, messages) masked, so a
    secret the server knows never leaves it.

    ``masked=False`` is for the one answer that must carry the values as stored: a claim,
    whose runs a worker starts with them (as a key of scope run may read blocks' secrets).
    """
    if isinstance(value, dict):
        return {k: _masked(v) if masked and k in _MASKED_KEYS else answer(v, masked=masked)
                for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [answer(v, masked=masked) for v in value]
    if isinstance(value, datetime):
        return _iso(value)
    return value


def refusal(status: int, code: str, message: str, field: str | None = None) -> ApiProblem:
    """An API error; with ``field``, its detail names the body field at fault."""
    detail = [{"in": "body", "field": field, "message": message, "type": "value_error"}] if field else None
    return ApiProblem(status, code, message, detail)


def store_call(
    call: Callable[[], T],
    *,
    missing: Callable[[str], ApiProblem],
    refused: Callable[[str], ApiProblem],
) -> T:
    """``call()``, with the store's refusals as API errors: ``LookupError`` -> ``missing``,
    ``ValueError`` -> ``refused`` (each given the store's message).

    Raises:
        ApiProblem: As above.
        DatabaseError: The store failed (503 for the client).
    """
    try:
        return call()
    except (KeyError, IndexError):
        raise  # a bug, not an unknown name: a 500 with the traceback in the server log
    except LookupError as exc:
        raise missing(str(exc)) from None
    except ValueError as exc:
        raise refused(str(exc)) from None


def _deployment_missing(ref: str) -> Callable[[str], ApiProblem]:
    def problem(message: str = "") -> ApiProblem:
        return ApiProblem(
            404, "deployment_not_found",
            message or f"no deployment {ref!r}; give 'flow_name/deployment_name' or its id (see GET /deployments)",
            {"resource": "deployment", "id": ref},
        )
    return problem


def _invalid(message: str) -> ApiProblem:
    return refusal(422, "invalid_deployment", message)


def _conflict(message: str) -> ApiProblem:
    return refusal(409, "conflict", message)


# -- models ----------------------------------------------------------------------------------------
class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ScheduleIn(BaseModel):
    """One schedule of a deployment: ``cron`` (with ``cron``), ``interval`` (with
    ``interval_seconds`` and an optional ``anchor``) or ``rrule`` (with ``rrule``), in
    ``timezone``; its runs get the deployment's parameters updated by ``parameters``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"kind": "cron", "cron": "30 2 * * *", "timezone": "Europe/Paris"},
                     {"kind": "interval", "interval_seconds": 3600}]
    })

    kind: Literal["cron", "interval", "rrule"]
    cron: str | None = Field(default=None, min_length=1, max_length=200, pattern=TEXT_PATTERN)
    interval_seconds: float | None = Field(default=None, gt=0, le=366 * 24 * 3600.0)
    anchor: datetime | None = Field(default=None, description="Interval schedules: a moment the slots line up on.")
    rrule: str | None = Field(default=None, min_length=1, max_length=4000, pattern=r"^[^\x00]*$")
    timezone: str = Field(default="UTC", min_length=1, max_length=100, pattern=TEXT_PATTERN)
    active: bool = True
    parameters: JsonObject = Field(default_factory=dict)


class DeploymentIn(BaseModel):
    """A deployment's spec (what ``plait deploy`` and ``Flow.deploy()`` send). Saving it again
    unchanged answers ``unchanged``; ``schedules: null`` keeps the saved schedules, ``[]``
    clears them."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "flow_name": "etl", "name": "nightly", "entrypoint": "/srv/flows/etl.py:etl", "work_pool_name": "default",
        "parameters": {"day": "today"}, "schedules": [{"kind": "cron", "cron": "0 3 * * *"}],
    }]})

    flow_name: Name
    name: Name
    entrypoint: str = Field(min_length=1, max_length=4000, pattern=TEXT_PATTERN,
                            description="'path/to/file.py:flow_function' or 'module:flow_function'.")
    path: OptionalText = Field(default=None, description="Working directory the flow runs in.")
    storage_block: str | None = Field(default=None, min_length=3, max_length=401, pattern=r"^[^\x00-\x1f\x7f/]+/"
                                      r"[^\x00-\x1f\x7f/]+$", description="'slug/name' of a storage block holding "
                                      "the code bundle.")
    bundle_key: OptionalText = Field(default=None, description="Where the bundle is in the storage block.")
    parameters: JsonObject = Field(default_factory=dict, description="Default parameters of its runs.")
    parameter_schema: JsonObject = Field(default_factory=dict, description="JSON schema of the flow's parameters.")
    tags: list[Tag] = Field(default_factory=list, max_length=100)
    description: str = Field(default="", max_length=20000, pattern=r"^[^\x00]*$")
    version: str | None = Field(default=None, min_length=1, max_length=200, pattern=TEXT_PATTERN)
    work_pool_name: Name | None = None
    work_queue_name: Name | None = None
    job_variables: JsonObject = Field(default_factory=dict)
    concurrency_limit: int | None = Field(default=None, ge=1, le=2**31 - 1,
                                          description="Most runs of it active at once.")
    collision_strategy: Literal["enqueue", "cancel_new"] = Field(
        default="enqueue", description="At the concurrency limit: leave a run scheduled, or cancel it.")
    catchup: Literal["all", "latest", "none"] = Field(
        default="all", description="Due runs of past slots: run all in order, only the latest, or none.")
    max_active_runs: int | None = Field(default=None, ge=1, le=2**31 - 1)
    retries: int = Field(default=0, ge=0, le=1000, description="Runs again a run that crashed, this many times.")
    paused: bool = False
    schedules: list[ScheduleIn] | None = Field(default=None, max_length=100)
    triggers: list[JsonObject] | None = Field(
        default=None, max_length=50, description="Events that run it (automations it owns, see /automations): "
        "null keeps the saved ones, [] removes them.")


class DeploymentOut(_Open):
    """A deployment, with its schedules."""

    id: str
    flow_name: str
    name: str
    entrypoint: str | None = None
    parameters: Any = None
    tags: list[str] = Field(default_factory=list)
    work_pool_name: str | None = None
    work_queue_name: str | None = None
    paused: bool | None = None
    schedules: list[dict[str, Any]] = Field(default_factory=list)
    triggers: list[str] | None = Field(default=None, description="Names of its trigger automations (when saved).")
    created: str | None = None
    updated: str | None = None


class SavedDeploymentOut(BaseModel):
    deployment: DeploymentOut
    outcome: Literal["created", "updated", "unchanged"]


class DeploymentsPage(BaseModel):
    items: list[DeploymentOut]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next page.")


class FlowRunOut(_Open):
    """A flow run as the control plane made or moved it (``GET /flow-runs/{id}`` has its
    history)."""

    id: str
    flow_name: str
    name: str | None = None
    state_type: str
    state_name: str | None = None
    parameters: Any = None
    deployment_id: str | None = None
    work_pool_name: str | None = None
    work_queue_name: str | None = None
    expected_start_time: str | None = None
    idempotency_key: str | None = None
    created: str | None = None


class CreatedRunOut(FlowRunOut):
    new: bool = Field(description="False: the run made earlier with this idempotency key.")


class ClaimedRunOut(FlowRunOut):
    """A claimed flow run (now Pending) with the deployment it runs."""

    deployment: DeploymentOut | None = None


class ClaimedPage(BaseModel):
    items: list[ClaimedRunOut]
    next_cursor: str | None = Field(default=None, description="Always null.")


class RunIn(BaseModel):
    """A run of a deployment: Scheduled, to be claimed by a worker (or a ``serve``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"parameters": {"day": "2024-06-01"}}]})

    parameters: JsonObject = Field(default_factory=dict, description="Override the deployment's parameters.")
    expected_start_time: datetime | None = Field(default=None, description="When it may start (default: now).")
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$",
                                        description="A second request with this key answers the first run.")
    parent_flow_run_id: RunId | None = None
    parent_task_run_id: RunId | None = None
    job_variables: JsonObject | None = None


class DeploymentClaimIn(BaseModel):
    """A ``serve`` process asking for its deployment's due runs."""

    model_config = ConfigDict(extra="forbid")

    runner_id: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$",
                           description="Who claims (a serve process's id).")
    limit: int = Field(default=1, ge=1, le=100)
    holding: list[HeldRunId] | None = Field(
        default=None, max_length=1000,
        description="Ids of the runs it is running: its Pending claims not among them are answered again.")


Ref = Annotated[str, Path(min_length=1, max_length=401, pattern=r"^[^\x00-\x1f\x7f]+$",
                          description="'flow_name/deployment_name' (the '/' may be percent-encoded) or the id.",
                          examples=["etl/nightly"])]
_CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": ErrorOut, "description": "Conflicts with what is stored"}}
CONFLICTS = {**ERROR_RESPONSES, **_CONFLICT}


# -- routes ----------------------------------------------------------------------------------------
def _find(db: Database, ref: str) -> dict[str, Any]:
    from plait._store.deployments import get_deployment

    missing = _deployment_missing(ref)
    found = store_call(lambda: get_deployment(db, ref), missing=missing, refused=lambda _m: missing(""))
    if found is None:
        raise missing("")
    return found


def _check_schedules(spec: DeploymentIn) -> None:
    """Refuse a schedule the scheduler could not plan, naming it (when ``plait.schedules`` is
    installed: it knows cron, rrule and time zone syntax)."""
    if not spec.schedules:
        return
    try:
        from plait.schedules import schedule_from_spec
    except ImportError:  # pragma: no cover - part of plait; absent only while being built
        return
    for i, schedule in enumerate(spec.schedules):
        try:
            schedule_from_spec(schedule.model_dump())
        except (ValueError, TypeError) as exc:
            field = f"schedules.{i}"
            raise refusal(422, "invalid_schedule", f"field {field!r}: {exc}", field) from None


@router.get("/deployments", response_model=DeploymentsPage, **ROWS, responses=ERROR_RESPONSES,
            summary="List deployments")
def list_deployments(
    db: Store,
    caller: Reader,
    flow_name: Annotated[str | None, Query(min_length=1, max_length=200, pattern=NAME_PATTERN,
                                           description="Only deployments of this flow.")] = None,
    work_pool: Annotated[str | None, Query(min_length=1, max_length=200, pattern=NAME_PATTERN,
                                           description="Only deployments run by this work pool.")] = None,
    limit: int = limit_query(100, 500),
    cursor: CursorQuery = None,
) -> Any:
    """Deployments by flow name then name, with their schedules."""
    from plait._store.deployments import list_deployments as page

    def bad(message: str) -> ApiProblem:
        if "cursor" in message.lower():
            return ApiProblem(400, "bad_cursor", f"{message}; pass the next_cursor of a page of this same list, or "
                              "leave cursor out for the first page")
        return ApiProblem(400, "bad_request", message)

    rows, next_cursor = store_call(
        lambda: page(db, flow_name=flow_name, work_pool=work_pool, limit=limit, cursor=cursor),
        missing=lambda m: ApiProblem(404, "not_found", m), refused=bad,
    )
    return {"items": answer(rows), "next_cursor": next_cursor}


@router.post("/deployments", response_model=SavedDeploymentOut, **ROWS, responses={**ERROR_RESPONSES, **_CONFLICT},
             summary="Create or update a deployment")
def save_deployment(spec: DeploymentIn, db: Store, caller: Runner) -> Any:
    """Save a deployment by its flow name and name: ``outcome`` says whether it was created,
    updated or found unchanged. Changing or clearing its schedules drops its future runs
    that the scheduler made (they are planned again)."""
    from plait._store.deployments import save_deployment as save

    _check_schedules(spec)
    body = spec.model_dump()
    if body["schedules"] is not None:
        for schedule in body["schedules"]:
            schedule["anchor"] = utc_or_none(schedule["anchor"])
    row, outcome = store_call(lambda: save(db, body), missing=_invalid, refused=_invalid)
    return {"deployment": answer(row), "outcome": outcome}


@router.get("/deployments/{ref:path}", response_model=DeploymentOut, **ROWS, responses=ERROR_RESPONSES,
            summary="Get one deployment")
def get_deployment(ref: Ref, db: Store, caller: Reader) -> Any:
    """One deployment with its schedules, by 'flow_name/deployment_name' or id."""
    return answer(_find(db, ref))


@router.delete("/deployments/{ref:path}", response_model=DeploymentOut, **ROWS, responses=CONFLICTS,
               summary="Delete a deployment")
def delete_deployment(ref: Ref, db: Store, caller: Admin) -> Any:
    """Delete a deployment (needs scope admin); its runs not yet started end Cancelled.
    Answers what was deleted."""
    from plait._store.deployments import delete_deployment as delete

    found = _find(db, ref)
    missing = _deployment_missing(ref)
    if not store_call(lambda: delete(db, found["id"]), missing=missing, refused=_conflict):
        raise missing("")
    return answer(found)


def _pause(db: Database, ref: str, paused: bool) -> Any:
    from plait._store.deployments import set_deployment_paused

    found = _find(db, ref)
    row = store_call(lambda: set_deployment_paused(db, found["id"], paused), missing=_deployment_missing(ref),
                     refused=_conflict)
    return answer(row)


@router.post("/deployments/{ref:path}/pause", response_model=DeploymentOut, **ROWS, responses=CONFLICTS,
             summary="Pause a deployment")
def pause_deployment(ref: Ref, db: Store, caller: Runner) -> Any:
    """Pause it: the scheduler makes no runs for it, its future scheduled runs are dropped,
    and nobody claims its runs until it is resumed."""
    return _pause(db, ref, True)


@router.post("/deployments/{ref:path}/resume", response_model=DeploymentOut, **ROWS, responses=CONFLICTS,
             summary="Resume a paused deployment")
def resume_deployment(ref: Ref, db: Store, caller: Runner) -> Any:
    """Resume it: its schedules are planned again."""
    return _pause(db, ref, False)


@router.post("/deployments/{ref:path}/runs", response_model=CreatedRunOut, **ROWS, status_code=201,
             responses={**ERROR_RESPONSES, **_CONFLICT,
                        200: {"model": CreatedRunOut, "description": "The run made earlier with this idempotency key"}},
             summary="Create a run of a deployment")
def create_deployment_run(ref: Ref, run: RunIn, response: Response, db: Store, caller: Runner) -> Any:
    """A new Scheduled run of the deployment (201), its parameters the deployment's updated
    by the ones given; with an ``idempotency_key`` used before, the run made then (200)."""
    from plait._store.scheduling import create_flow_run
    from plait.deployments._control import check_run_parameters

    found = _find(db, ref)
    try:
        check_run_parameters(found, run.parameters)
    except ValueError as exc:
        raise refusal(422, "invalid_parameters", str(exc), "parameters") from None
    start = utc_or_none(run.expected_start_time) or datetime.now(UTC)
    row, created = store_call(
        lambda: create_flow_run(
            db, found, parameters=run.parameters, expected_start_time=start, idempotency_key=run.idempotency_key,
            job_variables=run.job_variables, parent_flow_run_id=run.parent_flow_run_id,
            parent_task_run_id=run.parent_task_run_id,
        ),
        missing=_deployment_missing(ref), refused=lambda m: refusal(409, "conflict", m),
    )
    response.status_code = 201 if created else 200
    return answer({**row, "new": created})


@router.post("/deployments/{ref:path}/claim", response_model=ClaimedPage, **ROWS, responses=CONFLICTS,
             summary="Claim due runs of a deployment (serve)")
def claim_deployment_runs(ref: Ref, claim: DeploymentClaimIn, db: Store, caller: Runner) -> Any:
    """What a ``serve`` process asks each poll: its deployment's due Scheduled runs, moved to
    Pending and claimed by ``runner_id`` (each run is claimed once, whoever asks). Marks the
    deployment as polled (``last_polled_at``)."""
    from plait._store.deployments import touch_deployment
    from plait._store.scheduling import claim_deployment_runs as claim_runs

    found = _find(db, ref)
    missing = _deployment_missing(ref)
    store_call(lambda: touch_deployment(db, found["id"]), missing=missing, refused=_conflict)
    items = store_call(lambda: claim_runs(db, found["id"], claim.runner_id, limit=claim.limit,
                                          holding=claim.holding, now=None),
                       missing=missing, refused=_conflict)
    return {"items": answer(items, masked=False), "next_cursor": None}
