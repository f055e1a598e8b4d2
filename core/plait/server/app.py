"""The ASGI app: ``create_app(database)`` serves one store under ``/api/v1``, and the dashboard at ``/``.

Routes live in the modules of ``ROUTER_MODULES``, each defining ``router = APIRouter()`` with
paths relative to ``/api/v1``. ``RequestGuard`` wraps every request: it gives it an id (sent
back as ``X-Request-ID``), refuses bodies larger than ``server_max_request_bytes`` (413), and
turns anything unexpected into a 500 whose body names only the request id; the traceback
goes to the server log, masked.
"""

from __future__ import annotations

import importlib
import logging
import traceback
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plait import __version__
from plait._masking import mask
from plait._store.database import Database, get_database
from plait.exceptions import DatabaseError
from plait.server._errors import ERROR_RESPONSES, error_body, install_error_handlers
from plait.server.services import Services

__all__ = ["create_app", "ROUTER_MODULES", "API_PREFIX", "RequestGuard"]

API_PREFIX = "/api/v1"
ROUTER_MODULES = (
    "plait.server.routes.runs",
    "plait.server.routes.graphs",
    "plait.server.routes.records",
    "plait.server.routes.events",
    "plait.server.routes.blocks",
    "plait.server.routes.config",
    "plait.server.routes.deployments",
    "plait.server.routes.work_pools",
    "plait.server.routes.control",
    "plait.server.routes.concurrency",
    "plait.server.routes.automations",
    "plait.server.routes.webhooks",
    "plait.server.routes.variables",
    "plait.server.routes.history",
    "plait.server.routes.artifacts",
)

logger = logging.getLogger("plait.server")

_DESCRIPTION = """\
The plait server's REST API: run history (flow runs, task runs, logs, results), remote
recording, blocks, configuration and an event stream.

Send `Authorization: Bearer <key>` (keys: `plait server api-key create`). Scopes are ordered
read < run < admin. Lists answer `{"items": [...], "next_cursor": str|null}`: pass
`cursor=<next_cursor>` for the next page. Errors answer
`{"error": {"code", "message", "detail"}}`.
"""


def create_app(
    database: Database | None = None,
    *,
    auth: bool | None = None,
    services: bool = True,
    crash_interval: float = 5.0,
    max_request_bytes: int | None = None,
) -> FastAPI:
    """The plait API app serving ``database`` (default: the configured store).

    Args:
        database: The store to serve; default ``PLAIT_DATABASE_URL`` (or the SQLite file
            under ``PLAIT_HOME``), opened and migrated now.
        auth: True: every route but ``/health`` needs an API key. False: open to anyone who
            can connect. None: open until an API key exists in the store, then on.
        services: Run the server's background services (crash detection under a lease).
        crash_interval: Seconds between two crash-detection passes.
        max_request_bytes: Largest request body accepted (default: the setting
            ``server_max_request_bytes``); larger ones get 413.

    Raises:
        DatabaseError: The store cannot be opened or migrated.
    """
    from plait.settings import get_settings

    db = database or get_database()
    limit = max_request_bytes or get_settings().server_max_request_bytes
    app = FastAPI(
        title="plait",
        version=__version__,
        description=_DESCRIPTION,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=_lifespan,
    )
    app.state.database = db
    app.state.auth = auth
    app.state.open_until = 0.0
    app.state.stopping = False  # set when the server begins a graceful shutdown (streams end)
    app.state.services = Services(db, crash_interval=crash_interval) if services else None
    install_error_handlers(app)
    include_routers(app, ROUTER_MODULES, prefix=API_PREFIX, responses=ERROR_RESPONSES)
    from plait.server.ui import install_ui

    install_ui(app)  # the dashboard at /, a client of the routes above
    app.add_middleware(RequestGuard, max_request_bytes=limit)
    return app


def include_routers(app: FastAPI, modules: tuple[str, ...], **options: Any) -> None:
    """Add the ``router`` of each module in ``modules`` to ``app`` (``options``: those of
    ``include_router``); a module not built yet is skipped."""
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        app.include_router(module.router, **options)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    services: Services | None = app.state.services
    await run_in_threadpool(_learn_stored_secrets, app.state.database)
    if services is not None:
        services.start()
    try:
        yield
    finally:
        app.state.stopping = True
        if services is not None:
            await services.stop()


def _learn_stored_secrets(db: Database) -> None:
    # What clients send is masked with every secret the store holds, read or not.
    from plait.blocks._documents import register_stored_secrets

    try:
        register_stored_secrets(db)
    except DatabaseError as exc:
        logger.warning("could not read the saved blocks' secrets to mask them: %s", exc)


def begin_shutdown(app: FastAPI) -> None:
    """Tell long-lived responses (event streams) to end: the server is stopping."""
    app.state.stopping = True


class RequestGuard:
    """Pure ASGI middleware around every HTTP request: request id, body limit, last resort.

    Args:
        app: The app to guard.
        max_request_bytes: Largest body accepted; a larger ``Content-Length`` is refused
            before the body is read, a longer chunked body as soon as it passes the limit.
    """

    def __init__(self, app: ASGIApp, max_request_bytes: int) -> None:
        self.app = app
        self.max_request_bytes = max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode())
        limit = self.max_request_bytes
        length = _content_length(scope)
        if length is not None and length > limit:
            await _send_json(send, 413, _too_large(limit), id_header)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI re-raises an HTTPException from reading the body as it is
                    raise StarletteHTTPException(413, _too_large(limit)["error"]["message"])
            return message

        started = False

        async def marked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), id_header]
            await send(message)

        try:
            await self.app(scope, limited_receive, marked_send)
        except Exception as exc:
            text = "".join(traceback.format_exception(exc))
            logger.error("request %s (%s %s) failed:\n%s", request_id, scope.get("method"), scope.get("path"),
                         mask(text))
            if started:
                return  # the response is under way: the server closes the connection
            body = error_body("internal_error", f"internal error, see the server log (request id {request_id})")
            await _send_json(send, 500, body, id_header)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server itself refuses a malformed length
    return None


def _too_large(limit: int) -> dict[str, Any]:
    return error_body(
        "request_too_large",
        f"the request body is larger than this server accepts ({limit} bytes, the setting "
        "PLAIT_SERVER_MAX_REQUEST_BYTES); send smaller batches",
        {"max_bytes": limit},
    )


async def _send_json(send: Send, status: int, body: dict[str, Any], *extra: tuple[bytes, bytes]) -> None:
    import json

    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
