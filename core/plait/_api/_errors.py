"""The errors of talking to a plait server.

Every failure of a request is an ``ApiError`` (a ``plait.exceptions.PlaitError``): the
server's error JSON (``{"error": {"code", "message", "detail"}}``) becomes one, and so does
a server that does not answer. Messages name the server by its masked URL and say what to
do; the API key never appears in a message, a ``repr`` or an attribute.
"""

from __future__ import annotations

from typing import Any

from plait.exceptions import PlaitError

__all__ = ["ApiError", "ApiAuthError", "ApiNotFound", "ApiUnavailable", "ApiConfigError"]


class ApiError(PlaitError):
    """A request to the plait server failed.

    Attributes:
        status: The HTTP status the server answered (None: no answer, or none yet).
        code: The server's error code (``"not_found"``, ``"validation_error"``...), or one
            of the client's own (``"unavailable"``, ``"bad_response"``, ``"config"``).
        message: What went wrong, for a person (what ``str()`` returns).
        detail: The server's structured detail (e.g. the fields a validation error names).
    """

    def __init__(self, message: str, *, status: int | None = None, code: str = "error", detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, message={self.message!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments do not survive the default pickling (process pools send errors back).
        return _rebuild, (type(self), self.message, self.status, self.code, self.detail)


def _rebuild(cls: type[ApiError], message: str, status: int | None, code: str, detail: Any) -> ApiError:
    return cls(message, status=status, code=code, detail=detail)


class ApiAuthError(ApiError):
    """The server refused the API key (401: missing, unknown, revoked or expired) or found
    its scope too small for the request (403)."""


class ApiNotFound(ApiError, LookupError):
    """The server has no such thing (404): a flow run, a block, a route."""


class ApiUnavailable(ApiError):
    """The server did not answer: connection refused, a timeout, a dropped connection, or
    a proxy's 502/503/504 (or 429: too many requests). Retrying later may succeed, so a
    recorder keeps its records for the next try."""


class ApiConfigError(ApiError, ValueError):
    """The client cannot be built from the settings (no ``PLAIT_API_URL``, or a bad one)."""
