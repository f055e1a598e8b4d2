"""The deployments repository: every SQL statement about ``deployments`` and
``deployment_schedules``.

A deployment is a flow entrypoint with the defaults, schedules and place its runs get,
named ``"<flow_name>/<name>"`` (unique); functions taking a ``ref`` accept that full name or
the deployment's id. ``save_deployment`` is an idempotent upsert (``created`` /
``updated`` / ``unchanged``), so applying the same ``plait.yaml`` twice changes nothing.

Schedules: ``spec["schedules"]`` None keeps the stored schedules, ``[]`` clears them (the
difference Prefect #23097 lost). When a save changes the schedules or anything a run is
made from (parameters, tags, entrypoint, pool, queue, job variables), or pauses the
deployment, its scheduler runs still waiting for a future slot (Scheduled, unclaimed) are
deleted; the scheduler's next pass plans them again from the new definition. Runs already
due are left to the claim (and its catch-up policy).

Rows come back as plain dicts (times as aware UTC datetimes), a deployment with
``"schedules"``: its schedules in order.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, delete, insert, or_, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from plait._batch import clean_json
from plait._runs import utcnow
from plait._store._paging import check_limit, decode_cursor, encode_cursor
from plait._store.database import Database
from plait._store.deployment_runs import aware, cancel_scheduled_runs_in, delete_future_auto_runs_in
from plait._store.events import insert_events, new_event
from plait._store.models import DEPLOYMENT_SCHEDULES, DEPLOYMENTS

__all__ = [
    "DEPLOYMENTS",
    "DEPLOYMENT_SCHEDULES",
    "SPEC_DEFAULTS",
    "COLLISION_STRATEGIES",
    "CATCHUP_POLICIES",
    "SCHEDULE_KINDS",
    "save_deployment",
    "get_deployment",
    "list_deployments",
    "set_deployment_paused",
    "delete_deployment",
    "touch_deployment",
    "normalise_schedule",
]

DEPLOYMENTS: Table = DEPLOYMENTS
DEPLOYMENT_SCHEDULES: Table = DEPLOYMENT_SCHEDULES
_D, _DS = DEPLOYMENTS, DEPLOYMENT_SCHEDULES

COLLISION_STRATEGIES = ("enqueue", "cancel_new")
CATCHUP_POLICIES = ("all", "latest", "none")
SCHEDULE_KINDS = ("cron", "interval", "rrule")
# What a spec key means when it is left out (flow_name, name and entrypoint are required).
SPEC_DEFAULTS: dict[str, Any] = {
    "path": None, "storage_block": None, "bundle_key": None, "parameters": {}, "parameter_schema": {},
    "tags": [], "description": "", "version": None, "work_pool_name": None, "work_queue_name": None,
    "job_variables": {}, "concurrency_limit": None, "collision_strategy": "enqueue", "catchup": "all",
    "max_active_runs": None, "retries": 0, "paused": False,
}
_REQUIRED = ("flow_name", "name", "entrypoint")
# Columns the store keeps itself: accepted in a spec (a saved row can be saved again), ignored.
_READ_ONLY = frozenset({"id", "created", "updated", "last_polled_at"})
# What a run is made from: a change re-plans the scheduler's future runs.
_RUN_SHAPING = frozenset({"flow_name", "entrypoint", "parameters", "tags", "work_pool_name", "work_queue_name",
                          "job_variables"})
_OPTIONAL_TEXT = ("path", "storage_block", "bundle_key", "version", "work_pool_name", "work_queue_name")
_OBJECTS = ("parameters", "parameter_schema", "job_variables")
_LIMITS = ("concurrency_limit", "max_active_runs")
_SCHEDULE_FIELDS = ("kind", "cron", "interval_seconds", "anchor", "rrule", "timezone", "active", "parameters")
_SCHEDULE_READ_ONLY = frozenset({"id", "deployment_id", "position", "created"})
_KIND_FIELD = {"cron": "cron", "interval": "interval_seconds", "rrule": "rrule"}
_NAME_MAX = 200



# -- specs -------------------------------------------------------------------------------------------
def _name(value: Any, what: str, *, slash: bool) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > _NAME_MAX:
        raise ValueError(f"a deployment's {what} is 1 to {_NAME_MAX} characters, not {value!r}")
    if (not slash and "/" in value) or any(ord(c) < 32 or ord(c) == 127 for c in value):
        banned = "no '/' and no control characters" if not slash else "no control characters"
        raise ValueError(f"a deployment's {what} holds {banned}: {value!r}")
    return value


def _check_value(key: str, value: Any) -> Any:
    """``value`` for the deployment column ``key`` as it is stored, or ValueError naming it."""
    if key in _OPTIONAL_TEXT:
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError(f"deployment {key} is non-empty text or None, not {value!r}")
        return value
    if key in _OBJECTS:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError(f"deployment {key} is a JSON object (a dict), not {type(value).__name__}")
        return clean_json(value)
    if key in _LIMITS:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"deployment {key} is a whole number of runs (0 or more) or None, not {value!r}")
        return value
    if key == "tags":
        if value is None:
            return []
        if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(
            isinstance(t, str) and t for t in value
        ):
            raise ValueError(f"deployment tags are a list of non-empty texts, not {value!r}")
        return clean_json(list(dict.fromkeys(value)))
    if key == "description":
        if value is None:
            return ""
        if not isinstance(value, str):
            raise ValueError("a deployment's description is text")
        return value
    if key == "collision_strategy" and value not in COLLISION_STRATEGIES:
        raise ValueError(f"collision_strategy is one of {', '.join(COLLISION_STRATEGIES)}, not {value!r}")
    if key == "catchup" and value not in CATCHUP_POLICIES:
        raise ValueError(f"catchup is one of {', '.join(CATCHUP_POLICIES)}, not {value!r}")
    if key == "retries" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"deployment retries is a whole number (0 or more), not {value!r}")
    if key == "paused" and not isinstance(value, bool):
        raise ValueError(f"deployment paused is true or false, not {value!r}")
    return value


def normalise_schedule(spec: Any, position: int = 0) -> dict[str, Any]:
    """A schedule spec as it is stored and compared: every field of ``_SCHEDULE_FIELDS``,
    the ones its kind does not use None, ``anchor`` an aware UTC datetime.

    Raises:
        ValueError: A malformed schedule (the message names its position and field).
    """
    where = f"schedule {position + 1}"
    if not isinstance(spec, dict):
        raise ValueError(f"{where} is a mapping (kind, cron / interval_seconds / rrule, timezone, ...), not {spec!r}")
    unknown = sorted(set(spec) - set(_SCHEDULE_FIELDS) - _SCHEDULE_READ_ONLY)
    if unknown:
        raise ValueError(f"{where} has unknown field(s) {', '.join(unknown)}; known: {', '.join(_SCHEDULE_FIELDS)}")
    kind = spec.get("kind")
    if kind not in SCHEDULE_KINDS:
        raise ValueError(f"{where}: kind is one of {', '.join(SCHEDULE_KINDS)}, not {kind!r}")
    out: dict[str, Any] = {"kind": kind, "cron": None, "interval_seconds": None, "anchor": None, "rrule": None}
    for other_kind, field in _KIND_FIELD.items():
        if other_kind != kind and spec.get(field) is not None:
            raise ValueError(f"{where}: a {kind} schedule has no {field}")
    if spec.get("anchor") is not None and kind != "interval":
        raise ValueError(f"{where}: only an interval schedule has an anchor")
    if kind in ("cron", "rrule"):
        text = spec.get(kind)
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{where}: a {kind} schedule needs {kind} (text)")
        out[kind] = text
    else:
        seconds = spec.get("interval_seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
                or seconds <= 0:
            raise ValueError(f"{where}: interval_seconds is a positive number of seconds, not {seconds!r}")
        out["interval_seconds"] = float(seconds)
        anchor = spec.get("anchor")
        if isinstance(anchor, str):
            try:
                anchor = datetime.fromisoformat(anchor)
            except ValueError:
                raise ValueError(f"{where}: anchor is an ISO 8601 time, not {anchor!r}") from None
        out["anchor"] = aware(anchor) if anchor is not None else None
    timezone = spec.get("timezone") or "UTC"
    if not isinstance(timezone, str):
        raise ValueError(f"{where}: timezone is an IANA name such as 'Europe/Paris', not {timezone!r}")
    active = spec.get("active", True)
    if not isinstance(active, bool):
        raise ValueError(f"{where}: active is true or false, not {active!r}")
    parameters = spec.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ValueError(f"{where}: parameters is a JSON object (a dict)")
    out.update(timezone=timezone, active=active, parameters=clean_json(parameters))
    return out


def _normalise(spec: Any) -> tuple[dict[str, Any], list[dict[str, Any]] | None, bool]:
    """``(column values, schedules or None, whether paused was given)`` of a spec."""
    if not isinstance(spec, dict):
        raise ValueError(f"a deployment spec is a mapping, not {type(spec).__name__}")
    known = set(SPEC_DEFAULTS) | set(_REQUIRED) | _READ_ONLY | {"schedules"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ValueError(f"unknown deployment field(s) {', '.join(unknown)}; known: "
                         f"{', '.join(sorted(known - _READ_ONLY))}")
    values: dict[str, Any] = {
        "flow_name": _name(spec.get("flow_name"), "flow_name", slash=True),
        "name": _name(spec.get("name"), "name", slash=False),
    }
    entrypoint = spec.get("entrypoint")
    if not isinstance(entrypoint, str) or not entrypoint.strip():
        raise ValueError(f"a deployment needs an entrypoint ('path/to/file.py:flow' or 'module:flow'), "
                         f"not {entrypoint!r}")
    values["entrypoint"] = entrypoint
    for key, default in SPEC_DEFAULTS.items():
        given = spec.get(key)
        values[key] = _check_value(key, default if given is None else given)  # None: the default
    raw = spec.get("schedules")
    if raw is None:
        schedules = None
    elif isinstance(raw, (list, tuple)):
        schedules = [normalise_schedule(s, i) for i, s in enumerate(raw)]
    else:
        raise ValueError(f"schedules is a list (empty to clear them) or None (keep them), not {raw!r}")
    return values, schedules, spec.get("paused") is not None


# -- reading -------------------------------------------------------------------------------------------
def _where_ref(ref: str) -> Any:
    if not isinstance(ref, str) or not ref:
        raise ValueError(f"a deployment is named 'flow_name/name' or by its id, not {ref!r}")
    if "/" in ref:
        flow_name, _, name = ref.rpartition("/")
        return and_(_D.c.flow_name == flow_name, _D.c.name == name)
    return _D.c.id == ref


def _missing(ref: str) -> LookupError:
    return LookupError(f"no deployment {ref!r}; list them with `plait deployment ls`")


def _schedule_rows(conn: Connection, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    if ids:
        query = select(_DS).where(_DS.c.deployment_id.in_(ids)).order_by(_DS.c.deployment_id, _DS.c.position)
        for row in conn.execute(query):
            found[row.deployment_id].append(dict(row._mapping))
    return found


def _with_schedules(conn: Connection, rows: list[Row[Any]]) -> list[dict[str, Any]]:
    schedules = _schedule_rows(conn, [r.id for r in rows])
    return [{**dict(r._mapping), "schedules": schedules[r.id]} for r in rows]


def get_deployment(db: Database, ref: str) -> dict[str, Any] | None:
    """The deployment ``ref`` ("flow_name/name" or id) with its ``schedules``, or None.

    Raises:
        ValueError: An empty ref.
        DatabaseError: The database cannot be read.
    """
    where = _where_ref(ref)
    with db.connect() as conn:
        row = conn.execute(select(_D).where(where)).first()
        return _with_schedules(conn, [row])[0] if row is not None else None


def list_deployments(
    db: Database,
    *,
    flow_name: str | None = None,
    work_pool: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Deployments in (flow name, name) order, each with its ``schedules``.

    Args:
        db: The database.
        flow_name: Only this flow's.
        work_pool: Only those whose runs go to this work pool.
        limit: At most this many (1 to 1,000).
        cursor: The ``next_cursor`` of the previous page.

    Returns:
        ``(rows, next_cursor)``; next_cursor is None on the last page.

    Raises:
        ValueError: A malformed limit or cursor.
        DatabaseError: The database cannot be read.
    """
    limit = check_limit(limit)
    query = select(_D).order_by(_D.c.flow_name, _D.c.name).limit(limit + 1)
    if flow_name is not None:
        query = query.where(_D.c.flow_name == flow_name)
    if work_pool is not None:
        query = query.where(_D.c.work_pool_name == work_pool)
    if cursor is not None:
        after_flow, after_name = decode_cursor(cursor, "deployments", (str, str))
        query = query.where(
            or_(_D.c.flow_name > after_flow, and_(_D.c.flow_name == after_flow, _D.c.name > after_name))
        )
    with db.connect() as conn:
        rows = list(conn.execute(query))
        page = _with_schedules(conn, rows[:limit])
    more = len(rows) > limit
    return page, encode_cursor("deployments", [page[-1]["flow_name"], page[-1]["name"]]) if more else None


# -- writing -------------------------------------------------------------------------------------------
def _stored_schedules(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: (aware(r[k]) if k == "anchor" and r[k] is not None else r[k]) for k in _SCHEDULE_FIELDS}
            for r in rows]


def _insert_schedules(conn: Connection, deployment_id: str, schedules: list[dict[str, Any]], now: datetime) -> None:
    if schedules:
        conn.execute(insert(_DS), [
            {"id": str(uuid.uuid4()), "deployment_id": deployment_id, "position": i, "created": now, **s}
            for i, s in enumerate(schedules)
        ])


def _event(kind: str, row: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return new_event(kind, f"deployment/{row['flow_name']}/{row['name']}", {
        "deployment_id": row["id"], "flow_name": row["flow_name"], "name": row["name"], **extra,
    })


def save_deployment(db: Database, spec: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Create or update the deployment ``spec["flow_name"]/spec["name"]``.

    Keys left out of ``spec`` take their ``SPEC_DEFAULTS`` (a spec says the whole
    deployment), except ``paused``, which keeps the stored value unless given (not None), and
    ``schedules``: None (or absent) keeps the stored schedules, a list replaces them, ``[]``
    clears them. Each schedule: ``kind`` (cron | interval | rrule), ``cron`` /
    ``interval_seconds`` (+ optional ``anchor``) / ``rrule``, ``timezone`` ("UTC"),
    ``active`` (true), ``parameters`` ({}). Emits ``deployment.created`` or
    ``deployment.updated`` (payload ``changed``: the fields that changed). ``triggers``
    likewise: None keeps the deployment's trigger automations, a list replaces them (each
    an automation spec or the shorthand of ``plait._automation_model.deployment_trigger_specs``).

    Returns:
        ``(deployment row with schedules, outcome)``; outcome is "created", "updated" or
        "unchanged" (nothing differed; nothing was written).

    Raises:
        ValueError: A malformed spec (the message names the field).
        DatabaseError: The database cannot be written.
    """
    spec = dict(spec)
    triggers = spec.pop("triggers", None)
    values, schedules, paused_given = _normalise(spec)
    if triggers is not None:  # refused before anything is written
        from plait._automation_model import deployment_trigger_specs

        triggers = deployment_trigger_specs(f"{values['flow_name']}/{values['name']}", triggers)
    for attempt in (1, 2):
        try:
            with db.engine.begin() as conn:
                outcome, deployment_id = _save_in(conn, values, schedules, paused_given)
                row = conn.execute(select(_D).where(_D.c.id == deployment_id)).first()
                assert row is not None
                saved = _with_schedules(conn, [row])[0]
            if triggers is not None:
                outcome = _save_triggers(db, saved, triggers, outcome)
            return saved, outcome
        except IntegrityError as exc:  # created concurrently by another save: update it instead
            if attempt == 2:
                raise db.error(exc, "write") from None
        except SQLAlchemyError as exc:
            raise db.error(exc, "write") from None
    raise AssertionError("unreachable")  # pragma: no cover


def _save_triggers(db: Database, deployment: dict[str, Any], triggers: list[dict[str, Any]], outcome: str) -> str:
    """Make the deployment's trigger automations ``triggers`` (validated automation specs);
    a deployment otherwise unchanged whose triggers changed counts as updated."""
    from plait._store.automations import replace_source_automations

    results = replace_source_automations(db, f"deployment:{deployment['id']}", triggers)
    deployment["triggers"] = [a["name"] for a, o in results if o != "deleted"]
    if outcome == "unchanged" and any(o != "unchanged" for _, o in results):
        return "updated"
    return outcome


def _save_in(
    conn: Connection, values: dict[str, Any], schedules: list[dict[str, Any]] | None, paused_given: bool
) -> tuple[str, str]:
    now = utcnow()
    row = conn.execute(select(_D).where(_D.c.flow_name == values["flow_name"], _D.c.name == values["name"])).first()
    if row is None:
        deployment_id = str(uuid.uuid4())
        created = {"id": deployment_id, **values, "last_polled_at": None, "created": now, "updated": now}
        conn.execute(insert(_D).values(**created))
        _insert_schedules(conn, deployment_id, schedules or [], now)
        insert_events(conn, [_event("deployment.created", created)])
        return "created", deployment_id
    stored = dict(row._mapping)
    if not paused_given:
        values = {**values, "paused": stored["paused"]}
    changed = sorted(k for k, v in values.items() if stored[k] != v)
    old_schedules = _stored_schedules(_schedule_rows(conn, [row.id])[row.id])
    schedules_changed = schedules is not None and schedules != old_schedules
    if not changed and not schedules_changed:
        return "unchanged", row.id
    if schedules_changed or _RUN_SHAPING.intersection(changed) or (values["paused"] and not stored["paused"]):
        # the runs first: a claimer holding one of them never waits on this deployment's row
        delete_future_auto_runs_in(conn, row.id, now)
    conn.execute(update(_D).where(_D.c.id == row.id).values(updated=now, **values))
    if schedules_changed:
        conn.execute(delete(_DS).where(_DS.c.deployment_id == row.id))
        _insert_schedules(conn, row.id, schedules or [], now)
        changed.append("schedules")
    insert_events(conn, [_event("deployment.updated", {**stored, **values}, changed=changed)])
    return "updated", row.id


def set_deployment_paused(db: Database, ref: str, paused: bool) -> dict[str, Any]:
    """Pause a deployment (none of its runs is claimed; its future scheduler runs are
    deleted) or resume it (the scheduler's next pass plans its runs again). Emits
    ``deployment.paused`` / ``deployment.resumed`` when that changes anything.

    Returns:
        The deployment row with its schedules.

    Raises:
        LookupError: No such deployment.
        DatabaseError: The database cannot be written.
    """
    where = _where_ref(ref)
    paused = bool(paused)
    with db.connect("write", write=True) as conn:
        row = conn.execute(select(_D).where(where)).first()
        if row is None:
            raise _missing(ref)
        if row.paused != paused:
            now = utcnow()
            if paused:
                delete_future_auto_runs_in(conn, row.id, now)
            conn.execute(update(_D).where(_D.c.id == row.id).values(paused=paused, updated=now))
            insert_events(conn, [_event("deployment.paused" if paused else "deployment.resumed", dict(row._mapping))])
            row = conn.execute(select(_D).where(_D.c.id == row.id)).first()
            assert row is not None
        return _with_schedules(conn, [row])[0]


def delete_deployment(db: Database, ref: str) -> bool:
    """Delete a deployment and its schedules; its Scheduled runs become Cancelled
    ("deployment deleted"), runs already claimed or running are left to finish. Emits
    ``deployment.deleted``.

    Returns:
        Whether there was such a deployment.

    Raises:
        DatabaseError: The database cannot be written.
    """
    where = _where_ref(ref)
    with db.connect("write", write=True) as conn:
        row = conn.execute(select(_D).where(where)).first()
        if row is None:
            return False
        now = utcnow()
        _ids, events = cancel_scheduled_runs_in(
            conn, row.id, f"cancelled: deployment deleted ({row.flow_name}/{row.name})", now
        )
        conn.execute(delete(_DS).where(_DS.c.deployment_id == row.id))
        conn.execute(delete(_D).where(_D.c.id == row.id))
        insert_events(conn, [*events, _event("deployment.deleted", dict(row._mapping))])
    from plait._store.automations import replace_source_automations

    replace_source_automations(db, f"deployment:{row.id}", [])  # its triggers go with it
    return True


def touch_deployment(db: Database, deployment_id: str) -> None:
    """Record that a serve process or worker asked for this deployment's runs just now
    (``last_polled_at``; ``late_reason`` reads it).

    Raises:
        DatabaseError: The database cannot be written.
    """
    with db.connect("write", write=True) as conn:
        conn.execute(update(_D).where(_D.c.id == deployment_id).values(last_polled_at=utcnow()))
