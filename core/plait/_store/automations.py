"""The automations repository: saved automations, the evaluator's windows and cursor, and
the log of actions, every SQL statement about them.

An automation row holds its validated spec (``plait.automations.AutomationSpec.to_json``):
``trigger`` and ``actions`` as JSON. ``source`` names what manages it (``deployment:<id>``
for a deployment's triggers), so saving that deployment again replaces them.

The evaluator (``plait.automations._evaluator``) keeps its windows (``automation_buckets``)
in memory while it holds its lease and writes what changed in one transaction per pass,
together with the actions a pass fired (``automation_actions``, status ``pending``) and the
new cursor, compared-and-set: a pass of an evaluator that lost its lease meanwhile commits
nothing, so no firing is recorded twice. An action is then claimed (``pending`` ->
``running``) before it is taken and finished as ``done`` or ``failed`` with an event.
"""

from __future__ import annotations

import difflib
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from plait._runs import utcnow
from plait._store.database import Database
from plait._store.events import insert_events, new_event
from plait._store.models import (
    AUTOMATION_ACTIONS,
    AUTOMATION_BUCKETS,
    AUTOMATIONS,
    DEPLOYMENTS,
    FLOW_RUNS,
    SERVICE_CURSORS,
)

__all__ = [
    "save_automation",
    "get_automation",
    "list_automations",
    "set_automation_enabled",
    "delete_automation",
    "replace_source_automations",
    "list_automation_actions",
    "read_cursor",
    "load_buckets",
    "commit_pass",
    "claim_action",
    "finish_action",
    "finish_actions",
    "actions_to_take",
    "flow_run_facts",
    "automation_event",
    "interrupted_actions",
    "ACTION_KEY_PREFIX",
]

_A: Table = AUTOMATIONS
_B: Table = AUTOMATION_BUCKETS
_X: Table = AUTOMATION_ACTIONS
_C: Table = SERVICE_CURSORS
_F: Table = FLOW_RUNS
_D: Table = DEPLOYMENTS

_SPEC_FIELDS = ("description", "enabled", "trigger", "actions")
ACTION_KEY_PREFIX = "automation-action:"  # the idempotency key of a run an action makes, then its id


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _automation(row: Row[Any]) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "description": row.description, "enabled": bool(row.enabled),
            "trigger": row.trigger, "actions": list(row.actions), "source": row.source,
            "created": _iso(row.created), "updated": _iso(row.updated)}


def automation_event(kind: str, name: str, payload: dict[str, Any]) -> dict[str, Any]:
    """An ``automation.*`` event about the automation ``name`` (not stored)."""
    return new_event(kind, f"automation/{name}", payload)


def _find(conn: Connection, key: str) -> Row[Any] | None:
    key = (key or "").strip()
    row = conn.execute(select(_A).where(_A.c.id == key)).first()
    return row or conn.execute(select(_A).where(_A.c.name == key)).first()


def _missing(conn: Connection, key: str) -> LookupError:
    names = [r.name for r in conn.execute(select(_A.c.name)).all()]
    close = difflib.get_close_matches(key, names, n=3)
    hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
    return LookupError(f"no automation named {key!r}; {hint}run `plait automation ls` to see them")


def save_automation(
    db: Database, spec: dict[str, Any], *, source: str | None = None
) -> tuple[dict[str, Any], str]:
    """Create the automation ``spec["name"]`` or change it to ``spec``.

    A changed trigger starts over: its open windows are dropped. Emits
    ``automation.created`` or ``automation.updated`` (nothing when unchanged).

    Args:
        db: The database.
        spec: A validated spec's ``to_json()``: name, description, enabled, trigger, actions.
        source: What manages it (``deployment:<id>``); None when made by hand.

    Returns:
        ``(automation, outcome)``, outcome ``"created"``, ``"updated"`` or ``"unchanged"``.

    Raises:
        DatabaseError: The database cannot be written.
    """
    name = spec["name"]
    values = {field: spec[field] for field in _SPEC_FIELDS}
    values["source"] = source
    for attempt in (1, 2):
        try:
            with db.connect("write", write=True, races=True) as conn:
                now = utcnow()
                row = conn.execute(select(_A).where(_A.c.name == name)).first()
                if row is None:
                    automation_id = str(uuid.uuid4())
                    conn.execute(insert(_A).values(id=automation_id, name=name, created=now, updated=now, **values))
                    outcome, changed = "created", list(values)
                else:
                    automation_id = row.id
                    changed = [k for k, v in values.items() if row._mapping[k] != v]
                    outcome = "updated" if changed else "unchanged"
                    if changed:
                        conn.execute(update(_A).where(_A.c.id == row.id).values(updated=now, **values))
                    if "trigger" in changed:
                        conn.execute(delete(_B).where(_B.c.automation_id == row.id))
                saved = conn.execute(select(_A).where(_A.c.id == automation_id)).first()
                assert saved is not None
                if outcome != "unchanged":
                    payload: dict[str, Any] = {"automation_id": automation_id, "enabled": values["enabled"]}
                    if outcome == "updated":
                        payload["changed"] = sorted(changed)
                    insert_events(conn, [automation_event(f"automation.{outcome}", name, payload)])
            return _automation(saved), outcome
        except IntegrityError as exc:  # two first saves of one name raced: read the winner's row
            if attempt == 2:
                raise db.error(exc, "write") from None
    raise AssertionError("unreachable")  # pragma: no cover


def get_automation(db: Database, key: str) -> dict[str, Any]:
    """The automation with this id or name.

    Raises:
        LookupError: None has it (close names suggested).
        DatabaseError: The database cannot be read.
    """
    with db.connect("read") as conn:
        row = _find(conn, key)
        if row is None:
            raise _missing(conn, key)
    return _automation(row)


def list_automations(
    db: Database, *, source: str | None = None, enabled_only: bool = False
) -> list[dict[str, Any]]:
    """Every automation by name (or those of ``source``, or only the enabled ones).

    Raises:
        DatabaseError: The database cannot be read.
    """
    query = select(_A).order_by(_A.c.name)
    if source is not None:
        query = query.where(_A.c.source == source)
    if enabled_only:
        query = query.where(_A.c.enabled.is_(True))
    with db.connect("read") as conn:
        return [_automation(r) for r in conn.execute(query).all()]


def set_automation_enabled(db: Database, key: str, enabled: bool) -> dict[str, Any]:
    """Enable or disable an automation (a disabled one keeps nothing open: its windows go).

    Raises:
        LookupError: No automation has this id or name.
        DatabaseError: The database cannot be written.
    """
    with db.connect("write", write=True) as conn:
        row = _find(conn, key)
        if row is None:
            raise _missing(conn, key)
        if bool(row.enabled) != enabled:
            conn.execute(update(_A).where(_A.c.id == row.id).values(enabled=enabled, updated=utcnow()))
            conn.execute(delete(_B).where(_B.c.automation_id == row.id))
            kind = "automation.enabled" if enabled else "automation.disabled"
            insert_events(conn, [automation_event(kind, row.name, {"automation_id": row.id})])
        saved = conn.execute(select(_A).where(_A.c.id == row.id)).first()
    assert saved is not None
    return _automation(saved)


def delete_automation(db: Database, key: str) -> dict[str, Any]:
    """Delete an automation (its windows with it; its action log stays); returns it.

    Raises:
        LookupError: No automation has this id or name.
        DatabaseError: The database cannot be written.
    """
    with db.connect("write", write=True) as conn:
        row = _find(conn, key)
        if row is None:
            raise _missing(conn, key)
        _delete_rows(conn, [row])
    return _automation(row)


def _delete_rows(conn: Connection, rows: Sequence[Row[Any]]) -> None:
    if not rows:
        return
    ids = [r.id for r in rows]
    conn.execute(delete(_B).where(_B.c.automation_id.in_(ids)))
    conn.execute(delete(_A).where(_A.c.id.in_(ids)))
    insert_events(conn, [automation_event("automation.deleted", r.name, {"automation_id": r.id}) for r in rows])


def replace_source_automations(
    db: Database, source: str, specs: Sequence[dict[str, Any]]
) -> list[tuple[dict[str, Any], str]]:
    """Make the automations of ``source`` exactly ``specs`` (a deployment's triggers):
    save each, delete those of ``source`` not among them.

    Returns:
        ``(automation, outcome)`` of each saved, then ``(automation, "deleted")`` of each
        deleted.

    Raises:
        ValueError: A name in ``specs`` belongs to an automation another source manages.
        DatabaseError: The database cannot be written.
    """
    keep = {s["name"] for s in specs}
    with db.connect("read") as conn:
        taken = conn.execute(select(_A.c.name, _A.c.source).where(_A.c.name.in_(keep))).all() if keep else []
    for row in taken:
        if row.source != source:
            raise ValueError(f"an automation named {row.name!r} exists and is not managed by {source}; "
                             "rename the trigger or delete that automation")
    saved = [save_automation(db, spec, source=source) for spec in specs]
    with db.connect("write", write=True) as conn:
        stale = [r for r in conn.execute(select(_A).where(_A.c.source == source)).all() if r.name not in keep]
        _delete_rows(conn, stale)
    return saved + [(_automation(r), "deleted") for r in stale]


# -- the action log --------------------------------------------------------------------------------
def _action(row: Row[Any]) -> dict[str, Any]:
    event = (row.context or {}).get("event") or {}
    return {"id": row.id, "automation_id": row.automation_id, "automation_name": row.automation_name,
            "firing_id": row.firing_id, "position": row.position, "type": (row.action or {}).get("type"),
            "status": row.status, "action": row.action, "created": _iso(row.created),
            "started": _iso(row.started), "finished": _iso(row.finished), "flow_run_id": row.flow_run_id,
            "result": row.result, "error": row.error, "event_id": event.get("id"), "event_kind": event.get("kind")}


def list_automation_actions(
    db: Database, *, automation: str | None = None, status: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Actions taken or to take, newest first (of one automation by id or name, or all).

    Raises:
        LookupError: No automation has this id or name.
        ValueError: A bad status or limit.
        DatabaseError: The database cannot be read.
    """
    if status is not None and status not in ("pending", "running", "done", "failed", "skipped"):
        raise ValueError(f"status is pending, running, done, failed or skipped, not {status!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise ValueError(f"limit is a whole number from 1 to 1000, not {limit!r}")
    query = select(_X).order_by(_X.c.created.desc(), _X.c.position.desc()).limit(limit)
    with db.connect("read") as conn:
        if automation is not None:
            row = _find(conn, automation)
            if row is not None:
                query = query.where(_X.c.automation_id == row.id)
            else:  # a deleted automation's log is still there under its name
                query = query.where(_X.c.automation_name == automation)
        if status is not None:
            query = query.where(_X.c.status == status)
        return [_action(r) for r in conn.execute(query).all()]


# -- the evaluator's state -------------------------------------------------------------------------
def read_cursor(db: Database, name: str) -> tuple[int, datetime] | None:
    """``(seq, stamp)``: the last event the service ``name`` dealt with and when its last
    pass was stored (the version ``commit_pass`` compares); None before its first pass."""
    with db.connect("read") as conn:
        row = conn.execute(select(_C.c.seq, _C.c.updated).where(_C.c.name == name)).first()
    return None if row is None else (int(row.seq), row.updated)


def load_buckets(db: Database) -> list[dict[str, Any]]:
    """Every open window: ``{automation_id, path, key, opened_at, expires_at, count, state}``."""
    with db.connect("read") as conn:
        rows = conn.execute(select(_B)).all()
    return [{"automation_id": r.automation_id, "path": r.path, "key": r.key, "opened_at": r.opened_at,
             "expires_at": r.expires_at, "count": r.count, "state": r.state} for r in rows]


def commit_pass(
    db: Database,
    name: str,
    *,
    seen: tuple[int, datetime] | None,
    seq: int,
    upserts: Iterable[dict[str, Any]] = (),
    removals: Iterable[tuple[str, str, str]] = (),
    actions: Sequence[dict[str, Any]] = (),
    events: Sequence[dict[str, Any]] = (),
    disable: Iterable[str] = (),
) -> tuple[int, datetime] | None:
    """Store one evaluation pass, all or nothing: the windows that changed, the actions it
    fired (as ``running``: the caller takes them once this returns), its events, and the
    cursor moved from ``seen`` to ``seq``. Actions of an automation disabled or deleted
    meanwhile are left out.

    Returns:
        The new cursor, or None (and nothing stored) when the cursor is no longer ``seen``
        (``read_cursor``): another evaluator passed meanwhile, so this one's view is stale.

    Raises:
        DatabaseError: The database cannot be written.
    """
    now = utcnow()
    try:
        with db.connect("write", write=True, races=True) as conn:
            if seen is None:
                conn.execute(insert(_C).values(name=name, seq=seq, updated=now))
            else:
                moved = conn.execute(update(_C).where(_C.c.name == name, _C.c.seq == seen[0],
                                                      _C.c.updated == seen[1]).values(seq=seq, updated=now)).rowcount
                if not moved:
                    return None
            live = {r.id for r in conn.execute(select(_A.c.id).where(_A.c.enabled.is_(True))).all()}
            for automation_id, path, key in removals:
                conn.execute(delete(_B).where(_B.c.automation_id == automation_id, _B.c.path == path,
                                              _B.c.key == key))
            for bucket in upserts:
                if bucket["automation_id"] not in live:
                    continue  # disabled or deleted meanwhile
                where = (_B.c.automation_id == bucket["automation_id"], _B.c.path == bucket["path"],
                         _B.c.key == bucket["key"])
                conn.execute(delete(_B).where(*where))
                conn.execute(insert(_B).values(**bucket))
            rows = [a for a in actions if a["automation_id"] in live]
            if rows:
                # recorded as running: the evaluator takes them as soon as this commits
                conn.execute(insert(_X), [{"status": "running", "created": now, "started": now, "finished": None,
                                           "result": None, "error": None, **a} for a in rows])
            for automation_id in disable:
                conn.execute(update(_A).where(_A.c.id == automation_id).values(enabled=False, updated=now))
                conn.execute(delete(_B).where(_B.c.automation_id == automation_id))
            insert_events(conn, [e for e in events if e["payload"].get("automation_id") in live])
        return seq, now
    except IntegrityError:
        return None  # the cursor's first row or the same firing stored by another evaluator: its pass won


def actions_to_take(db: Database, *, limit: int = 100) -> list[dict[str, Any]]:
    """Pending actions, oldest first, with their template context."""
    with db.connect("read") as conn:
        rows = conn.execute(select(_X).where(_X.c.status == "pending")
                            .order_by(_X.c.created, _X.c.position).limit(limit)).all()
    return [{**_action(r), "context": r.context, "chain": list(r.chain)} for r in rows]


def claim_action(db: Database, action_id: str) -> bool:
    """Mark a pending action running (before it is taken); False when someone else did."""
    with db.connect("write", write=True) as conn:
        return bool(conn.execute(update(_X).where(_X.c.id == action_id, _X.c.status == "pending")
                                 .values(status="running", started=utcnow())).rowcount)


def finish_actions(db: Database, outcomes: Sequence[tuple[dict[str, Any], dict[str, Any] | None, str | None]]) -> None:
    """Record the outcomes ``(action, result, error)`` of actions taken, in one transaction,
    each with its event: ``automation.action.executed``, or ``.failed`` when ``error``."""
    if not outcomes:
        return
    now = utcnow()
    rows, events = [], []
    for action, result, error in outcomes:
        flow_run_id = (result or {}).get("flow_run_id")
        rows.append({"b_id": action["id"], "b_status": "failed" if error is not None else "done", "b_result": result,
                     "b_error": error, "b_flow_run_id": flow_run_id})
        payload = {"automation_id": action["automation_id"], "automation_name": action["automation_name"],
                   "action_id": action["id"], "firing_id": action["firing_id"], "position": action["position"],
                   "type": action["type"], "chain": action.get("chain", [])}
        if flow_run_id:
            payload["flow_run_id"] = flow_run_id
        if error is not None:
            payload["error"] = error[:2000]
        kind = "automation.action.failed" if error is not None else "automation.action.executed"
        events.append(automation_event(kind, action["automation_name"], payload))
    with db.connect("write", write=True) as conn:
        # one statement, many parameter sets: at 100 actions a second this is the evaluator's main cost
        conn.execute(update(_X).where(_X.c.id == bindparam("b_id")).values(
            status=bindparam("b_status"), finished=now, result=bindparam("b_result"), error=bindparam("b_error"),
            flow_run_id=bindparam("b_flow_run_id")), rows)
        insert_events(conn, events)


def finish_action(
    db: Database, action: dict[str, Any], *, result: dict[str, Any] | None = None, error: str | None = None
) -> None:
    """``finish_actions`` for one action."""
    finish_actions(db, [(action, result, error)])


def interrupted_actions(db: Database) -> list[dict[str, Any]]:
    """Actions left ``running`` (an evaluator died while taking them)."""
    with db.connect("read") as conn:
        rows = conn.execute(select(_X).where(_X.c.status == "running")).all()
    return [{**_action(r), "context": r.context, "chain": list(r.chain)} for r in rows]


def flow_run_facts(db: Database, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """What triggers and templates know of these flow runs: name, flow, deployment
    (``flow/name``), work pool, parameters, tags, state, times; and ``caused_by``, the
    automation chain of the action that made the run (empty when none did)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    facts: dict[str, dict[str, Any]] = {}
    with db.connect("read") as conn:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            rows = conn.execute(
                select(_F.c.id, _F.c.name, _F.c.flow_name, _F.c.parameters, _F.c.tags, _F.c.state_type,
                       _F.c.state_name, _F.c.state_message, _F.c.work_pool_name, _F.c.deployment_id,
                       _F.c.expected_start_time, _F.c.start_time, _F.c.end_time, _F.c.parent_flow_run_id,
                       _F.c.idempotency_key,
                       _D.c.flow_name.label("d_flow"), _D.c.name.label("d_name"))
                .select_from(_F.outerjoin(_D, _D.c.id == _F.c.deployment_id))
                .where(_F.c.id.in_(chunk))
            ).all()
            # a run an action made carries the action's id in its idempotency key
            made_by = {r.idempotency_key[len(ACTION_KEY_PREFIX):]: r.id for r in rows
                       if (r.idempotency_key or "").startswith(ACTION_KEY_PREFIX)}
            causes = {made_by[a.id]: list(a.chain) + [a.automation_id] for a in conn.execute(
                select(_X.c.id, _X.c.chain, _X.c.automation_id).where(_X.c.id.in_(list(made_by)))).all()
            } if made_by else {}
            for r in rows:
                facts[r.id] = {
                    "id": r.id, "name": r.name, "flow_name": r.flow_name, "parameters": r.parameters or {},
                    "tags": list(r.tags or []), "state_type": r.state_type, "state_name": r.state_name,
                    "state_message": r.state_message, "work_pool": r.work_pool_name,
                    "deployment_id": r.deployment_id,
                    "deployment": f"{r.d_flow}/{r.d_name}" if r.d_flow is not None else None,
                    "expected_start_time": _iso(r.expected_start_time), "start_time": _iso(r.start_time),
                    "end_time": _iso(r.end_time), "parent_flow_run_id": r.parent_flow_run_id,
                    "caused_by": causes.get(r.id, []),
                }
    return facts
