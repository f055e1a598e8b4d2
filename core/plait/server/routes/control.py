"""Control of flow runs over the API: cancel, resume a paused run, retry a failed one, and
the answer to "why is my run late?".

- Cancel: a Scheduled run not yet claimed ends Cancelled at once; a claimed or running one
  becomes Cancelling, and whatever runs it (a worker's subprocess, a ``serve`` process, a
  plain ``python flow.py``) stops it at its next task boundary and ends it Cancelled.
- Resume: a Paused run goes on; the input it waits for is checked here (422 naming the
  field it lacks) before anything changes.
- Retry: a Failed or Crashed run is Scheduled again (same id, parameters and deployment);
  task runs that completed before are not run again.
- End: a worker whose run's process died (or was killed after a cancel) ends the run
  Crashed, Failed or Cancelled, with its unfinished task runs and subflows.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from plait._store.database import Database
from plait.server._deps import Caller, database, require
from plait.server._errors import ERROR_RESPONSES, ApiProblem, ErrorOut
from plait.server._params import RunIdPath
from plait.server.routes.deployments import ROWS, FlowRunOut, JsonObject, answer, refusal, store_call

__all__ = ["router"]

router = APIRouter(tags=["flow runs"])

Store = Annotated[Database, Depends(database)]
Reader = Annotated[Caller, Depends(require("read"))]
Runner = Annotated[Caller, Depends(require("run"))]
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "The run is not in a state this applies to (the message says which)"}
}


class CancelOut(BaseModel):
    id: str
    state_type: str = Field(description="CANCELLED (it had not started) or CANCELLING (whatever runs it stops it).")


class ResumeIn(BaseModel):
    """What a run paused with ``wait_for_input`` waits for."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"input": {"approved": True}}]})

    input: JsonObject | None = Field(default=None, description="Values of the model the run waits for.")


class EndCreate(BaseModel):
    """The run to create if it was never recorded (its process died before its flow started)."""

    model_config = ConfigDict(extra="forbid")

    flow_name: str = Field(min_length=1, max_length=500)
    parameters: JsonObject = Field(default_factory=dict)
    pid: int | None = Field(default=None, ge=0, le=2**31 - 1)


class EndIn(BaseModel):
    """How a run whose process could not end it ends."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"state_type": "CRASHED", "message": "its process was killed by signal 9"}]
    })

    state_type: Literal["CRASHED", "FAILED", "CANCELLED"]
    message: str = Field(max_length=20_000, description="Why it ended (the state message).")
    create: EndCreate | None = Field(default=None, description="Create the run in this state if it does not exist.")


class EndOut(BaseModel):
    id: str
    ended: bool = Field(description="False when the run had already ended (it keeps its own verdict).")
    state_type: str | None = Field(description="The state it is in now.")


class LateReasonOut(BaseModel):
    id: str
    state_type: str | None = None
    state_name: str | None = None
    reason: str = Field(description="Why the run has not started: no worker polling its pool, a full concurrency "
                        "limit, a paused pool or deployment, or nothing wrong yet.")


def _missing(flow_run_id: str) -> Any:
    def problem(message: str = "") -> ApiProblem:
        return ApiProblem(404, "not_found", message or f"no flow run with id {flow_run_id!r}",
                          {"resource": "flow run", "id": flow_run_id})
    return problem


def _conflict(message: str) -> ApiProblem:
    return refusal(409, "conflict", message)


def _summary(db: Database, flow_run_id: str) -> dict[str, Any]:
    from plait._store.runs import flow_run_summary

    found = flow_run_summary(db, flow_run_id)
    if found is None:
        raise _missing(flow_run_id)()
    return found


def _flow_run(db: Database, flow_run_id: str, fallback: Any) -> Any:
    """The run's row as the control routes answer it (``fallback`` when the store function
    answered something else than a row)."""
    if isinstance(fallback, dict) and "state_type" in fallback and "flow_name" in fallback:
        return answer(fallback)
    from plait._store.pages import get_flow_run_full

    run = store_call(lambda: get_flow_run_full(db, flow_run_id), missing=_missing(flow_run_id), refused=_conflict)
    return answer({k: v for k, v in run.items() if k not in ("task_runs", "states", "subflows")})


@router.post("/flow-runs/{id}/cancel", response_model=CancelOut, **ROWS, responses={**ERROR_RESPONSES, **_CONFLICT},
             summary="Cancel a flow run")
def cancel_flow_run(id: RunIdPath, db: Store, caller: Runner) -> Any:  # noqa: A002 - the route's name
    """Cancel it: Cancelled at once if it had not started, else Cancelling until whatever runs
    it stops it (within seconds). 409 when it has already ended."""
    from plait._store.scheduling import request_cancel

    _summary(db, id)
    state = store_call(lambda: request_cancel(db, id), missing=_missing(id), refused=_conflict)
    return {"id": id, "state_type": str(getattr(state, "value", state))}


@router.post("/flow-runs/{id}/resume", response_model=FlowRunOut, **ROWS, responses={**ERROR_RESPONSES, **_CONFLICT},
             summary="Resume a paused flow run")
def resume_flow_run(id: RunIdPath, body: ResumeIn, db: Store, caller: Runner) -> Any:  # noqa: A002
    """Resume a Paused run, with the input it waits for (422 naming the field when the input
    does not fit). 409 when it is not paused."""
    from plait._store.control import resume_flow_run as resume

    _summary(db, id)

    def refused(message: str) -> ApiProblem:
        if _is_input_problem(message):
            return refusal(422, "invalid_input", message, "input")
        return _conflict(message)

    row = store_call(lambda: resume(db, id, body.input), missing=_missing(id), refused=refused)
    return _flow_run(db, id, row)


def _is_input_problem(message: str) -> bool:
    # The store's message starts "input" when what was sent does not fit what the run waits
    # for; anything else (not paused, paused no more) is a conflict with the run's state.
    return message.lower().startswith("input")


@router.post("/flow-runs/{id}/retry", response_model=FlowRunOut, **ROWS, responses={**ERROR_RESPONSES, **_CONFLICT},
             summary="Retry a failed or crashed flow run")
def retry_flow_run(id: RunIdPath, db: Store, caller: Runner) -> Any:  # noqa: A002
    """Schedule a Failed or Crashed run again, with the same parameters and deployment; its
    task runs that completed are not run again. 409 for a run in another state."""
    from plait._store.control import retry_flow_run as retry

    _summary(db, id)
    row = store_call(lambda: retry(db, id), missing=_missing(id), refused=_conflict)
    return _flow_run(db, id, row)


@router.post("/flow-runs/{id}/end", response_model=EndOut, **ROWS, responses=ERROR_RESPONSES,
             summary="End a flow run its process could not end")
def end_flow_run(id: RunIdPath, body: EndIn, db: Store, caller: Runner) -> Any:  # noqa: A002
    """For workers and infrastructure: end the run (and its unfinished task runs and
    subflows) Crashed, Failed or Cancelled, unless it has already ended. With ``create``, a
    run that was never recorded is created in that state, so the failure shows in the run
    list; without it, an unknown run is a 404."""
    from plait._store.runs import end_flow_runs
    from plait.states import StateType

    create = {id: body.create.model_dump()} if body.create is not None else None
    if create is None:
        _summary(db, id)
    kind = StateType(body.state_type)
    ended = store_call(lambda: end_flow_runs(db, {id: body.message}, kind, subflows=True, create=create),
                       missing=_missing(id), refused=_conflict)
    now = _summary(db, id)
    return {"id": id, "ended": id in ended, "state_type": now.get("state_type")}


@router.get("/flow-runs/{id}/late-reason", response_model=LateReasonOut, **ROWS,
            responses={**ERROR_RESPONSES, **_CONFLICT},
            summary="Why a flow run has not started")
def get_late_reason(id: RunIdPath, db: Store, caller: Reader) -> Any:  # noqa: A002
    """For a Scheduled or Late run: which of no worker polling its pool, a paused pool or
    deployment, a full concurrency limit, or nothing wrong yet keeps it waiting."""
    from plait._store.control import pause_status
    from plait._store.scheduling import late_reason

    _summary(db, id)
    reason = store_call(lambda: late_reason(db, id), missing=_missing(id), refused=_conflict)
    state = store_call(lambda: pause_status(db, id), missing=_missing(id), refused=_conflict)
    return answer({"id": id, "state_type": state["state_type"], "state_name": state["state_name"],
                   "reason": reason})
