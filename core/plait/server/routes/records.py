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
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from plait._batch import TABLES, BatchRows, clean_text
from plait._masking import mask, registered_secrets
from plait._store.database import Database
from plait.server._deps import Caller, database, require
from plait.server._errors import ApiProblem
from plait.server._wire import IngestOut, RecordsIn, ReplayIn

__all__ = ["router"]

router = APIRouter(tags=["recording"])

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


async def _receive(request: Request, body: Any, db: Database, replay: bool) -> dict[str, Any]:
    from plait._store.ingest import ingest_batch, ingest_replay

    raw = await request.body()  # already read (and kept) by FastAPI: no second read
    odd_text = _ODD_ESCAPE.search(raw) is not None

    def work() -> dict[str, Any]:
        rows = _rows(dict(body["rows"]), odd_text)
        return _store(ingest_replay if replay else ingest_batch, db, body["batch_id"], rows)

    return await run_in_threadpool(work)


@router.post("/records", response_model=IngestOut, summary="Store one recorder batch (exactly once)")
async def post_records(request: Request, body: RecordsIn, db: Store, caller: Runner) -> dict[str, Any]:
    """Store the batch in one transaction with its id.

    Answers ``taken`` (flow runs someone else ended meanwhile: nothing of theirs was
    stored), ``dropped`` (records the database refused) and ``reason`` (why the first was
    refused); ``duplicate`` is true when this batch id was stored before (nothing changed).
    """
    return await _receive(request, body, db, replay=False)


@router.post("/records/replay", response_model=IngestOut, summary="Store a dead process's journal (exactly once)")
async def post_replay(request: Request, body: ReplayIn, db: Store, caller: Runner) -> dict[str, Any]:
    """Store what a process journaled before it died, idempotently: runs the store holds as
    final keep their state; states, logs, edges and results already stored are not added
    twice. Run rows may be ``_partial`` (only the changing fields)."""
    return await _receive(request, body, db, replay=True)
