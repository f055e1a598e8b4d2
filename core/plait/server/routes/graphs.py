"""The graph of a flow run: task runs as nodes, their dependencies as edges, subflow runs
as groups (``_store.graphs``), in one answer a client can lay out and draw."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from plait._store.database import Database
from plait.server._deps import Caller, database, require
from plait.server._errors import ERROR_RESPONSES
from plait.server._params import RunIdPath, from_store

__all__ = ["router"]

router = APIRouter(tags=["flow runs"])

Reader = Annotated[Caller, Depends(require("read"))]
Store = Annotated[Database, Depends(database)]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class GraphRun(_Open):
    id: str
    name: str
    flow_name: str
    state_type: str
    state_name: str
    start_time: str | None = None
    end_time: str | None = None
    duration_seconds: float | None = None
    state_message: str | None = None
    parameters: Any = None
    tags: list[str] = Field(default_factory=list)
    parent_flow_run_id: str | None = None
    parent_task_run_id: str | None = None
    deployment_name: str | None = Field(default=None, description='"<flow>/<name>" of its deployment, if any')
    work_pool_name: str | None = None
    work_pool_type: str | None = Field(default=None, description="the pool's infrastructure type")
    worker_name: str | None = None
    pause_schema: dict[str, Any] | None = Field(default=None, description="while Paused: the JSON schema of the "
                                                "input it waits for")
    task_run_count: int = 0


class GraphNode(_Open):
    id: str = Field(description="the task run's id")
    name: str
    task_name: str
    task_key: str
    state_type: str
    state_name: str
    state_message: str | None = Field(default=None, description="the task run's state message, whole")
    run_count: int = 0
    result_ref: str | None = Field(default=None, description="where its persisted result is, if it has one")
    start_time: str | None = None
    end_time: str | None = None
    duration_seconds: float | None = None
    subflow_run_id: str | None = Field(default=None, description="the child flow run this task run started")


class GraphEdge(BaseModel):
    upstream: str = Field(description="id of the task run depended on")
    downstream: str = Field(description="id of the task run that depended on it")
    kind: str = Field(description="data (a result passed) or wait_for")


class GraphGroup(_Open):
    id: str = Field(description="the subflow run's id (its own graph: GET /flow-runs/{id}/graph)")
    name: str
    flow_name: str
    state_type: str
    state_name: str
    parent_task_run_id: str | None = Field(default=None, description="the node that started it")
    start_time: str | None = None
    end_time: str | None = None
    task_run_count: int = 0


class FlowRunGraph(BaseModel):
    flow_run: GraphRun
    nodes: list[GraphNode] = Field(description="its task runs, in the order they were created")
    edges: list[GraphEdge] = Field(description="dependencies between its task runs, each once")
    groups: list[GraphGroup] = Field(description="its direct subflow runs")


@router.get("/flow-runs/{id}/graph", response_model=FlowRunGraph, responses=ERROR_RESPONSES,
            summary="The graph of a flow run")
def get_flow_run_graph(id: RunIdPath, db: Store, caller: Reader) -> Response:  # noqa: A002 - the route's name
    """Its task runs (nodes), their dependencies (edges, ``data`` or ``wait_for``) and its
    subflow runs (groups, each linked to the node that started it), read in one query per
    table however large the run."""
    from plait._store.graphs import flow_run_graph

    graph = from_store(lambda: flow_run_graph(db, id), "flow run", id)
    # The store's dict already has the model's shape (tests/test_flow_run_graph.py checks it):
    # encoded once here, as validating 10,000 nodes against the model would double the time.
    body = json.dumps(graph, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return Response(body, media_type="application/json")
