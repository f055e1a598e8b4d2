"""The JSON shape of ``POST /api/v1/records``: a recorder batch (``plait._batch.BatchRows``
in its wire form) and the batch id that makes delivery exactly-once.

The rows are the recorder's own dicts (``plait._recorder``): each list holds rows of one
table, timestamps are integer microseconds since the epoch (UTC). Described as TypedDicts,
so FastAPI validates a batch in one pass and hands the route plain dicts (no model objects
for a batch of tens of thousands of rows), and the OpenAPI document shows every field. A
key a row must not have, a missing key, a wrong type, an id that is too long all answer
422 naming the row and field, before anything reaches the store.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from pydantic import ConfigDict, Field, StrictInt, StringConstraints
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

__all__ = ["RecordsIn", "ReplayIn", "IngestOut", "BATCH_ID_PATTERN", "ID_PATTERN", "RunId"]

# Ids are uuid4 text (the engine makes them); anything longer than the column, or with
# characters an id never has, is refused here rather than by the database.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
BATCH_ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"  # any text without control characters
_FORBID = ConfigDict(extra="forbid")

RunId = Annotated[str, StringConstraints(min_length=1, max_length=36, pattern=ID_PATTERN)]
Micros = Annotated[StrictInt, Field(description="microseconds since 1970-01-01 UTC")]
Int32 = Annotated[int, Field(ge=0, le=2**31 - 1)]
StateTypeName = Literal[
    "SCHEDULED", "PENDING", "RUNNING", "RETRYING", "COMPLETED", "CACHED", "FAILED", "CRASHED", "CANCELLED", "PAUSED",
    "CANCELLING",
]
Short = Annotated[str, StringConstraints(max_length=16)]


class _FlowFields(TypedDict):
    __pydantic_config__ = _FORBID  # type: ignore[misc]
    id: RunId
    flow_name: str
    name: str
    parameters: dict[str, Any]
    tags: list[str]
    state_type: StateTypeName
    state_name: str
    state_message: str | None
    parent_flow_run_id: RunId | None
    parent_task_run_id: RunId | None
    run_count: Int32
    created: Micros
    start_time: Micros | None
    end_time: Micros | None
    pid: Int32 | None
    hostname: str | None
    heartbeat_at: Micros | None
    heartbeat_interval: float | None
    entrypoint: NotRequired[str | None]  # 'path.py:flow' of a top-level run


class FlowRow(_FlowFields):
    """A flow run as the recorder snapshots it (``_recorder._flow_row``)."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]
    expect: NotRequired[StateTypeName | None]


class StoredFlowRow(_FlowFields):
    """A flow run this writer stored before: ``expect`` is the state type it last stored
    (nothing of it is written if the store holds another one: someone else ended the run)."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]
    expect: StateTypeName


class TaskRow(TypedDict):
    """A task run as the recorder snapshots it (``_recorder._task_row``)."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]
    id: RunId
    flow_run_id: RunId | None
    task_name: str
    task_key: str
    name: str
    dynamic_key: Int32
    parameters: dict[str, Any]
    tags: list[str]
    state_type: StateTypeName
    state_name: str
    state_message: str | None
    run_count: Int32
    cache_key: str | None
    result_ref: str | None
    created: Micros
    start_time: Micros | None
    end_time: Micros | None


class StateRow(TypedDict):
    __pydantic_config__ = _FORBID  # type: ignore[misc]
    run_id: RunId
    run_kind: Literal["flow", "task"]
    flow_run_id: RunId | None
    type: StateTypeName
    name: str
    message: str | None
    timestamp: Micros


class EdgeRow(TypedDict):
    __pydantic_config__ = _FORBID  # type: ignore[misc]
    upstream_id: RunId
    downstream_id: RunId
    kind: Short
    parameter: str | None


class LogRow(TypedDict):
    __pydantic_config__ = _FORBID  # type: ignore[misc]
    flow_run_id: RunId | None
    task_run_id: RunId | None
    level: Int32
    logger: str
    message: str
    timestamp: Micros


class ResultRow(TypedDict):
    __pydantic_config__ = _FORBID  # type: ignore[misc]
    task_run_id: RunId
    storage: str
    path: str
    serializer: Annotated[str, StringConstraints(max_length=32)]
    cache_key: str | None
    expires_at: Micros | None
    created: Micros


class ArtifactRow(TypedDict):
    """A new artifact (``plait.artifacts``)."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]
    id: RunId
    key: Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[a-z0-9-]+$")] | None
    type: Literal["markdown", "table", "link", "progress"]
    description: str | None
    data: Any
    flow_run_id: RunId | None
    task_run_id: RunId | None
    created: Micros
    updated: Micros


class ArtifactUpdateRow(TypedDict):
    """A progress update of a stored artifact."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]
    artifact_id: RunId
    data: Any
    updated: Micros


# A dead process's journal knows only the changes of a run created in a segment already
# stored (``plait._journal.decode_segments``): such rows carry ``_partial: true``.
class FlowChange(TypedDict):
    """Only the changing fields of a flow run created in a journal segment already stored."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]
    id: RunId
    _partial: Literal[True]
    state_type: StateTypeName
    state_name: str
    state_message: str | None
    run_count: Int32
    start_time: Micros | None
    end_time: Micros | None
    heartbeat_at: Micros | None


class TaskChange(TypedDict):
    """Only the changing fields of a task run created in a journal segment already stored."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]
    id: RunId
    _partial: Literal[True]
    flow_run_id: RunId | None
    state_type: StateTypeName
    state_name: str
    state_message: str | None
    run_count: Int32
    cache_key: str | None
    result_ref: str | None
    start_time: Micros | None
    end_time: Micros | None


class _BatchCommon(TypedDict):
    __pydantic_config__ = _FORBID  # type: ignore[misc]
    now: NotRequired[Micros]
    heartbeats: NotRequired[list[RunId]]
    old_flows: NotRequired[list[StoredFlowRow]]
    old_tasks: NotRequired[list[TaskRow]]
    states: NotRequired[list[StateRow]]
    edges: NotRequired[list[EdgeRow]]
    logs: NotRequired[list[LogRow]]
    results: NotRequired[list[ResultRow]]
    artifacts: NotRequired[list[ArtifactRow]]
    artifact_updates: NotRequired[list[ArtifactUpdateRow]]


class BatchWire(_BatchCommon):
    """One recorder batch (``BatchRows.to_wire()``); every list may be left out."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]
    new_flows: NotRequired[list[FlowRow]]
    new_tasks: NotRequired[list[TaskRow]]


class ReplayWire(_BatchCommon):
    """A dead process's journal as a batch: run rows may be ``_partial`` (changes only)."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]
    new_flows: NotRequired[list[FlowRow | FlowChange]]
    new_tasks: NotRequired[list[TaskRow | TaskChange]]


BatchId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=BATCH_ID_PATTERN)]


class RecordsIn(TypedDict):
    """``POST /records``: ``batch_id`` names the batch; sending it again is a no-op that
    answers what the first delivery answered."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]
    batch_id: BatchId
    rows: BatchWire


class ReplayIn(TypedDict):
    __pydantic_config__ = _FORBID  # type: ignore[misc]
    batch_id: BatchId
    rows: ReplayWire


class IngestOut(TypedDict):
    """What the store did with a batch."""

    taken: list[str]
    dropped: int
    reason: str
    duplicate: bool
