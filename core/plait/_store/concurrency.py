"""The concurrency limits repository: every SQL statement about ``concurrency_limits`` and
``concurrency_slots``.

A concurrency limit is a name with ``limit`` slots. Task runs tagged with the name take one
slot each while their body runs, ``plait.concurrency(name, occupy=k)`` takes ``k`` for its
with-block: each holder is one ``concurrency_slots`` row, deleted when it lets go. With
``slot_decay_per_second`` above 0 the limit is a rate limit as well: ``plait.rate_limit``
takes slots that are never released but drain away at that rate (a token bucket whose fill
is ``level`` as of ``level_at``). An inactive limit, or a name with no limit, constrains
nothing.

``acquire_slots`` is all-or-nothing over its names and atomic: on PostgreSQL the limit rows
are locked ``FOR UPDATE`` in name order (two acquirers never wait on each other in a
circle), on SQLite the write lock is taken first (``BEGIN IMMEDIATE``); the count of the
slots in use is made under that lock. Before counting it frees the stale slots of those
limits: slots of a flow run that has ended (Completed, Failed, Crashed, Cancelled...), so
the slots of a process killed in the middle come back once its run is marked Crashed. A
slot naming a flow run that is not stored (yet) is not stale: a recorder may not have
written the run so far.

Rows come back as plain dicts with times as aware UTC datetimes.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from plait._batch import clean_text
from plait._runs import utcnow
from plait._store.database import Database
from plait._store.deployment_runs import FINAL, aware
from plait._store.events import insert_events, new_event
from plait._store.models import CONCURRENCY_LIMITS, CONCURRENCY_SLOTS, FLOW_RUNS

__all__ = [
    "CONCURRENCY_LIMITS",
    "CONCURRENCY_SLOTS",
    "MODES",
    "MAX_NAMES",
    "save_limit",
    "get_limit",
    "list_limits",
    "delete_limit",
    "reset_limit",
    "acquire_slots",
    "release_slots",
    "active_limits",
]

CONCURRENCY_LIMITS: Table = CONCURRENCY_LIMITS
CONCURRENCY_SLOTS: Table = CONCURRENCY_SLOTS
_L, _S = CONCURRENCY_LIMITS, CONCURRENCY_SLOTS
_F: Table = FLOW_RUNS

MODES = ("concurrency", "rate")
MAX_NAMES = 50  # names in one acquisition (the API's bound too)
_NAME_MAX = 200
_MAX_LIMIT = 1_000_000
_MAX_DECAY = 1_000_000.0
_MAX_DESCRIPTION = 20_000
_MAX_LABEL = 1_000
_HOLDER_KEYS = frozenset({"flow_run_id", "task_run_id", "hostname", "pid", "label"})
# Float noise in a decayed level must not keep a slot that fits from being taken.
_EPSILON = 1e-9
_CHUNK = 500


# -- checks -----------------------------------------------------------------------------------------
def _check_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > _NAME_MAX:
        raise ValueError(f"a concurrency limit's name is 1 to {_NAME_MAX} characters, not {value!r}")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"a concurrency limit's name holds no control characters: {value!r}")
    if value != value.strip():
        raise ValueError(f"a concurrency limit's name has no spaces at its start or end: {value!r}")
    if not value.isascii() and any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise ValueError(f"a concurrency limit's name holds an unpaired surrogate: {value!r}")
    return value


def _check_names(names: Any) -> list[str]:
    """``names`` (one name or a sequence of them) checked, deduplicated and sorted."""
    items = [names] if isinstance(names, str) else names
    if not isinstance(items, Iterable) or isinstance(items, Mapping):
        raise ValueError(f"names is a concurrency limit's name or a list of them, not {names!r}")
    wanted = sorted({_check_name(n) for n in items})
    if not wanted or len(wanted) > MAX_NAMES:
        raise ValueError(f"give 1 to {MAX_NAMES} concurrency limit names, not {len(wanted)}")
    return wanted


def _check_limit(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_LIMIT:
        raise ValueError(f"limit is a whole number of slots from 0 to {_MAX_LIMIT}, not {value!r}")
    return int(value)


def _check_decay(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value <= _MAX_DECAY:
        raise ValueError(f"slot_decay_per_second is a number of slots per second from 0 (no decay) to "
                         f"{_MAX_DECAY:g}, not {value!r}")
    return float(value)


def _check_description(value: Any) -> str:
    if not isinstance(value, str) or len(value) > _MAX_DESCRIPTION:
        raise ValueError(f"description is a text of at most {_MAX_DESCRIPTION} characters")
    return clean_text(value) or ""


def _check_occupy(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_LIMIT:
        raise ValueError(f"occupy is a whole number of slots from 1 to {_MAX_LIMIT}, not {value!r}")
    return int(value)


def _optional_id(holder: Mapping[str, Any], key: str) -> str | None:
    value = holder.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= 36:
        raise ValueError(f"holder {key} is a run id (1 to 36 characters) or None, not {value!r}")
    return value


def _check_holder(holder: Any) -> dict[str, Any]:
    """The slot columns that name who holds it."""
    if not isinstance(holder, Mapping):
        raise ValueError("holder is a mapping of hostname (and optionally flow_run_id, task_run_id, pid, label)")
    unknown = sorted(str(k) for k in set(holder) - _HOLDER_KEYS)
    if unknown:
        raise ValueError(f"unknown holder field(s) {', '.join(unknown)}; a holder has "
                         f"{', '.join(sorted(_HOLDER_KEYS))}")
    hostname = holder.get("hostname")
    if not isinstance(hostname, str) or not hostname.strip() or len(hostname) > 255:
        raise ValueError(f"holder hostname is the holder's host name (1 to 255 characters), not {hostname!r}")
    pid = holder.get("pid")
    if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int) or not 0 <= pid <= 2**31 - 1):
        raise ValueError(f"holder pid is a process id or None, not {pid!r}")
    label = holder.get("label") or ""
    if not isinstance(label, str):
        raise ValueError(f"holder label is a text for people, not {label!r}")
    return {
        "flow_run_id": _optional_id(holder, "flow_run_id"), "task_run_id": _optional_id(holder, "task_run_id"),
        "hostname": clean_text(hostname), "pid": pid, "label": clean_text(label[:_MAX_LABEL]) or "",
    }


# -- reading ----------------------------------------------------------------------------------------
def _decayed_level(row: Row[Any], now: datetime) -> float:
    """The bucket's fill at ``now``: ``level`` drained at ``slot_decay_per_second`` since ``level_at``."""
    level = float(row.level or 0.0)
    if level <= 0 or row.level_at is None or not row.slot_decay_per_second:
        return max(level, 0.0)
    elapsed: float = max((now - row.level_at).total_seconds(), 0.0)
    return max(level - float(row.slot_decay_per_second) * elapsed, 0.0)


def _live() -> Any:
    """Slots that are not stale: of no flow run, of a flow run not stored (yet), or of one
    that has not ended. Use with the slots outer-joined to their flow runs."""
    return or_(_F.c.id.is_(None), _F.c.state_type.not_in(sorted(FINAL)))


def _slots_source() -> Any:
    return _S.outerjoin(_F, _F.c.id == _S.c.flow_run_id)


def _held(conn: Connection, names: Sequence[str]) -> dict[str, int]:
    """Slots held (sum of ``occupy`` of live slot rows) of each of ``names``."""
    if not names:
        return {}
    rows = conn.execute(
        select(_S.c.limit_name, func.sum(_S.c.occupy)).select_from(_slots_source())
        .where(_S.c.limit_name.in_(list(names)), _live()).group_by(_S.c.limit_name)
    ).all()
    return {r[0]: int(r[1] or 0) for r in rows}


def _slot_dict(row: Row[Any]) -> dict[str, Any]:
    return {c.name: row._mapping[c.name] for c in _S.c}


def _limit_dict(row: Row[Any], held: int, now: datetime) -> dict[str, Any]:
    out = dict(row._mapping)
    out["used"] = float(held) + _decayed_level(row, now)
    return out


def _with_slots(conn: Connection, row: Row[Any], now: datetime) -> dict[str, Any]:
    slots = [_slot_dict(s) for s in conn.execute(
        select(*_S.c).select_from(_slots_source()).where(_S.c.limit_name == row.name, _live())
        .order_by(_S.c.acquired_at, _S.c.id)
    )]
    found = _limit_dict(row, sum(int(s["occupy"]) for s in slots), now)
    found["slots"] = slots
    return found


def get_limit(db: Database, name: str) -> dict[str, Any] | None:
    """The limit ``name`` with ``used`` (slots held plus the decayed rate fill, a float) and
    ``slots`` (its holders, oldest first; stale ones left out), or None.

    Raises:
        DatabaseError: The database cannot be read.
    """
    with db.connect("read") as conn:
        row = conn.execute(select(_L).where(_L.c.name == name)).first()
        return _with_slots(conn, row, utcnow()) if row is not None else None


def list_limits(db: Database) -> list[dict[str, Any]]:
    """Every concurrency limit by name, each with ``used`` (no slots).

    Raises:
        DatabaseError: The database cannot be read.
    """
    now = utcnow()
    with db.connect("read") as conn:
        rows = conn.execute(select(_L).order_by(_L.c.name)).all()
        held = _held(conn, [r.name for r in rows]) if rows else {}
    return [_limit_dict(r, held.get(r.name, 0), now) for r in rows]


def active_limits(db: Database) -> dict[str, dict[str, Any]]:
    """The active limits as ``{name: {"limit", "slot_decay_per_second"}}`` (the engine
    caches it to know which tags are limits).

    Raises:
        DatabaseError: The database cannot be read.
    """
    with db.connect("read") as conn:
        rows = conn.execute(select(_L.c.name, _L.c.limit, _L.c.slot_decay_per_second)
                            .where(_L.c.active.is_(True))).all()
    return {r.name: {"limit": int(r.limit), "slot_decay_per_second": float(r.slot_decay_per_second)}
            for r in rows}


# -- writing limits ---------------------------------------------------------------------------------
def _event(kind: str, name: str, payload: dict[str, Any]) -> dict[str, Any]:
    return new_event(kind, f"concurrency-limit/{name}", {"name": name, **payload})


def _lock_row(conn: Connection, name: str) -> Row[Any] | None:
    query = select(_L).where(_L.c.name == name)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).first()


def save_limit(
    db: Database,
    name: str,
    limit: int,
    *,
    slot_decay_per_second: float = 0.0,
    active: bool = True,
    description: str = "",
) -> tuple[dict[str, Any], str]:
    """Create the limit ``name`` or change it to these values; emits
    ``concurrency-limit.created`` or ``concurrency-limit.updated`` (nothing when unchanged).
    Its held slots and rate fill stay as they are.

    Args:
        db: The database.
        name: The limit's name (what tasks are tagged with): 1 to 200 characters, no
            control characters.
        limit: Slots (0 to 1,000,000).
        slot_decay_per_second: Slots that drain away per second; above 0 the limit serves
            ``plait.rate_limit`` too.
        active: False: it constrains nothing (kept for later).
        description: Free text for people.

    Returns:
        ``(limit, outcome)``: the limit as ``get_limit`` returns it, and ``"created"``,
        ``"updated"`` or ``"unchanged"``.

    Raises:
        ValueError: A malformed value (the message names the field).
        DatabaseError: The database cannot be written.
    """
    _check_name(name)
    if not isinstance(active, bool):
        raise ValueError(f"active is true or false, not {active!r}")
    values = {"limit": _check_limit(limit), "slot_decay_per_second": _check_decay(slot_decay_per_second),
              "active": active, "description": _check_description(description)}
    for attempt in (1, 2):
        try:
            with db.connect("write", write=True, races=True) as conn:
                now = utcnow()
                row = _lock_row(conn, name)
                if row is None:
                    conn.execute(insert(_L).values(name=name, level=0.0, level_at=None, created=now, updated=now,
                                                   **values))
                    outcome, changed = "created", sorted(values)
                else:
                    changed = [k for k, v in values.items() if row._mapping[k] != v]
                    outcome = "updated" if changed else "unchanged"
                    if changed:
                        conn.execute(update(_L).where(_L.c.name == name).values(updated=now, **values))
                saved = conn.execute(select(_L).where(_L.c.name == name)).first()
                assert saved is not None
                found = _with_slots(conn, saved, now)
                if outcome != "unchanged":
                    payload = {"limit": values["limit"], "slot_decay_per_second": values["slot_decay_per_second"],
                               "active": active}
                    if outcome == "updated":
                        payload["changed"] = changed
                    insert_events(conn, [_event(f"concurrency-limit.{outcome}", name, payload)])
            return found, outcome
        except IntegrityError as exc:  # two first saves raced: the other one inserted the row
            if attempt == 2:
                raise db.error(exc, "write") from None
    raise AssertionError("unreachable")  # pragma: no cover


def delete_limit(db: Database, name: str) -> bool:
    """Delete the limit ``name`` and the slots held of it; emits ``concurrency-limit.deleted``.
    Holders still running go on; their releases find nothing to release.

    Returns:
        Whether there was such a limit.

    Raises:
        DatabaseError: The database cannot be written.
    """
    with db.connect("write", write=True) as conn:
        row = _lock_row(conn, name)
        if row is None:
            return False
        # explicit: SQLite enforces no foreign keys (ON DELETE CASCADE) unless told to
        freed = conn.execute(delete(_S).where(_S.c.limit_name == name)).rowcount
        conn.execute(delete(_L).where(_L.c.name == name))
        insert_events(conn, [_event("concurrency-limit.deleted", name, {"limit": int(row.limit),
                                                                         "freed": int(freed or 0)})])
    return True


def reset_limit(db: Database, name: str) -> int:
    """Free every slot held of the limit ``name`` and empty its rate bucket; emits
    ``concurrency-limit.reset``. For slots whose holders are gone in a way nothing noticed.

    Returns:
        How many slot rows were freed.

    Raises:
        LookupError: No limit of that name.
        DatabaseError: The database cannot be written.
    """
    with db.connect("write", write=True) as conn:
        if _lock_row(conn, name) is None:
            raise LookupError(f"no concurrency limit named {name!r}; create it with "
                              f"`plait concurrency-limit create {name} N`")
        freed = int(conn.execute(delete(_S).where(_S.c.limit_name == name)).rowcount or 0)
        conn.execute(update(_L).where(_L.c.name == name).values(level=0.0, level_at=None))
        insert_events(conn, [_event("concurrency-limit.reset", name, {"freed": freed})])
    return freed


# -- slots ------------------------------------------------------------------------------------------
def _free_stale(conn: Connection, names: Sequence[str]) -> int:
    """Delete the slots of ``names`` whose flow run is stored and has ended."""
    ended = select(_F.c.id).where(_F.c.state_type.in_(sorted(FINAL)))
    result = conn.execute(delete(_S).where(
        _S.c.limit_name.in_(list(names)), _S.c.flow_run_id.is_not(None), _S.c.flow_run_id.in_(ended)
    ))
    return int(result.rowcount or 0)


def _never_fits(row: Row[Any], occupy: int, mode: str) -> ValueError | None:
    if occupy > row.limit:
        return ValueError(
            f"concurrency limit {row.name!r} has {row.limit} slot(s): occupying {occupy} can never fit; raise it "
            f"with `plait concurrency-limit create {row.name} {occupy}` or occupy fewer"
        )
    if mode == "rate" and not row.slot_decay_per_second > 0:
        return ValueError(
            f"concurrency limit {row.name!r} has no slot decay, so it cannot serve as a rate limit; give it one "
            f"with `plait concurrency-limit create {row.name} {row.limit} --per-second R`"
        )
    return None


def acquire_slots(
    db: Database,
    names: str | Sequence[str],
    occupy: int = 1,
    *,
    mode: str = "concurrency",
    holder: Mapping[str, Any],
    now: datetime | None = None,
) -> dict[str, Any]:
    """Take ``occupy`` slots of each of the named limits that are active, all or none, at once.

    Names with no limit are listed in ``missing`` and constrain nothing; inactive limits
    constrain nothing either. Stale slots of the limits (of flow runs that have ended) are
    freed first.

    Args:
        db: The database.
        names: A limit's name or several (deduplicated; 1 to 50).
        occupy: Slots to take of each (1 or more).
        mode: ``"concurrency"``: one slot row per limit, held until ``release_slots``.
            ``"rate"``: the slots go into each limit's bucket, which drains at its
            ``slot_decay_per_second`` (no row, nothing to release).
        holder: Who takes them: ``hostname`` (required), ``flow_run_id``, ``task_run_id``,
            ``pid``, ``label`` (for people, e.g. "task run extract-3 of flow run 1a2b").
        now: The moment of the acquisition (default: now; tests fix it).

    Returns:
        ``{"acquired": bool, "slot_ids": [ids of the new slot rows, in name order],
        "blocked_by": the first full limit's name or None, "used": {name: slots in use
        after this call}, "limits": {name: limit}, "missing": [names with no limit],
        "retry_after": seconds until enough of a rate bucket has drained (at least),
        or None}`` — ``used`` and ``limits`` name the active limits among ``names``.

    Raises:
        ValueError: A malformed argument; ``occupy`` above a limit ("can never fit"); mode
            ``"rate"`` on a limit without slot decay.
        DatabaseError: The database cannot be written.
    """
    wanted = _check_names(names)
    occupy = _check_occupy(occupy)
    if mode not in MODES:
        raise ValueError(f"mode is 'concurrency' or 'rate', not {mode!r}")
    who = _check_holder(holder)
    moment = aware(now) if now is not None else utcnow()
    with db.connect("write", write=True) as conn:
        pg = conn.dialect.name == "postgresql"
        if not pg:
            # the write lock first: counting and inserting then see every committed slot
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        query = select(_L).where(_L.c.name.in_(wanted)).order_by(_L.c.name)
        if pg:  # in name order: two acquirers never wait on each other in a circle
            query = query.with_for_update()
        rows = {r.name: r for r in conn.execute(query)}
        limited = [rows[n] for n in wanted if n in rows and rows[n].active]
        answer: dict[str, Any] = {
            "acquired": True, "slot_ids": [], "blocked_by": None, "used": {},
            "limits": {r.name: int(r.limit) for r in limited}, "missing": [n for n in wanted if n not in rows],
            "retry_after": None,
        }
        if not limited:
            return answer
        for row in limited:
            problem = _never_fits(row, occupy, mode)
            if problem is not None:
                raise problem
        names_limited = [r.name for r in limited]
        _free_stale(conn, names_limited)
        held = _held(conn, names_limited)
        levels = {r.name: _decayed_level(r, moment) for r in limited}
        used = {r.name: held.get(r.name, 0) + levels[r.name] for r in limited}
        blocked = next((r for r in limited if used[r.name] + occupy > r.limit + _EPSILON), None)
        if blocked is not None:
            answer.update(acquired=False, blocked_by=blocked.name, used=used)
            if mode == "rate":
                excess = used[blocked.name] + occupy - blocked.limit
                answer["retry_after"] = max(excess, 0.0) / float(blocked.slot_decay_per_second)
            return answer
        if mode == "concurrency":
            slots = [{"id": str(uuid.uuid4()), "limit_name": n, "occupy": occupy, "acquired_at": moment, **who}
                     for n in names_limited]
            conn.execute(insert(_S), slots)
            answer["slot_ids"] = [s["id"] for s in slots]
        else:
            for row in limited:
                conn.execute(update(_L).where(_L.c.name == row.name)
                             .values(level=levels[row.name] + occupy, level_at=moment))
        answer["used"] = {n: u + occupy for n, u in used.items()}
    return answer


def release_slots(db: Database, slot_ids: Iterable[str]) -> int:
    """Let go of slots taken by ``acquire_slots`` (ids it does not know are ignored: a
    slot freed as stale, by a reset or with its limit's deletion).

    Returns:
        How many slot rows were deleted.

    Raises:
        ValueError: ``slot_ids`` is not a list of ids.
        DatabaseError: The database cannot be written.
    """
    if isinstance(slot_ids, str) or not isinstance(slot_ids, Iterable):
        raise ValueError(f"slot_ids is a list of slot ids, not {slot_ids!r}")
    items = list(slot_ids)
    if any(not isinstance(i, str) or not i for i in items):
        raise ValueError("slot_ids holds something that is not a slot id (a non-empty text)")
    ids = sorted(set(items))
    if not ids:
        return 0
    released = 0
    with db.connect("write", write=True) as conn:
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            released += int(conn.execute(delete(_S).where(_S.c.id.in_(chunk))).rowcount or 0)
    return released
