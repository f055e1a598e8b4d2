"""One recorder batch as rows, and its wire form.

A ``BatchRows`` is what a flush stores in one go: the local store writes it in one
transaction (``plait._store.runs.RunWriter``), a plait server receives it as JSON
(``POST /api/v1/records``). This module does no I/O and imports no database code, so a
process recording to a server never loads SQLAlchemy for it.

Text cleaning lives here too: what no backend can store (NUL, lone surrogates) is replaced
before a row travels anywhere, so one odd string never fails a batch.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from plait._runs import utcnow

__all__ = ["BatchRows", "clean_text", "clean_json", "micros", "from_micros", "TABLES"]

# The lists of a batch, in the order a writer stores them.
TABLES = (
    "new_flows", "old_flows", "new_tasks", "old_tasks", "states", "edges", "logs", "results",
    "artifacts", "artifact_updates",
)
# Lists newer than the wire format's first version: left out of the wire when empty, so a
# recorder talks to an older server until it actually records one of them.
_OPTIONAL = frozenset({"artifacts", "artifact_updates"})
# Row keys holding a timestamp (top level of a row only; parameters are plain JSON).
_TIME_KEYS = frozenset({"created", "start_time", "end_time", "heartbeat_at", "timestamp", "expires_at", "updated"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(value: datetime | None) -> int | None:
    """A timestamp as whole microseconds since the epoch: far cheaper than arithmetic on
    datetimes, and an int costs far less to write than a float. Exact until 2038 (the float
    from ``timestamp()`` is within a quarter microsecond until then, so rounding recovers
    it); later, a timestamp may come back a microsecond off."""
    return None if value is None else round(value.timestamp() * 1_000_000)


def from_micros(value: int | None) -> datetime | None:
    return None if value is None else _EPOCH + timedelta(microseconds=value)


@dataclass(slots=True)
class BatchRows:
    """One batch as rows. Flow rows carry ``expect``: the state type this writer last stored
    for the run (None: not stored by this writer yet)."""

    new_flows: list[dict[str, Any]] = field(default_factory=list)
    old_flows: list[dict[str, Any]] = field(default_factory=list)
    new_tasks: list[dict[str, Any]] = field(default_factory=list)
    old_tasks: list[dict[str, Any]] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)
    edges: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    # plait.artifacts: new artifacts, and progress updates of stored ones (``_store.artifacts``)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    artifact_updates: list[dict[str, Any]] = field(default_factory=list)
    heartbeats: list[str] = field(default_factory=list)
    now: datetime = field(default_factory=utcnow)

    def pieces(self) -> Iterator[BatchRows]:
        """This batch split into one-row batches (to find the row no database accepts)."""
        for name in TABLES:
            for row in getattr(self, name):
                piece = BatchRows(now=self.now)
                getattr(piece, name).append(row)
                yield piece

    @property
    def size(self) -> int:
        return sum(len(getattr(self, name)) for name in TABLES) + len(self.heartbeats)

    def to_wire(self) -> dict[str, Any]:
        """This batch as a JSON-safe dict: timestamps as integer microseconds (UTC)."""
        wire: dict[str, Any] = {"now": micros(self.now), "heartbeats": list(self.heartbeats)}
        for name in TABLES:
            if name in _OPTIONAL and not getattr(self, name):
                continue
            wire[name] = [
                {k: micros(v) if k in _TIME_KEYS and v is not None else v for k, v in row.items()}
                for row in getattr(self, name)
            ]
        return wire

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> BatchRows:
        """The batch ``to_wire`` made.

        Raises:
            ValueError: ``wire`` is not a batch (names the part that is wrong).
        """
        if not isinstance(wire, dict):
            raise ValueError("a batch is a JSON object")
        unknown = set(wire) - {*TABLES, "heartbeats", "now"}
        if unknown:
            raise ValueError(f"unknown part(s) of a batch: {', '.join(sorted(unknown))}")
        rows = cls(now=_time(wire.get("now"), "now") or utcnow())
        heartbeats = wire.get("heartbeats") or []
        if not isinstance(heartbeats, list) or not all(isinstance(i, str) for i in heartbeats):
            raise ValueError("heartbeats: a list of flow run ids")
        rows.heartbeats = heartbeats
        for name in TABLES:
            items = wire.get(name) or []
            if not isinstance(items, list) or not all(isinstance(r, dict) for r in items):
                raise ValueError(f"{name}: a list of objects")
            getattr(rows, name).extend(
                {k: _time(v, f"{name}.{k}") if k in _TIME_KEYS else v for k, v in row.items()} for row in items
            )
        return rows


def _time(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: a timestamp in integer microseconds since the epoch, not {value!r}")
    try:
        return from_micros(value)
    except OverflowError:
        raise ValueError(f"{where}: timestamp {value} is out of range") from None


# -- text that every backend accepts ------------------------------------------------------------
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str | None) -> str | None:
    """``text`` as a database can store it: NUL made visible, lone surrogates replaced.

    PostgreSQL rejects NUL in text, and no UTF-8 codec encodes a surrogate code point;
    either would fail the whole batch it travels in.
    """
    if not text or text.isascii() and "\x00" not in text:
        return text
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    return _SURROGATE.sub("\ufffd", text)


def _unencodable(value: Any) -> bool:
    if isinstance(value, str):
        if value.isascii():
            return False
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_unencodable(k) or _unencodable(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(map(_unencodable, value))
    return False


def _replace_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_replace_surrogates(v) for v in value]
    return value


def clean_json(value: Any) -> Any:
    """A JSON column value with lone surrogates in its strings replaced by U+FFFD (no
    backend stores them); the value itself when it has none, which is nearly always."""
    return _replace_surrogates(value) if _unencodable(value) else value
