"""Server-Sent Events, parsed without I/O: bytes in, events out.

``SseParser.feed(chunk)`` takes the stream's bytes in whatever pieces the network delivers
and returns the messages completed so far, per the WHATWG "event stream" rules: lines end
in ``\\n``, ``\\r\\n`` or ``\\r`` (a ``\\r`` at the end of a chunk waits for the next one),
``:`` starts a comment (the server's keep-alives), a blank line dispatches a message, an
``id`` holding NUL is ignored, ``retry`` takes only digits, a leading BOM is dropped, and a
message the stream ends in the middle of is discarded.

``Event`` is one stored event of the plait server (``GET /api/v1/events`` items and the
stream's ``data:``); ``StreamCursor`` remembers the last event id so a reconnect resumes
after it (``Last-Event-ID``).
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass, field
from typing import Any

from plait._api._errors import ApiError

__all__ = ["SseMessage", "SseParser", "Event", "StreamCursor", "EventStream", "event_from_message"]


@dataclass(frozen=True)
class SseMessage:
    """One dispatched message: ``event`` defaults to ``"message"``; ``id`` is the last event
    id in effect when it was dispatched (None: none seen yet)."""

    data: str
    event: str = "message"
    id: str | None = None  # noqa: A003 - the protocol's name
    retry: int | None = None


class SseParser:
    """An incremental event-stream parser (one per connection)."""

    def __init__(self) -> None:
        self._buffer = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._started = False
        self._pending_cr = False
        self._data: list[str] = []
        self._event = ""
        self._has_data = False
        self.last_event_id: str | None = None
        self.retry: int | None = None  # milliseconds the server asks a client to wait before reconnecting

    def feed(self, chunk: bytes) -> list[SseMessage]:
        """The messages completed by ``chunk`` (possibly none)."""
        text = self._decode(chunk)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._pending_cr:
            self._pending_cr = False
            if text.startswith("\n"):
                text = text[1:]  # the \n of a \r\n split between two chunks
        self._buffer += text
        messages: list[SseMessage] = []
        while True:
            line, ended = self._next_line()
            if not ended:
                break
            message = self._line(line)
            if message is not None:
                messages.append(message)
        return messages

    def _decode(self, chunk: bytes) -> str:
        # incremental: a UTF-8 sequence split between two chunks is decoded whole
        return self._decoder.decode(chunk)

    def _next_line(self) -> tuple[str, bool]:
        buffer = self._buffer
        for index, char in enumerate(buffer):
            if char == "\n":
                self._buffer = buffer[index + 1:]
                return buffer[:index], True
            if char == "\r":
                if index + 1 < len(buffer):
                    skip = 2 if buffer[index + 1] == "\n" else 1
                    self._buffer = buffer[index + skip:]
                else:  # a \r ending the chunk: a following \n belongs to it
                    self._buffer = ""
                    self._pending_cr = True
                return buffer[:index], True
        return "", False

    def _line(self, line: str) -> SseMessage | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: the server's keep-alive
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_data = True
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry":
            if value.isdigit() and value.isascii():
                self.retry = int(value)
        return None

    def _dispatch(self) -> SseMessage | None:
        data, event, has_data = self._data, self._event, self._has_data
        self._data, self._event, self._has_data = [], "", False
        if not has_data:
            return None
        return SseMessage("\n".join(data), event or "message", self.last_event_id, self.retry)


@dataclass(frozen=True)
class Event:
    """One event of the plait server: a state change, a block change, a batch of log lines.

    Attributes:
        seq: Its place in the server's order (what ``after=`` and ``Last-Event-ID`` take).
        id: Its unique id.
        occurred: When, in ISO 8601 (UTC).
        kind: ``flow-run.state-changed``, ``task-run.state-changed``, ``logs.written``,
            ``block.saved``, ``block.deleted``, ...
        resource: What it is about: ``flow-run/<id>``, ``task-run/<id>``, ``block/<slug>/<name>``.
        payload: The details (small: ids, state type and name, flow or task name, log lines).
        labels: A custom event's resource labels beyond its id (``emit_event``, webhooks).
    """

    seq: int
    id: str  # noqa: A003 - the event's field name
    occurred: str | None
    kind: str
    resource: str
    payload: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, data: Any) -> Event:
        """An event from its JSON object.

        Raises:
            ApiError: ``data`` is not an event (names what is missing).
        """
        if not isinstance(data, dict):
            raise ApiError(f"an event is a JSON object, got {str(data)[:200]!r}", code="bad_response")
        seq = data.get("seq")
        if isinstance(seq, str) and seq.isdigit():
            seq = int(seq)
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise ApiError(f"an event without an integer 'seq': {str(data)[:200]!r}", code="bad_response")
        payload = data.get("payload")
        occurred = data.get("occurred")
        return cls(
            seq=seq,
            id=str(data.get("id") or seq),
            occurred=occurred if isinstance(occurred, str) else None,
            kind=str(data.get("kind") or ""),
            resource=str(data.get("resource") or ""),
            payload=payload if isinstance(payload, dict) else {},
            labels=data["labels"] if isinstance(data.get("labels"), dict) else None,
        )


def event_from_message(message: SseMessage) -> Event | None:
    """The ``Event`` a stream message carries; None for a message of another sort (its data
    not a JSON object of an event), which a newer server may send and this client skips.

    Raises:
        ApiError: Its data claims to be an event but is not a valid one (no integer seq).
    """
    try:
        data = json.loads(message.data)
    except ValueError:
        return None
    if not isinstance(data, dict) or "seq" not in data:
        if isinstance(data, dict) and message.id is not None and message.id.isdigit():
            data = {**data, "seq": int(message.id)}
        else:
            return None
    if "kind" not in data and message.event != "message":
        data = {**data, "kind": message.event}
    return Event.from_json(data)


@dataclass
class StreamCursor:
    """Where an event stream is: the last event seen, so a reconnect resumes after it.

    Attributes:
        last_id: The last event id received (``Last-Event-ID`` of the next connection).
        retry_seconds: How long to wait before reconnecting (the server's ``retry:`` or 1 s).
    """

    last_id: str | None = None
    retry_seconds: float = 1.0
    failures: int = 0

    def saw(self, parser: SseParser) -> None:
        if parser.last_event_id is not None:
            self.last_id = parser.last_event_id
        if parser.retry is not None:
            self.retry_seconds = max(0.0, parser.retry / 1000)
        self.failures = 0

    def backoff(self) -> float:
        """Seconds to wait before the next reconnect: the server's retry, doubled after each
        failure in a row, at most 30 s."""
        self.failures += 1
        return float(min(30.0, max(self.retry_seconds, 0.1) * (2 ** min(self.failures - 1, 5))))


class EventStream:
    """One subscription to the event stream, as a state machine the sessions drive: which
    request to send next (resuming after the last event seen), the events each chunk of
    bytes completes, and what to do when a connection ends (reconnect after how long, or
    stop).

    Args:
        build: ``build(last_event_id)`` -> the request of one connection.
        reconnect: Reconnect when the connection drops or the server is unavailable
            (waiting as ``StreamCursor.backoff`` says); False: end (or raise) instead.
        last_event_id: Resume after this event.
    """

    def __init__(self, build: Any, *, reconnect: bool = True, last_event_id: str | None = None) -> None:
        self._build = build
        self.reconnect = reconnect
        self.cursor = StreamCursor(last_id=last_event_id)
        self._parser = SseParser()

    def next_request(self) -> Any:
        """The request of the next connection (a fresh parser: nothing carries over)."""
        self._parser = SseParser()
        return self._build(self.cursor.last_id)

    def received(self, chunk: bytes) -> list[Event]:
        """The events ``chunk`` completes.

        Raises:
            ApiError: A message whose data is not an event.
        """
        events = []
        for message in self._parser.feed(chunk):
            event = event_from_message(message)
            self.cursor.saw(self._parser)
            if event is not None:
                events.append(event)
        return events

    def ended(self, error: BaseException | None) -> float | None:
        """A connection ended (``error``: why, None: the server closed it). Returns the
        seconds to wait before reconnecting, or None to stop.

        Raises:
            BaseException: ``error`` itself when it is not one to reconnect after.
        """
        from plait._api._errors import ApiUnavailable

        if error is not None and not (self.reconnect and isinstance(error, ApiUnavailable)):
            raise error
        if not self.reconnect:
            return None
        return self.cursor.backoff()
