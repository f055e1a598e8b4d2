"""The run history in batches after a cursor, for copying it into a warehouse
(``plait.history`` reads this route when ``PLAIT_API_URL`` is set). Needs scope ``read``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from plait._store.database import Database
from plait._store.export import MAX_BATCH, MAX_CURSOR, export_batch
from plait.server._deps import Caller, database, require
from plait.server._errors import ERROR_RESPONSES

__all__ = ["router"]

router = APIRouter(tags=["history"])

Store = Annotated[Database, Depends(database)]
Reader = Annotated[Caller, Depends(require("read"))]


class HistoryBatchOut(BaseModel):
    """One batch of the run history: states after the cursor and the runs they belong to."""

    flow_runs: list[dict[str, Any]] = Field(description="Flow runs as they are now (times ISO 8601 UTC).")
    task_runs: list[dict[str, Any]] = Field(description="Task runs as they are now.")
    states: list[dict[str, Any]] = Field(description="State rows by ascending id.")
    cursor: int = Field(description="Pass it as since= for what came after this batch.")
    more: bool = Field(description="The batch was full: there may be more right away.")


def _wire(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


@router.get("/history/export", response_model=HistoryBatchOut, responses=ERROR_RESPONSES,
            summary="Export the run history after a cursor")
def export_history(
    db: Store,
    caller: Reader,
    since: Annotated[int, Query(ge=0, le=MAX_CURSOR,
                                description="The cursor of the previous batch (0: from the start).")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_BATCH, description="At most this many states.")] = 1000,
    exclude_flow: Annotated[list[str] | None, Query(description="Leave out runs of this flow (repeatable).")] = None,
) -> Any:
    """The states with an id above ``since`` and the flow and task runs they belong to, as
    they are now (see docs/history.md)."""
    data = export_batch(db, since, limit, exclude_flows=exclude_flow or ())
    return {
        "flow_runs": [_wire(r) for r in data["flow_runs"]],
        "task_runs": [_wire(r) for r in data["task_runs"]],
        "states": [_wire(s) for s in data["states"]],
        "cursor": data["cursor"],
        "more": data["more"],
    }
