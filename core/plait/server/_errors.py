"""The API's one error shape, and the handlers that give every failure that shape.

Every non-2xx answer is ``{"error": {"code": "<snake_case>", "message": "...", "detail": ...}}``:

- ``ApiProblem(status, code, message, detail)`` raised anywhere in a route or dependency;
- starlette/FastAPI ``HTTPException`` (unknown route, wrong method, ...), code by status;
- ``RequestValidationError`` (422): the message names the field(s), ``detail`` lists them;
- ``DatabaseError`` (503): the store does not answer; clients retry later;
- anything else (500): "internal error, see the server log (request id ...)"; the traceback
  goes only to the server log, masked (``RequestGuard`` in ``plait.server.app``).

Messages pass through the one masking function, so a registered secret never leaves the
server in an error.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from plait._masking import mask
from plait.exceptions import DatabaseError

__all__ = [
    "ApiProblem",
    "ERROR_RESPONSES",
    "ErrorOut",
    "error_body",
    "error_response",
    "install_error_handlers",
    "request_id_of",
]

logger = logging.getLogger("plait.server")

# Codes for errors raised by starlette/FastAPI themselves, by status.
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


class ApiProblem(Exception):
    """An API error with its HTTP status; raising it anywhere yields the error JSON.

    Args:
        status: The HTTP status code (4xx or 5xx).
        code: A stable snake_case code clients can branch on (``not_found``, ``bad_cursor``).
        message: One sentence for a human: what is wrong and what to do.
        detail: Optional JSON-safe extra (the fields at fault, the missing id, ...).
        headers: Extra response headers (``WWW-Authenticate`` on a 401).
    """

    def __init__(
        self, status: int, code: str, message: str, detail: Any = None, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail
        self.headers = dict(headers or {})

    def __repr__(self) -> str:
        return f"ApiProblem({self.status}, {self.code!r}, {self.message!r})"


def error_body(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    """The error JSON: ``{"error": {"code", "message", "detail"}}`` (message masked)."""
    return {"error": {"code": code, "message": mask(message), "detail": detail}}


def error_response(
    status: int, code: str, message: str, detail: Any = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message, detail), status_code=status, headers=dict(headers or {}))


def request_id_of(request: Request) -> str:
    """The id ``RequestGuard`` gave this request (also sent back as ``X-Request-ID``)."""
    return str(getattr(request.state, "request_id", "") or "-")


# -- the error model in the OpenAPI document ---------------------------------------------------------
class ErrorInfo(BaseModel):
    code: str = Field(description="A stable snake_case code clients can branch on.")
    message: str = Field(description="What is wrong and what to do, for a human.")
    detail: Any = Field(default=None, description="Extra JSON about the error (the fields at fault, ...), or null.")


class ErrorOut(BaseModel):
    """Every non-2xx answer of the API."""

    error: ErrorInfo


def _response(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


# What a route may answer besides its success (listed in the OpenAPI document).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _response("Bad request: a bad cursor, id or value"),
    401: _response("No valid API key (send `Authorization: Bearer <key>`)"),
    403: _response("The API key lacks the scope this route needs"),
    404: _response("Not found"),
    413: _response("The request body is too large"),
    422: _response("Validation error: the message names the field"),
    503: _response("The store is not answering; retry later"),
}


# -- handlers ------------------------------------------------------------------------------------
def _field(loc: Sequence[Any]) -> tuple[str, str]:
    """(where, dotted field) of a pydantic error location: ("query", "limit")."""
    parts = list(loc)
    where = str(parts.pop(0)) if parts and parts[0] in ("body", "query", "path", "header", "cookie") else "body"
    field = ".".join(str(p) for p in parts)
    return where, field


def _validation_items(errors: Sequence[Any]) -> list[dict[str, Any]]:
    items = []
    for err in errors:
        where, field = _field(err.get("loc", ()))
        message = str(err.get("msg", "invalid"))
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            message = f"the body is not valid JSON ({ctx.get('error', 'decode error')} at position {field or 0})"
            field = ""
        # never echo the input: it may be large, and it is the caller's own data anyway
        items.append({"in": where, "field": field, "message": mask(message), "type": str(err.get("type", ""))})
    return items


def _validation_message(items: list[dict[str, Any]]) -> str:
    described = []
    for item in items[:3]:
        if not item["field"]:
            described.append(item["message"])
            continue
        kind = {"query": "query parameter", "path": "path parameter", "header": "header"}.get(item["in"], "field")
        described.append(f"{kind} {item['field']!r}: {item['message']}")
    more = f" (and {len(items) - 3} more)" if len(items) > 3 else ""
    return "invalid request: " + "; ".join(described) + more


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiProblem)
    return error_response(exc.status, exc.code, exc.message, exc.detail, exc.headers)


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    code = _STATUS_CODES.get(status, "error" if status < 500 else "internal_error")
    if status == 404 and exc.detail == "Not Found":
        message = f"no such route: {request.method} {request.url.path} (the routes are listed at /api/v1/docs)"
    elif status == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return error_response(status, code, message, None, exc.headers)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    items = _validation_items(exc.errors())
    return error_response(422, "validation_error", _validation_message(items), items)


async def _on_database_error(request: Request, exc: Exception) -> JSONResponse:
    request_id = request_id_of(request)
    logger.error("request %s: the store failed: %s", request_id, mask(str(exc)))
    return error_response(
        503, "database_unavailable",
        f"the plait server cannot reach its database; retry later (request id {request_id})",
    )


def install_error_handlers(app: FastAPI) -> None:
    """Give ``app`` the handlers that turn every known failure into the error JSON."""
    app.add_exception_handler(ApiProblem, _on_problem)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(DatabaseError, _on_database_error)
