"""Storing recorder batches a plait server receives, each exactly once.

A remote recorder sends a batch with an id and, when the answer does not reach it, sends
the same batch with the same id again. ``ingest_batch`` claims the id in
``ingested_batches`` and stores the batch in the same transaction, so a batch is stored
once however often it arrives, and every later delivery gets the first answer back.

The claim comes first: on PostgreSQL a second delivery racing the first waits on the
claimed row and then sees the first one's answer; on SQLite the transaction takes the
write lock up front. Records the database refuses are dropped one by one as
``RunWriter.write_isolating`` does, but inside savepoints of the one transaction, so even
a batch with refused rows is stored at most once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ArgumentError, CompileError, DBAPIError, SQLAlchemyError, StatementError

from plait._batch import BatchRows
from plait._runs import utcnow
from plait._store.database import Database
from plait._store.events import EventParams, insert_event_params
from plait._store.models import ARTIFACTS, INGESTED_BATCHES
from plait._store.runs import (
    _E,
    _F,
    _L,
    _R,
    _S,
    _T,
    _VALUE_ERRORS,
    FLOW_MUTABLE,
    FLOW_ROW,
    TASK_MUTABLE,
    RunWriter,
    is_row_error,
    replay_in,
)

__all__ = ["ingest_batch", "ingest_replay", "BATCH_ID_MAX"]

_B: Table = INGESTED_BATCHES

BATCH_ID_MAX = 128
# PostgreSQL SQLSTATEs worth another try: serialization_failure, deadlock_detected.
_RETRY_SQLSTATES = ("40001", "40P01")
_ATTEMPTS = 3

# What a write inside the transaction returns: (taken ids, dropped, reason, events).
_Outcome = tuple[set[str], int, str, list[EventParams]]


def _columns(table: Table) -> frozenset[str]:
    return frozenset(c.name for c in table.c if not (c.primary_key and c.autoincrement is True))


# table of a batch -> (fields every row needs, fields a row may have)
_FLOW, _TASK = frozenset(c.name for c in _F.c), frozenset(c.name for c in _T.c)
_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "new_flows": (frozenset(FLOW_ROW), _FLOW | {"expect"}),  # the recorder's columns, not every column
    "old_flows": (frozenset({"id", "expect", *FLOW_MUTABLE}), _FLOW | {"expect"}),
    "new_tasks": (_TASK, _TASK),
    "old_tasks": (frozenset({"id", "flow_run_id", *TASK_MUTABLE}), _TASK),
    "states": (frozenset({"run_id", "run_kind", "flow_run_id", "type", "name", "message", "timestamp"}),
               frozenset({"run_id", "run_kind", "flow_run_id", "type", "name", "message", "timestamp"})),
    "edges": (frozenset(c for c in _columns(_E) if c != "id"), _columns(_E) - {"id"}),
    "logs": (_columns(_L) - {"id"}, _columns(_L) - {"id"}),
    "results": (_columns(_R) - {"id"}, _columns(_R) - {"id"}),
    "artifacts": (_columns(ARTIFACTS), _columns(ARTIFACTS)),
    "artifact_updates": (frozenset({"artifact_id", "data", "updated"}), frozenset({"artifact_id", "data", "updated"})),
}
# A replayed journal holds a run's newest snapshot, or only its changing fields ("_partial").
_PARTIAL = {"new_flows": frozenset({"id", *FLOW_MUTABLE}), "new_tasks": frozenset({"id", *TASK_MUTABLE})}
assert _columns(_S) - {"id"} <= _FIELDS["states"][1]


def _check_rows(rows: BatchRows, replaying: bool) -> None:
    """Refuse a batch whose records lack a field the store needs or carry one it does not
    know, naming the first such record (before anything is written)."""
    for name, (required, allowed) in _FIELDS.items():
        for i, row in enumerate(getattr(rows, name)):
            keys = row.keys()
            if replaying and name in _PARTIAL and row.get("_partial"):
                need, may = _PARTIAL[name], allowed | {"_partial"}
            else:
                need, may = required, allowed | ({"_partial"} if replaying else set())
            missing = need - keys
            if missing:
                raise ValueError(f"rows: {name}[{i}] lacks the field(s) {', '.join(sorted(missing))}")
            unknown = keys - may
            if unknown:
                raise ValueError(f"rows: {name}[{i}] has unknown field(s) {', '.join(sorted(unknown))}")


def _check(batch_id: Any, rows: Any) -> str:
    if not isinstance(batch_id, str) or not batch_id.strip():
        raise ValueError("batch_id: give the id the recorder gave the batch (a non-empty string)")
    if len(batch_id) > BATCH_ID_MAX or not batch_id.isprintable():
        raise ValueError(f"batch_id: at most {BATCH_ID_MAX} printable characters, not {batch_id[:40]!r}…")
    if not isinstance(rows, BatchRows):
        raise ValueError(f"rows: a BatchRows (see BatchRows.from_wire), not {type(rows).__name__}")
    return batch_id


def _begin(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        # the write lock up front: the claim and the batch are one atomic step
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.begin()


def _claim(conn: Connection, batch_id: str) -> dict[str, Any] | None:
    """Claim ``batch_id`` for this transaction; the stored answer when it was claimed and
    committed before."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = conn.dialect.name
    values = {"batch_id": batch_id, "received": utcnow(), "result": {"pending": True}}
    if dialect in ("postgresql", "sqlite"):
        insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_B).values(**values)
        claimed = insert.on_conflict_do_nothing(index_elements=["batch_id"]).returning(_B.c.batch_id)
        if conn.execute(claimed).first() is not None:
            return None
    else:  # pragma: no cover - plait supports SQLite and PostgreSQL
        if conn.execute(select(_B.c.batch_id).where(_B.c.batch_id == batch_id)).first() is None:
            conn.execute(_B.insert().values(**values))
            return None
    result = conn.scalar(select(_B.c.result).where(_B.c.batch_id == batch_id))
    return dict(result or {})


def _retryable(exc: SQLAlchemyError) -> bool:
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return isinstance(exc, DBAPIError) and code in _RETRY_SQLSTATES


def _ingest(db: Database, batch_id: str, write: Callable[[Connection], _Outcome]) -> dict[str, Any]:
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with db.engine.connect() as conn:
                _begin(conn)
                previous = _claim(conn, batch_id)
                if previous is not None:
                    conn.rollback()
                    return {"taken": list(previous.get("taken", [])), "dropped": int(previous.get("dropped", 0)),
                            "reason": str(previous.get("reason", "")), "duplicate": True}
                taken, dropped, reason, events = write(conn)
                result = {"taken": sorted(taken), "dropped": dropped, "reason": reason}
                conn.execute(_B.update().where(_B.c.batch_id == batch_id).values(result=result))
                insert_event_params(conn, events)  # last: on PostgreSQL it holds the events lock until commit
                conn.commit()
                return {**result, "duplicate": False}
        except KeyError as exc:
            raise ValueError(f"rows: a record of the batch lacks the field {exc}") from None
        except (CompileError, ArgumentError, StatementError) as exc:
            if isinstance(exc, DBAPIError):  # the database's own refusal or failure
                if attempt < _ATTEMPTS and _retryable(exc):
                    continue
                raise db.error(exc, "write run history to") from None
            # SQLAlchemy refused the rows before the database saw them: unknown or missing fields
            text = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
            raise ValueError(f"rows: a record of the batch does not fit the store: {text}") from None
        except SQLAlchemyError as exc:
            raise db.error(exc, "write run history to") from None
    raise AssertionError("unreachable")


def ingest_batch(db: Database, batch_id: str, rows: BatchRows) -> dict[str, Any]:
    """Store a recorder batch once: ``{"taken": [...], "dropped": n, "reason": str,
    "duplicate": bool}``.

    ``taken`` lists the flow runs someone else ended meanwhile (nothing of theirs was
    stored), ``dropped`` how many records the database refused and ``reason`` why the first
    one was (as ``RunWriter.write_isolating``). ``duplicate`` is true when this batch id was
    stored before: nothing is written and the first answer is returned.

    Raises:
        ValueError: ``batch_id`` or ``rows`` is malformed (a record lacks a field or has
            one the store does not know); nothing is stored.
        DatabaseError: The database failed; nothing of the batch is stored (send it again).
    """
    batch_id = _check(batch_id, rows)
    _check_rows(rows, replaying=False)
    writer = RunWriter(db)

    def write(conn: Connection) -> _Outcome:
        try:
            with conn.begin_nested():
                whole_taken, whole_events = writer.write_in(conn, rows)
            return whole_taken, 0, "", whole_events
        except (SQLAlchemyError, *_VALUE_ERRORS) as exc:
            if not is_row_error(exc):
                raise
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
        taken: set[str] = set()
        dropped = 0
        events: list[EventParams] = []
        pieces = list(rows.pieces())
        if rows.heartbeats:
            pieces.append(BatchRows(heartbeats=rows.heartbeats, now=rows.now))
        for piece in pieces:
            try:
                with conn.begin_nested():
                    piece_taken, piece_events = writer.write_in(conn, piece)
            except (SQLAlchemyError, *_VALUE_ERRORS) as exc:
                if not is_row_error(exc):
                    raise
                dropped += 1
                continue
            taken |= piece_taken
            events += piece_events
        return taken, dropped, reason, events

    return _ingest(db, batch_id, write)


def ingest_replay(db: Database, batch_id: str, rows: BatchRows) -> dict[str, Any]:
    """Store what a dead process journaled (``plait._store.runs.replay`` semantics, itself
    idempotent) and remember ``batch_id``; answers like ``ingest_batch`` (``taken`` empty,
    ``dropped`` 0).

    Raises:
        ValueError: ``batch_id`` or ``rows`` is malformed.
        DatabaseError: The database failed; nothing of the batch is stored (send it again).
    """
    batch_id = _check(batch_id, rows)
    _check_rows(rows, replaying=True)
    return _ingest(db, batch_id, lambda conn: (set(), 0, "", replay_in(conn, rows)))
