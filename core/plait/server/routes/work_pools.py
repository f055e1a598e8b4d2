"""Work pools over the API: create, list, get (with queues and workers), change, pause,
resume, delete, save a queue, and the two calls a worker makes each poll: a heartbeat
(answering which of its runs are being cancelled) and a claim of due runs.

A pool is typed by an infrastructure kind (``process`` built in; collections add more):
the server stores the kind by name and does not need the collection itself, the worker
does. Claims are atomic in the store: two workers asking at once never get the same run.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from plait._store.database import Database
from plait.server._deps import Caller, database, require
from plait.server._errors import ERROR_RESPONSES, ApiProblem, ErrorOut
from plait.server._params import HeldRunId
from plait.server.routes.deployments import (
    NAME_PATTERN,
    ROWS,
    ClaimedPage,
    JsonObject,
    Name,
    answer,
    refusal,
    store_call,
)

__all__ = ["router"]

router = APIRouter(tags=["work pools"])

Store = Annotated[Database, Depends(database)]
Reader = Annotated[Caller, Depends(require("read"))]
Runner = Annotated[Caller, Depends(require("run"))]
Admin = Annotated[Caller, Depends(require("admin"))]
PoolName = Annotated[str, Path(min_length=1, max_length=200, pattern=NAME_PATTERN, examples=["default"],
                               description="The work pool's name.")]
QueueName = Annotated[str, Path(min_length=1, max_length=200, pattern=NAME_PATTERN, examples=["high"],
                                description="The queue's name within the pool.")]
_KIND_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
_CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": ErrorOut, "description": "A pool with this name exists"}}


# -- models ----------------------------------------------------------------------------------------
class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class WorkQueueOut(_Open):
    id: str | None = None
    pool_name: str | None = None
    name: str
    priority: int = Field(description="1 is served first.")
    concurrency_limit: int | None = None
    paused: bool


class WorkerOut(_Open):
    id: str
    name: str
    hostname: str | None = None
    pid: int | None = None
    heartbeat_at: str | None = None
    heartbeat_interval: float | None = None
    status: str | None = Field(default=None, description="'online' when it heartbeat within two of its intervals.")


class WorkPoolOut(_Open):
    """A work pool; the single-item route adds its queues and workers."""

    id: str
    name: str
    type: str = Field(description="The infrastructure kind its runs are launched with, e.g. 'process'.")
    description: str | None = None
    base_job_variables: Any = None
    concurrency_limit: int | None = None
    paused: bool
    queues: list[WorkQueueOut] | None = None
    workers: list[WorkerOut] | None = None
    created: str | None = None
    updated: str | None = None


class WorkPoolsPage(BaseModel):
    items: list[WorkPoolOut]
    next_cursor: str | None = Field(default=None, description="Always null: every pool is in one page.")


class WorkPoolIn(BaseModel):
    """A new work pool (``plait work-pool create NAME --type process``); it gets a queue
    ``default`` of priority 1."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "local", "type": "process"}]})

    name: Name
    type: str = Field(default="process", min_length=1, max_length=100, pattern=_KIND_PATTERN,
                      description="An infrastructure kind: 'process', or one a collection adds.")
    description: str = Field(default="", max_length=20000, pattern=r"^[^\x00]*$")
    base_job_variables: JsonObject = Field(default_factory=dict,
                                           description="Job variables every run of the pool starts from.")
    concurrency_limit: int | None = Field(default=None, ge=1, le=2**31 - 1,
                                          description="Most runs of the pool active at once.")


class WorkPoolChange(BaseModel):
    """What to change; fields left out stay (``concurrency_limit: null`` lifts the limit)."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=20000, pattern=r"^[^\x00]*$")
    base_job_variables: JsonObject | None = None
    concurrency_limit: int | None = Field(default=None, ge=1, le=2**31 - 1)


class WorkQueueIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    priority: int = Field(default=1, ge=1, le=10000, description="1 is served first.")
    concurrency_limit: int | None = Field(default=None, ge=1, le=2**31 - 1)
    paused: bool = False


class HeartbeatIn(BaseModel):
    """A worker saying it is alive (every ``heartbeat_interval`` seconds)."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="The worker's name, unique in its pool.")
    hostname: str = Field(default="", max_length=255, pattern=r"^[^\x00-\x1f\x7f]*$")
    pid: int | None = Field(default=None, ge=0, le=2**31 - 1)
    heartbeat_interval: float = Field(default=10.0, gt=0, le=86400.0)


class HeartbeatOut(BaseModel):
    worker_id: str
    cancelling: list[str] = Field(description="Flow runs this worker claimed that are now Cancelling: stop them.")


class ClaimIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    worker_id: str = Field(min_length=1, max_length=36, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
                           description="What the heartbeat answered.")
    limit: int = Field(default=1, ge=1, le=100, description="Most runs to claim.")
    queues: list[Name] | None = Field(default=None, max_length=100, description="Only from these queues.")
    holding: list[HeldRunId] | None = Field(
        default=None, max_length=1000,
        description="Ids of the runs the worker is running. Runs claimed for it that are still Pending and not "
                    "among them (a claim whose answer it never received) are answered again, instead of new ones.")


# -- errors ----------------------------------------------------------------------------------------
def _missing(name: str) -> Any:
    def problem(message: str = "") -> ApiProblem:
        return ApiProblem(
            404, "work_pool_not_found",
            message or f"no work pool {name!r}; create it with `plait work-pool create {name} --type process`",
            {"resource": "work pool", "id": name},
        )
    return problem


def _invalid(message: str) -> ApiProblem:
    return refusal(422, "invalid_work_pool", message)


def _find(db: Database, name: str) -> dict[str, Any]:
    from plait._store.work_pools import get_work_pool

    found = get_work_pool(db, name)
    if found is None:
        raise _missing(name)()
    return found


# -- routes ----------------------------------------------------------------------------------------
@router.get("/work-pools", response_model=WorkPoolsPage, **ROWS, responses=ERROR_RESPONSES, summary="List work pools")
def list_work_pools(db: Store, caller: Reader) -> Any:
    """Every work pool, by name."""
    from plait._store.work_pools import list_work_pools as listing

    return {"items": answer(listing(db)), "next_cursor": None}


@router.post("/work-pools", response_model=WorkPoolOut, **ROWS, status_code=201,
             responses={**ERROR_RESPONSES, **_CONFLICT}, summary="Create a work pool")
def create_work_pool(pool: WorkPoolIn, db: Store, caller: Runner) -> Any:
    """A new work pool with a queue ``default`` (409 when the name is taken)."""
    from plait._store.work_pools import create_work_pool as create
    from plait._store.work_pools import get_work_pool

    def taken_or_invalid(message: str) -> ApiProblem:
        if get_work_pool(db, pool.name) is not None:
            return ApiProblem(409, "work_pool_exists", f"a work pool named {pool.name!r} already exists; choose "
                              "another name, or change it with PATCH /work-pools/{name}",
                              {"resource": "work pool", "id": pool.name})
        return _invalid(message)

    if get_work_pool(db, pool.name) is not None:
        raise taken_or_invalid("")
    row = store_call(
        lambda: create(db, pool.name, pool.type, description=pool.description,
                       base_job_variables=pool.base_job_variables, concurrency_limit=pool.concurrency_limit),
        missing=_invalid, refused=taken_or_invalid,
    )
    return answer(row)


@router.get("/work-pools/{name}", response_model=WorkPoolOut, **ROWS, responses=ERROR_RESPONSES,
            summary="Get a work pool")
def get_work_pool(name: PoolName, db: Store, caller: Reader) -> Any:
    """One work pool with its queues and workers (each ``online`` or ``offline``)."""
    return answer(_find(db, name))


@router.patch("/work-pools/{name}", response_model=WorkPoolOut, **ROWS, responses=ERROR_RESPONSES,
              summary="Change a work pool")
def update_work_pool(name: PoolName, change: WorkPoolChange, db: Store, caller: Runner) -> Any:
    """Change its description, base job variables or concurrency limit."""
    from plait._store.work_pools import update_work_pool as update

    changes = change.model_dump(exclude_unset=True)
    if changes.get("description", "") is None:
        changes["description"] = ""
    if "base_job_variables" in changes and changes["base_job_variables"] is None:
        changes["base_job_variables"] = {}
    _find(db, name)
    if not changes:
        return answer(_find(db, name))
    return answer(store_call(lambda: update(db, name, **changes), missing=_missing(name), refused=_invalid))


@router.delete("/work-pools/{name}", response_model=WorkPoolOut, **ROWS, responses={**ERROR_RESPONSES, **_CONFLICT},
               summary="Delete a work pool")
def delete_work_pool(name: PoolName, db: Store, caller: Admin) -> Any:
    """Delete a work pool, its queues and workers (needs scope admin). Answers what was deleted."""
    from plait._store.work_pools import delete_work_pool as delete

    found = _find(db, name)
    if not store_call(lambda: delete(db, name), missing=_missing(name),
                      refused=lambda m: refusal(409, "conflict", m)):
        raise _missing(name)()
    return answer(found)


def _pause(db: Database, name: str, paused: bool) -> Any:
    from plait._store.work_pools import set_work_pool_paused

    _find(db, name)
    return answer(store_call(lambda: set_work_pool_paused(db, name, paused), missing=_missing(name),
                             refused=_invalid))


@router.post("/work-pools/{name}/pause", response_model=WorkPoolOut, **ROWS, responses=ERROR_RESPONSES,
             summary="Pause a work pool")
def pause_work_pool(name: PoolName, db: Store, caller: Runner) -> Any:
    """Pause it: workers claim nothing from it until it is resumed (runs stay Scheduled)."""
    return _pause(db, name, True)


@router.post("/work-pools/{name}/resume", response_model=WorkPoolOut, **ROWS, responses=ERROR_RESPONSES,
             summary="Resume a paused work pool")
def resume_work_pool(name: PoolName, db: Store, caller: Runner) -> Any:
    """Resume it: workers claim its due runs again."""
    return _pause(db, name, False)


@router.put("/work-pools/{name}/queues/{queue}", response_model=WorkQueueOut, **ROWS, responses=ERROR_RESPONSES,
            summary="Create or change a queue of a work pool")
def save_work_queue(name: PoolName, queue: QueueName, body: WorkQueueIn, db: Store, caller: Runner) -> Any:
    """Save a queue: runs of lower ``priority`` numbers are claimed first."""
    from plait._store.work_pools import save_work_queue as save

    _find(db, name)
    return answer(store_call(
        lambda: save(db, name, queue, priority=body.priority, concurrency_limit=body.concurrency_limit,
                     paused=body.paused),
        missing=_missing(name), refused=lambda m: refusal(422, "invalid_work_queue", m),
    ))


@router.post("/work-pools/{name}/workers/heartbeat", response_model=HeartbeatOut, **ROWS, responses=ERROR_RESPONSES,
             summary="A worker's heartbeat")
def worker_heartbeat(name: PoolName, beat: HeartbeatIn, db: Store, caller: Runner) -> Any:
    """Register (or refresh) a worker of the pool; answers its id and the runs it claimed
    that are now Cancelling. A worker silent for two of its intervals is dead: its runs
    are marked Crashed (and retried as their deployment says)."""
    from plait._store.work_pools import worker_heartbeat as heartbeat

    _find(db, name)
    found = store_call(
        lambda: heartbeat(db, name, beat.name, hostname=beat.hostname, pid=beat.pid,
                          heartbeat_interval=beat.heartbeat_interval),
        missing=_missing(name), refused=lambda m: refusal(422, "invalid_heartbeat", m),
    )
    return {"worker_id": str(found["worker_id"]), "cancelling": sorted(str(i) for i in found.get("cancelling") or ())}


@router.post("/work-pools/{name}/claim", response_model=ClaimedPage, **ROWS, responses=ERROR_RESPONSES,
             summary="Claim due runs of a work pool")
def claim_runs(name: PoolName, claim: ClaimIn, db: Store, caller: Runner) -> Any:
    """Due Scheduled runs of the pool, moved to Pending and claimed by ``worker_id``: lower
    queue priority first, then the oldest, within the concurrency limits of the pool, its
    queues and the deployments. A paused pool answers none. Each run is claimed once,
    however many workers ask at the same moment."""
    from plait._store.scheduling import claim_runs as claim_due

    _find(db, name)
    items = store_call(
        lambda: claim_due(db, name, claim.worker_id, limit=claim.limit, queues=claim.queues, holding=claim.holding),
        missing=lambda m: ApiProblem(404, "worker_not_found", m or f"no worker {claim.worker_id!r} in work pool "
                                     f"{name!r}; send a heartbeat first", {"resource": "worker",
                                                                            "id": claim.worker_id}),
        refused=lambda m: refusal(422, "invalid_claim", m),
    )
    return {"items": answer(items, masked=False), "next_cursor": None}
