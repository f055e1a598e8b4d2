"""plait's run history in batches, for copying it elsewhere incrementally (a warehouse).

    from plait.history import iter_history

    cursor = 0                      # keep it where you copy to; 0 copies everything
    for batch in iter_history(since=cursor):
        load(batch.flow_runs, batch.task_runs, batch.states)   # upsert runs by id, append states
        cursor = batch.cursor

A batch holds the state rows with an id above ``since`` (oldest first) and the flow runs
and task runs they belong to, as they are now. Every state change appends a state row, so
a run that changed since the last copy comes again with its new state: upsert runs by
``id``, append states by ``id``, and store the batch's ``cursor`` in the same transaction,
and a copy that is run twice loads nothing twice.

On a PostgreSQL store two writers may commit out of id order, so a state can appear below
a cursor already handed out. Start each copy a window below the stored cursor (say 1,000
ids: ``since=max(0, cursor - 1000)``), skip the states already there, and write only the
runs that have a state new to you: a late state is caught, nothing is written twice.

Rows are dicts: times are aware UTC datetimes, ``tags`` a list of texts, messages longer
than 2,000 characters cut (``…[truncated N chars]``); flow runs' parameters are left out.

The history is read from the local store (``PLAIT_DATABASE_URL``, or the SQLite file under
``PLAIT_HOME``), SQLite or PostgreSQL; with ``PLAIT_API_URL`` set, from that server
(``GET /api/v1/history/export``, scope ``read``). ``database_url=`` reads a store directly.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["HistoryBatch", "HistoryUnavailable", "MAX_BATCH", "export_history", "iter_history", "copy_history"]

MAX_BATCH = 10_000


class HistoryUnavailable(RuntimeError):
    """The history cannot be read: the server at ``PLAIT_API_URL`` has no history export."""


@dataclass(frozen=True)
class HistoryBatch:
    """One batch of the run history.

    Attributes:
        flow_runs: The flow runs the batch's states belong to (and those of its task runs),
            as they are now, oldest first.
        task_runs: The task runs the batch's states belong to, as they are now.
        states: The state rows, by ascending ``id``.
        cursor: Pass it as ``since`` to read what came after this batch.
        more: Whether the batch was full (there may be more right away).
    """

    flow_runs: list[dict[str, Any]] = field(default_factory=list)
    task_runs: list[dict[str, Any]] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)
    cursor: int = 0
    more: bool = False

    def __bool__(self) -> bool:
        return bool(self.flow_runs or self.task_runs or self.states)


_TIMES = ("created", "start_time", "end_time", "expected_start_time", "timestamp")


def _from_wire(row: dict[str, Any]) -> dict[str, Any]:
    return {k: datetime.fromisoformat(v) if k in _TIMES and isinstance(v, str) else v for k, v in row.items()}


def _remote_batch(since: int, limit: int, exclude_flows: Collection[str]) -> dict[str, Any]:
    """The batch from the server's ``GET /history/export``."""
    from plait._api import ApiNotFound, ApiSession
    from plait._api._core import as_dict, query

    params = query(since=since, limit=limit, exclude_flow=list(exclude_flows))
    try:
        with ApiSession.from_settings() as session:
            data = session.call(session.calls.call("GET", "/history/export", as_dict, params=params))
    except ApiNotFound:
        raise HistoryUnavailable(
            "the plait server at PLAIT_API_URL has no history export (GET /api/v1/history/export). Fix: upgrade "
            "the server, or pass database_url= its store URL to read the history directly"
        ) from None
    return {
        "flow_runs": [_from_wire(r) for r in data["flow_runs"]],
        "task_runs": [_from_wire(r) for r in data["task_runs"]],
        "states": [_from_wire(s) for s in data["states"]],
        "cursor": int(data["cursor"]),
        "more": bool(data["more"]),
    }


def export_history(
    since: int = 0, limit: int = 1000, *, exclude_flows: Collection[str] = (), database_url: str | None = None,
) -> HistoryBatch:
    """The next batch of the run history after the cursor ``since``.

    Args:
        since: The ``cursor`` of the previous batch; 0 (the default) reads from the start.
        limit: At most this many states (1 to ``MAX_BATCH``); the runs they belong to come along.
        exclude_flows: Names of flows whose runs (with their task runs and states) are left
            out, e.g. the copying flow's own.
        database_url: Read this store directly instead of the configured store or server.

    Raises:
        ValueError: ``since`` or ``limit`` is out of range.
        HistoryUnavailable: The server at ``PLAIT_API_URL`` has no history export.
        plait.exceptions.DatabaseError: (local) The store cannot be read.
        plait.client.ApiError: (``PLAIT_API_URL``) The server refused or did not answer.
    """
    from plait.settings import get_settings

    if isinstance(since, bool) or not isinstance(since, int) or not 0 <= since < 2**63:
        raise ValueError(f"since is a cursor a batch returned (a whole number >= 0), not {since!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_BATCH:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_BATCH}, not {limit!r}")
    url = database_url
    if url is None:
        settings = get_settings()
        if settings.api_url is not None:
            return HistoryBatch(**_remote_batch(since, limit, exclude_flows))
        url = settings.effective_database_url
    from plait._store.database import Database
    from plait._store.export import export_batch

    return HistoryBatch(**export_batch(Database.open(url), since, limit, exclude_flows=exclude_flows))


def iter_history(
    since: int = 0, batch_size: int = 1000, *, exclude_flows: Collection[str] = (), database_url: str | None = None,
) -> Iterator[HistoryBatch]:
    """Batch after batch of the run history after ``since``, until nothing more is there.
    Yields nothing when nothing is new; a
    batch with no rows but a cursor that moved (everything in it excluded) is yielded too,
    so the caller stores the cursor."""
    cursor = since
    while True:
        batch = export_history(cursor, batch_size, exclude_flows=exclude_flows, database_url=database_url)
        if batch or batch.cursor != cursor:
            yield batch
        cursor = batch.cursor
        if not batch.more:
            return


def copy_history(
    load: Callable[[HistoryBatch], Mapping[str, int]],
    cursor: int,
    *,
    batch_size: int = 1000,
    exclude_flows: Collection[str] = (),
    overlap: int = 1000,
    database_url: str | None = None,
) -> dict[str, int]:
    """The loop of an incremental copy into another system (a warehouse's copy flow):
    batches from ``cursor - overlap`` on, each handed to ``load``, which writes it (with the
    batch's cursor, in one transaction) and says how many rows of each kind it wrote.

    ``overlap`` state ids below the cursor are read again, so a state that a PostgreSQL
    store committed after a later one (two writers) is not missed; ``load`` skips what it
    already has.

    Returns:
        What ``load`` wrote, summed by kind, and ``cursor``: the last state id copied.

    Raises:
        ValueError: ``overlap`` is not a whole number >= 0.
    """
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
        raise ValueError(f"overlap is a number of state ids (0 or more), not {overlap!r}")
    totals: dict[str, int] = {}
    for batch in iter_history(since=max(0, cursor - overlap), batch_size=batch_size, exclude_flows=exclude_flows,
                              database_url=database_url):
        for kind, count in load(batch).items():
            totals[kind] = totals.get(kind, 0) + count
        cursor = max(cursor, batch.cursor)
    return {**totals, "cursor": cursor}
