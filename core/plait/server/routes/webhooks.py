"""Webhooks over the API: manage them (admin keys), and the receiver that outside systems
call with the webhook's own token instead of an API key.

``POST /webhooks/{slug}`` checks, in this order: the webhook exists and is enabled (404),
the token (``Authorization: Bearer``, ``X-Plait-Webhook-Token`` or ``?token=``; 401), the
webhook's rate (a token bucket per webhook in this server process, ``RATE_PER_SECOND``
with bursts of ``BURST``; 429 with ``Retry-After``) and the body's size (``MAX_BODY_BYTES``,
by ``Content-Length`` first and while it is read; 413). Then the template renders the event
(400 when it fails or gives no event), which is stored masked (202 ``{id, seq}``). The
template renders in a worker thread: a slow one never holds up other requests.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from plait._masking import mask
from plait._store.database import Database
from plait._store.webhooks import NAME_PATTERN, WebhookExists
from plait.automations._templates import MAX_TEMPLATE_CHARS, TemplateError
from plait.automations._webhooks import (
    DEFAULT_TEMPLATE,
    WebhookEventError,
    call_context,
    check_webhook_template,
    event_from_call,
)
from plait.server._deps import Caller, database, require
from plait.server._errors import ERROR_RESPONSES, ApiProblem, ErrorOut
from plait.server.routes.deployments import store_call

__all__ = ["router", "RATE_PER_SECOND", "BURST", "MAX_BODY_BYTES"]

router = APIRouter(tags=["webhooks"])

Store = Annotated[Database, Depends(database)]
Reader = Annotated[Caller, Depends(require("read"))]
Admin = Annotated[Caller, Depends(require("admin"))]

RATE_PER_SECOND = 20.0
BURST = 40
MAX_BODY_BYTES = 512 * 1024
_MAX_DESCRIPTION = 20_000


def _storable(text: str) -> str:
    if "\x00" in text:
        raise ValueError("a text holds a NUL character, which no database stores")
    if not text.isascii() and any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        raise ValueError("a text holds an unpaired surrogate code point (e.g. \\ud800), which is not valid UTF-8")
    return text


Text = Annotated[str, AfterValidator(_storable)]
NamePath = Annotated[str, Path(min_length=1, max_length=200, pattern=NAME_PATTERN, examples=["github-push"],
                               description="The webhook's name.")]


# -- models ------------------------------------------------------------------------------------------
class WebhookOut(BaseModel):
    """A webhook (never its token)."""

    id: str
    name: str
    slug: str = Field(description="The random part of its URL.")
    path: str = Field(description="Where it is called: POST this path with the webhook's token.")
    template: str = Field(description="The Jinja2 text of the event a call makes.")
    description: str
    enabled: bool = Field(description="False: its URL answers 404.")
    created: str | None = None
    updated: str | None = None
    last_called_at: str | None = Field(default=None, description="When a call last made an event.")


class WebhooksPage(BaseModel):
    items: list[WebhookOut]
    next_cursor: str | None = Field(default=None, description="Always null: every webhook is in one page.")


class WebhookIn(BaseModel):
    """A new webhook (``plait webhook create NAME --template ...``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "name": "github-push", "description": "pushes to the analytics repository",
        "template": '{"event": "github.push", "resource": {"id": "github/{{ body.repository.full_name }}"}, '
                    '"payload": {"after": {{ body.after | tojson }}}}',
    }]})

    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN, description="A unique name.")
    template: Text | None = Field(default=None, min_length=1, max_length=MAX_TEMPLATE_CHARS,
                                  description="Jinja2 rendering the JSON of {event, resource: {id, ...labels}, "
                                  "payload}; default: kind external.webhook-called with the body as payload.")
    description: Text = Field(default="", max_length=_MAX_DESCRIPTION)
    enabled: bool = True


class WebhookPatch(BaseModel):
    """What to change of a webhook (fields left out stay as they are)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"enabled": False}]})

    template: Text | None = Field(default=None, min_length=1, max_length=MAX_TEMPLATE_CHARS)
    description: Text | None = Field(default=None, max_length=_MAX_DESCRIPTION)
    enabled: bool | None = None


class CreatedWebhookOut(BaseModel):
    webhook: WebhookOut
    token: str = Field(description="The webhook's token, shown this once: the caller sends it with every call.")
    path: str


class RotatedWebhookOut(BaseModel):
    webhook: WebhookOut
    token: str = Field(description="The new token (the old one no longer works).")


class WebhookCallOut(BaseModel):
    id: str = Field(description="The stored event's id.")
    seq: int = Field(description="The stored event's seq (GET /events?after=seq-1 finds it).")


# -- helpers -----------------------------------------------------------------------------------------
def _missing(name: str) -> Any:
    def problem(message: str = "") -> ApiProblem:
        return ApiProblem(404, "webhook_not_found",
                          message or f"no webhook named {name!r}; `plait webhook ls` lists them",
                          {"resource": "webhook", "id": name})
    return problem


def _invalid(message: str) -> ApiProblem:
    return ApiProblem(422, "invalid_webhook", message)


def _bad_template(exc: TemplateError) -> ApiProblem:
    return ApiProblem(400, "invalid_template", str(exc),
                      {"field": "template", "line": exc.line, "column": exc.column})


def _check(name: str, template: str) -> None:
    try:
        check_webhook_template(name, template)
    except TemplateError as exc:
        raise _bad_template(exc) from None


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    """A webhook as answered: the texts its authors wrote masked."""
    return {**row, "template": mask(row.get("template") or ""), "description": mask(row.get("description") or "")}


# -- management --------------------------------------------------------------------------------------
@router.get("/webhooks", response_model=WebhooksPage, responses=ERROR_RESPONSES, summary="List webhooks")
def list_webhooks(db: Store, caller: Reader) -> Any:
    """Every webhook by name (never a token)."""
    from plait._store.webhooks import list_webhooks as stored

    return {"items": [_shown(r) for r in stored(db)], "next_cursor": None}


@router.post("/webhooks", status_code=201, response_model=CreatedWebhookOut,
             responses={**ERROR_RESPONSES, 409: {"model": ErrorOut, "description": "The name is taken"}},
             summary="Create a webhook")
def create_webhook(body: WebhookIn, db: Store, caller: Admin) -> Any:
    """Create a webhook (needs scope admin). Answers its token once: only its hash is kept.
    A template that does not parse is refused (400) naming the line and column."""
    from plait._store.webhooks import create_webhook as store_create

    template = body.template if body.template is not None else DEFAULT_TEMPLATE
    _check(body.name, template)
    try:
        made, token = store_create(db, body.name, template, description=body.description, enabled=body.enabled)
    except WebhookExists as exc:
        raise ApiProblem(409, "webhook_exists", str(exc), {"resource": "webhook", "id": body.name}) from None
    except ValueError as exc:
        raise _invalid(str(exc)) from None
    return {"webhook": _shown(made), "token": token, "path": made["path"]}


@router.get("/webhooks/by-name/{name}", response_model=WebhookOut, responses=ERROR_RESPONSES, summary="Get a webhook")
def get_webhook(name: NamePath, db: Store, caller: Reader) -> Any:
    """One webhook by name."""
    from plait._store.webhooks import get_webhook as stored

    return _shown(store_call(lambda: stored(db, name), missing=_missing(name), refused=_invalid))


@router.patch("/webhooks/by-name/{name}", response_model=WebhookOut, responses=ERROR_RESPONSES,
              summary="Change a webhook")
def update_webhook(name: NamePath, body: WebhookPatch, db: Store, caller: Admin) -> Any:
    """Change its template, description or whether it is enabled (needs scope admin); a
    template that does not parse is refused (400) naming the line and column."""
    from plait._store.webhooks import update_webhook as store_update

    if body.template is not None:
        _check(name, body.template)
    found, _changed = store_call(
        lambda: store_update(db, name, template=body.template, description=body.description, enabled=body.enabled),
        missing=_missing(name), refused=_invalid,
    )
    return _shown(found)


@router.post("/webhooks/by-name/{name}/rotate", response_model=RotatedWebhookOut, responses=ERROR_RESPONSES,
             summary="Give a webhook a new token")
def rotate_webhook(name: NamePath, db: Store, caller: Admin) -> Any:
    """A new token (needs scope admin), answered once; the old one stops working at once."""
    from plait._store.webhooks import rotate_webhook_token

    found, token = store_call(lambda: rotate_webhook_token(db, name), missing=_missing(name), refused=_invalid)
    return {"webhook": _shown(found), "token": token}


@router.delete("/webhooks/by-name/{name}", response_model=WebhookOut, responses=ERROR_RESPONSES,
               summary="Delete a webhook")
def delete_webhook(name: NamePath, db: Store, caller: Admin) -> Any:
    """Delete a webhook (needs scope admin); its URL answers 404 from now on. Answers what
    was deleted."""
    from plait._store.webhooks import delete_webhook as store_delete

    return _shown(store_call(lambda: store_delete(db, name), missing=_missing(name), refused=_invalid))


# -- the receiver ------------------------------------------------------------------------------------
class _Buckets:
    """A token bucket per webhook: ``RATE_PER_SECOND`` calls a second, ``BURST`` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._lock = threading.Lock()
        self._state: dict[str, tuple[float, float]] = {}  # webhook id -> (tokens, as of)

    def take(self, key: str) -> float:
        """0 when a call may go ahead (a token is taken), else the seconds until one may."""
        now = time.monotonic()
        with self._lock:
            tokens, at = self._state.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._state[key] = (tokens - 1.0, now)
                return 0.0
            self._state[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


_BUCKETS = _Buckets(RATE_PER_SECOND, BURST)


def _bearer(request: Request) -> str | None:
    scheme, _, value = (request.headers.get("authorization") or "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def _too_large() -> ApiProblem:
    return ApiProblem(413, "request_too_large",
                      f"a webhook's request body is at most {MAX_BODY_BYTES:,} bytes (512 KiB); send less, or send a "
                      "reference to the data", {"max_bytes": MAX_BODY_BYTES})


async def _read_body(request: Request) -> bytes:
    length = request.headers.get("content-length")
    if length and length.strip().isdigit() and int(length) > MAX_BODY_BYTES:
        raise _too_large()
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > MAX_BODY_BYTES:
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)


_CALL_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "The template failed, or its output is not an event"},
    401: {"model": ErrorOut, "description": "The webhook's token is missing or wrong"},
    404: {"model": ErrorOut, "description": "No enabled webhook at this URL"},
    413: {"model": ErrorOut, "description": "The body is larger than 512 KiB"},
    422: {"model": ErrorOut, "description": "A query parameter or header is malformed"},
    429: {"model": ErrorOut, "description": "Past the webhook's rate; retry after Retry-After seconds"},
    503: {"model": ErrorOut, "description": "The store is not answering; retry later"},
}


@router.post(
    "/webhooks/{slug}", status_code=202, response_model=WebhookCallOut, responses=_CALL_RESPONSES,
    summary="Call a webhook (its own token, no API key)",
    openapi_extra={"requestBody": {"required": False, "description": "Any body up to 512 KiB; JSON is parsed for "
                                   "the template (as `body`), other text is given as it is.",
                                   "content": {"application/json": {"schema": {}}, "text/plain": {"schema": {}}}}},
)
async def call_webhook(
    slug: Annotated[str, Path(min_length=1, max_length=200, description="The random part of the webhook's URL.")],
    request: Request,
    token: Annotated[str | None, Query(max_length=500, description="The webhook's token (or send it in a header: "
                                                                  "a query string may end up in logs).")] = None,
    x_plait_webhook_token: Annotated[str | None, Header(max_length=500, description="The webhook's token.")] = None,
) -> Any:
    """Turn this request into an event through the webhook's template. No API key: send the
    webhook's token as ``Authorization: Bearer <token>``, ``X-Plait-Webhook-Token`` or
    ``?token=``. Answers 202 with the stored event's ``id`` and ``seq``."""
    from plait._store.webhooks import record_webhook_call, webhook_for_call

    db: Database = request.app.state.database
    given = x_plait_webhook_token or _bearer(request) or token
    try:
        hook = await run_in_threadpool(webhook_for_call, db, slug, given)
    except LookupError:
        raise ApiProblem(404, "webhook_not_found", "no enabled webhook at this URL; `plait webhook ls` lists them "
                         "(a disabled one answers 404 until `plait webhook enable NAME`)") from None
    except PermissionError as exc:
        told = "no token was sent" if str(exc) == "missing" else "the token is wrong"
        raise ApiProblem(401, "unauthorized", f"{told}: send the webhook's token as `Authorization: Bearer <token>` "
                         "or `X-Plait-Webhook-Token: <token>` (`plait webhook rotate NAME` makes a new one)",
                         headers={"WWW-Authenticate": 'Bearer realm="plait webhook"'}) from None
    wait = _BUCKETS.take(hook["id"])
    if wait > 0:
        raise ApiProblem(429, "too_many_requests",
                         f"webhook {hook['name']!r} takes at most {RATE_PER_SECOND:g} calls a second (bursts of "
                         f"{BURST}); retry in {wait:.2f} s", {"retry_after": max(round(wait, 3), 0.001)},
                         headers={"Retry-After": str(max(1, math.ceil(wait)))})
    body = await _read_body(request)
    context = call_context(hook["name"], body, request.headers.items(), request.query_params.multi_items(),
                           request.method)
    try:
        event = await run_in_threadpool(event_from_call, hook["name"], hook["template"], context)
    except TemplateError as exc:
        raise ApiProblem(400, "template_failed", str(exc), {"line": exc.line, "column": exc.column}) from None
    except WebhookEventError as exc:
        raise ApiProblem(400, "not_an_event", str(exc)) from None
    stored = await run_in_threadpool(record_webhook_call, db, hook["id"], event["kind"], event["resource_id"],
                                     event["payload"], event["labels"])
    return JSONResponse({"id": stored["id"], "seq": stored["seq"]}, status_code=202)
