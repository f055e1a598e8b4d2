"""The runs page (``/``): flow runs with filters, keyset pages, a state summary and a chart.

Filters live in the query string (a URL can be shared). The page answers with the table at
once (one keyset page of the index); the summary and chart, which count every matching run,
arrive as a second fragment (``/runs/summary``) so a long history never holds the first paint
up. A filter change asks for the table fragment (htmx), which brings its summary along; the
page listens to one event stream and refreshes at most once a second while it shows the
newest page.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from plait.server.ui._base import render, ui_api

router = APIRouter()

RANGES = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7),
          "30d": timedelta(days=30), "all": None}
DEFAULT_RANGE = "7d"
STATES = ("COMPLETED", "FAILED", "CRASHED", "RUNNING", "PENDING", "SCHEDULED", "PAUSED", "CANCELLING", "CANCELLED",
          "RETRYING", "CACHED")
_BUCKETS = 48
_PAGE = 50
Values = Annotated[list[str] | None, Query()]


def _clean(values: list[str] | None) -> list[str]:
    return [v.strip() for v in values or [] if v and v.strip()]


def _filters(state: Values, flow: Values, deployment: Values, tag: Values, range_: str,
             top: str | None) -> dict[str, Any]:
    """The page's filters as the query string gave them, unknown values dropped."""
    return {
        "state": [s.upper() for s in _clean(state) if s.upper() in STATES],
        "flow": _clean(flow),
        "deployment": _clean(deployment),
        "tag": _clean(tag),
        "range": range_ if range_ in RANGES else DEFAULT_RANGE,
        "top": top == "1",
    }


def _api_filters(filters: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The filters as the API's query: shared by the list and the summary."""
    window = RANGES[str(filters["range"])]
    return {
        "flow": filters["flow"] or None, "state": filters["state"] or None, "tag": filters["tag"] or None,
        "deployment": filters["deployment"] or None, "top_level": True if filters["top"] else None,
        "since": now - window if window is not None else None,
    }


@router.get("/", response_class=HTMLResponse)
async def runs_page(
    request: Request,
    state: Values = None,
    flow: Values = None,
    deployment: Values = None,
    tag: Values = None,
    range: str = DEFAULT_RANGE,  # noqa: A002 - the query's name
    top: str | None = None,
    cursor: str | None = None,
) -> HTMLResponse:
    """The runs page, or (asked by htmx) only its body: the table and the summary's slot."""
    filters = _filters(state, flow, deployment, tag, range, top)
    async with ui_api(request) as api:
        page = await api.flow_runs(**_api_filters(filters, datetime.now(UTC)), limit=_PAGE, cursor=cursor or None)
    context: dict[str, Any] = {
        "runs": page.items, "next_cursor": page.next_cursor, "cursor": cursor, "filters": filters,
        "states": STATES, "ranges": list(RANGES),
        "filtered": any(filters[k] for k in ("state", "flow", "deployment", "tag", "top")),
    }
    if request.headers.get("HX-Request") and request.headers.get("HX-Target") == "runs-body":
        return render(request, "_runs_body.html", **context)
    return render(request, "runs.html", active="runs", **context)


@router.get("/runs/summary", response_class=HTMLResponse)
async def runs_summary(
    request: Request,
    state: Values = None,
    flow: Values = None,
    deployment: Values = None,
    tag: Values = None,
    range: str = DEFAULT_RANGE,  # noqa: A002 - the query's name
    top: str | None = None,
) -> HTMLResponse:
    """The runs page's summary fragment: counts by state and the runs-over-time chart."""
    filters = _filters(state, flow, deployment, tag, range, top)
    now = datetime.now(UTC)
    async with ui_api(request) as api:
        summary = await api.flow_run_summary(**_api_filters(filters, now), until=now, buckets=_BUCKETS)
    return render(request, "_runs_summary.html", summary=summary, chart=_chart(summary), filters=filters)


def _chart(summary: dict[str, Any]) -> dict[str, Any]:
    """Bars of the runs-over-time chart: per bucket, each state's share of the tallest bar."""
    buckets = summary.get("buckets") or []
    tallest = max((sum(b["counts"].values()) for b in buckets), default=0) or 1
    bars = []
    for bucket in buckets:
        total = sum(bucket["counts"].values())
        parts = [(s, bucket["counts"][s], 100.0 * bucket["counts"][s] / tallest)
                 for s in STATES if bucket["counts"].get(s)]
        bars.append({"start": bucket["start"], "end": bucket["end"], "total": total, "parts": parts})
    return {"bars": bars, "tallest": tallest if buckets else 0,
            "first": buckets[0]["start"] if buckets else None, "last": buckets[-1]["end"] if buckets else None}
