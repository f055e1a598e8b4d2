"""Control of flow runs that someone else runs: pausing and resuming, and retrying a run
that failed or crashed.

- Pause: ``record_pause`` keeps what a run waits for (the JSON schema of the input model and
  the deadline), then the engine reports the run Paused (through the recorder) and polls
  ``pause_status`` until it is no longer Paused.
- Resume: ``resume_flow_run`` checks the input against that schema here, before anything
  changes, so a bad input is refused at once naming the field (a 422 through the API); the
  engine validates it again with the model itself (the authority: a Python validator may
  refuse what a schema allows, and then the run pauses again and says why). A resumed run is
  Pending ("Resuming") with the input stored until its engine picks it up.
- Retry: ``retry_flow_run`` moves a Failed or Crashed run back to Scheduled: same id,
  parameters, deployment and attempt count. A worker claims it again (it has a deployment),
  or the CLI runs it from its recorded entrypoint; the engine adopting it reuses the results
  its task runs persisted in the earlier attempt.

The schema check is deliberately small (no dependency): the keywords pydantic writes for
plain models — ``type``, ``properties``, ``required``, ``additionalProperties``, ``items``,
``enum``, ``const``, ``anyOf``/``oneOf``/``allOf``, ``$ref`` to ``$defs``, and the numeric,
length and pattern bounds. Formats (dates, e-mail) are left to the model.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection

from plait._batch import BatchRows, clean_json, clean_text
from plait._runs import utcnow
from plait._store.database import Database
from plait._store.events import batch_event_params, insert_event_params
from plait._store.models import FLOW_RUNS, STATES
from plait.states import StateType

__all__ = ["record_pause", "pause_status", "resume_flow_run", "retry_flow_run", "input_problems"]

_F: Table = FLOW_RUNS
_S: Table = STATES

_PAUSED = StateType.PAUSED.value
_RETRYABLE = (StateType.FAILED.value, StateType.CRASHED.value)
_FINAL = tuple(t.value for t in StateType if t.is_final)
_MAX_PROBLEMS = 5



def _missing(flow_run_id: str) -> LookupError:
    return LookupError(f"no flow run with id {flow_run_id!r}; `plait flow-run ls` lists them")


def _row(conn: Connection, flow_run_id: str) -> Any:
    row = conn.execute(select(_F).where(_F.c.id == flow_run_id)).first()
    if row is None:
        raise _missing(flow_run_id)
    return row


def _move(conn: Connection, run: Any, to: StateType, name: str, message: str, **values: Any) -> bool:
    """Move the flow run ``run`` (a row) to a new state if it is still in the state it was
    read in; write the state's history row and its event. False: it changed meanwhile."""
    now = utcnow()
    changed = conn.execute(
        _F.update().where(_F.c.id == run.id, _F.c.state_type == run.state_type)
        .values(state_type=to.value, state_name=name, state_message=clean_text(message), **values)
    ).rowcount
    if not changed:
        return False
    state = {"run_id": run.id, "run_kind": "flow", "type": to.value, "name": name,
             "message": clean_text(message), "timestamp": now}
    conn.execute(_S.insert().values(**state))
    names = BatchRows(new_flows=[{"id": run.id, "flow_name": run.flow_name}], now=now)
    insert_event_params(conn, batch_event_params(names, states=[{**state, "flow_run_id": run.id}]))
    return True


def _as_dict(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    for key, value in out.items():
        if isinstance(value, datetime):
            out[key] = value.isoformat()
    return out


# -- pausing ----------------------------------------------------------------------------------
def record_pause(db: Database, flow_run_id: str, schema: dict[str, Any] | None, deadline: datetime) -> str:
    """Keep what a run about to pause waits for: the input's JSON schema (None: no input)
    and the time its pause ends; clears the input of an earlier resume. The engine calls this
    before it reports the run Paused, so a resume never sees a Paused run without them.

    Returns:
        The run's stored state type (nothing is changed when it is final).

    Raises:
        LookupError: No flow run with that id.
        DatabaseError: The database cannot be written.
    """
    with db.connect("write", write=True) as conn:
        run = _row(conn, flow_run_id)
        if run.state_type not in _FINAL:
            conn.execute(_F.update().where(_F.c.id == flow_run_id, _F.c.state_type.not_in(_FINAL)).values(
                pause_schema=clean_json(schema) if schema is not None else None,
                pause_deadline=deadline, resume_input=None,
            ))
        return str(run.state_type)


def pause_status(db: Database, flow_run_id: str) -> dict[str, Any]:
    """``{state_type, state_name, resume_input}`` of a flow run (the engine of a Paused run
    polls this: once it is no longer Paused, ``resume_input`` is what it was resumed with).

    Raises:
        LookupError: No flow run with that id.
        DatabaseError: The database cannot be read.
    """
    with db.connect() as conn:
        row = conn.execute(
            select(_F.c.state_type, _F.c.state_name, _F.c.resume_input).where(_F.c.id == flow_run_id)
        ).first()
    if row is None:
        raise _missing(flow_run_id)
    return {"state_type": row.state_type, "state_name": row.state_name, "resume_input": row.resume_input}


def resume_flow_run(db: Database, flow_run_id: str, input: dict[str, Any] | None = None) -> dict[str, Any]:  # noqa: A002
    """Resume a Paused run, with the input it waits for.

    The input is checked against the schema the run paused with; the run becomes Pending
    ("Resuming") with the input stored, and its engine goes on within a second or two.

    Returns:
        The flow run's row.

    Raises:
        LookupError: No flow run with that id.
        ValueError: The run is not paused (the message says "not paused"), or the input does
            not fit what it waits for (the message starts "input" and names the field).
        DatabaseError: The database cannot be written.
    """
    if input is not None and not isinstance(input, dict):
        raise ValueError(f"input must be a JSON object of the fields the run waits for, not {type(input).__name__}")
    with db.connect("write", write=True) as conn:
        run = _row(conn, flow_run_id)
        if run.state_type != _PAUSED:
            raise ValueError(f"flow run {flow_run_id} is not paused ({run.state_name}); only a Paused run can be "
                             "resumed")
        now = utcnow()
        if run.pause_deadline is not None and run.pause_deadline <= now:
            raise ValueError(f"flow run {flow_run_id} is not paused any more: its pause timed out at "
                             f"{run.pause_deadline.isoformat(timespec='seconds')} (its engine fails it)")
        schema = run.pause_schema
        if schema is None and input:
            raise ValueError(f"input given, but flow run {flow_run_id} waits for none (it paused without "
                             "wait_for_input); resume it without input")
        if schema is not None:
            problems = input_problems(schema, input if input is not None else {})
            if problems:
                title = schema.get("title") if isinstance(schema, dict) else None
                waits = f" (it waits for {title})" if isinstance(title, str) else ""
                raise ValueError(f"input does not fit what flow run {flow_run_id} waits for{waits}: "
                                 + "; ".join(problems))
        message = "resumed with input" if input else "resumed"
        if not _move(conn, run, StateType.PENDING, "Resuming", message,
                     resume_input=clean_json(input) if input is not None else None):
            raise ValueError(f"flow run {flow_run_id} is not paused any more (it changed while resuming); "
                             "look at it with `plait flow-run inspect`")
        return _as_dict(_row(conn, flow_run_id))


# -- retrying ---------------------------------------------------------------------------------
def retry_flow_run(db: Database, flow_run_id: str) -> dict[str, Any]:
    """Schedule a Failed or Crashed run again: same id, parameters, deployment and attempt
    count; due now. A worker claims it again when it has a deployment with a work pool (or
    its ``serve`` process does); otherwise run it from its ``entrypoint`` with
    ``PLAIT_FLOW_RUN_ID`` set (``plait flow-run retry`` does). Task runs that completed with
    a persisted result are not run again: the engine reuses their results.

    Returns:
        The flow run's row (Scheduled).

    Raises:
        LookupError: No flow run with that id.
        ValueError: The run is in another state (the message names it).
        DatabaseError: The database cannot be written.
    """
    with db.connect("write", write=True) as conn:
        run = _row(conn, flow_run_id)
        if run.state_type not in _RETRYABLE:
            raise ValueError(f"flow run {flow_run_id} is {run.state_name}; only a Failed or Crashed run can be "
                             "retried")
        now = utcnow()
        attempts = run.run_count or 0
        message = f"retry requested after attempt {attempts} ended {run.state_name}"
        if not _move(conn, run, StateType.SCHEDULED, "Scheduled", message, end_time=None,
                     expected_start_time=now, worker_id=None, claimed_at=None,
                     pause_schema=None, pause_deadline=None, resume_input=None):
            raise ValueError(f"flow run {flow_run_id} changed while it was being retried; look at it with "
                             "`plait flow-run inspect`")
        return _as_dict(_row(conn, flow_run_id))


# -- checking an input against a JSON schema ---------------------------------------------------
_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: not isinstance(v, bool) and (
        isinstance(v, int) or (isinstance(v, float) and math.isfinite(v) and v.is_integer())),
    "number": lambda v: not isinstance(v, bool) and isinstance(v, (int, float)),
}
_JSON_NAMES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
               int: "an integer", float: "a number"}


def _kind(value: Any) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _place(path: str) -> str:
    return f"field {path!r}" if path else "the input"


def input_problems(schema: dict[str, Any], value: Any) -> list[str]:
    """What is wrong with ``value`` for ``schema`` (a pydantic model's JSON schema), each
    naming the field (``field 'approver.email': ...``); empty when it fits."""
    problems: list[str] = []
    _check(schema, value, "", schema, problems, 0)
    return problems[:_MAX_PROBLEMS]


def _resolve(node: Any, root: dict[str, Any]) -> Any:
    seen = 0
    while isinstance(node, dict) and isinstance(node.get("$ref"), str) and seen < 20:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            return {}  # a reference elsewhere: nothing this check can follow
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        node = {**{k: v for k, v in node.items() if k != "$ref"}, **(target if isinstance(target, dict) else {})}
        seen += 1
    return node


def _check(node: Any, value: Any, path: str, root: dict[str, Any], out: list[str], depth: int) -> None:
    if len(out) >= _MAX_PROBLEMS or depth > 30:
        return
    node = _resolve(node, root)
    if not isinstance(node, dict):
        return
    for key in ("anyOf", "oneOf"):
        options = node.get(key)
        if isinstance(options, list) and options:
            _check_options(options, value, path, root, out, depth)
            return
    for sub in node.get("allOf") or []:
        _check(sub, value, path, root, out, depth + 1)
    if "const" in node and value != node["const"]:
        out.append(f"{_place(path)}: must be {node['const']!r}, not {value!r}")
        return
    if isinstance(node.get("enum"), list) and value not in node["enum"]:
        choices = ", ".join(repr(v) for v in node["enum"][:10])
        out.append(f"{_place(path)}: must be one of {choices}, not {value!r}")
        return
    names = _type_names(node)
    if names and not _type_fits(node, value):
        out.append(f"{_place(path)}: expected {' or '.join(names)}, got {_kind(value)}")
        return
    if isinstance(value, dict):
        _check_object(node, value, path, root, out, depth)
    elif isinstance(value, list):
        _check_array(node, value, path, root, out, depth)
    elif isinstance(value, str):
        _check_string(node, value, path, out)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_number(node, value, path, out)


def _check_options(options: list[Any], value: Any, path: str, root: dict[str, Any], out: list[str],
                   depth: int) -> None:
    """``anyOf``/``oneOf``: fine when one option fits; when exactly one option is of the
    value's type, what is wrong inside it; else which types would do."""
    tried: list[tuple[Any, list[str]]] = []
    for option in options:
        found: list[str] = []
        _check(option, value, path, root, found, depth + 1)
        if not found:
            return
        tried.append((option, found))
    same_type = [found for option, found in tried if _type_fits(_resolve(option, root), value)]
    if len(same_type) == 1:
        out.extend(same_type[0])
        return
    names = [t for option, _ in tried for t in _type_names(_resolve(option, root))]
    wanted = " or ".join(dict.fromkeys(names)) or "another shape"
    out.append(f"{_place(path)}: expected {wanted}, got {_kind(value)}")


def _type_names(node: Any) -> list[str]:
    types = node.get("type") if isinstance(node, dict) else None
    if isinstance(types, str):
        return [types]
    return [t for t in types if isinstance(t, str)] if isinstance(types, list) else []


def _type_fits(node: Any, value: Any) -> bool:
    names = _type_names(node)
    return bool(names) and any(_TYPES.get(t, _anything)(value) for t in names)


def _anything(value: Any) -> bool:
    return True


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check_object(node: dict[str, Any], value: dict[str, Any], path: str, root: dict[str, Any], out: list[str],
                  depth: int) -> None:
    found = node.get("properties")
    properties: dict[str, Any] = found if isinstance(found, dict) else {}
    for name in node.get("required") or []:
        if name not in value:
            out.append(f"{_place(_join(path, str(name)))}: is required")
    extra = node.get("additionalProperties", True)
    for key, item in value.items():
        if key in properties:
            _check(properties[key], item, _join(path, key), root, out, depth + 1)
        elif extra is False:
            known = ", ".join(sorted(properties)) or "none"
            out.append(f"{_place(_join(path, key))}: is not a field of it (its fields: {known})")
        elif isinstance(extra, dict):
            _check(extra, item, _join(path, key), root, out, depth + 1)


def _check_array(node: dict[str, Any], value: list[Any], path: str, root: dict[str, Any], out: list[str],
                 depth: int) -> None:
    if isinstance(node.get("minItems"), int) and len(value) < node["minItems"]:
        out.append(f"{_place(path)}: needs at least {node['minItems']} item(s), got {len(value)}")
    if isinstance(node.get("maxItems"), int) and len(value) > node["maxItems"]:
        out.append(f"{_place(path)}: takes at most {node['maxItems']} item(s), got {len(value)}")
    given = node.get("prefixItems")
    prefix: list[Any] = given if isinstance(given, list) else []
    for index, item in enumerate(value):
        sub = prefix[index] if index < len(prefix) else node.get("items")
        if isinstance(sub, dict):
            _check(sub, item, f"{path}[{index}]", root, out, depth + 1)


def _check_string(node: dict[str, Any], value: str, path: str, out: list[str]) -> None:
    if isinstance(node.get("minLength"), int) and len(value) < node["minLength"]:
        out.append(f"{_place(path)}: needs at least {node['minLength']} character(s)")
    if isinstance(node.get("maxLength"), int) and len(value) > node["maxLength"]:
        out.append(f"{_place(path)}: takes at most {node['maxLength']} character(s)")
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        try:
            if re.search(pattern, value) is None:
                out.append(f"{_place(path)}: does not match the pattern {pattern!r}")
        except re.error:
            pass  # a pattern Python does not read: the model itself checks it


def _check_number(node: dict[str, Any], value: float, path: str, out: list[str]) -> None:
    bounds = (("minimum", "at least"), ("maximum", "at most"), ("exclusiveMinimum", "more than"),
              ("exclusiveMaximum", "less than"))
    for key, words in bounds:
        bound = node.get(key)
        if not isinstance(bound, (int, float)) or isinstance(bound, bool):
            continue
        broken = {"minimum": value < bound, "maximum": value > bound, "exclusiveMinimum": value <= bound,
                  "exclusiveMaximum": value >= bound}[key]
        if broken:
            out.append(f"{_place(path)}: must be {words} {bound:g}, got {value:g}")
