"""The run-history repository: every SQL statement about flow runs, task runs, their states,
edges, logs and results.

Write side: ``RunWriter.write(batch)`` stores one recorder batch, and the events of its state
changes and log lines (``plait._store.events``), in one transaction;
``end_flow_runs`` is the one way a run its process could not end (crashed, killed, failed
to start) becomes final, with its unfinished task runs and subflow runs; ``replay`` stores
what a dead process journaled, idempotently. Read side: plain dicts and lists that
``json.dumps`` accepts, timestamps as ISO 8601 strings in UTC, for the CLI and the server.

Text is stored as it was reported, except what no database can keep: NUL becomes ``\\x00``
and lone surrogates (``"\\ud800"``) become U+FFFD, so one odd string never fails a batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Integer, String, Table, and_, bindparam, case, func, literal_column, not_, or_, select, text
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError, StatementError
from sqlalchemy.sql import Insert, Update

from plait._batch import BatchRows, clean_json, clean_text
from plait._runs import HOSTNAME, utcnow
from plait._store.artifacts import write_artifacts_in
from plait._store.database import Database, _json_dumps
from plait._store.events import EventParams, batch_event_params, insert_event_params
from plait._store.models import (
    FLOW_RUN_TAGS,
    FLOW_RUNS,
    LOGS,
    RESULTS,
    STATES,
    TASK_RUN_EDGES,
    TASK_RUNS,
    _sqlite_bind,
)
from plait.states import TRANSITIONS, StateType

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite

__all__ = [
    "BatchRows",
    "RunWriter",
    "clean_text",
    "clean_json",
    "is_row_error",
    "active_flow_runs",
    "end_flow_runs",
    "flow_run_summary",
    "stored_flow_run_state",
    "stored_flow_run",
    "cancelling_among",
    "replay",
    "replay_in",
]

logger = logging.getLogger("plait.store")

# Short names for the tables this module speaks of.
_F: Table = FLOW_RUNS
_T: Table = TASK_RUNS
_S: Table = STATES
_E: Table = TASK_RUN_EDGES
_L: Table = LOGS
_R: Table = RESULTS
_G: Table = FLOW_RUN_TAGS

# States that need a live process behind them. Scheduled and Paused runs wait on purpose.
_ACTIVE = (StateType.PENDING.value, StateType.RUNNING.value, StateType.RETRYING.value, StateType.CANCELLING.value)
_NOT_FINAL = tuple(t.value for t in StateType if not t.is_final)
_FINAL = tuple(t.value for t in StateType if t.is_final)
_CANCELLING = StateType.CANCELLING.value
# Spelled out with literals: executemany takes no expanding IN parameters.
_FINAL_SQL = ", ".join(f"'{v}'" for v in _FINAL)


def _may_become(kind: StateType) -> tuple[str, ...]:
    """State types from which the transition table allows a move to ``kind``."""
    return tuple(t.value for t, following in TRANSITIONS.items() if kind in following)


# What a driver raises for a value it cannot send (sqlite3: OverflowError for a huge int).
_VALUE_ERRORS = (ValueError, TypeError, OverflowError)


def is_row_error(exc: BaseException) -> bool:
    """Whether ``exc`` is about the values of some row (retry the rest without it), rather
    than about the database (missing table, lost connection: keep everything for later)."""
    if isinstance(exc, (DataError, IntegrityError, *_VALUE_ERRORS)):
        return True
    return isinstance(exc, StatementError) and isinstance(exc.orig, _VALUE_ERRORS)



def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _duration(start: datetime | None, end: datetime | None, state_type: str, now: datetime) -> float | None:
    """Seconds from start to end; for a run still going, to now."""
    if start is None:
        return None
    if end is None:
        if state_type not in _NOT_FINAL:
            return None
        end = now
    return round((end - start).total_seconds(), 3)


# -- writing a recorder batch ------------------------------------------------------------------
# The columns of the flow row a recorder writes (``plait._recorder``). The other columns of
# flow_runs belong to whoever created the run (a deployment's scheduler: deployment, pool,
# idempotency key, ...) and are kept when the process a worker launched adopts the run.
FLOW_ROW = (
    "id", "flow_name", "name", "parameters", "tags", "state_type", "state_name", "state_message",
    "parent_flow_run_id", "parent_task_run_id", "run_count", "created", "start_time", "end_time",
    "pid", "hostname", "heartbeat_at", "heartbeat_interval",
)
# Where the flow's code is (``path.py:function``), recorded for top-level runs so a failed run
# can be retried; optional in a row, a column since migration 0007.
HAS_ENTRYPOINT = "entrypoint" in _F.c
_STATE_COLUMNS = ("state_type", "state_name", "state_message")
_LINKS = ("parent_flow_run_id", "parent_task_run_id")
# Columns a flush rewrites for a run it already inserted; the rest never change.
FLOW_MUTABLE = (
    "state_type", "state_name", "state_message", "run_count",
    "start_time", "end_time", "heartbeat_at",
)
TASK_MUTABLE = (
    "state_type", "state_name", "state_message", "run_count",
    "cache_key", "result_ref", "start_time", "end_time",
)
# SQLite fast path for the rows that grow with the number of task runs (three states and
# one run row per task): plain DB-API executemany with tuples skips SQLAlchemy's per-row
# parameter processing, which dominated a flush. Values are encoded exactly as the column
# types would (timestamps via the models' SQLite format, JSON via the engine's serializer).
_TASK_COLUMNS = (
    "id", "flow_run_id", "task_name", "task_key", "name", "dynamic_key", "parameters", "tags",
    "state_type", "state_name", "state_message", "run_count", "cache_key", "result_ref",
    "created", "start_time", "end_time",
)
_TASK_JSON = frozenset({"parameters", "tags"})
_TASK_TIMES = frozenset({"created", "start_time", "end_time"})
_SQLITE_TASK_UPSERT = (
    f"INSERT INTO task_runs ({', '.join(_TASK_COLUMNS)}) VALUES ({', '.join('?' * len(_TASK_COLUMNS))}) "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _TASK_COLUMNS if c not in ("id", "created"))
)
_SQLITE_STATE_INSERT = "INSERT INTO states (run_id, run_kind, type, name, message, timestamp) VALUES (?, ?, ?, ?, ?, ?)"


def _upsert(db: Database, table: Table) -> Insert:
    """INSERT for new runs; an upsert where the backend has one.

    A run first written by another writer (a forked child, a re-run of a crashed flow, a run
    a scheduler created and a worker launched) must not fail the whole batch. Such a flow
    run keeps its name and the columns the recorder does not write; a Cancelling one stays
    Cancelling until the run ends.
    """
    name = db.dialect
    stmt: sqlite.Insert | postgresql.Insert
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table)
    elif name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        stmt = postgresql_insert(table)
    else:
        return table.insert()
    if table is not _F:
        columns = [c.name for c in table.c if c.name not in ("id", "created")]
        return stmt.on_conflict_do_update(index_elements=[table.c.id], set_={c: stmt.excluded[c] for c in columns})
    hold = f"flow_runs.state_type = '{_CANCELLING}' AND excluded.state_type NOT IN ({_FINAL_SQL})"
    flow_set: dict[str, Any] = {}
    for column in FLOW_ROW:
        if column in ("id", "created", "name"):
            continue
        if column in _STATE_COLUMNS:
            flow_set[column] = literal_column(
                f"CASE WHEN {hold} THEN flow_runs.{column} ELSE excluded.{column} END"
            )
        elif column in _LINKS:  # a deployment run started as a subflow keeps its parent
            flow_set[column] = func.coalesce(stmt.excluded[column], table.c[column])
        else:
            flow_set[column] = stmt.excluded[column]
    if HAS_ENTRYPOINT:  # a deployment's entrypoint is the one to keep
        flow_set["entrypoint"] = func.coalesce(table.c.entrypoint, stmt.excluded.entrypoint)
    # A flow run that ended stays ended.
    where = text(f"flow_runs.state_type NOT IN ({_FINAL_SQL})")
    return stmt.on_conflict_do_update(index_elements=[table.c.id], set_=flow_set, where=where)


def _flow_update() -> Update:
    """The UPDATE of a flow run this writer inserted before.

    Only while the stored state is the one this writer last stored, or any state that is not
    final: a run that someone else ended meanwhile (crash detection) is never moved on from
    its final state, while a request that does not end it (Cancelling, a resume) is no
    reason to stop recording it. A stored Cancelling is replaced only by a final state.
    """
    hold = and_(_F.c.state_type == _CANCELLING, bindparam("b_hold", type_=Integer) == 1)
    values: dict[str, Any] = {
        c: case((hold, _F.c[c]), else_=bindparam(f"v_{c}", type_=String)) if c in _STATE_COLUMNS
        else bindparam(f"v_{c}", type_=_F.c[c].type)
        for c in FLOW_MUTABLE
    }
    return _F.update().where(
        _F.c.id == bindparam("b_id"),
        or_(_F.c.state_type == bindparam("b_expect"), text(f"flow_runs.state_type NOT IN ({_FINAL_SQL})")),
    ).values(**values)


def _flow_params(row: dict[str, Any]) -> dict[str, Any]:
    values = {f"v_{c}": row[c] for c in FLOW_MUTABLE}
    values.update(b_id=row["id"], b_expect=row["expect"], b_hold=0 if row["state_type"] in _FINAL else 1)
    return values


def _flow_insert_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """New flow rows as the table takes them: without ``expect``; ``entrypoint`` only where
    the column exists (and always there, so every row of an executemany has the same keys)."""
    out = []
    for row in rows:
        clean = {k: v for k, v in row.items() if k != "expect"}
        if HAS_ENTRYPOINT:
            clean.setdefault("entrypoint", None)
        else:
            clean.pop("entrypoint", None)
        out.append(clean)
    return out


class RunWriter:
    """Writes recorder batches to one database (statements prepared once)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.sqlite = db.dialect == "sqlite"
        self._flow_insert = _upsert(db, _F)
        self._task_insert = _upsert(db, _T)
        self._flow_update = _flow_update()
        self._task_update: Update = _T.update().where(_T.c.id == bindparam("b_id"))

    def write(self, rows: BatchRows) -> set[str]:
        """Store one batch, and its events, in one transaction.

        Returns:
            Ids of flow runs that someone else ended since this writer last wrote them;
            nothing of theirs (nor of their task runs) was stored.

        Raises:
            SQLAlchemyError: The transaction failed and was rolled back.
        """
        with self.db.engine.begin() as conn:
            taken, events = self.write_in(conn, rows)
            insert_event_params(conn, events)  # last: on PostgreSQL it holds the events lock until commit
        return taken

    def write_in(self, conn: Connection, rows: BatchRows) -> tuple[set[str], list[EventParams]]:
        """Store one batch inside the caller's transaction (see ``write``).

        Returns:
            ``(taken, events)``: as ``write``, and the batch's events, which the caller
            stores with ``insert_event_params`` as the transaction's last write.

        Raises:
            SQLAlchemyError: A statement failed (the caller rolls back).
        """
        taken = self._write_flows(conn, rows)
        tasks_new, tasks_old, states = rows.new_tasks, rows.old_tasks, rows.states
        if taken:  # someone else ended these flow runs: leave them and their task runs be
            tasks_new = [r for r in tasks_new if r["flow_run_id"] not in taken]
            tasks_old = [r for r in tasks_old if r["flow_run_id"] not in taken]
            states = [s for s in states if s["flow_run_id"] not in taken]
        if tasks_new:
            if self.sqlite:
                _sqlite_insert_tasks(conn, tasks_new)
            else:
                conn.execute(self._task_insert, tasks_new)
        if tasks_old:
            conn.execute(
                self._task_update, [{"b_id": r["id"], **{c: r[c] for c in TASK_MUTABLE}} for r in tasks_old]
            )
        stamps = None
        if states:
            if self.sqlite:
                stamps = _sqlite_insert_states(conn, states)
            else:
                conn.execute(_S.insert(), [{k: v for k, v in s.items() if k != "flow_run_id"} for s in states])
        if rows.edges:
            conn.execute(_E.insert(), rows.edges)
        logs_after = None
        if rows.logs:
            # new lines get greater ids (PostgreSQL hands them out after this read)
            logs_after = conn.scalar(select(func.max(_L.c.id))) or 0
            conn.execute(_L.insert(), rows.logs)
        if rows.results:
            conn.execute(_R.insert(), rows.results)
        if rows.artifacts or rows.artifact_updates:
            write_artifacts_in(conn, rows.artifacts, rows.artifact_updates)
        beating = [i for i in rows.heartbeats if i not in taken]
        if beating:
            conn.execute(
                _F.update()
                .where(_F.c.id.in_(beating), _F.c.state_type.in_(_NOT_FINAL))
                .values(heartbeat_at=rows.now)
            )
        return taken, batch_event_params(rows, states=states, logs_after=logs_after, stamps=stamps)

    def write_isolating(self, rows: BatchRows) -> tuple[set[str], int, str]:
        """``write(rows)``; when a value in it is refused, write record by record instead.

        Returns:
            ``(taken, dropped, reason)``: as ``write``, how many records were refused (and
            not stored) and the database's reason for the first refusal.

        Raises:
            SQLAlchemyError: The database itself failed (nothing of the batch is kept
                stored, except records already written one by one, which are idempotent runs).
        """
        try:
            return self.write(rows), 0, ""
        except (SQLAlchemyError, *_VALUE_ERRORS) as exc:
            if not is_row_error(exc):
                raise
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
        taken: set[str] = set()
        dropped = 0
        for piece in rows.pieces():
            try:
                taken |= self.write(piece)
            except (SQLAlchemyError, *_VALUE_ERRORS) as exc:
                if not is_row_error(exc):
                    raise
                dropped += 1
        if rows.heartbeats:
            taken |= self.write(BatchRows(heartbeats=rows.heartbeats, now=rows.now))
        return taken, dropped, reason

    def _write_flows(self, conn: Connection, rows: BatchRows) -> set[str]:
        if rows.new_flows:
            conn.execute(self._flow_insert, _flow_insert_rows(rows.new_flows))
            _insert_tags(conn, rows.new_flows)
        taken: set[str] = set()
        for row in rows.old_flows:  # few per batch: one statement each, to see each rowcount
            if conn.execute(self._flow_update, _flow_params(row)).rowcount == 0:
                taken.add(row["id"])
        return taken


def _insert_tags(conn: Connection, flows: list[dict[str, Any]]) -> None:
    """The rows of ``flow_run_tags`` for new flow runs (a run written again keeps its own)."""
    rows = [
        {"flow_run_id": f["id"], "tag": tag, "created": f["created"]}
        for f in flows if isinstance(f.get("tags"), list)
        for tag in dict.fromkeys(f["tags"]) if isinstance(tag, str)
    ]
    if not rows:
        return
    name = conn.dialect.name
    if name in ("sqlite", "postgresql"):
        from sqlalchemy.dialects import postgresql, sqlite

        insert: Any = (postgresql.insert if name == "postgresql" else sqlite.insert)(_G)
        conn.execute(insert.on_conflict_do_nothing(index_elements=["flow_run_id", "tag"]), rows)
        return
    known = set(conn.execute(select(_G.c.flow_run_id, _G.c.tag).where(  # pragma: no cover - other backends
        _G.c.flow_run_id.in_({r["flow_run_id"] for r in rows}))).tuples())
    fresh = [r for r in rows if (r["flow_run_id"], r["tag"]) not in known]
    if fresh:
        conn.execute(_G.insert(), fresh)


def _sqlite_insert_tasks(conn: Connection, rows: list[dict[str, Any]]) -> None:
    encoders = [
        _json_dumps if c in _TASK_JSON else _sqlite_bind if c in _TASK_TIMES else None for c in _TASK_COLUMNS
    ]
    params = [
        tuple(row[c] if enc is None else enc(row[c]) for c, enc in zip(_TASK_COLUMNS, encoders, strict=True))
        for row in rows
    ]
    conn.exec_driver_sql(_SQLITE_TASK_UPSERT, params)


def _sqlite_insert_states(conn: Connection, rows: list[dict[str, Any]]) -> list[str | None]:
    """Insert state rows; returns their timestamps as stored (the events reuse them)."""
    stamps = [_sqlite_bind(r["timestamp"]) for r in rows]
    conn.exec_driver_sql(_SQLITE_STATE_INSERT, [
        (r["run_id"], r["run_kind"], r["type"], r["name"], r["message"], stamp)
        for r, stamp in zip(rows, stamps, strict=True)
    ])
    return stamps


def stored_flow_run_state(db: Database, flow_run_id: str) -> StateType | None:
    """The stored state type of a flow run, or None when there is no such run.

    Raises:
        DatabaseError: The database cannot be read.
    """
    with db.connect() as conn:
        value = conn.scalar(select(_F.c.state_type).where(_F.c.id == flow_run_id))
    return StateType(value) if value else None


def cancelling_among(db: Database, flow_run_ids: list[str] | set[str]) -> set[str]:
    """Which of ``flow_run_ids`` are stored Cancelling (someone asked them to stop).

    Raises:
        DatabaseError: The database cannot be read.
    """
    ids = list(dict.fromkeys(flow_run_ids))
    if not ids:
        return set()
    found: set[str] = set()
    with db.connect() as conn:
        for chunk in _chunks(ids):
            found.update(conn.scalars(select(_F.c.id).where(_F.c.id.in_(chunk), _F.c.state_type == _CANCELLING)))
    return found


# What the engine needs to know of a run it adopts (its task runs that produced a result).
_DONE = (StateType.COMPLETED.value, StateType.CACHED.value)


def stored_flow_run(db: Database, flow_run_id: str) -> dict[str, Any] | None:
    """The stored flow run a launched process is about to run (``PLAIT_FLOW_RUN_ID``), or
    None when there is none yet.

    Returns:
        ``{id, state_type, name, tags, run_count, entrypoint, deployment_id, done}`` where
        ``done`` lists the run's task runs that completed with a persisted result, in an
        earlier attempt: ``{id, task_key, dynamic_key, parameters, result_ref}`` each.

    Raises:
        DatabaseError: The database cannot be read.
    """
    extra = [_F.c[c] for c in ("entrypoint", "deployment_id") if c in _F.c]
    with db.connect() as conn:
        row = conn.execute(
            select(_F.c.id, _F.c.state_type, _F.c.name, _F.c.tags, _F.c.run_count, *extra).where(_F.c.id == flow_run_id)
        ).first()
        if row is None:
            return None
        done = conn.execute(
            select(_T.c.id, _T.c.task_key, _T.c.dynamic_key, _T.c.parameters, _T.c.result_ref)
            .where(_T.c.flow_run_id == flow_run_id, _T.c.state_type.in_(_DONE), _T.c.result_ref.is_not(None))
        ).all()
    found = row._mapping
    return {
        "id": row.id, "state_type": row.state_type, "name": row.name, "tags": list(row.tags or []),
        "run_count": row.run_count or 0, "entrypoint": found.get("entrypoint"),
        "deployment_id": found.get("deployment_id"),
        "done": [
            {"id": t.id, "task_key": t.task_key, "dynamic_key": t.dynamic_key, "parameters": t.parameters,
             "result_ref": t.result_ref}
            for t in done
        ],
    }


# -- ending runs that their process cannot end ---------------------------------------------------
def active_flow_runs(db: Database) -> list[Row[Any]]:
    """Pending, Running and Retrying flow runs: ``id, pid, hostname, heartbeat_at,
    heartbeat_interval, start_time, created, claimed_at`` (for crash detection).

    Raises:
        DatabaseError: The database cannot be read.
    """
    # A run a worker of a pool claimed but whose process has not started yet (no pid) is the
    # worker reaper's to judge (by the worker's heartbeat), not crash detection's.
    claimed_unstarted = and_(_F.c.claimed_at.is_not(None), _F.c.pid.is_(None), _F.c.work_pool_name.is_not(None))
    with db.connect() as conn:
        return list(conn.execute(
            select(_F.c.id, _F.c.pid, _F.c.hostname, _F.c.heartbeat_at, _F.c.heartbeat_interval,
                   _F.c.start_time, _F.c.created, _F.c.claimed_at)
            .where(_F.c.state_type.in_(_ACTIVE), not_(claimed_unstarted))
        ).all())


def _subflow_ids(conn: Connection, run_id: str) -> list[str]:
    ids, frontier = [run_id], [run_id]
    while frontier:  # one query per nesting level
        children: list[str] = list(conn.scalars(select(_F.c.id).where(_F.c.parent_flow_run_id.in_(frontier))))
        frontier = [i for i in children if i not in ids]
        ids.extend(frontier)
    return ids


def end_flow_runs(
    db: Database,
    verdicts: dict[str, str],
    kind: StateType = StateType.CRASHED,
    *,
    subflows: bool = False,
    create: dict[str, dict[str, Any]] | None = None,
) -> list[str]:
    """End flow runs their process could not end, with their unfinished task runs.

    Each run moves to ``kind`` only if the transition table allows it from its stored state
    (a run that finished meanwhile keeps its own verdict); its task runs that are not final
    follow, and so do its subflow runs (and theirs) when ``subflows`` is true.

    Args:
        db: The database.
        verdicts: Flow run id -> state message (why it ended).
        kind: The final state type to give them (Crashed, Failed, Cancelled).
        subflows: Also end the runs' unfinished subflow runs (they ran in the same process).
        create: Flow run id -> ``{flow_name, parameters, pid}`` for runs that may not exist
            yet (their process died before writing anything): such a run is created, ended.

    Returns:
        The ids of the runs given in ``verdicts`` that were ended (created ones included).

    Raises:
        DatabaseError: The database cannot be written.
    """
    if not kind.is_final:
        raise ValueError(f"end_flow_runs() ends runs: give a final state type, not {kind.value}")
    for attempt in (1, 2):
        try:
            with db.engine.begin() as conn:
                return _end_in(conn, verdicts, kind, subflows, create or {})
        except IntegrityError:
            if attempt == 2:
                raise db.error(
                    IntegrityError("", None, Exception("flow run created concurrently")), "update"
                ) from None
            continue  # a run appeared between our check and our insert: end it instead
        except SQLAlchemyError as exc:
            raise db.error(exc, "update") from None
    return []


def _end_in(
    conn: Connection, verdicts: dict[str, str], kind: StateType, subflows: bool, create: dict[str, dict[str, Any]]
) -> list[str]:
    now = utcnow()
    ended: list[str] = []
    history: list[dict[str, Any]] = []
    owners: dict[str, str] = {}  # task run id -> its flow run id
    for run_id, message in verdicts.items():
        ids = _subflow_ids(conn, run_id) if subflows else [run_id]
        for each in ids:
            own = each == run_id
            said = message if own else f"its parent flow run {run_id} ended: {message}"
            verdict = kind
            if kind is StateType.CRASHED and _is_cancelling(conn, each):
                # someone asked it to stop and its process is gone: the cancellation is done
                verdict, said = StateType.CANCELLED, f"cancelled: {said}"
            text = clean_text(said)
            allowed = _may_become(verdict)
            values = {"state_type": verdict.value, "state_name": verdict.title, "end_time": now}
            # conditional on the stored state, so a run that finished meanwhile is left alone
            updated = conn.execute(
                _F.update().where(_F.c.id == each, _F.c.state_type.in_(allowed)).values(state_message=text, **values)
            ).rowcount
            mark = {"type": verdict.value, "name": verdict.title}
            if not updated:
                if own and each in create and conn.scalar(select(_F.c.id).where(_F.c.id == each)) is None:
                    _insert_ended(conn, each, kind, text or "", create[each], now)
                    ended.append(each)
                    history.append({"run_id": each, "run_kind": "flow", "message": text, **mark})
                if own:
                    break  # already final (or just created): its own verdict stands
                continue
            if own:
                ended.append(each)
            history.append({"run_id": each, "run_kind": "flow", "message": text, **mark})
            task_ids: list[str] = list(conn.scalars(
                select(_T.c.id).where(_T.c.flow_run_id == each, _T.c.state_type.in_(allowed))
            ))
            if task_ids:
                task_message = clean_text(f"its flow run {each} ended: {message}")
                conn.execute(_T.update().where(_T.c.id.in_(task_ids)).values(state_message=task_message, **values))
                history += [{"run_id": t, "run_kind": "task", "message": task_message, **mark} for t in task_ids]
                owners.update(dict.fromkeys(task_ids, each))
    for entry in history:
        entry["timestamp"] = now
    if history:
        conn.execute(_S.insert(), history)
        insert_event_params(conn, _ended_events(conn, history, owners, now))
    return ended


def _is_cancelling(conn: Connection, flow_run_id: str) -> bool:
    return conn.scalar(select(_F.c.state_type).where(_F.c.id == flow_run_id)) == _CANCELLING


def _ended_events(
    conn: Connection, history: list[dict[str, Any]], owners: dict[str, str], now: datetime
) -> list[EventParams]:
    """The state-change events of the runs ``_end_in`` ended (with their flow and task names)."""
    flow_ids = [e["run_id"] for e in history if e["run_kind"] == "flow"]
    task_ids = [e["run_id"] for e in history if e["run_kind"] == "task"]
    names = BatchRows(now=now)
    for chunk in _chunks(flow_ids):
        names.new_flows += [{"id": r[0], "flow_name": r[1]} for r in
                            conn.execute(select(_F.c.id, _F.c.flow_name).where(_F.c.id.in_(chunk)))]
    for chunk in _chunks(task_ids):
        names.new_tasks += [{"id": r[0], "task_name": r[1]} for r in
                            conn.execute(select(_T.c.id, _T.c.task_name).where(_T.c.id.in_(chunk)))]
    states = [{**e, "flow_run_id": owners.get(e["run_id"], e["run_id"])} for e in history]
    return batch_event_params(names, states=states)


def _insert_ended(
    conn: Connection, run_id: str, kind: StateType, message: str, info: dict[str, Any], now: datetime
) -> None:
    conn.execute(_F.insert().values(
        id=run_id, flow_name=info.get("flow_name") or "unknown", name=info.get("name") or run_id[:8],
        parameters=clean_json(info.get("parameters") or {}), tags=[],
        state_type=kind.value, state_name=kind.title, state_message=message,
        parent_flow_run_id=None, parent_task_run_id=None, run_count=0,
        created=now, start_time=None, end_time=now, pid=info.get("pid"), hostname=HOSTNAME,
        heartbeat_at=None, heartbeat_interval=None,
    ))


def flow_run_summary(db: Database, flow_run_id: str) -> dict[str, Any] | None:
    """``{id, flow_name, name, state_type, state_message, pid}`` of a flow run, or None if unknown.

    Raises:
        DatabaseError: The database cannot be read.
    """
    with db.connect() as conn:
        row = conn.execute(
            select(_F.c.id, _F.c.flow_name, _F.c.name, _F.c.state_type, _F.c.state_message, _F.c.pid)
            .where(_F.c.id == flow_run_id)
        ).first()
    if row is None:
        return None
    return {"id": row.id, "flow_name": row.flow_name, "name": row.name, "state_type": row.state_type,
            "state_message": row.state_message, "pid": row.pid}


# -- replaying a dead process's journal ---------------------------------------------------------
def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def replay(db: Database, rows: BatchRows) -> None:
    """Store what a dead process journaled, idempotently.

    ``rows.new_flows``/``new_tasks`` hold each run's newest snapshot (``_partial`` when it
    has only the changing columns: the run's row was stored earlier). The process's last
    batch may already be stored (it died between commit and clean-up): runs the store holds
    as final keep their state, and states, logs, edges and results already present are not
    added twice.

    Raises:
        DatabaseError: The database cannot be written.
    """
    with db.connect("update", write=True) as conn:
        insert_event_params(conn, replay_in(conn, rows))


def replay_in(conn: Connection, rows: BatchRows) -> list[EventParams]:
    """``replay`` inside the caller's transaction; returns the events of what it added (the
    caller stores them with ``insert_event_params`` as the transaction's last write).

    Raises:
        SQLAlchemyError: A statement failed (the caller rolls back).
    """
    flows = {r["id"]: _clean_row(r) for r in rows.new_flows}
    tasks = {r["id"]: _clean_row(r) for r in rows.new_tasks}
    for table, runs, mutable in ((_F, flows, FLOW_MUTABLE), (_T, tasks, TASK_MUTABLE)):
        stored = _stored_states(conn, table, list(runs))
        fresh = [r for i, r in runs.items() if i not in stored and not r.get("_partial")]
        if fresh:
            conn.execute(table.insert(), fresh)
            if table is _F:
                _insert_tags(conn, fresh)
        for run_id, row in runs.items():
            if stored.get(run_id) in _NOT_FINAL:
                values = _replayed_flow(row, stored[run_id]) if table is _F else {c: row[c] for c in mutable}
                conn.execute(table.update().where(table.c.id == run_id).values(**values))
    run_ids = list({s["run_id"] for s in rows.states})
    seen_states = _existing(conn, _S.c.run_id, run_ids, (_S.c.run_id, _S.c.type, _S.c.timestamp))
    new_states = [s for s in rows.states if (s["run_id"], s["type"], s["timestamp"]) not in seen_states]
    states = [
        {k: (clean_text(v) if k == "message" else v) for k, v in s.items() if k != "flow_run_id"}
        for s in new_states
    ]
    if states:
        conn.execute(_S.insert(), states)
    down = list({e["downstream_id"] for e in rows.edges})
    seen_edges = _existing(conn, _E.c.downstream_id, down, (_E.c.upstream_id, _E.c.downstream_id, _E.c.kind))
    edges = [e for e in rows.edges if (e["upstream_id"], e["downstream_id"], e["kind"]) not in seen_edges]
    if edges:
        conn.execute(_E.insert(), edges)
    owners = list({r["flow_run_id"] for r in rows.logs if r["flow_run_id"]})
    seen_logs = _existing(conn, _L.c.flow_run_id, owners, (_L.c.task_run_id, _L.c.timestamp, _L.c.message))
    logs = [
        {**r, "message": clean_text(r["message"])} for r in rows.logs
        if (r["task_run_id"], r["timestamp"], clean_text(r["message"])) not in seen_logs
    ]
    logs_after = None
    if logs:
        logs_after = conn.scalar(select(func.max(_L.c.id))) or 0
        conn.execute(_L.insert(), logs)
    producers = list({r["task_run_id"] for r in rows.results})
    seen_results = _existing(conn, _R.c.task_run_id, producers, (_R.c.task_run_id, _R.c.path))
    results = [r for r in rows.results if (r["task_run_id"], r["path"]) not in seen_results]
    if results:
        conn.execute(_R.insert(), results)
    if rows.artifacts or rows.artifact_updates:  # idempotent: replayed as they are
        write_artifacts_in(conn, rows.artifacts, rows.artifact_updates)
    added = BatchRows(new_flows=list(flows.values()), new_tasks=list(tasks.values()), logs=logs, now=rows.now)
    return batch_event_params(added, states=new_states, logs_after=logs_after)


def _replayed_flow(row: dict[str, Any], stored: str) -> dict[str, Any]:
    """What a replayed flow row changes in a stored one, as the writer's upsert would: a full
    row also says which process ran it (a run a scheduler created had none), a partial one
    only what changes; a stored Cancelling stays until the run ends."""
    if row.get("_partial"):
        values = {c: row[c] for c in FLOW_MUTABLE}
    else:
        values = {c: row[c] for c in FLOW_ROW if c in row and c not in ("id", "created", "name")}
        for link in _LINKS:
            if values.get(link) is None:
                values.pop(link, None)
    if stored == _CANCELLING and values.get("state_type") not in _FINAL:
        for column in _STATE_COLUMNS:
            values.pop(column, None)
    return values


def _clean_row(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("state_message", "name", "flow_name", "task_name"):
        if isinstance(out.get(key), str):
            out[key] = clean_text(out[key])
    for key in ("parameters", "tags"):
        if key in out:
            out[key] = clean_json(out[key])
    return out


def _stored_states(conn: Connection, table: Table, ids: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for chunk in _chunks(ids):
        query = select(table.c.id, table.c.state_type).where(table.c.id.in_(chunk))
        found.update((r[0], r[1]) for r in conn.execute(query))
    return found


def _existing(conn: Connection, key: Any, keys: list[str], columns: tuple[Any, ...]) -> set[tuple[Any, ...]]:
    seen: set[tuple[Any, ...]] = set()
    for chunk in _chunks(keys):
        seen.update(tuple(r) for r in conn.execute(select(*columns).where(key.in_(chunk))))
    return seen
