"""The only code that speaks HTTP to a plait server (a layer beside ``plait._store``).

- ``_core``: the I/O-free core: ``ApiConfig`` (where the server is), ``ApiCore`` (requests
  built, answers read into data or ``ApiError``), ``Call``, ``Page``;
- ``_calls``: ``ApiCalls``, one method per route, each returning a ``Call``;
- ``_sse``: the event stream's parser and ``Event``;
- ``_sync`` / ``_async``: ``ApiSession`` (httpx.Client) and ``AsyncApiSession``
  (httpx.AsyncClient), thin drivers that only move bytes;
- ``sink``: ``ApiRunSink``, the recorder's remote sink.

``plait.client`` is the public face of all this. httpx is imported at the first request,
so importing this package costs little.
"""

from plait._api._async import AsyncApiSession
from plait._api._calls import ApiCalls
from plait._api._core import ApiConfig, ApiCore, Call, Page, Request, api_digest, is_api_digest, normalize_api_url
from plait._api._errors import ApiAuthError, ApiConfigError, ApiError, ApiNotFound, ApiUnavailable
from plait._api._sse import Event, EventStream, SseMessage, SseParser
from plait._api._sync import ApiSession

__all__ = [
    "ApiAuthError",
    "ApiCalls",
    "ApiConfig",
    "ApiConfigError",
    "ApiCore",
    "ApiError",
    "ApiNotFound",
    "ApiSession",
    "ApiUnavailable",
    "AsyncApiSession",
    "Call",
    "Event",
    "EventStream",
    "Page",
    "Request",
    "SseMessage",
    "SseParser",
    "api_digest",
    "is_api_digest",
    "normalize_api_url",
]
