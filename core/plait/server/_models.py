"""Response models of the run-history routes: the OpenAPI document says what each answers.

Items list the fields every client may rely on; stores add more (``extra="allow"``), so a
new column never breaks the document. In list items the large fields (parameters, state
messages, log messages) may be a truncation marker instead of the value:
``{"truncated": true, "size": <bytes of JSON>, "preview": "<first 500 chars>"}`` for JSON,
or the text cut to 2,000 characters with ``"…[truncated N chars]"``; the single-item route
returns them whole.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Page",
    "Health",
    "FlowRunItem",
    "FlowRunSummary",
    "SummaryBucket",
    "FlowRunFull",
    "FlowRunState",
    "TaskRunItem",
    "TaskRunFull",
    "LogItem",
    "ResultItem",
    "EventItem",
]

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list, oldest or newest first as the route says."""

    items: list[T]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Health(BaseModel):
    status: str = Field(description='"ok"')
    version: str = Field(description="plait's version on the server")
    database: str = Field(description='the store\'s backend: "sqlite" or "postgresql"')


class FlowRunItem(_Open):
    id: str
    flow_name: str
    name: str
    state_type: str
    state_name: str
    state_message: Any = Field(default=None, description="text, possibly truncated")
    parameters: Any = Field(default=None, description="the run's parameters, or a truncation marker")
    tags: list[str] = Field(default_factory=list)
    parent_flow_run_id: str | None = None
    created: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    expected_start_time: str | None = Field(default=None, description="when a deployment's run is due")
    deployment_id: str | None = Field(default=None, description="the deployment that made it; null when started by "
                                                                "hand")
    deployment_name: str | None = Field(default=None, description='"<flow>/<name>" of that deployment')
    work_pool_name: str | None = None
    worker_id: str | None = Field(default=None, description="the worker that claimed it")


class FlowRunFull(_Open):
    """A flow run with its state history, task runs (with their states and upstream edges)
    and subflow runs; every field whole."""

    id: str
    flow_name: str
    name: str
    state_type: str
    state_name: str
    parameters: Any = None
    states: list[dict[str, Any]] = Field(default_factory=list)
    task_runs: list[dict[str, Any]] = Field(default_factory=list)
    subflows: list[dict[str, Any]] = Field(default_factory=list)


class SummaryBucket(BaseModel):
    start: str
    end: str
    counts: dict[str, int] = Field(description="runs created in [start, end) by state type; absent types: none")


class FlowRunSummary(BaseModel):
    total: int = Field(description="runs created in [since, until) matching the filters")
    counts: dict[str, int] = Field(description="those runs by state type")
    since: str | None = Field(description="the window's start; null when no run matches")
    until: str
    bucket_seconds: float | None = Field(description="each bucket's width")
    buckets: list[SummaryBucket]


class FlowRunState(BaseModel):
    id: str
    state_type: str | None = Field(description="the stored state type; null when there is no such flow run")


class TaskRunItem(_Open):
    id: str
    flow_run_id: str | None = None
    task_name: str
    name: str
    state_type: str
    state_name: str
    state_message: Any = Field(default=None, description="text, possibly truncated")
    parameters: Any = Field(default=None, description="the run's parameters, or a truncation marker")


class TaskRunFull(_Open):
    """A task run whole, with its state history, the task runs it depended on (``upstream``)
    and the results it stored."""

    id: str
    flow_run_id: str | None = None
    task_name: str
    name: str
    state_type: str
    state_name: str
    parameters: Any = None
    states: list[dict[str, Any]] = Field(default_factory=list)
    upstream: list[dict[str, Any]] = Field(default_factory=list)
    results: list[dict[str, Any]] = Field(default_factory=list)


class LogItem(_Open):
    id: int = Field(description="grows in the order lines were stored (`after=` takes it)")
    timestamp: str | None = None
    level: str = Field(description="level name: INFO, WARNING, ...")
    level_no: int | None = None
    logger: str | None = None
    message: Any = Field(default=None, description="text; in lists cut after 2,000 characters")
    flow_run_id: str | None = None
    task_run_id: str | None = None


class ResultItem(_Open):
    id: int
    task_run_id: str
    storage: str | None = None
    path: str | None = None
    serializer: str | None = None
    cache_key: str | None = None
    expires_at: str | None = None


class EventItem(_Open):
    seq: int = Field(description="the event's position: resume after it (`after=`, `Last-Event-ID`)")
    id: str
    occurred: str | None = None
    kind: str
    resource: str
    payload: dict[str, Any] = Field(default_factory=dict)
    labels: dict[str, Any] | None = Field(default=None, description="a custom event's resource labels beyond its id")
