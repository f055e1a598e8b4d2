"""Run history: health, flow runs, task runs, logs and the results index.

Lists are keyset pages (``_store.pages``): ``{"items": [...], "next_cursor": str|null}``,
large fields truncated with a marker; the single-item routes return everything whole. The
routes are plain functions (FastAPI runs them in its thread pool), one store call each.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from plait import __version__
from plait._store.database import Database
from plait.server._deps import Caller, database, require
from plait.server._models import (
    FlowRunFull,
    FlowRunItem,
    FlowRunState,
    FlowRunSummary,
    Health,
    LogItem,
    Page,
    ResultItem,
    TaskRunFull,
    TaskRunItem,
)
from plait.server._params import (
    CursorQuery,
    RunIdPath,
    RunIdQuery,
    from_store,
    limit_query,
    min_level,
    not_found,
    state_types,
    utc,
)

__all__ = ["router"]

router = APIRouter()

Reader = Annotated[Caller, Depends(require("read"))]
Store = Annotated[Database, Depends(database)]
StateQuery = Annotated[
    list[str] | None,
    Query(description="state type (any case: failed, COMPLETED, ...); repeat for several", max_length=20),
]
FlowQuery = Annotated[list[str] | None, Query(description="flow name; repeat for several", max_length=50)]
TagQuery = Annotated[list[str] | None, Query(description="a tag the run carries; repeat: it carries all",
                                             max_length=50)]
DeploymentQuery = Annotated[list[str] | None, Query(description="a deployment's id or `<flow>/<name>`; repeat for "
                                                                "several", max_length=50)]
TopLevelQuery = Annotated[bool | None, Query(description="true: only runs without a parent; false: only subflow "
                                                         "runs")]
AfterLogQuery = Annotated[
    int | None,
    Query(ge=0, le=2**63 - 1, description="only lines stored after the line with this id (a logs.written "
                                          "event's after_log_id)"),
]
LevelQuery = Annotated[
    str | None,
    Query(max_length=20, description="lowest level shown: DEBUG, INFO, WARNING, ERROR, CRITICAL or a number"),
]


@router.get("/health", response_model=Health, tags=["service"], summary="Is the server up (no key needed)")
def health(db: Store) -> dict[str, Any]:
    """``{"status": "ok", "version", "database"}`` when the server can read its store;
    503 when it cannot."""
    db.current_revision()  # one query: a server whose database is gone is not healthy
    return {"status": "ok", "version": __version__, "database": db.dialect}


# -- flow runs --------------------------------------------------------------------------------------
@router.get("/flow-runs", response_model=Page[FlowRunItem], tags=["flow runs"], summary="List flow runs")
def list_flow_runs(
    db: Store,
    caller: Reader,
    flow: FlowQuery = None,
    state: StateQuery = None,
    tag: TagQuery = None,
    parent: Annotated[RunIdQuery, Query(description="only subflow runs of this flow run")] = None,
    top_level: TopLevelQuery = None,
    since: Annotated[datetime | None, Query(description="created at or after (ISO 8601; UTC if no offset)")] = None,
    until: Annotated[datetime | None, Query(description="created before (ISO 8601; UTC if no offset)")] = None,
    upcoming: Annotated[bool | None, Query(description="true: only Scheduled runs expected to start later (made "
                                                       "ahead by the scheduler); false: all runs but those")] = None,
    deployment: DeploymentQuery = None,
    limit: int = limit_query(50, 500),
    cursor: CursorQuery = None,
) -> dict[str, Any]:
    """Flow runs, newest first, filtered; large fields truncated (get one run for them whole)."""
    from plait._store.pages import page_flow_runs

    states = state_types(state)
    return from_store(lambda: page_flow_runs(
        db, flow_names=flow or None, states=states, tags=tag or None, parent_flow_run_id=parent,
        top_level=top_level, since=utc(since), until=utc(until), upcoming=upcoming, deployments=deployment or None,
        limit=limit, cursor=cursor,
    ))


@router.get("/flow-runs/summary", response_model=FlowRunSummary, tags=["flow runs"],
            summary="Count flow runs by state, overall and over time")
def summarize_flow_runs(
    db: Store,
    caller: Reader,
    flow: FlowQuery = None,
    state: StateQuery = None,
    tag: TagQuery = None,
    deployment: DeploymentQuery = None,
    top_level: TopLevelQuery = None,
    since: Annotated[datetime | None, Query(description="created at or after (ISO 8601; UTC if no offset); "
                                                        "default: the oldest matching run")] = None,
    until: Annotated[datetime | None, Query(description="created before (ISO 8601; UTC if no offset); "
                                                        "default: now")] = None,
    buckets: Annotated[int, Query(ge=1, le=200, description="how many equal time buckets")] = 48,
) -> dict[str, Any]:
    """How many runs (with the list's filters) were created in ``[since, until)``, by state
    type, overall and in ``buckets`` equal slices of that window."""
    from plait._store.summaries import flow_run_summary

    states = state_types(state)
    return from_store(lambda: flow_run_summary(
        db, flow_names=flow or None, states=states, tags=tag or None, deployments=deployment or None,
        top_level=top_level, since=utc(since), until=utc(until), buckets=buckets,
    ))


@router.get("/flow-runs/{id}", response_model=FlowRunFull, tags=["flow runs"], summary="Get one flow run")
def get_flow_run(id: RunIdPath, db: Store, caller: Reader) -> dict[str, Any]:  # noqa: A002 - the route's name
    """The flow run whole: parameters, state history, task runs with their states and
    upstream edges, subflow runs."""
    from plait._store.pages import get_flow_run_full

    return from_store(lambda: get_flow_run_full(db, id), "flow run", id)


@router.get("/flow-runs/{id}/state", response_model=FlowRunState, tags=["flow runs"],
            summary="The stored state type of a flow run")
def get_flow_run_state(id: RunIdPath, db: Store, caller: Reader) -> dict[str, Any]:  # noqa: A002
    """``{"id", "state_type"}``; ``state_type`` is null when there is no such flow run (what a
    recorder checks before it writes on)."""
    from plait._store.runs import stored_flow_run_state

    found = stored_flow_run_state(db, id)
    return {"id": id, "state_type": found.value if found is not None else None}


@router.get("/flow-runs/{id}/logs", response_model=Page[LogItem], tags=["flow runs", "logs"],
            summary="Log lines of a flow run")
def get_flow_run_logs(
    id: RunIdPath,  # noqa: A002
    db: Store,
    caller: Reader,
    level: LevelQuery = None,
    after: AfterLogQuery = None,
    limit: int = limit_query(200, 1000),
    cursor: CursorQuery = None,
) -> dict[str, Any]:
    """The same as ``GET /logs?flow_run={id}``, but 404 for an unknown flow run."""
    from plait._store.pages import page_logs
    from plait._store.runs import stored_flow_run_state

    if stored_flow_run_state(db, id) is None:
        raise not_found("flow run", id)
    lowest = min_level(level)
    return from_store(lambda: page_logs(db, flow_run_id=id, min_level=lowest, after_id=after, limit=limit,
                                        cursor=cursor))


# -- task runs ----------------------------------------------------------------------------------------
@router.get("/task-runs", response_model=Page[TaskRunItem], tags=["task runs"], summary="List task runs")
def list_task_runs(
    db: Store,
    caller: Reader,
    flow_run: Annotated[RunIdQuery, Query(description="only task runs of this flow run")] = None,
    state: StateQuery = None,
    task: Annotated[str | None, Query(max_length=500, description="only runs of the task with this name")] = None,
    limit: int = limit_query(50, 500),
    cursor: CursorQuery = None,
) -> dict[str, Any]:
    """Task runs (of one flow run: in the order they were created; else newest first)."""
    from plait._store.pages import page_task_runs

    states = state_types(state)
    return from_store(lambda: page_task_runs(
        db, flow_run_id=flow_run, states=states, task_name=task, limit=limit, cursor=cursor
    ))


@router.get("/task-runs/{id}", response_model=TaskRunFull, tags=["task runs"], summary="Get one task run")
def get_task_run(id: RunIdPath, db: Store, caller: Reader) -> dict[str, Any]:  # noqa: A002
    """The task run whole, with its state history and upstream edges."""
    from plait._store.pages import get_task_run as get_one

    return from_store(lambda: get_one(db, id), "task run", id)


# -- logs, results ------------------------------------------------------------------------------------
@router.get("/logs", response_model=Page[LogItem], tags=["logs"], summary="List log lines")
def list_logs(
    db: Store,
    caller: Reader,
    flow_run: Annotated[RunIdQuery, Query(description="only lines of this flow run")] = None,
    task_run: Annotated[RunIdQuery, Query(description="only lines of this task run")] = None,
    level: LevelQuery = None,
    after: AfterLogQuery = None,
    limit: int = limit_query(200, 1000),
    cursor: CursorQuery = None,
) -> dict[str, Any]:
    """Log lines in the order they were stored, oldest first; messages over 2,000
    characters are cut (``GET /logs/{id}`` has them whole)."""
    from plait._store.pages import page_logs

    lowest = min_level(level)
    return from_store(lambda: page_logs(
        db, flow_run_id=flow_run, task_run_id=task_run, min_level=lowest, after_id=after, limit=limit, cursor=cursor
    ))


@router.get("/logs/{id}", response_model=LogItem, tags=["logs"], summary="Get one log line whole")
def get_log_line(
    id: Annotated[int, Path(ge=0, le=2**63 - 1, description="the line's id")],  # noqa: A002
    db: Store,
    caller: Reader,
) -> dict[str, Any]:
    """One log line with its whole message."""
    from plait._store.pages import get_log

    return from_store(lambda: get_log(db, id), "log line", str(id))


@router.get("/results", response_model=Page[ResultItem], tags=["results"], summary="List the results index")
def list_results(
    db: Store,
    caller: Reader,
    task_run: Annotated[RunIdQuery, Query(description="only results of this task run")] = None,
    cache_key: Annotated[str | None, Query(max_length=1000, description="only results under this cache key")] = None,
    limit: int = limit_query(50, 500),
    cursor: CursorQuery = None,
) -> dict[str, Any]:
    """Where persisted results live (storage, path, serializer, cache key, expiry)."""
    from plait._store.pages import page_results

    return from_store(lambda: page_results(db, task_run_id=task_run, cache_key=cache_key, limit=limit,
                                           cursor=cursor))
