"""Dashboard pages for events (newest first, a kind filter, an "older" link, new events live)
and automations (list, enable / disable, detail with the actions taken).

``GET /api/v1/events`` pages oldest first and has no "before" filter yet (requests-orch.md),
so the newest page is found by searching the seq space with ``after=`` (about 2·log2(seq)
tiny requests, in-process) and then reading windows of seqs backwards.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from plait.client import ApiError, ApiNotFound
from plait.server.ui._base import check_csrf, form_data, render, ui_api

__all__ = ["router"]

router = APIRouter()

_EVENTS_PAGE = 50

# plait's own kinds: the live stream names each message by its kind, and a page listens by name
_KNOWN_KINDS = (
    "flow-run.state-changed", "task-run.state-changed", "logs.written", "block.saved", "block.deleted",
    "api-key.created", "api-key.revoked", "flow-run.scheduled",
    "deployment.created", "deployment.updated", "deployment.paused", "deployment.resumed", "deployment.deleted",
    "work-pool.created", "work-pool.updated", "work-pool.paused", "work-pool.resumed", "work-pool.deleted",
    "concurrency-limit.created", "concurrency-limit.updated", "concurrency-limit.deleted", "concurrency-limit.reset",
    "automation.created", "automation.updated", "automation.enabled", "automation.disabled", "automation.deleted",
    "automation.triggered", "automation.action.executed", "automation.action.failed", "automation.loop-detected",
    "webhook.created", "webhook.updated", "webhook.deleted",
)


# -- events -----------------------------------------------------------------------------------------
def _event_row(event: Any) -> dict[str, Any]:
    payload = event.payload or {}
    summary = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False)
    return {"seq": event.seq, "id": event.id, "occurred": event.occurred, "kind": event.kind,
            "resource": event.resource, "payload": payload, "labels": event.labels,
            "summary": summary if len(summary) <= 200 else summary[:199] + "…", "link": _resource_link(event.resource)}


def _resource_link(resource: str) -> str | None:
    kind, _, rest = (resource or "").partition("/")
    if kind == "flow-run" and rest:
        return f"/flow-runs/{quote(rest, safe='')}"
    if kind == "block" and rest.count("/") == 1:
        slug, name = rest.split("/")
        return f"/blocks/{quote(slug, safe='')}/{quote(name, safe='')}"
    if kind == "work-pool" and rest:
        return f"/work-pools/{quote(rest, safe='')}"
    if kind == "automation" and rest:
        return f"/automations/{quote(rest, safe='')}"
    return None


def _live_kinds(kinds: list[str] | None, rows: list[dict[str, Any]]) -> list[str]:
    """The kinds the page listens for: the filter's (a ``x.*`` one expanded), else plait's
    own and those on the page."""
    if not kinds:
        return sorted({*_KNOWN_KINDS, *(r["kind"] for r in rows)})
    listened = set()
    for kind in kinds:
        if kind.endswith(".*"):
            listened |= {k for k in _KNOWN_KINDS if k.startswith(kind[:-1])}
            listened |= {r["kind"] for r in rows if r["kind"].startswith(kind[:-1])}
        else:
            listened.add(kind)
    return sorted(listened)


@router.get("/events")
async def events_page(request: Request, kind: str | None = None, before: int | None = None) -> Response:
    """Events, newest first: ``?kind=`` (comma-separated, ``block.*`` patterns), ``?before=seq``."""
    kinds = [k.strip() for k in (kind or "").split(",") if k.strip()] or None
    error = ""
    rows: list[dict[str, Any]] = []
    older: int | None = None
    async with ui_api(request) as api:
        try:
            page = await api.events(kind=kinds, before=before, newest_first=True, limit=_EVENTS_PAGE)
            rows = [_event_row(e) for e in page.items]
            older = int(page.next_cursor) if page.next_cursor else None
        except ApiError as exc:
            if exc.status not in (400, 422):
                raise
            error = exc.message
    # the newest page goes on live from the newest event it shows (none shown: from now on)
    after = [f"after={rows[0]['seq']}"] if rows and before is None else []
    stream = "/api/v1/events/stream?" + "&".join(after + [f"kind={quote(k, safe='')}" for k in kinds or []])
    return render(request, "events.html", active="events", rows=rows, kind=kind or "", older=older,
                  newest=before is None, error=error, stream=stream, live_kinds=_live_kinds(kinds, rows))


# -- automations ------------------------------------------------------------------------------------
def _trigger_text(trigger: dict[str, Any]) -> str:
    kind = trigger.get("type", "")
    expect = ", ".join(trigger.get("expect") or [])
    if kind == "event":
        posture = trigger.get("posture", "reactive")
        threshold = trigger.get("threshold", 1)
        within = trigger.get("within") or 0
        text = f"{posture}: {expect or 'any event'}"
        if threshold and threshold != 1:
            text += f" ×{threshold}"
        if within:
            text += f" within {within:g} s"
        match = trigger.get("match") or {}
        if match:
            text += " where " + ", ".join(f"{k}={v}" for k, v in match.items())
        return text
    return f"{kind}: {expect}" if expect else str(kind)


def _action_text(action: dict[str, Any]) -> str:
    kind = str(action.get("type", ""))
    for key in ("deployment", "block", "automation", "work_pool", "url"):
        if action.get(key):
            return f"{kind} {action[key]}"
    return kind


def _automation_row(item: dict[str, Any]) -> dict[str, Any]:
    key = item.get("name") or item["id"]
    return {**item, "url": f"/automations/{quote(key, safe='')}", "key": key,
            "trigger_text": _trigger_text(item.get("trigger") or {}),
            "action_texts": [_action_text(a) for a in item.get("actions") or []],
            "changeable": not item.get("read_only") and item.get("source") != "notification-rule"}


@router.get("/automations")
async def automations_page(request: Request, enabled: str | None = None) -> Response:
    """Automations (and notification rules, read-only), filter ``?enabled=yes|no``."""
    async with ui_api(request) as api:
        items = await api.list_automations()
    rows = [_automation_row(a) for a in items]
    if enabled in ("yes", "no"):
        rows = [r for r in rows if bool(r.get("enabled")) == (enabled == "yes")]
    return render(request, "automations.html", active="automations", rows=rows, enabled=enabled or "")


@router.post("/automations/{key:path}/enable", dependencies=[Depends(check_csrf)])
async def enable_automation(request: Request, key: str) -> Response:
    """Enable an automation."""
    return await _toggle(request, key, True)


@router.post("/automations/{key:path}/disable", dependencies=[Depends(check_csrf)])
async def disable_automation(request: Request, key: str) -> Response:
    """Disable an automation: it takes no action until enabled again."""
    return await _toggle(request, key, False)


async def _toggle(request: Request, key: str, on: bool) -> Response:
    form = await form_data(request)
    async with ui_api(request) as api:
        try:
            await (api.enable_automation(key) if on else api.disable_automation(key))
        except ApiNotFound:
            return render(request, "not_found.html", status=404, what="automation", ref=key)
    target = form.get("next", "")
    if not (target.startswith("/") and not target.startswith("//") and "\\" not in target):
        target = f"/automations/{quote(key, safe='')}"
    return RedirectResponse(target, status_code=303)


@router.get("/automations/{key:path}")
async def automation_page(request: Request, key: str, status: str | None = None) -> Response:
    """One automation: its trigger, actions, and the actions it took (``?status=failed``...)."""
    async with ui_api(request) as api:
        try:
            item = await api.get_automation(key)
        except ApiNotFound:
            return render(request, "not_found.html", status=404, what="automation", ref=key)
        if status:
            actions = await api.automation_actions(item["id"], status=status, limit=100)
        else:
            actions = list(item.get("recent_actions") or [])
    return render(request, "automation.html", active="automations", a=_automation_row(item), actions=actions,
                  status_filter=status or "")
