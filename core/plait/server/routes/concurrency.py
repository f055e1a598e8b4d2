"""Concurrency limits over the API: save (create / update / unchanged), list, get (with the
slots held and who holds them), delete, reset, and the two calls a holder makes: acquire
slots of some limits (all or none, atomically in the store) and release them.

A limit's name is what task runs are tagged with, so it may hold a ``/`` (percent-encoded
or not in a path). ``plait.concurrency`` and ``plait.rate_limit`` in a process whose
settings name this server (``PLAIT_API_URL``) acquire and release through these routes;
the server's crash detector ends the runs of dead processes, whose slots are then freed on
the next acquisition of their limits.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from plait._masking import mask
from plait._store.database import Database
from plait.server._deps import Caller, database, require
from plait.server._errors import ERROR_RESPONSES, ApiProblem
from plait.server._wire import RunId
from plait.server.routes.deployments import ROWS, answer, refusal, store_call

__all__ = ["router"]

router = APIRouter(tags=["concurrency limits"])

Store = Annotated[Database, Depends(database)]
Reader = Annotated[Caller, Depends(require("read"))]
Runner = Annotated[Caller, Depends(require("run"))]
Admin = Annotated[Caller, Depends(require("admin"))]

_NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"  # no control characters; "/" allowed (tags may hold one)
_MAX_SLOTS = 1_000_000


def _no_surrogates(text: str) -> str:
    if not text.isascii() and any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        raise ValueError("a text holds an unpaired surrogate code point (e.g. \\ud800), which is not valid UTF-8")
    return text


LimitName = Annotated[str, Field(min_length=1, max_length=200, pattern=_NAME_PATTERN), AfterValidator(_no_surrogates)]
NamePath = Annotated[str, Path(min_length=1, max_length=200, pattern=_NAME_PATTERN, examples=["db"],
                               description="The limit's name (a '/' in it may be percent-encoded).")]
SlotId = Annotated[str, Field(min_length=1, max_length=36, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]


# -- models ----------------------------------------------------------------------------------------
class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ConcurrencySlotOut(_Open):
    """Slots of a limit held by one holder."""

    id: str
    limit_name: str
    occupy: int = Field(description="How many slots it holds.")
    flow_run_id: str | None = None
    task_run_id: str | None = None
    hostname: str | None = None
    pid: int | None = None
    label: str | None = Field(default=None, description="Who holds it, for people.")
    acquired_at: str | None = None


class ConcurrencyLimitOut(_Open):
    """A concurrency limit; the single-item route adds the slots held of it."""

    name: str
    limit: int = Field(description="Slots.")
    slot_decay_per_second: float = Field(description="Slots that drain away per second (above 0: a rate limit).")
    active: bool = Field(description="False: it constrains nothing.")
    description: str | None = None
    level: float | None = Field(default=None, description="The rate bucket's fill as of level_at.")
    level_at: str | None = None
    used: float = Field(description="Slots in use now: held ones plus the rate bucket's decayed fill.")
    slots: list[ConcurrencySlotOut] | None = None
    created: str | None = None
    updated: str | None = None


class ConcurrencyLimitsPage(BaseModel):
    items: list[ConcurrencyLimitOut]
    next_cursor: str | None = Field(default=None, description="Always null: every limit is in one page.")


class ConcurrencyLimitIn(BaseModel):
    """A limit's settings (``plait concurrency-limit create NAME N [--per-second R]``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"limit": 2}, {"limit": 5, "slot_decay_per_second": 10}]})

    limit: int = Field(ge=0, le=_MAX_SLOTS, description="Slots.")
    slot_decay_per_second: float = Field(default=0.0, ge=0, le=1_000_000.0, allow_inf_nan=False,
                                         description="Slots that drain away per second; above 0 it serves "
                                         "plait.rate_limit too.")
    active: bool = Field(default=True, description="False: it constrains nothing (kept for later).")
    description: str = Field(default="", max_length=20000, pattern=r"^[^\x00]*$")


class SavedConcurrencyLimitOut(BaseModel):
    limit: ConcurrencyLimitOut
    outcome: Literal["created", "updated", "unchanged"]


class ResetOut(BaseModel):
    name: str
    freed: int = Field(description="Slot rows freed.")


class AcquireIn(BaseModel):
    """Take ``occupy`` slots of each named limit that is active, all or none."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "names": ["db"], "occupy": 1, "hostname": "build-7", "pid": 4242, "label": "task run load-1",
    }]})

    names: list[LimitName] = Field(min_length=1, max_length=50, description="Limits' names (no limit: no constraint).")
    occupy: int = Field(default=1, ge=1, le=_MAX_SLOTS, description="Slots to take of each.")
    mode: Literal["concurrency", "rate"] = Field(
        default="concurrency", description="concurrency: held until released; rate: drain away by the limit's "
        "slot_decay_per_second.")
    flow_run_id: RunId | None = None
    task_run_id: RunId | None = None
    hostname: str = Field(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$",
                          description="Where the holder runs.")
    pid: int | None = Field(default=None, ge=0, le=2**31 - 1)
    label: Annotated[str, AfterValidator(_no_surrogates)] = Field(
        default="", max_length=1000, pattern=r"^[^\x00]*$", description="Who holds the slots, for people.")


class AcquireOut(BaseModel):
    acquired: bool
    slot_ids: list[str] = Field(description="The slots taken (mode concurrency): release them when done.")
    blocked_by: str | None = Field(description="The first full limit, when not acquired.")
    used: dict[str, float] = Field(description="Slots in use of each active limit named, after this call.")
    limits: dict[str, int] = Field(description="The slots of each active limit named.")
    missing: list[str] = Field(description="Names given that have no limit (they constrain nothing).")
    retry_after: float | None = Field(description="Mode rate: seconds until enough has drained (at least).")


class ReleaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slot_ids: list[SlotId] = Field(max_length=500, description="What acquire answered (unknown ids are ignored).")


class ReleaseOut(BaseModel):
    released: int = Field(description="Slot rows deleted.")


# -- errors ----------------------------------------------------------------------------------------
def _missing(name: str) -> Any:
    def problem(message: str = "") -> ApiProblem:
        return ApiProblem(
            404, "concurrency_limit_not_found",
            message or f"no concurrency limit {name!r}; create it with `plait concurrency-limit create {name} N`",
            {"resource": "concurrency limit", "id": name},
        )
    return problem


def _invalid(code: str) -> Any:
    return lambda message: refusal(422, code, message)


def _shown(row: dict[str, Any]) -> Any:
    """A limit as answered: times as text, its description and its holders' labels masked."""
    shown = answer(row)
    for slot in shown.get("slots") or ():
        slot["label"] = mask(slot.get("label") or "")
    return shown


def _find(db: Database, name: str) -> dict[str, Any]:
    from plait._store.concurrency import get_limit

    found = get_limit(db, name)
    if found is None:
        raise _missing(name)()
    return found


# -- routes ----------------------------------------------------------------------------------------
@router.get("/concurrency-limits", response_model=ConcurrencyLimitsPage, **ROWS, responses=ERROR_RESPONSES,
            summary="List concurrency limits")
def list_concurrency_limits(db: Store, caller: Reader) -> Any:
    """Every concurrency limit by name, each with the slots in use (``used``)."""
    from plait._store.concurrency import list_limits

    return {"items": [_shown(r) for r in list_limits(db)], "next_cursor": None}


@router.post("/concurrency-limits/acquire", response_model=AcquireOut, responses=ERROR_RESPONSES,
             summary="Acquire slots of concurrency limits")
def acquire_concurrency_slots(body: AcquireIn, db: Store, caller: Runner) -> Any:
    """Take ``occupy`` slots of each named limit that is active, all or none (``acquired``
    false names the full limit in ``blocked_by``; try again later). Names with no limit
    constrain nothing. Slots of flow runs that have ended are freed first. 422 when it can
    never fit (``occupy`` above a limit) or mode ``rate`` meets a limit without slot decay."""
    from plait._store.concurrency import acquire_slots

    holder = body.model_dump(include={"flow_run_id", "task_run_id", "hostname", "pid", "label"})
    holder["label"] = mask(body.label)  # a secret the server knows is never stored, even in a label
    return store_call(
        lambda: acquire_slots(db, body.names, body.occupy, mode=body.mode, holder=holder),
        missing=_invalid("invalid_acquisition"), refused=_invalid("invalid_acquisition"),
    )


@router.post("/concurrency-limits/release", response_model=ReleaseOut, responses=ERROR_RESPONSES,
             summary="Release slots of concurrency limits")
def release_concurrency_slots(body: ReleaseIn, db: Store, caller: Runner) -> Any:
    """Let go of slots that acquire answered (ids the store does not know are ignored)."""
    from plait._store.concurrency import release_slots

    released = store_call(lambda: release_slots(db, body.slot_ids), missing=_invalid("invalid_release"),
                          refused=_invalid("invalid_release"))
    return {"released": released}


@router.get("/concurrency-limits/{name:path}", response_model=ConcurrencyLimitOut, **ROWS, responses=ERROR_RESPONSES,
            summary="Get a concurrency limit")
def get_concurrency_limit(name: NamePath, db: Store, caller: Reader) -> Any:
    """One limit with its ``slots``: who holds them (labels, hosts, process ids), oldest first."""
    return _shown(_find(db, name))


@router.put("/concurrency-limits/{name:path}", response_model=SavedConcurrencyLimitOut, **ROWS,
            responses=ERROR_RESPONSES, summary="Create or change a concurrency limit")
def save_concurrency_limit(name: NamePath, body: ConcurrencyLimitIn, db: Store, caller: Runner) -> Any:
    """Save a limit by name: ``outcome`` says whether it was created, updated or found
    unchanged. Slots held stay held (a lower limit lets no new holder in until enough leave).
    A secret the server knows is masked in the description before it is stored."""
    from plait._store.concurrency import save_limit

    row, outcome = store_call(
        lambda: save_limit(db, name, body.limit, slot_decay_per_second=body.slot_decay_per_second,
                           active=body.active, description=mask(body.description)),
        missing=_invalid("invalid_concurrency_limit"), refused=_invalid("invalid_concurrency_limit"),
    )
    return {"limit": _shown(row), "outcome": outcome}


@router.delete("/concurrency-limits/{name:path}", response_model=ConcurrencyLimitOut, **ROWS,
               responses=ERROR_RESPONSES, summary="Delete a concurrency limit")
def delete_concurrency_limit(name: NamePath, db: Store, caller: Admin) -> Any:
    """Delete a limit and the slots held of it (needs scope admin); its name then constrains
    nothing. Answers what was deleted."""
    from plait._store.concurrency import delete_limit

    found = _find(db, name)
    if not store_call(lambda: delete_limit(db, name), missing=_missing(name),
                      refused=_invalid("invalid_concurrency_limit")):
        raise _missing(name)()
    return _shown(found)


@router.post("/concurrency-limits/{name:path}/reset", response_model=ResetOut, responses=ERROR_RESPONSES,
             summary="Free every slot of a concurrency limit")
def reset_concurrency_limit(name: NamePath, db: Store, caller: Runner) -> Any:
    """Free every slot held of the limit and empty its rate bucket (for holders that are gone
    in a way nothing noticed)."""
    from plait._store.concurrency import reset_limit

    freed = store_call(lambda: reset_limit(db, name), missing=_missing(name),
                       refused=_invalid("invalid_concurrency_limit"))
    return {"name": name, "freed": freed}
