"""Dashboard pages for deployments (list, detail, next runs, pause / resume, "run now" with
a form from the flow's parameter schema), work pools and their workers' health, and the
late runs with the reason the server knows. Events and automations are in
``_automations_pages`` (included here, so ``PAGE_MODULES`` names this module only).

Everything is read and changed through ``/api/v1`` with the browser's key (``ui_api``);
each change is a CSRF-checked POST answering a 303 redirect.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from plait.client import ApiError, ApiNotFound, AsyncPlaitClient
from plait.server.ui._automations_pages import router as automations_router
from plait.server.ui._base import check_csrf, form_data, render, ui_api
from plait.server.ui._catalog import field_errors, parse_schema_form, schema_fields

__all__ = ["router"]

router = APIRouter()
router.include_router(automations_router)

_PAGE = 50
_NEXT_RUNS = 3
_LATE_SHOWN = 100
_DEPLOY_HINT = "describe it in plait.yaml and run `plait deploy`, or call `my_flow.deploy(...)` (docs/deployments.md)"


def _back(form: dict[str, str], default: str) -> str:
    """Where a change's redirect goes: the page it came from (a path on this server only)."""
    target = form.get("next", "")
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


def _ref(deployment: dict[str, Any]) -> str:
    return f"{deployment['flow_name']}/{deployment['name']}"


def _deployment_url(deployment: dict[str, Any]) -> str:
    return f"/deployments/{quote(deployment['flow_name'], safe='')}/{quote(deployment['name'], safe='')}"


def _schedule_text(schedule: dict[str, Any]) -> str:
    kind = schedule.get("kind")
    zone = schedule.get("timezone") or "UTC"
    if kind == "cron":
        text = f"cron {schedule.get('cron')} ({zone})"
    elif kind == "interval":
        text = f"every {_seconds(schedule.get('interval_seconds'))}"
    elif kind == "rrule":
        text = f"rrule {str(schedule.get('rrule', ''))[:80]} ({zone})"
    else:
        text = str(kind or "schedule")
    return text if schedule.get("active", True) else f"{text} — inactive"


def _seconds(value: Any) -> str:
    try:
        total = float(value)
    except (TypeError, ValueError):
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if total >= size and total % size == 0:
            return f"{int(total // size)} {unit}"
    return f"{total:g} s"


async def _upcoming(api: AsyncPlaitClient, deployment_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Scheduled runs yet to start of these deployments, soonest first, by deployment id (one
    request)."""
    if not deployment_ids:
        return {}
    page = await api.flow_runs(deployment=sorted(set(deployment_ids)), upcoming=True, limit=500)
    found: dict[str, list[dict[str, Any]]] = {}
    for run in sorted(page.items, key=lambda r: r.get("expected_start_time") or ""):
        found.setdefault(str(run["deployment_id"]), []).append(run)
    return found


# -- deployments ------------------------------------------------------------------------------------
@router.get("/deployments")
async def deployments_page(request: Request, flow: str | None = None, work_pool: str | None = None,
                           cursor: str | None = None) -> Response:
    """Deployments with their schedules, work pool, state and next runs (filters in the query)."""
    async with ui_api(request) as api:
        page = await api.deployments(flow_name=flow or None, work_pool=work_pool or None, limit=_PAGE,
                                     cursor=cursor or None)
        upcoming = await _upcoming(api, [d["id"] for d in page.items])
    rows = [{**d, "url": _deployment_url(d), "ref": _ref(d), "schedule_texts": [_schedule_text(s) for s in
                                                                                d.get("schedules", [])],
             "next_runs": upcoming.get(d["id"], [])[:_NEXT_RUNS]} for d in page.items]
    return render(request, "deployments.html", active="deployments", rows=rows, next_cursor=page.next_cursor,
                  flow=flow or "", work_pool=work_pool or "", first_page=not cursor, hint=_DEPLOY_HINT)


async def _deployment_context(api: AsyncPlaitClient, deployment: dict[str, Any]) -> dict[str, Any]:
    upcoming = (await _upcoming(api, [deployment["id"]])).get(deployment["id"], [])
    recent = await api.flow_runs(deployment=deployment["id"], upcoming=False, limit=10)
    return {
        "d": deployment, "url": _deployment_url(deployment), "ref": _ref(deployment),
        "schedule_texts": [_schedule_text(s) for s in deployment.get("schedules", [])],
        "next_runs": upcoming[:10], "recent": recent.items,
    }


def _parameter_fields(deployment: dict[str, Any], values: dict[str, Any] | None = None,
                      errors: dict[str, str] | None = None) -> list[dict[str, Any]]:
    defaults = dict(deployment.get("parameters") or {})
    shown = {**defaults, **(values or {})}
    return schema_fields(deployment.get("parameter_schema") or {}, shown, errors=errors)


@router.get("/deployments/{ref:path}")
async def deployment_page(request: Request, ref: str) -> Response:
    """One deployment: schedules, parameters, next and recent runs, and the "run now" form."""
    async with ui_api(request) as api:
        try:
            deployment = await api.deployment(ref)
        except ApiNotFound:
            return render(request, "not_found.html", status=404, what="deployment", ref=ref)
        context = await _deployment_context(api, deployment)
    return render(request, "deployment.html", active="deployments", fields=_parameter_fields(deployment),
                  error="", **context)


@router.post("/deployments/{ref:path}/run", dependencies=[Depends(check_csrf)])
async def run_deployment(request: Request, ref: str) -> Response:
    """Run a deployment now with the form's parameters; lands on the new flow run's page."""
    form = await form_data(request)
    async with ui_api(request) as api:
        try:
            deployment = await api.deployment(ref)
        except ApiNotFound:
            return render(request, "not_found.html", status=404, what="deployment", ref=ref)
        fields = _parameter_fields(deployment)
        schema = deployment.get("parameter_schema") or {}
        if schema.get("properties"):
            parameters, errors = parse_schema_form(fields, form)
        else:  # no schema known: the parameters as one JSON object
            parameters, errors = _json_parameters(form.get("parameters_json", ""))
        if not errors:
            try:
                run = await api.create_deployment_run(deployment["id"], parameters=parameters)
            except ApiError as exc:
                if exc.status is None or exc.status >= 500 or exc.status in (401, 403, 404):
                    raise
                errors, general = field_errors(exc, [f["name"] for f in fields])
                errors.setdefault("__form", general)
            else:
                return RedirectResponse(f"/flow-runs/{quote(run['id'], safe='')}", status_code=303)
        context = await _deployment_context(api, deployment)
    general = errors.pop("__form", "") or ("fix the parameters marked below" if errors else "")
    return render(request, "deployment.html", status=422, active="deployments",
                  fields=_parameter_fields(deployment, parameters, errors), error=general,
                  parameters_json=form.get("parameters_json", ""), **context)


def _json_parameters(text: str) -> tuple[dict[str, Any], dict[str, str]]:
    import json

    if not text.strip():
        return {}, {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return {}, {"__form": f"parameters: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"}
    if not isinstance(value, dict):
        return {}, {"__form": "parameters: a JSON object, e.g. {\"day\": \"2024-06-01\"}"}
    return value, {}


@router.post("/deployments/{ref:path}/pause", dependencies=[Depends(check_csrf)])
async def pause_deployment(request: Request, ref: str) -> Response:
    """Pause a deployment: no scheduled runs, nobody claims its runs."""
    form = await form_data(request)
    async with ui_api(request) as api:
        found = await api.pause_deployment(ref)
    return RedirectResponse(_back(form, _deployment_url(found)), status_code=303)


@router.post("/deployments/{ref:path}/resume", dependencies=[Depends(check_csrf)])
async def resume_deployment(request: Request, ref: str) -> Response:
    """Resume a paused deployment."""
    form = await form_data(request)
    async with ui_api(request) as api:
        found = await api.resume_deployment(ref)
    return RedirectResponse(_back(form, _deployment_url(found)), status_code=303)


# -- work pools -------------------------------------------------------------------------------------
def _pool_health(pool: dict[str, Any]) -> dict[str, Any]:
    workers = pool.get("workers") or []
    online = [w for w in workers if w.get("status") == "online"]
    last = max((w.get("heartbeat_at") or "" for w in workers), default="") or None
    return {"workers": len(workers), "online": len(online), "last_heartbeat": last}


@router.get("/work-pools")
async def work_pools_page(request: Request) -> Response:
    """Work pools with their workers' health."""
    async with ui_api(request) as api:
        pools = await api.work_pools()
        # the list has no workers: each pool's own answer has them (pools are few)
        details = await asyncio.gather(*(api.work_pool(p["name"]) for p in pools[:_PAGE]),
                                       return_exceptions=True)
    rows = []
    for pool, detail in zip(pools, list(details) + [None] * (len(pools) - len(details)), strict=True):
        full = detail if isinstance(detail, dict) else pool
        rows.append({**pool, "health": _pool_health(full), "queues": full.get("queues") or []})
    return render(request, "work_pools.html", active="work-pools", rows=rows)


@router.get("/work-pools/{name}")
async def work_pool_page(request: Request, name: str) -> Response:
    """One work pool: its queues, workers (online or offline) and deployments."""
    async with ui_api(request) as api:
        try:
            pool = await api.work_pool(name)
        except ApiNotFound:
            return render(request, "not_found.html", status=404, what="work pool", ref=name)
        deployments = await api.deployments(work_pool=name, limit=_PAGE)
    workers = sorted(pool.get("workers") or [], key=lambda w: (w.get("status") != "online", w.get("name", "")))
    rows = [{**d, "url": _deployment_url(d)} for d in deployments.items]
    return render(request, "work_pool.html", active="work-pools", pool=pool, workers=workers,
                  health=_pool_health(pool), deployments=rows, more_deployments=bool(deployments.next_cursor))


@router.post("/work-pools/{name}/pause", dependencies=[Depends(check_csrf)])
async def pause_work_pool(request: Request, name: str) -> Response:
    """Pause a work pool: its workers claim nothing until it is resumed."""
    form = await form_data(request)
    async with ui_api(request) as api:
        await api.pause_work_pool(name)
    return RedirectResponse(_back(form, f"/work-pools/{quote(name, safe='')}"), status_code=303)


@router.post("/work-pools/{name}/resume", dependencies=[Depends(check_csrf)])
async def resume_work_pool(request: Request, name: str) -> Response:
    """Resume a paused work pool."""
    form = await form_data(request)
    async with ui_api(request) as api:
        await api.resume_work_pool(name)
    return RedirectResponse(_back(form, f"/work-pools/{quote(name, safe='')}"), status_code=303)


# -- late runs --------------------------------------------------------------------------------------
async def _reason(api: AsyncPlaitClient, run_id: str) -> str:
    try:
        return str((await api.late_reason(run_id)).get("reason") or "")
    except ApiError as exc:
        if exc.status in (401,):
            raise
        return f"(the server could not say: {exc.message})"


@router.get("/late-runs")
async def late_runs_page(request: Request, flow: str | None = None) -> Response:
    """Scheduled runs past their start time (named "Late" by the server) and why they wait."""
    async with ui_api(request) as api:
        page = await api.flow_runs(state="SCHEDULED", upcoming=False, flow=flow or None, limit=500)
        late = [r for r in page.items if r.get("state_name") == "Late"][:_LATE_SHOWN]
        late.sort(key=lambda r: r.get("expected_start_time") or "")
        reasons = await asyncio.gather(*(_reason(api, r["id"]) for r in late))
    rows = [{**run, "reason": reason} for run, reason in zip(late, reasons, strict=True)]
    return render(request, "_o_late_runs.html", active="deployments", rows=rows, flow=flow or "",
                  more=bool(page.next_cursor))
