"""The event stream's engine: one poller per server process, fanning out to subscribers.

Several servers may write one PostgreSQL database, so a server cannot learn of new events
from its own writes: ``EventHub`` polls the events table every ``interval`` (≤ 250 ms) while
anyone listens, and hands each subscriber what is new. Every server sees every event,
whoever stored it.

Sequence numbers come from the database and are handed out when a transaction inserts,
not when it commits: seq 11 may become visible before seq 10. The hub therefore never
skips a number it has not seen: a hole below the newest seq seen stays open (and is asked
for again on each poll) until its event appears or ``GRACE`` seconds pass (a rolled-back
transaction leaves a hole for good). A late event is delivered when it appears, after
later ones.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from plait._store.database import Database
from plait.exceptions import DatabaseError

__all__ = ["EventHub", "Subscription", "matches", "hub_for"]

logger = logging.getLogger("plait.server")

POLL_INTERVAL = 0.2
# Seconds a hole in the sequence is waited for. Writers that take the events lock
# (``_store.events``) commit in seq order, so there a hole is a rolled-back insert for good.
GRACE = 10.0
_PAGE = 500
_MAX_QUEUED = 1000  # batches a slow subscriber may fall behind before it re-reads the store


def matches(
    event: dict[str, Any], kinds: Iterable[str] | None, resource: str | None, runs: Collection[str] | None = None
) -> bool:
    """Whether ``event`` passes a stream's filters, as ``list_events`` applies them: a kind
    matches exactly, or by prefix when it ends in ``.*`` (``block.*``); the resource is a
    prefix. ``runs``: only events of these flow runs — their own, their task runs' and their
    logs' (the payload's ``flow_run_id``)."""
    if kinds:
        kind = str(event.get("kind", ""))
        if not any(kind == k or k.endswith(".*") and kind.startswith(k[:-1]) for k in kinds):
            return False
    if runs:
        payload = event.get("payload")
        owner = payload.get("flow_run_id") if isinstance(payload, dict) else None
        if owner not in runs and str(event.get("resource", "")).removeprefix("flow-run/") not in runs:
            return False
    return not resource or str(event.get("resource", "")).startswith(resource)


@dataclass(eq=False)  # each subscription is itself (kept in a set)
class Subscription:
    """One listener: batches of new events arrive on ``queue``; ``lagged`` is set when it
    fell too far behind and must read from the store itself."""

    queue: asyncio.Queue[list[dict[str, Any]]] = field(default_factory=lambda: asyncio.Queue(_MAX_QUEUED))
    lagged: bool = False
    floor: int = 0  # every event the hub delivers from now on has a seq above this


@dataclass
class _Hole:
    first: int
    last: int
    since: float


class EventHub:
    """Polls the store for new events while anyone subscribes.

    Args:
        db: The store.
        interval: Seconds between two polls.
    """

    def __init__(self, db: Database, interval: float = POLL_INTERVAL) -> None:
        self.db = db
        self.interval = interval
        self._subscribers: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._newest: int | None = None  # highest seq seen
        self._holes: list[_Hole] = []
        self._lock = threading.Lock()  # poll() runs in a worker thread; floor is read on the loop

    @property
    def floor(self) -> int:
        """No seq at or below this will be delivered any more (-1 before the first poll)."""
        with self._lock:
            if self._newest is None:
                return -1
            return min([h.first - 1 for h in self._holes] + [self._newest])

    async def subscribe(self) -> Subscription:
        """A new subscription; the poller starts if it was idle.

        Raises:
            DatabaseError: The store cannot be read (the first poll of an idle hub).
        """
        sub = Subscription()
        self._subscribers.add(sub)
        if self._task is None or self._task.done():
            if self._newest is None:
                try:
                    self._newest = await asyncio.to_thread(self._latest)
                except BaseException:
                    self._subscribers.discard(sub)
                    raise
            self._task = asyncio.create_task(self._run(), name="plait-event-hub")
        sub.floor = self.floor
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    async def close(self) -> None:
        self._subscribers.clear()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _latest(self) -> int:
        from plait._store.events import latest_seq

        return int(latest_seq(self.db))

    async def _run(self) -> None:
        failing = False
        while self._subscribers:
            try:
                fresh = await asyncio.to_thread(self.poll)
                failing = False
            except DatabaseError as exc:
                if not failing:
                    logger.warning("the event stream cannot read the store: %s (retrying)", exc)
                failing = True
                fresh = []
            if fresh:
                for sub in list(self._subscribers):
                    try:
                        sub.queue.put_nowait(fresh)
                    except asyncio.QueueFull:
                        sub.lagged = True
            await asyncio.sleep(self.interval)
        # nobody listens: the next subscriber starts over from the newest event
        with self._lock:
            self._newest, self._holes = None, []

    # -- one poll (in a worker thread) ---------------------------------------------------------
    def poll(self) -> list[dict[str, Any]]:
        """Events that appeared since the last poll, including late ones filling holes.

        Raises:
            DatabaseError: The store cannot be read.
        """
        with self._lock:
            return self._poll()

    def _poll(self) -> list[dict[str, Any]]:
        from plait._store.events import list_events

        now = time.monotonic()
        found: list[dict[str, Any]] = []
        for hole in list(self._holes):
            if now - hole.since > GRACE:
                self._holes.remove(hole)
                continue
            page = list_events(self.db, after_seq=hole.first - 1, limit=min(_PAGE, hole.last - hole.first + 1))
            late = [e for e in page["items"] if hole.first <= int(e["seq"]) <= hole.last]
            if late:
                found += late
                self._refill(hole, {int(e["seq"]) for e in late})
        newest = self._newest if self._newest is not None else self._latest()
        while True:
            page = list_events(self.db, after_seq=newest, limit=_PAGE)
            items = page["items"]
            for event in items:
                seq = int(event["seq"])
                if seq > newest + 1:
                    self._holes.append(_Hole(newest + 1, seq - 1, now))
                newest = max(newest, seq)
                found.append(event)
            if len(items) < _PAGE:
                break
        self._newest = newest
        return found

    def _refill(self, hole: _Hole, seen: set[int]) -> None:
        """Split ``hole`` around the seqs that appeared in it."""
        self._holes.remove(hole)
        start = hole.first
        for seq in sorted(seen) + [hole.last + 1]:
            if seq > start:
                self._holes.append(_Hole(start, seq - 1, hole.since))
            start = seq + 1


def hub_for(app_state: Any) -> EventHub:
    """The app's hub (made on first use)."""
    hub: EventHub | None = getattr(app_state, "event_hub", None)
    if hub is None:
        hub = app_state.event_hub = EventHub(app_state.database)
    return hub
