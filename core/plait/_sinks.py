"""Where the recorder's batches go: a ``RunSink``.

A sink stores one ``BatchRows`` at a time. ``DatabaseSink`` writes to a local store (SQLite,
PostgreSQL) through ``plait._store.runs``; ``plait._api.sink.ApiRunSink`` posts to a plait
server. The recorder does not care which: it journals every record first, hands a batch to
the sink, and while the sink cannot take it (``unavailable``) keeps the records, retrying the
same batch (same id, so a server that did store it before the answer was lost stores it
once) before anything newer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from plait._batch import BatchRows
from plait._store.database import Database
from plait.exceptions import DatabaseError, PlaitError
from plait.states import StateType

__all__ = ["RunSink", "DatabaseSink"]


class RunSink(Protocol):
    """What the recorder needs of a destination."""

    @property
    def label(self) -> str:
        """The destination for messages (a masked URL)."""
        ...

    @property
    def digest(self) -> str:
        """Identity of the destination, kept in the journal so recovery replays a journal
        to where its records were going."""
        ...

    def write(self, batch_id: str, rows: BatchRows) -> tuple[set[str], int, str]:
        """Store a batch: ``(taken, dropped, reason)`` as ``RunWriter.write_isolating``."""
        ...

    def replay(self, batch_id: str, rows: BatchRows) -> None:
        """Store what a dead process journaled, idempotently."""
        ...

    def stored_flow_run_state(self, flow_run_id: str) -> StateType | None:
        """The state the destination holds for a flow run (None: no such run)."""
        ...

    def stored_flow_run(self, flow_run_id: str) -> dict[str, Any] | None:
        """What a launched process needs of the run it adopts (``_store.runs.stored_flow_run``)."""
        ...

    def cancelling(self, flow_run_ids: list[str]) -> set[str]:
        """Which of these flow runs someone asked to stop (stored Cancelling). Asked once per
        flush cycle; may answer from what the last write learnt."""
        ...

    @property
    def flow_extras(self) -> frozenset[str]:
        """Optional flow-run columns this destination takes in a new run's row (``entrypoint``)."""
        ...

    def pause(self, flow_run_id: str, schema: dict[str, Any] | None, deadline: datetime) -> str:
        """Keep what a Paused run waits for (``_store.control.record_pause``); the stored state type."""
        ...

    def pause_status(self, flow_run_id: str) -> dict[str, Any]:
        """``{state_type, state_name, resume_input}`` of a run (``_store.control.pause_status``)."""
        ...

    def failure(self, exc: BaseException, action: str) -> PlaitError:
        """``exc`` (raised by ``write``) as the error to report: says what failed and what
        to do, with no secret in it."""
        ...


class DatabaseSink:
    """A ``RunSink`` over a local store."""

    def __init__(self, db: Database) -> None:
        from plait._store.runs import RunWriter

        self.db = db
        self._writer = RunWriter(db)

    def __repr__(self) -> str:
        return f"DatabaseSink({self.db.url_masked!r})"

    @property
    def label(self) -> str:
        return self.db.url_masked

    @property
    def digest(self) -> str:
        return self.db.url_digest

    def write(self, batch_id: str, rows: BatchRows) -> tuple[set[str], int, str]:
        # A failed transaction was rolled back: writing the batch again cannot double it,
        # so the id is not needed here.
        return self._writer.write_isolating(rows)

    def replay(self, batch_id: str, rows: BatchRows) -> None:
        from plait._store.runs import replay

        replay(self.db, rows)

    def stored_flow_run_state(self, flow_run_id: str) -> StateType | None:
        from plait._store.runs import stored_flow_run_state

        return stored_flow_run_state(self.db, flow_run_id)

    def stored_flow_run(self, flow_run_id: str) -> dict[str, Any] | None:
        from plait._store.runs import stored_flow_run

        return stored_flow_run(self.db, flow_run_id)

    def cancelling(self, flow_run_ids: list[str]) -> set[str]:
        from plait._store.runs import cancelling_among

        return cancelling_among(self.db, flow_run_ids)

    @property
    def flow_extras(self) -> frozenset[str]:
        from plait._store.runs import HAS_ENTRYPOINT

        return frozenset({"entrypoint"}) if HAS_ENTRYPOINT else frozenset()

    def pause(self, flow_run_id: str, schema: dict[str, Any] | None, deadline: datetime) -> str:
        from plait._store.control import record_pause

        return record_pause(self.db, flow_run_id, schema, deadline)

    def pause_status(self, flow_run_id: str) -> dict[str, Any]:
        from plait._store.control import pause_status

        return pause_status(self.db, flow_run_id)

    def failure(self, exc: BaseException, action: str) -> DatabaseError:
        return exc if isinstance(exc, DatabaseError) else self.db.error(exc, action)
