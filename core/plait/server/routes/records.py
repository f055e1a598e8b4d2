"""Remote recording: a recorder's batches in, stored exactly once.

``POST /records`` stores a batch the way a local recorder does (``write_isolating``: a
record the database refuses is dropped and counted, the rest stored); ``POST
/records/replay`` stores a dead process's journal (``replay``: idempotent, runs already
final keep their state). Both record the batch id in the same transaction as the rows, so a
batch sent again — its answer was lost, the client retried — changes nothing and answers
what the first delivery answered, with ``duplicate: true``.

The server is where rows from anywhere meet the database, so it makes sure before storing
that nothing in a batch can fail it as a whole: the shape is checked field by field
(``_wire``), run ids are unique within each list, and text no backend stores (NUL, lone
surrogates; only possible through ``\\u`` escapes in the JSON) is cleaned as the recorder
cleans it. A 4xx then means "this batch will never be stored": a client drops it; a 503
means "later".

The answer to ``POST /records`` also says which of the batch's flow runs someone asked to
stop (``cancelling``): a recording process learns of a cancellation with no request of its
own, and stops the run at its next task boundary.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from plait._batch import TABLES, BatchRows, clean_text
from plait._masking import mask, registered_secrets
from plait._store.database import Database
from plait.server._deps import Caller, database, require
from plait.server._errors import ERROR_RESPONSES, ApiProblem
from plait.server._params import RunIdPath, not_found
from plait.server._wire import IngestOut, RecordsIn, ReplayIn

__all__ = ["router"]

router = APIRouter(tags=["recording"])


class RecordsOut(IngestOut):
    """What the store did with a batch, and which of its flow runs are Cancelling."""

    cancelling: list[str]


Runner = Annotated[Caller, Depends(require("run"))]
Store = Annotated[Database, Depends(database)]

# A NUL or a lone surrogate can only reach a JSON body as an escape: look for those first.
_ODD_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_RUN_LISTS = ("new_flows", "old_flows", "new_tasks", "old_tasks")


def _refuse(message: str, field: str = "rows") -> ApiProblem:
    return ApiProblem(422, "validation_error", message,
                      [{"in": "body", "field": field, "message": message, "type": "value_error"}])


def _clean_value(value: Any) -> Any:
    """``value`` with every string in it (keys too) as ``clean_text`` makes it: PostgreSQL's
    jsonb, which queries cast JSON columns to, refuses a NUL even as an escape."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): _clean_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_value(v) for v in value]
    return value


def _clean(wire: dict[str, Any]) -> None:
    """Text of ``wire``'s rows as every backend stores it (in place)."""
    for name in TABLES:
        for row in wire.get(name) or ():
            for key, value in row.items():
                if isinstance(value, (str, dict, list)):
                    row[key] = _clean_value(value)


def _unique_ids(wire: dict[str, Any]) -> None:
    for name in _RUN_LISTS:
        rows = wire.get(name) or ()
        seen: set[str] = set()
        for row in rows:
            if row["id"] in seen:
                raise _refuse(f"field 'rows.{name}': the run {row['id']!r} is listed twice; send each run once "
                              "per list", f"rows.{name}")
            seen.add(row["id"])


def _rows(wire: dict[str, Any], odd_text: bool) -> BatchRows:
    if odd_text:
        _clean(wire)
    _unique_ids(wire)
    try:
        rows = BatchRows.from_wire(wire)
    except ValueError as exc:
        raise _refuse(f"field 'rows': {exc}") from None
    _mask_rows(rows)
    return rows


def _masked_json(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: _masked_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked_json(v) for v in value]
    return value


def _mask_rows(rows: BatchRows) -> None:
    """Mask the secrets this server knows in what a client sends: a client that never loaded
    the block holding a secret cannot know to mask it (the server registers every saved
    block's secrets at start)."""
    if not registered_secrets():
        return
    for row in rows.logs + rows.states:
        if row.get("message"):
            row["message"] = mask(row["message"])
    for row in rows.new_flows + rows.old_flows + rows.new_tasks + rows.old_tasks:
        if row.get("state_message"):
            row["state_message"] = mask(row["state_message"])
        if "parameters" in row:
            row["parameters"] = _masked_json(row["parameters"])
    for row in rows.artifacts:  # what a run shows people: its text is masked here too
        row["data"] = _masked_json(row.get("data"))
        if row.get("description"):
            row["description"] = mask(row["description"])


def _store(ingest: Callable[[Database, str, BatchRows], dict[str, Any]], db: Database, batch_id: str,
           rows: BatchRows) -> dict[str, Any]:
    try:
        result = ingest(db, batch_id, rows)
    except ValueError as exc:  # a record the store cannot take as it is (a field missing, unknown)
        raise _refuse(str(exc)) from None
    return {
        "taken": sorted(str(i) for i in result.get("taken") or []),
        "dropped": int(result.get("dropped") or 0),
        "reason": str(result.get("reason") or ""),
        "duplicate": bool(result.get("duplicate")),
    }


def _flow_run_ids(rows: BatchRows) -> set[str]:
    """The flow runs a batch is about: its flow rows, heartbeats, and the owners of its task
    rows and states."""
    ids = {r["id"] for r in rows.new_flows + rows.old_flows}
    ids.update(rows.heartbeats)
    ids.update(r["flow_run_id"] for r in rows.new_tasks + rows.old_tasks + rows.states if r.get("flow_run_id"))
    return {i for i in ids if isinstance(i, str)}


async def _receive(request: Request, body: Any, db: Database, replay: bool) -> dict[str, Any]:
    from plait._store.ingest import ingest_batch, ingest_replay
    from plait._store.runs import cancelling_among

    raw = await request.body()  # already read (and kept) by FastAPI: no second read
    odd_text = _ODD_ESCAPE.search(raw) is not None

    def work() -> dict[str, Any]:
        rows = _rows(dict(body["rows"]), odd_text)
        answer = _store(ingest_replay if replay else ingest_batch, db, body["batch_id"], rows)
        if not replay:
            answer["cancelling"] = sorted(cancelling_among(db, _flow_run_ids(rows)))
        return answer

    return await run_in_threadpool(work)


@router.post("/records", response_model=RecordsOut, summary="Store one recorder batch (exactly once)")
async def post_records(request: Request, body: RecordsIn, db: Store, caller: Runner) -> dict[str, Any]:
    """Store the batch in one transaction with its id.

    Answers ``taken`` (flow runs someone else ended meanwhile: nothing of theirs was
    stored), ``dropped`` (records the database refused) and ``reason`` (why the first was
    refused); ``duplicate`` is true when this batch id was stored before (nothing changed);
    ``cancelling`` lists the batch's flow runs someone asked to stop (stop them at the next
    task boundary).
    """
    return await _receive(request, body, db, replay=False)


@router.post("/records/replay", response_model=IngestOut, summary="Store a dead process's journal (exactly once)")
async def post_replay(request: Request, body: ReplayIn, db: Store, caller: Runner) -> dict[str, Any]:
    """Store what a process journaled before it died, idempotently: runs the store holds as
    final keep their state; states, logs, edges and results already stored are not added
    twice. Run rows may be ``_partial`` (only the changing fields)."""
    return await _receive(request, body, db, replay=True)


# -- pauses: what a Paused run waits for, and whether it was resumed ------------------------------
class PauseIn(BaseModel):
    """What a run that just reported itself Paused waits for."""

    model_config = ConfigDict(extra="forbid")

    input_schema: dict[str, Any] | None = Field(
        default=None, description="JSON schema of the input it waits for (null: none; resume without input)")
    deadline: datetime = Field(description="when the pause ends: the run fails if nobody resumed it by then")


class PauseOut(BaseModel):
    state_type: str = Field(description="the run's stored state type: PAUSED when the pause was recorded")


class PauseStatusOut(BaseModel):
    state_type: str
    state_name: str
    resume_input: dict[str, Any] | None = Field(default=None, description="what the run was resumed with")


@router.put("/records/pauses/{id}", response_model=PauseOut, responses=ERROR_RESPONSES,
            summary="Record what a paused flow run waits for")
def put_pause(id: RunIdPath, body: PauseIn, db: Store, caller: Runner) -> dict[str, Any]:  # noqa: A002
    """Sent by the process running the flow once its Paused state is stored: the input's schema
    (``POST /flow-runs/{id}/resume`` checks input against it) and the pause's deadline.
    Nothing changes unless the run is still Paused."""
    from plait._store.control import record_pause

    deadline = body.deadline if body.deadline.tzinfo is not None else body.deadline.replace(tzinfo=UTC)
    try:
        state = record_pause(db, id, body.input_schema, deadline)
    except LookupError:
        raise not_found("flow run", id) from None
    return {"state_type": state}


@router.get("/records/pauses/{id}", response_model=PauseStatusOut, responses=ERROR_RESPONSES,
            summary="Whether a paused flow run was resumed")
def get_pause(id: RunIdPath, db: Store, caller: Runner) -> dict[str, Any]:  # noqa: A002
    """Polled by the process of a Paused run: once ``state_type`` is no longer PAUSED the run
    was resumed (with ``resume_input``) or cancelled."""
    from plait._store.control import pause_status

    try:
        return pause_status(db, id)
    except LookupError:
        raise not_found("flow run", id) from None
