"""What every dashboard page shares: templates, the in-process API client, forms, CSRF.

The dashboard has no private door into the store: a page asks ``/api/v1`` for what it shows,
through ``ui_api(request)`` — an ``AsyncPlaitClient`` whose transport calls this same app
in-process with the browser's own API key. So a page can show only what that key may read,
already masked by the API, and every change goes through the same checks as any client's.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup, escape

from plait.client import AsyncPlaitClient
from plait.exceptions import PlaitError
from plait.server._deps import CSRF_HEADER, SESSION_COOKIE, auth_enabled, csrf_token

__all__ = [
    "LoginNeeded",
    "STATE_STYLES",
    "check_csrf",
    "form_data",
    "render",
    "session_key",
    "templates",
    "ui_api",
]

_HERE = Path(__file__).parent
_API_BASE = "http://plait-dashboard/api"  # never resolved: the transport is the app itself

# Colour-blind safe (Okabe-Ito) colours, each beside a symbol and the state's name.
STATE_STYLES: dict[str, tuple[str, str]] = {
    "COMPLETED": ("completed", "✓"),
    "CACHED": ("completed", "✓"),
    "FAILED": ("failed", "✗"),
    "CRASHED": ("crashed", "⚠"),
    "RUNNING": ("running", "▶"),
    "RETRYING": ("running", "↻"),
    "PENDING": ("pending", "○"),
    "SCHEDULED": ("scheduled", "◷"),
    "CANCELLED": ("cancelled", "⊘"),
    "CANCELLING": ("cancelled", "⊘"),
    "PAUSED": ("paused", "‖"),
}


class LoginNeeded(PlaitError):
    """The browser has no valid API key: the app answers with a redirect to ``/login``."""


def session_key(request: Request) -> str | None:
    """The API key the browser logged in with (None: no login)."""
    return request.cookies.get(SESSION_COOKIE) or None


@asynccontextmanager
async def ui_api(request: Request) -> AsyncIterator[AsyncPlaitClient]:
    """A client of this app's own API, authenticated as the browser.

    Raises:
        LoginNeeded: Auth is on and the browser's key is missing or refused.
    """
    from plait.client import ApiAuthError

    key = session_key(request)
    if key is None and auth_enabled(request):
        raise LoginNeeded("log in with an API key")
    transport = httpx.ASGITransport(app=request.app)
    client = AsyncPlaitClient(_API_BASE, api_key=key, timeout=60.0, transport=transport)
    try:
        yield client
    except ApiAuthError as exc:
        if exc.status == 401:
            raise LoginNeeded(str(exc)) from exc
        raise
    finally:
        await client.aclose()


async def form_data(request: Request) -> dict[str, str]:
    """The posted form (urlencoded), read once per request; the last value of each field."""
    cached: dict[str, str] | None = getattr(request.state, "form", None)
    if cached is None:
        body = (await request.body()).decode("utf-8", "replace")
        cached = {name: values[-1] for name, values in parse_qs(body, keep_blank_values=True).items()}
        request.state.form = cached
    return cached


async def check_csrf(request: Request) -> None:
    """Refuse a dashboard change without its page's token (a dependency of UI POST routes).

    Raises:
        plait.server._errors.ApiProblem: 403 when the token is missing or wrong.
    """
    import hmac

    from plait.server._errors import ApiProblem

    sent = request.headers.get(CSRF_HEADER) or (await form_data(request)).get("csrf", "")
    if not hmac.compare_digest(sent, csrf_token(session_key(request))):
        raise ApiProblem(403, "csrf", "this form is out of date or came from another site; reload the page and "
                                      "try again")


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """The template ``name`` filled with ``context`` and what every page needs."""
    template = templates.get_template(name)
    html = template.render(
        request=request,
        csrf=csrf_token(session_key(request)),
        auth_on=bool(session_key(request)),
        active=context.pop("active", ""),
        **context,
    )
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


# -- filters every template may use -------------------------------------------------------------
def _state_badge(state_type: str | None, state_name: str | None = None) -> Markup:
    kind = (state_type or "").upper()
    css, symbol = STATE_STYLES.get(kind, ("pending", "•"))
    label = state_name or kind.title() or "Unknown"
    return Markup('<span class="badge state-{}" data-state="{}"><span aria-hidden="true">{}</span> {}</span>').format(
        css, kind, symbol, label
    )


def _state_css(state_type: str | None) -> str:
    return "state-" + STATE_STYLES.get((state_type or "").upper(), ("pending", ""))[0]


def _when(iso: str | None) -> Markup:
    if not iso:
        return Markup('<span class="muted">—</span>')
    # the text is UTC until plait.js rewrites it in the browser's zone; the title keeps UTC
    shown = iso.replace("T", " ")[:19]
    return Markup('<time datetime="{}" title="{} UTC">{} UTC</time>').format(iso, shown, shown)


def _duration(seconds: float | None) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "—"
    value = float(seconds)
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _json(value: Any) -> Markup:
    text = json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)
    return Markup('<pre class="json">{}</pre>').format(text)


@jinja2.pass_context
def _qs(context: Any, **changes: Any) -> str:
    """The current page's query string with ``changes`` (None removes a key)."""
    request: Request = context["request"]
    params: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        params.setdefault(key, []).append(value)
    for key, value in changes.items():
        if value is None or value == "":
            params.pop(key, None)
        elif isinstance(value, list | tuple):
            params[key] = [str(v) for v in value]
        else:
            params[key] = [str(value)]
    query = urlencode([(k, v) for k, values in params.items() for v in values])
    return f"?{query}" if query else "?"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(state_badge=_state_badge, when=_when, duration=_duration, json=_json)
    env.globals.update(state_badge=_state_badge, state_css=_state_css, qs=_qs, escape=escape)
    return env


templates = _environment()
