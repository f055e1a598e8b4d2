"""``AsyncApiSession``: the asynchronous driver of ``plait._api``'s core, over
``httpx.AsyncClient``. It mirrors ``ApiSession`` line for line (tests/test_client.py keeps
the two equal); every decision is the core's (``ApiCalls``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, TypeVar

from plait._api._calls import ApiCalls, Filter
from plait._api._core import ApiConfig, Call, Page, Request
from plait._api._errors import ApiError
from plait._api._sse import Event, EventStream
from plait._api._sync import _stale_connection, retry_safe, stream_timeout

if TYPE_CHECKING:
    import httpx

__all__ = ["AsyncApiSession"]

T = TypeVar("T")


class AsyncApiSession:
    """Requests to one plait server from async code, over kept-alive connections.

    Use it from one event loop (``async with AsyncApiSession(...) as session``).

    Args:
        config: The server (URL, key, timeout).
        transport: An httpx async transport to use instead of the network.
    """

    def __init__(self, config: ApiConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self.calls = ApiCalls(config)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def from_settings(cls, settings: Any = None) -> AsyncApiSession:
        """A session with the server the settings name (PLAIT_API_URL, PLAIT_API_KEY,
        PLAIT_API_TIMEOUT).

        Raises:
            ApiConfigError: PLAIT_API_URL is not set (or not an http(s) URL).
        """
        return cls(ApiConfig.from_settings(settings))

    def __repr__(self) -> str:
        return f"AsyncApiSession({self.config.label!r})"

    async def __aenter__(self) -> AsyncApiSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(timeout=self.config.timeout, transport=self._transport,
                                             follow_redirects=False, trust_env=True)
        return self._client

    async def aclose(self) -> None:
        """Close the kept-alive connections (a later request opens new ones)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # -- sending ---------------------------------------------------------------------------------------
    async def send(self, request: Request) -> httpx.Response:
        """Send ``request``; the response whatever its status.

        Raises:
            ApiUnavailable: No answer (refused, timed out, dropped).
            ApiError: The request could not be sent at all.
        """
        import httpx

        for attempt in (1, 2):
            try:
                return await self._http().request(
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

    async def call(self, call: Call[T]) -> T:
        """Send ``call``'s request; what its answer becomes.

        Raises:
            ApiError: The server answered with an error or did not answer (a subclass
                says which: ``ApiUnavailable``, ``ApiAuthError``, ``ApiNotFound``).
        """
        response = await self.send(call.request)
        return self.calls.finish(call, response.status_code, response.content, response.reason_phrase)

    async def pages(self, call: Call[Page[T]]) -> AsyncIterator[Page[T]]:
        """Every page from ``call``'s on, following ``next_cursor``."""
        current: Call[Page[T]] | None = call
        while current is not None:
            page = await self.call(current)
            yield page
            current = current.follow(page) if current.follow is not None else None

    async def items(self, call: Call[Page[T]]) -> AsyncIterator[T]:
        """Every item of every page from ``call``'s on."""
        async for page in self.pages(call):
            for item in page.items:
                yield item

    # -- the event stream ----------------------------------------------------------------------------
    async def stream_events(
        self, *, kind: Filter = None, resource: str | None = None, after: int | None = None, reconnect: bool = True
    ) -> AsyncIterator[Event]:
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
                async with self._http().stream(request.method, request.url, params=request.params,
                                               headers=request.headers,
                                               timeout=stream_timeout(self.config)) as response:
                    if response.status_code != 200:
                        raise self.calls.error_for(request, response.status_code, await response.aread(),
                                                   response.reason_phrase)
                    async for chunk in response.aiter_bytes():
                        for event in stream.received(chunk):
                            yield event
            except httpx.HTTPError as exc:
                error = self.calls.transport_error(request, exc)
            except ApiError as exc:
                error = exc
            wait = stream.ended(error)
            if wait is None:
                return
            await asyncio.sleep(wait)
