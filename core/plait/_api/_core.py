"""The I/O-free core of the plait server's client: requests in, data or errors out.

``ApiConfig`` is where a server is (its URL, the API key, a timeout); ``ApiCore`` builds a
``Request`` (method, path under ``/v1``, query, JSON body, headers with the key) and turns
what came back (status, headers, body bytes) into data or an ``ApiError``. A ``Call``
pairs one request with what its answer becomes, so the sync and async sessions
(``plait._api._sync``, ``plait._api._async``) only move bytes: every decision is made here,
once, the way httpx's ``BaseClient`` holds what ``Client`` and ``AsyncClient`` share.

Nothing here opens a socket, so all of it is tested without a server.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

from plait._api._errors import ApiAuthError, ApiConfigError, ApiError, ApiNotFound, ApiUnavailable
from plait._masking import mask, mask_url

__all__ = [
    "ApiConfig",
    "ApiCore",
    "Call",
    "Request",
    "Params",
    "normalize_api_url",
    "api_digest",
    "encode_json",
    "segment",
    "UNAVAILABLE_STATUSES",
    "is_api_digest",
    "query",
    "as_dict",
    "as_list",
]

T = TypeVar("T")
U = TypeVar("U")

# Answers that mean "not now" rather than "no": a proxy in front of a server that is down or
# restarting, or a server shedding load. A request that got one may succeed later.
UNAVAILABLE_STATUSES = frozenset({429, 502, 503, 504})
API_VERSION = "/v1"
_SNIPPET = 300  # characters of a non-JSON answer quoted in an error

Params = list[tuple[str, str]]


# -- where the server is ---------------------------------------------------------------------------
def normalize_api_url(url: str) -> str:
    """``url`` as the base every request starts from: scheme and host in lower case, no
    trailing ``/``, and no ``/v1`` (the client adds the API version itself).

    Raises:
        ApiConfigError: ``url`` is not an http(s) URL with a host.
    """
    text = (url or "").strip()
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ApiConfigError(
            f"{mask_url(text)!r} is not an http(s) URL of a plait server's API; set PLAIT_API_URL to one, "
            "e.g. http://127.0.0.1:4300/api",
            code="config",
        )
    if parts.query or parts.fragment:
        raise ApiConfigError(
            f"{mask_url(text)!r}: a plait server's API URL has no query or fragment; set PLAIT_API_URL to the "
            "API's base, e.g. http://127.0.0.1:4300/api",
            code="config",
        )
    path = parts.path.rstrip("/")
    if path.endswith(API_VERSION):
        path = path[: -len(API_VERSION)]
    netloc = parts.netloc.rpartition("@")
    host = netloc[2].lower()
    netloc_text = f"{netloc[0]}@{host}" if netloc[1] else host
    return urlunsplit((parts.scheme.lower(), netloc_text, path, "", ""))


def api_digest(url: str) -> str:
    """A short name of the server at ``url``, stable across processes: journals waiting for
    that server say so by it (``api-`` + 20 hex digits), without writing its URL to disk.
    User and password in the URL do not change which server it is."""
    parts = urlsplit(normalize_api_url(url))
    bare = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
    return "api-" + hashlib.sha256(bare.encode()).hexdigest()[:20]


def is_api_digest(digest: object) -> bool:
    """Whether a journal's destination digest names a plait server (not a local database)."""
    return isinstance(digest, str) and digest.startswith("api-")


@dataclass(frozen=True)
class ApiConfig:
    """A plait server to talk to.

    Args:
        url: The API's base URL, e.g. ``http://127.0.0.1:4300/api`` (``/v1`` is added).
        api_key: The API key (sent as ``Authorization: Bearer``); never shown.
        timeout: Seconds one request may take.

    Raises:
        ApiConfigError: ``url`` is not an http(s) URL, or ``timeout`` is not positive.
    """

    url: str
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", normalize_api_url(self.url))
        if self.api_key is not None and not self.api_key.strip():
            object.__setattr__(self, "api_key", None)
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) or not self.timeout > 0:
            raise ApiConfigError(f"timeout must be a number of seconds > 0, got {self.timeout!r}", code="config")

    def __repr__(self) -> str:
        key = "set" if self.api_key else "none"
        return f"ApiConfig(url={self.label!r}, api_key={key}, timeout={self.timeout!r})"

    @classmethod
    def from_settings(cls, settings: Any = None) -> ApiConfig:
        """The server the settings name (``PLAIT_API_URL``, ``PLAIT_API_KEY``, ``PLAIT_API_TIMEOUT``).

        Raises:
            ApiConfigError: ``PLAIT_API_URL`` is not set.
        """
        if settings is None:
            from plait.settings import get_settings

            settings = get_settings()
        if not settings.api_url:
            raise ApiConfigError(
                "no plait server configured: set PLAIT_API_URL to its API, e.g. http://127.0.0.1:4300/api "
                "(and PLAIT_API_KEY to an API key)",
                code="config",
            )
        key = settings.api_key.get_secret_value() if settings.api_key is not None else None
        return cls(settings.api_url, key, float(settings.api_timeout))

    @property
    def base_url(self) -> str:
        """Where the versioned routes live: ``<url>/v1``."""
        return self.url + API_VERSION

    @property
    def label(self) -> str:
        """The URL as messages show it (a password in it masked)."""
        return mask_url(self.url)

    @property
    def digest(self) -> str:
        return api_digest(self.url)


# -- requests ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """One HTTP request, ready to send: ``url`` is absolute; ``content`` the encoded body."""

    method: str
    path: str  # under /v1, e.g. "/flow-runs/abc" (for messages)
    url: str
    params: tuple[tuple[str, str], ...] = ()
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # holds the key

    @property
    def what(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class Call(Generic[T]):
    """A request and what its answer becomes.

    Attributes:
        request: What to send.
        convert: The decoded JSON answer (None for an empty one) -> the result.
        absent: When given, a 404 answer is not an error: the result is ``absent()``.
        follow: For a page: the call that fetches the next page, or None after the last.
    """

    request: Request
    convert: Callable[[Any], T]
    absent: Callable[[], T] | None = None
    follow: Callable[[T], Call[T] | None] | None = None


def segment(value: str, what: str) -> str:
    """``value`` as one path segment: percent-encoded, so no id can reach another route.

    Raises:
        ValueError: ``value`` is empty or not a string (naming ``what``).
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return quote(value.strip(), safe="")


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "value") and isinstance(value.value, str):  # an Enum such as StateType
        return str(value.value)
    return str(value)


def query(**values: Any) -> Params:
    """Query parameters from keyword arguments: None left out, a list or tuple repeated
    (``tag=["a", "b"]`` -> ``tag=a&tag=b``), booleans as ``true``/``false``, datetimes in
    ISO 8601."""
    params: Params = []
    for name, value in values.items():
        if value is None:
            continue
        items = value if isinstance(value, (list, tuple, set, frozenset)) else [value]
        params.extend((name, _param_text(item)) for item in items if item is not None)
    return params


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as strings: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def encode_json(value: Any) -> bytes:
    """``value`` as a strict JSON body (UTF-8). NaN and infinities, which JSON lacks, become
    the strings ``"nan"``, ``"inf"``, ``"-inf"`` rather than failing the request.

    Raises:
        TypeError: ``value`` holds something JSON cannot carry (naming its type).
    """
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:  # a non-finite float somewhere: rare, so only then walk the value
        text = json.dumps(_finite(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    # A lone surrogate cannot be encoded (nor stored by the server): it becomes "?".
    return text.encode("utf-8", "replace")


@lru_cache(maxsize=1)
def user_agent() -> str:
    try:
        from importlib.metadata import version

        plait_version = version("plait")
    except Exception:  # running from a source tree without metadata
        plait_version = "unknown"
    return f"plait/{plait_version} (python {platform.python_version()})"


# -- the core ------------------------------------------------------------------------------------------
class ApiCore:
    """Builds requests for one server and reads its answers. Holds no connection.

    Args:
        config: The server.
    """

    def __init__(self, config: ApiConfig) -> None:
        self.config = config
        headers = {"Accept": "application/json", "User-Agent": user_agent()}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        self._headers = headers

    def __repr__(self) -> str:
        return f"ApiCore({self.config!r})"

    # -- building -----------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Request:
        """A request for ``path`` (under ``/v1``); ``body`` is sent as JSON when not None."""
        all_headers = dict(self._headers)
        content = None
        if body is not None:
            content = encode_json(body)
            all_headers["Content-Type"] = "application/json"
        if headers:
            all_headers.update(headers)
        return Request(method.upper(), path, self.config.base_url + path, tuple(params or ()), content, all_headers)

    def call(
        self,
        method: str,
        path: str,
        convert: Callable[[Any], T],
        *,
        params: Params | None = None,
        body: Any = None,
        absent: Callable[[], T] | None = None,
    ) -> Call[T]:
        return Call(self.request(method, path, params=params, body=body), convert, absent)

    def page_call(self, path: str, convert: Callable[[Any], U], params: Params) -> Call[Page[U]]:
        """A call for one page of a list route; its ``follow`` fetches the next page with the
        same filters and the answer's ``next_cursor``."""

        def build(page_params: Params) -> Call[Page[U]]:
            def follow(page: Page[U]) -> Call[Page[U]] | None:
                if not page.next_cursor:
                    return None
                rest = [(k, v) for k, v in page_params if k != "cursor"]
                return build([*rest, ("cursor", page.next_cursor)])

            request = self.request("GET", path, params=page_params)
            return Call(request, lambda data: Page.from_json(data, convert, request.what), follow=follow)

        return build(list(params))

    # -- reading ------------------------------------------------------------------------------------
    def finish(self, call: Call[T], status: int, body: bytes, reason: str = "") -> T:
        """What the answer to ``call`` becomes.

        Raises:
            ApiError: The server answered with an error (a subclass says which kind).
        """
        try:
            data = self.decode(call.request, status, body, reason)
        except ApiNotFound:
            if call.absent is not None:
                return call.absent()
            raise
        return call.convert(data)

    def decode(self, request: Request, status: int, body: bytes, reason: str = "") -> Any:
        """The JSON of a 2xx answer (None when empty).

        Raises:
            ApiError: A non-2xx answer, or a 2xx one that is not JSON.
        """
        if 200 <= status < 300:
            if not body.strip():
                return None
            try:
                return json.loads(body)
            except ValueError:
                raise self._error(
                    f"the plait server at {self.config.label} answered {request.what} with something that is not "
                    f"JSON ({self._snippet(body)!r}); check that PLAIT_API_URL points at a plait server's API",
                    status=status, code="bad_response",
                ) from None
        raise self.error_for(request, status, body, reason)

    def error_for(self, request: Request, status: int, body: bytes, reason: str = "") -> ApiError:
        """The ``ApiError`` for a non-2xx answer (its error JSON, or its status when it has none)."""
        code, message, detail, ours = self._parse_error(body)
        label = self.config.label
        where = f"{request.what} -> {status}"
        if status in UNAVAILABLE_STATUSES:
            said = f": {message}" if message else ""
            text = (
                f"the plait server at {label} is not available ({where} {reason or code or ''}".rstrip()
                + f"{said}); try again later"
            )
            return self._error(text, status=status, code=code or "unavailable", detail=detail, cls=ApiUnavailable)
        if not ours:
            hint = (
                "check that PLAIT_API_URL is the plait server's API, e.g. http://127.0.0.1:4300/api"
                if status in (404, 405)
                else "see the server's log"
            )
            text = f"the plait server at {label} answered {where} {reason}".rstrip() + (
                f" ({self._snippet(body)!r})" if body.strip() else ""
            ) + f"; {hint}"
            cls: type[ApiError] = ApiNotFound if status == 404 else ApiError
            return self._error(text, status=status, code=code or f"http_{status}", detail=None, cls=cls)
        if status == 401:
            text = (
                f"the plait server at {label} refused the request ({where}): {message}. Set PLAIT_API_KEY to a "
                "valid API key (create one on the server's host: `plait server api-key create NAME --scope run`)"
            )
            return self._error(text, status=status, code=code, detail=detail, cls=ApiAuthError)
        if status == 403:
            text = (
                f"the plait server at {label} refused the request ({where}): {message}. Use an API key with a "
                "larger scope (read < run < admin)"
            )
            return self._error(text, status=status, code=code, detail=detail, cls=ApiAuthError)
        cls = ApiNotFound if status == 404 else ApiError
        return self._error(f"{message} (plait server at {label}: {where} {code})", status=status, code=code,
                           detail=detail, cls=cls)

    def transport_error(self, request: Request, exc: BaseException) -> ApiError:
        """The ``ApiError`` for a request that got no answer (``exc`` from httpx or the OS)."""
        name = type(exc).__name__
        text = str(exc).strip()
        cause = f"{name}: {text}" if text else name
        if _is_timeout(exc):
            what = f"no answer within {self.config.timeout:g}s ({cause})"
        else:
            what = cause
        if _is_unreachable(exc):
            return self._error(
                f"the plait server at {self.config.label} did not answer {request.what}: {what}. Is it running "
                "(`plait server start`)? Check PLAIT_API_URL",
                code="unavailable", cls=ApiUnavailable,
            )
        return self._error(
            f"cannot send {request.what} to the plait server at {self.config.label}: {what}; check PLAIT_API_URL",
            code="transport",
        )

    # -- helpers -------------------------------------------------------------------------------------
    def _error(
        self, text: str, *, status: int | None = None, code: str, detail: Any = None, cls: type[ApiError] = ApiError
    ) -> ApiError:
        return cls(self.scrub(text), status=status, code=code, detail=self._scrub_detail(detail))

    def scrub(self, text: str) -> str:
        """``text`` without the API key (or any registered secret) in it."""
        key = self.config.api_key
        return mask(text, extra=[key] if key else ())

    def _scrub_detail(self, detail: Any) -> Any:
        if detail is None:
            return None
        try:
            return json.loads(self.scrub(json.dumps(detail, default=str)))
        except ValueError:
            return None

    def _snippet(self, body: bytes) -> str:
        text = body[: _SNIPPET * 4].decode("utf-8", "replace").strip()
        text = " ".join(text.split())
        return text[:_SNIPPET] + ("…" if len(text) > _SNIPPET else "")

    def _parse_error(self, body: bytes) -> tuple[str, str, Any, bool]:
        """(code, message, detail, whether it is a plait server's error JSON)."""
        try:
            data = json.loads(body) if body.strip() else None
        except ValueError:
            data = None
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            code = error.get("code")
            return (code if isinstance(code, str) and code else "error"), error["message"], error.get("detail"), True
        return "", "", None, False


def _exception_chain(exc: BaseException) -> Iterable[BaseException]:
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 10:
        yield current
        current = current.__cause__ or current.__context__
        seen += 1


def _is_timeout(exc: BaseException) -> bool:
    return any(isinstance(e, TimeoutError) or type(e).__name__.endswith("Timeout") for e in _exception_chain(exc))


# httpx's errors that mean the server did not (completely) answer: nothing was refused.
_UNREACHABLE = {
    "ConnectError", "ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout", "ReadError", "WriteError",
    "RemoteProtocolError", "NetworkError", "TimeoutException",
}


def _is_unreachable(exc: BaseException) -> bool:
    for e in _exception_chain(exc):
        if type(e).__name__ in _UNREACHABLE or isinstance(e, (ConnectionError, TimeoutError)):
            return True
    return False


# -- pages -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list route.

    Attributes:
        items: This page's items, in the route's order.
        next_cursor: Pass it as ``cursor`` for the next page; None on the last page.
    """

    items: list[T]
    next_cursor: str | None = None

    def __iter__(self) -> Any:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @classmethod
    def from_json(cls, data: Any, convert: Callable[[Any], T], what: str = "a list") -> Page[T]:
        """A page from ``{"items": [...], "next_cursor": ...}`` (or a bare list: one page).

        Raises:
            ApiError: ``data`` is neither.
        """
        if isinstance(data, list):
            return cls([convert(item) for item in data], None)
        if isinstance(data, dict) and isinstance(data.get("items"), list):
            cursor = data.get("next_cursor")
            items = [convert(item) for item in data["items"]]
            return cls(items, cursor if isinstance(cursor, str) and cursor else None)
        raise ApiError(f"the answer to {what} is not a list of items: {str(data)[:200]!r}", code="bad_response")


def as_dict(data: Any) -> dict[str, Any]:
    """An answer that must be a JSON object.

    Raises:
        ApiError: It is not.
    """
    if not isinstance(data, dict):
        raise ApiError(f"expected a JSON object from the plait server, got {str(data)[:200]!r}", code="bad_response")
    return data


def as_list(data: Any) -> list[dict[str, Any]]:
    """An answer that is a list of objects, bare or as ``{"items": [...]}`` (every page).

    Raises:
        ApiError: It is neither.
    """
    return [as_dict(item) for item in Page.from_json(data, lambda item: item).items]
