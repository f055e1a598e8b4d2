"""The flow-run page (``/flow-runs/{id}``) and the task-run page (``/task-runs/{id}``).

The flow-run page renders its header, actions and the run's small parts on the server; its
graph, timeline, task table and logs are drawn in the browser from ``GET
/api/v1/flow-runs/{id}/graph`` and ``/logs`` (static/flow_run.js, graph.js, timeline.js),
fetched once and kept current from one event stream. Cancel, retry and resume are
CSRF-checked POSTs through the API that answer a 303 back to the page; a refusal is shown
on the page.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup

from plait.client import ApiError, ApiNotFound
from plait.server.ui._base import check_csrf, form_data, render, ui_api
from plait.server.ui._catalog import field_errors, parse_schema_form, schema_fields

__all__ = ["router"]

router = APIRouter()

CANCELLABLE = {"RUNNING", "PENDING", "SCHEDULED", "PAUSED"}
RETRYABLE = {"FAILED", "CRASHED", "CANCELLED"}
_RESULTS_SHOWN = 200
_NOT_FOUND_HINT = {
    "flow run": "It may have been deleted, or the link is wrong: find the run on the runs page.",
    "task run": "It may have been deleted, or the link is wrong: open its flow run from the runs page.",
}


def _not_found(request: Request, what: str, ref: str) -> Response:
    return render(request, "not_found.html", status=404, what=what, ref=ref, hint=_NOT_FOUND_HINT[what])


def _script_json(value: Any) -> Markup:
    """``value`` as JSON safe inside a ``<script type="application/json">`` (no ``</script>``)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return Markup(text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e"))


def _actions(run: dict[str, Any]) -> dict[str, bool]:
    state = str(run.get("state_type") or "").upper()
    return {"cancel": state in CANCELLABLE, "retry": state in RETRYABLE, "resume": state == "PAUSED"}


def _resume_fields(run: dict[str, Any], values: dict[str, Any] | None = None,
                   errors: dict[str, str] | None = None) -> list[dict[str, Any]]:
    schema = run.get("pause_schema")
    return schema_fields(schema, values, errors=errors) if isinstance(schema, dict) else []


async def _flow_run_page(request: Request, flow_run_id: str, *, status: int = 200, action_error: str = "",
                         resume_values: dict[str, Any] | None = None,
                         resume_errors: dict[str, str] | None = None) -> Response:
    # One call: the graph's answer holds the run's own fields too, so a run of 10,000 task
    # runs costs one compact read, embedded in the page for its script (no second fetch).
    async with ui_api(request) as api:
        try:
            graph = await api.flow_run_graph(flow_run_id)
        except ApiNotFound:
            return _not_found(request, "flow run", flow_run_id)
    run = graph["flow_run"]
    counts: dict[str, int] = {}
    results = []
    for node in graph["nodes"]:
        counts[node["state_type"]] = counts.get(node["state_type"], 0) + 1
        if node.get("result_ref"):
            results.append(node)
    return render(
        request, "flow_run.html", status=status, active="runs", run=run, graph_json=_script_json(graph),
        actions=_actions(run),
        action_error=action_error or request.query_params.get("error", ""),
        notice=request.query_params.get("done", ""),
        resume_fields=_resume_fields(run, resume_values, resume_errors),
        task_count=len(graph["nodes"]), counts=sorted(counts.items()), results=results[:_RESULTS_SHOWN],
        result_total=len(results),
        # the page's stream brings this run's events and its subflow runs' (at most 50 runs)
        followed=[run["id"], *(g["id"] for g in graph["groups"])][:50],
    )


@router.get("/flow-runs/{flow_run_id}", response_model=None)
async def flow_run_page(request: Request, flow_run_id: str) -> Response:
    """One flow run: header, actions, and its graph, timeline, task runs, logs and results."""
    return await _flow_run_page(request, flow_run_id)


def _done(flow_run_id: str, what: str) -> RedirectResponse:
    return RedirectResponse(f"/flow-runs/{quote(flow_run_id, safe='')}?done={quote(what)}", status_code=303)


def _refused(exc: ApiError) -> str:
    _, general = field_errors(exc, [])
    return general or exc.message


@router.post("/flow-runs/{flow_run_id}/cancel", dependencies=[Depends(check_csrf)], response_model=None)
async def cancel_run(request: Request, flow_run_id: str) -> Response:
    """Cancel the run through the API; back to its page."""
    async with ui_api(request) as api:
        try:
            answer = await api.cancel_flow_run(flow_run_id)
        except ApiNotFound:
            return _not_found(request, "flow run", flow_run_id)
        except ApiError as exc:
            return await _flow_run_page(request, flow_run_id, status=exc.status or 400, action_error=_refused(exc))
    return _done(flow_run_id, "cancelled" if answer.get("state_type") == "CANCELLED" else "cancelling")


@router.post("/flow-runs/{flow_run_id}/retry", dependencies=[Depends(check_csrf)], response_model=None)
async def retry_run(request: Request, flow_run_id: str) -> Response:
    """Schedule the run again through the API; back to its page."""
    async with ui_api(request) as api:
        try:
            await api.retry_flow_run(flow_run_id)
        except ApiNotFound:
            return _not_found(request, "flow run", flow_run_id)
        except ApiError as exc:
            return await _flow_run_page(request, flow_run_id, status=exc.status or 400, action_error=_refused(exc))
    return _done(flow_run_id, "retried")


@router.post("/flow-runs/{flow_run_id}/resume", dependencies=[Depends(check_csrf)], response_model=None)
async def resume_run(request: Request, flow_run_id: str) -> Response:
    """Resume a paused run with the input its pause's schema asks for (the form's fields)."""
    form = await form_data(request)
    async with ui_api(request) as api:
        try:
            run = await api.flow_run(flow_run_id)
        except ApiNotFound:
            return _not_found(request, "flow run", flow_run_id)
        fields = _resume_fields(run)
        values, errors = parse_schema_form(fields, form)
        if errors:
            return await _flow_run_page(request, flow_run_id, status=422, action_error="the input is not complete",
                                        resume_values=values, resume_errors=errors)
        try:
            await api.resume_flow_run(flow_run_id, values if isinstance(run.get("pause_schema"), dict) else None)
        except ApiError as exc:
            names = [f["name"] for f in fields]
            field_problems, general = field_errors(exc, names)
            return await _flow_run_page(request, flow_run_id, status=exc.status or 400,
                                        action_error=general or exc.message, resume_values=values,
                                        resume_errors=field_problems)
    return _done(flow_run_id, "resumed")


# -- the task-run page --------------------------------------------------------------------------
def _attempts(states: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The state history cut into attempts: a Running after a Running starts the next one
    (the states before the first Running belong to the first); each with its error."""
    attempts: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for state in states:
        running = state.get("type") == "RUNNING"
        if current is None or (running and current["ran"]):
            current = {"number": len(attempts) + 1, "states": [], "error": None, "ran": False}
            attempts.append(current)
        current["ran"] = current["ran"] or running
        current["states"].append(state)
        if state.get("type") in ("FAILED", "CRASHED") or state.get("name") == "Retrying":
            current["error"] = state.get("message")
    return attempts


@router.get("/task-runs/{task_run_id}", response_model=None)
async def task_run_page(request: Request, task_run_id: str) -> Response:
    """One task run: states and attempts, cache and results, upstream and downstream, logs."""
    async with ui_api(request) as api:
        try:
            task = await api.task_run(task_run_id)
        except ApiNotFound:
            return _not_found(request, "task run", task_run_id)
        flow_run: dict[str, Any] | None = None
        downstream: list[dict[str, Any]] = []
        names: dict[str, dict[str, Any]] = {}
        if task.get("flow_run_id"):
            try:
                graph = await api.flow_run_graph(task["flow_run_id"])
            except ApiNotFound:
                graph = None
            if graph is not None:
                flow_run = graph["flow_run"]
                names = {n["id"]: n for n in graph["nodes"]}
                downstream = [{"id": e["downstream"], "kind": e["kind"], **_node_label(names, e["downstream"])}
                              for e in graph["edges"] if e["upstream"] == task_run_id]
        logs = await api.logs(task_run=task_run_id, limit=500)
    upstream = [{**u, **_node_label(names, u["id"])} for u in task.get("upstream") or []]
    return render(request, "task_run.html", active="runs", task=task, flow_run=flow_run, upstream=upstream,
                  downstream=downstream, attempts=_attempts(task.get("states") or []), logs=logs.items,
                  more_logs=logs.next_cursor is not None)


def _node_label(names: dict[str, dict[str, Any]], task_run_id: str) -> dict[str, Any]:
    node = names.get(task_run_id) or {}
    return {"name": node.get("name") or task_run_id[:8], "state_type": node.get("state_type"),
            "state_name": node.get("state_name")}
