"""Events: what happened in the store, as a list and as a live stream.

Every state change, block change and log batch stored produces an event ``{seq, id,
occurred, kind, resource, payload}`` (``plait._store.events``). ``GET /events`` pages
through them oldest first; ``GET /events/stream`` pushes them as Server-Sent Events::

    id: 42
    event: flow-run.state-changed
    data: {"seq": 42, "id": "...", "occurred": "...", "kind": "flow-run.state-changed", ...}

The ``id:`` is the seq, so a client reconnecting with ``Last-Event-ID`` (or ``?after=``)
gets everything after it first, then the live events. New log lines arrive as
``logs.written`` events naming the flow run; read the lines themselves from
``GET /logs?flow_run=...``. A comment line (``: keep-alive``) is sent every 15 s so proxies
keep the connection open.

``POST /events`` stores an event of the caller's own (``plait.events.emit_event`` sends it,
a key of scope run): ``{event, resource: {id, ...labels}, payload, occurred}``. Kinds of
plait's own (``flow-run.``, ``deployment.``, ``automation.``... the prefixes of
``plait._store.events.KINDS``) are refused, so no client can forge a state change; a
secret the server knows is masked in the payload and labels before they are stored.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from plait._masking import mask
from plait._store.database import Database
from plait.events import (
    FUTURE_SLACK,
    MAX_EVENT_BYTES,
    MAX_LABEL_VALUE,
    MAX_LABELS,
    MAX_RESOURCE_ID,
    event_size,
    reserved_prefixes,
)
from plait.exceptions import DatabaseError
from plait.server._deps import Caller, database, require
from plait.server._errors import ERROR_RESPONSES, ApiProblem
from plait.server._models import EventItem, Page
from plait.server._params import HeldRunId, from_store, limit_query, utc
from plait.server._stream import hub_for, matches
from plait.server.routes.deployments import JsonObject, refusal

__all__ = ["router", "KEEPALIVE_SECONDS"]

router = APIRouter(tags=["events"])
logger = logging.getLogger("plait.server")

KEEPALIVE_SECONDS = 15.0
_TICK = 0.25  # how often a stream looks at the server stopping and its queue

Reader = Annotated[Caller, Depends(require("read"))]
Runner = Annotated[Caller, Depends(require("run"))]
Store = Annotated[Database, Depends(database)]
KindQuery = Annotated[
    list[str] | None,
    Query(max_length=50, description="event kind, e.g. flow-run.state-changed; repeat for several"),
]
ResourceQuery = Annotated[
    str | None, Query(max_length=500, description="resource prefix, e.g. flow-run/ or flow-run/<id>")
]
AfterQuery = Annotated[int | None, Query(ge=0, le=2**63 - 1, description="only events after this seq")]


@router.get("/events", response_model=Page[EventItem], summary="List events")
def list_events(
    db: Store,
    caller: Reader,
    kind: KindQuery = None,
    resource: ResourceQuery = None,
    after: AfterQuery = None,
    since: Annotated[datetime | None, Query(description="occurred at or after (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="occurred before (ISO 8601)")] = None,
    before: Annotated[int | None, Query(ge=0, le=2**63 - 1, description="only events before this seq")] = None,
    order: Annotated[Literal["asc", "desc"], Query(description="asc: oldest first; desc: newest first")] = "asc",
    limit: int = limit_query(100, 1000),
    cursor: Annotated[str | None, Query(max_length=100, description="`next_cursor` of the previous page")] = None,
) -> dict[str, Any]:
    """Events, oldest first (``order=desc``: newest first)."""
    from plait._store.events import list_events as store_list

    newest_first = order == "desc"
    if cursor is not None:  # the cursor continues in the page's own direction
        if newest_first:
            before = _seq(cursor, "cursor")
        else:
            after = _seq(cursor, "cursor")
    return from_store(lambda: store_list(
        db, kinds=kind or None, resource=resource or None, after_seq=after, before_seq=before,
        newest_first=newest_first, since=utc(since), until=utc(until), limit=limit,
    ))


# -- custom events -----------------------------------------------------------------------------------
# The rules are plait.events' (what emit_event checks before sending), so client and server agree.
_EVENT_KIND = r"^[a-z][a-z0-9-]*(\.[a-z0-9-]+)+$"
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,199}$")
_NO_CONTROL = re.compile(r"^[^\x00-\x1f\x7f]+$")


class EventIn(BaseModel):
    """An event of your own: what happened (``event``), to what (``resource``: its ``id`` and
    string labels), and details (``payload``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "event": "warehouse.table.refreshed", "resource": {"id": "analytics.orders", "team": "data"},
        "payload": {"rows": 1200},
    }]})

    event: str = Field(min_length=3, max_length=200, pattern=_EVENT_KIND,
                       description="The kind, lowercase and dotted: 'warehouse.table.refreshed'.")
    resource: dict[str, str] = Field(description="What it is about: 'id' (required) and labels, all strings.")
    payload: JsonObject = Field(default_factory=dict, description="Details (JSON); at most 64 KiB with the labels.")
    occurred: datetime | None = Field(default=None, description="When it happened (default: now).")

    @field_validator("resource")
    @classmethod
    def _resource(cls, value: dict[str, str]) -> dict[str, str]:
        ident = value.get("id")
        if not isinstance(ident, str) or not ident.strip():
            raise ValueError("needs an 'id' (a non-empty string), e.g. {\"id\": \"analytics.orders\"}")
        if len(ident) > MAX_RESOURCE_ID or not _NO_CONTROL.match(ident):
            raise ValueError(f"'id' is at most {MAX_RESOURCE_ID} characters without control characters")
        if len(value) - 1 > MAX_LABELS:
            raise ValueError(f"at most {MAX_LABELS} labels beside 'id'")
        for key, text in value.items():
            if key != "id" and not _LABEL_NAME.match(key):
                raise ValueError(f"label {key[:50]!r} is not a label name like 'team' or 'table.schema'")
            if len(text) > MAX_LABEL_VALUE or "\x00" in text:
                raise ValueError(f"label {key[:50]!r}: at most {MAX_LABEL_VALUE} characters, no NUL")
        return value


def _masked_json(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: _masked_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked_json(v) for v in value]
    return value


@router.post("/events", response_model=EventItem, status_code=201,
             responses=ERROR_RESPONSES, summary="Emit an event")
def emit_event(body: EventIn, db: Store, caller: Runner) -> dict[str, Any]:
    """Store an event of your own (``plait.events.emit_event`` sends this) and answer it with
    its ``seq``; automations see it like any other. Kinds that are plait's own
    (``flow-run.*``, ``deployment.*``, ``automation.*``...) are refused (400), as is an event
    whose payload and labels pass 64 KiB of JSON (413) or one dated more than 5 minutes
    ahead (422). A secret the server knows is masked before it is stored."""
    from plait._store.events import record_event

    reserved = reserved_prefixes()
    if body.event.startswith(reserved):
        raise ApiProblem(400, "reserved_event_kind", (
            f"event kind {body.event!r} is reserved for plait (kinds starting with {', '.join(reserved)}); "
            "name your own like 'warehouse.table.refreshed'"), [{"in": "body", "field": "event",
                                                               "message": "reserved for plait"}])
    labels = {k: v for k, v in body.resource.items() if k != "id"}
    size = event_size(body.payload, labels)
    if size > MAX_EVENT_BYTES:
        raise ApiProblem(413, "event_too_large", f"the event's payload and labels are {size} bytes of JSON; at "
                         f"most {MAX_EVENT_BYTES} are taken: send large data elsewhere and its address here")
    occurred = utc(body.occurred)
    if occurred is not None and occurred > datetime.now(UTC) + FUTURE_SLACK:
        raise refusal(422, "invalid_event", "'occurred' is more than 5 minutes ahead of the server's clock; "
                      "give when it happened (UTC, or with an offset)", "occurred")
    return from_store(lambda: record_event(
        db, body.event, body.resource["id"], _masked_json(body.payload),
        labels={k: mask(v) for k, v in labels.items()} or None, occurred=occurred,
    ))


def _seq(value: str, name: str) -> int:
    text = value.strip()
    if not text.isdigit() or len(text) > 19:
        where = "header" if name == "Last-Event-ID" else "query parameter"
        raise ApiProblem(400, "bad_cursor" if name == "cursor" else "bad_request",
                         f"{where} {name!r}: an event seq (a whole number), not {value[:50]!r}")
    return int(text)


@router.get(
    "/events/stream",
    summary="Stream events live (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={200: {"description": "An event stream", "content": {"text/event-stream": {}}}},
)
async def stream_events(
    request: Request,
    caller: Reader,
    kind: KindQuery = None,
    resource: ResourceQuery = None,
    after: AfterQuery = None,
    flow_run: Annotated[list[HeldRunId] | None, Query(max_length=50, description=(
        "only events of this flow run (repeat for several): its own, its task runs' and its logs'"))] = None,
    timeout: Annotated[float | None, Query(gt=0, le=86400, description="end the stream after this many "
                                                                       "seconds (default: never)")] = None,
    last_event_id: Annotated[str | None, Header(max_length=100, description="resume after this seq")] = None,
) -> StreamingResponse:
    """New events as they are stored (within ~250 ms, whichever server stored them); with
    ``after`` or ``Last-Event-ID``, first every stored event after that seq."""
    start = _seq(last_event_id, "Last-Event-ID") if last_event_id else after
    kinds = set(kind) if kind else None
    if kinds:
        await asyncio.to_thread(_check_kinds, request.app.state.database, sorted(kinds))
    stream = _stream(request, _Filter(kinds, resource or None, frozenset(flow_run or ()) or None), start, timeout)
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _check_kinds(db: Database, kinds: list[str]) -> None:
    """Refuse a malformed kind filter before the stream starts (400, as ``GET /events``)."""
    from plait._store.events import list_events as store_list

    from_store(lambda: store_list(db, kinds=kinds, limit=1))


def _message(event: dict[str, Any]) -> str:
    data = json.dumps(event, separators=(",", ":"), default=str)
    kind = str(event.get("kind", "message")).replace("\n", " ")
    return f"id: {int(event['seq'])}\nevent: {kind}\ndata: {data}\n\n"


@dataclass(frozen=True)
class _Filter:
    """What one stream sends: kinds, a resource prefix, flow runs (``matches``' filters)."""

    kinds: set[str] | None
    resource: str | None
    runs: frozenset[str] | None

    def __call__(self, event: dict[str, Any]) -> bool:
        return matches(event, self.kinds, self.resource, self.runs)


async def _stream(request: Request, wanted: _Filter, start: int | None, timeout: float | None) -> AsyncIterator[str]:
    app_state = request.app.state
    hub = hub_for(app_state)
    loop = asyncio.get_running_loop()
    ends = loop.time() + timeout if timeout else None
    sent: set[int] = set()  # stored events already sent from the backlog that the hub may send again
    # subscribed here, not in the route: only a generator that ran can unsubscribe in its finally
    try:
        sub = await hub.subscribe()
    except DatabaseError as exc:
        logger.warning("an event stream could not start: %s", exc)
        yield "retry: 5000\n: the server cannot read its store now; reconnect later\n\n"
        return
    try:
        yield f"retry: 2000\n: connected after {start if start is not None else sub.floor}\n\n"
        last = start
        if start is not None:
            async for chunk in _backlog(app_state.database, wanted, start, sub.floor, sent):
                last = max(last or 0, chunk[0])
                yield chunk[1]
        quiet_since = loop.time()
        while not app_state.stopping and (ends is None or loop.time() < ends):
            if sub.lagged:  # fell behind the hub: read what was missed from the store itself
                sub.lagged = False
                while not sub.queue.empty():
                    sub.queue.get_nowait()
                async for chunk in _backlog(app_state.database, wanted, last or sub.floor, 0, sent):
                    last = max(last or 0, chunk[0])
                    yield chunk[1]
                continue
            try:
                batch = await asyncio.wait_for(sub.queue.get(), _TICK)
            except TimeoutError:
                if loop.time() - quiet_since >= KEEPALIVE_SECONDS:
                    quiet_since = loop.time()
                    yield ": keep-alive\n\n"
                continue
            out = []
            for event in batch:
                seq = int(event["seq"])
                if seq in sent:
                    sent.discard(seq)
                    continue
                if wanted(event):
                    out.append(_message(event))
                last = max(last or 0, seq)
            if out:
                quiet_since = loop.time()
                yield "".join(out)
    finally:
        hub.unsubscribe(sub)


async def _backlog(
    db: Database, wanted: _Filter, after: int, floor: int, sent: set[int]
) -> AsyncIterator[tuple[int, str]]:
    """Stored events after ``after`` as stream messages, page by page; those above
    ``floor`` are noted in ``sent`` (the hub will hand them over again)."""
    from plait._store.events import list_events as store_list

    cursor = after
    while True:
        page = await asyncio.to_thread(
            store_list, db, kinds=sorted(wanted.kinds) if wanted.kinds else None, resource=wanted.resource,
            after_seq=cursor, limit=500,
        )
        items = page["items"]
        for event in items:
            seq = int(event["seq"])
            if seq > floor >= 0:
                sent.add(seq)
            cursor = max(cursor, seq)
            if wanted.runs is None or wanted(event):  # the store filtered kinds and resource already
                yield seq, _message(event)
        if len(items) < 500:
            return
