"""``ApiSession``: the synchronous driver of ``plait._api``'s core, over ``httpx.Client``.

It only moves bytes: ``ApiCalls`` builds each request and decides what the answer means.
One ``httpx.Client`` per session keeps connections open between requests (a recorder
sends a batch every second); a forked child builds its own, never sharing the parent's
sockets.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from plait._api._calls import ApiCalls, Filter
from plait._api._core import ApiConfig, Call, Page, Request
from plait._api._errors import ApiError
from plait._api._sse import Event, EventStream

if TYPE_CHECKING:
    import httpx

__all__ = ["ApiSession", "retry_safe", "stream_timeout"]

T = TypeVar("T")

# Seconds without a byte after which an event stream counts as dead: the server sends a
# keep-alive comment every 15 s.
STREAM_READ_TIMEOUT = 45.0


def retry_safe(request: Request) -> bool:
    """Whether sending ``request`` twice does no harm (so a connection that dropped before
    the answer may be retried at once): reads, PUT and DELETE, and recorder batches (the
    server stores each batch id once)."""
    return request.method in ("GET", "HEAD", "PUT", "DELETE") or request.path.startswith("/records")


def stream_timeout(config: ApiConfig) -> Any:
    import httpx

    return httpx.Timeout(config.timeout, read=max(config.timeout, STREAM_READ_TIMEOUT))


def _stale_connection(exc: BaseException) -> bool:
    """A kept-alive connection the server closed meanwhile (e.g. it restarted)."""
    import httpx

    return isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError))


class ApiSession:
    """Requests to one plait server, synchronously, over kept-alive connections.

    Thread-safe: threads share the connection pool.

    Args:
        config: The server (URL, key, timeout).
        transport: An httpx transport to use instead of the network (tests, proxies).
    """

    def __init__(self, config: ApiConfig, *, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self.calls = ApiCalls(config)
        self._transport = transport
        self._client: httpx.Client | None = None
        self._pid = 0
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any = None) -> ApiSession:
        """A session with the server the settings name (PLAIT_API_URL, PLAIT_API_KEY,
        PLAIT_API_TIMEOUT).

        Raises:
            ApiConfigError: PLAIT_API_URL is not set (or not an http(s) URL).
        """
        return cls(ApiConfig.from_settings(settings))

    def __repr__(self) -> str:
        return f"ApiSession({self.config.label!r})"

    def __enter__(self) -> ApiSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _http(self) -> httpx.Client:
        client = self._client
        if client is not None and self._pid == os.getpid():
            return client
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                import httpx

                # A forked child leaves the parent's client (and its sockets) alone.
                self._client = httpx.Client(timeout=self.config.timeout, transport=self._transport,
                                            follow_redirects=False, trust_env=True)
                self._pid = os.getpid()
            return self._client

    def close(self) -> None:
        """Close the kept-alive connections (a later request opens new ones)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None and self._pid == os.getpid():
            client.close()

    # -- sending ---------------------------------------------------------------------------------------
    def send(self, request: Request) -> httpx.Response:
        """Send ``request``; the response whatever its status.

        Raises:
            ApiUnavailable: No answer (refused, timed out, dropped).
            ApiError: The request could not be sent at all.
        """
        import httpx

        for attempt in (1, 2):
            try:
                return self._http().request(
                    request.method, request.url, params=request.params, content=request.content,
                    headers=request.headers,
                )
            except httpx.HTTPError as exc:
                if attempt == 1 and _stale_connection(exc) and retry_safe(request):
                    continue
                raise self.calls.transport_error(request, exc) from None
            except OSError as exc:
                raise self.calls.transport_error(request, exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def call(self, call: Call[T]) -> T:
        """Send ``call``'s request; what its answer becomes.

        Raises:
            ApiError: The server answered with an error or did not answer (a subclass
                says which: ``ApiUnavailable``, ``ApiAuthError``, ``ApiNotFound``).
        """
        response = self.send(call.request)
        return self.calls.finish(call, response.status_code, response.content, response.reason_phrase)

    def pages(self, call: Call[Page[T]]) -> Iterator[Page[T]]:
        """Every page from ``call``'s on, following ``next_cursor``."""
        current: Call[Page[T]] | None = call
        while current is not None:
            page = self.call(current)
            yield page
            current = current.follow(page) if current.follow is not None else None

    def items(self, call: Call[Page[T]]) -> Iterator[T]:
        """Every item of every page from ``call``'s on."""
        for page in self.pages(call):
            yield from page.items

    # -- the event stream ----------------------------------------------------------------------------
    def stream_events(
        self, *, kind: Filter = None, resource: str | None = None, after: int | None = None, reconnect: bool = True
    ) -> Iterator[Event]:
        """New events as they happen (Server-Sent Events), resuming after the last one seen
        when the connection drops and ``reconnect``. Stop by leaving the loop.

        Raises:
            ApiError: The server refused the subscription (or, without ``reconnect``, stopped
                answering).
        """
        import httpx

        stream = EventStream(
            lambda last: self.calls.event_stream(kind=kind, resource=resource, after=after, last_event_id=last),
            reconnect=reconnect,
        )
        while True:
            request = stream.next_request()
            error: BaseException | None = None
            try:
                with self._http().stream(request.method, request.url, params=request.params,
                                         headers=request.headers, timeout=stream_timeout(self.config)) as response:
                    if response.status_code != 200:
                        raise self.calls.error_for(request, response.status_code, response.read(),
                                                   response.reason_phrase)
                    for chunk in response.iter_bytes():
                        yield from stream.received(chunk)
            except httpx.HTTPError as exc:
                error = self.calls.transport_error(request, exc)
            except ApiError as exc:
                error = exc
            wait = stream.ended(error)
            if wait is None:
                return
            time.sleep(wait)
