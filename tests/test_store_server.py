"""The store side of the plait server, on SQLite and PostgreSQL: keyset pages with cut large
fields, exactly-once batch ingestion, API keys kept as hashes, the events table, and the
migration of an existing store."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from pydantic import Field, SecretStr
from sqlalchemy import Table, func, inspect, select, text

from plait._batch import BatchRows
from plait._store import api_keys, events, history, ingest, pages
from plait._store._paging import LIST_LIMIT, PREVIEW_CHARS, encode_cursor
from plait._store.database import HEAD_REVISION, Database, _json_dumps, alembic_config
from plait._store.models import (
    API_KEYS,
    EVENTS,
    FLOW_RUNS,
    INGESTED_BATCHES,
    LOGS,
    STATES,
    TASK_RUNS,
)
from plait._store.runs import RunWriter, end_flow_runs, replay
from plait.blocks import Block
from plait.states import StateType

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database.open(database_url)
    yield database
    Database.dispose_all()


# -- rows as the recorder builds them ------------------------------------------------------------
def flow_row(run_id: str | None = None, *, created: datetime = T0, **values: Any) -> dict[str, Any]:
    state = values.pop("state", "COMPLETED")
    row = {
        "id": run_id or str(uuid.uuid4()), "flow_name": "etl", "name": "brave-otter", "parameters": {"day": 1},
        "tags": [], "state_type": state, "state_name": state.title(), "state_message": None,
        "parent_flow_run_id": None, "parent_task_run_id": None, "run_count": 1, "created": created,
        "start_time": created, "end_time": None if state == "RUNNING" else created + timedelta(seconds=2),
        "pid": 4242, "hostname": "host-a", "heartbeat_at": created, "heartbeat_interval": 5.0,
    }
    row.update(values)
    return row


def task_row(flow_run_id: str | None, *, created: datetime = T0, **values: Any) -> dict[str, Any]:
    state = values.pop("state", "COMPLETED")
    row = {
        "id": str(uuid.uuid4()), "flow_run_id": flow_run_id, "task_name": "extract", "task_key": "etl.extract",
        "name": "extract-0", "dynamic_key": 0, "parameters": {"n": 1}, "tags": [], "state_type": state,
        "state_name": state.title(), "state_message": None, "run_count": 1, "cache_key": None,
        "result_ref": None, "created": created, "start_time": created, "end_time": None if state == "RUNNING" else created,
    }
    row.update(values)
    return row


def state_rows(run: dict[str, Any], kind: str, types: tuple[str, ...] = ("PENDING", "RUNNING")) -> list[dict[str, Any]]:
    types = (*types, run["state_type"]) if run["state_type"] not in types else types
    owner = run["id"] if kind == "flow" else run["flow_run_id"]
    return [
        {"run_id": run["id"], "run_kind": kind, "flow_run_id": owner, "type": t, "name": t.title(),
         "message": None, "timestamp": run["created"] + timedelta(milliseconds=i)}
        for i, t in enumerate(types)
    ]


def log_row(flow_run_id: str | None, task_run_id: str | None = None, *, level: int = logging.INFO,
            message: str = "hello", at: datetime = T0) -> dict[str, Any]:
    return {"flow_run_id": flow_run_id, "task_run_id": task_run_id, "level": level, "logger": "plait.test",
            "message": message, "timestamp": at}


def batch(flows: list[dict[str, Any]] | None = None, tasks: list[dict[str, Any]] | None = None,
          **parts: Any) -> BatchRows:
    """A batch that inserts ``flows`` and ``tasks`` with their states (PENDING, RUNNING, own)."""
    flows, tasks = flows or [], tasks or []
    states = [s for f in flows for s in state_rows(f, "flow")] + [s for t in tasks for s in state_rows(t, "task")]
    return BatchRows(new_flows=flows, new_tasks=tasks, states=parts.pop("states", states), **parts)


def walk(page: Callable[..., dict[str, Any]], db: Database, **filters: Any) -> list[dict[str, Any]]:
    """Every item of a listing, following next_cursor; checks each page's size."""
    items: list[dict[str, Any]] = []
    cursor = None
    limit = filters.get("limit", 50)
    for _ in range(1000):
        got = page(db, cursor=cursor, **filters)
        assert 0 < len(got["items"]) <= limit or (not got["items"] and cursor is None)
        items += got["items"]
        cursor = got["next_cursor"]
        if cursor is None:
            return items
        assert len(got["items"]) == limit
    raise AssertionError("the listing never ended")


def table(model: Any) -> Table:
    return cast(Table, model)


def count(db: Database, model: Any) -> int:
    with db.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(model)) or 0)


# -- migration -----------------------------------------------------------------------------------
def test_the_server_revision_is_applied(db: Database) -> None:
    from alembic.script import ScriptDirectory

    revisions = {r.revision for r in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    assert "0005" in revisions and db.current_revision() == HEAD_REVISION
    with db.engine.connect() as conn:
        inspector = inspect(conn)
        assert {"events", "api_keys", "ingested_batches", "flow_run_tags"} <= set(inspector.get_table_names())
        index_names = {t: {ix["name"] for ix in inspector.get_indexes(t)} for t in ("flow_runs", "task_runs", "logs")}
    assert index_names["flow_runs"] == {
        "ix_flow_runs_created_id", "ix_flow_runs_flow_name_created_id", "ix_flow_runs_state_type_created_id",
        "ix_flow_runs_parent_flow_run_id_created_id",
        # 0007: claiming, a deployment's runs, one run per schedule slot
        "ix_flow_runs_work_pool_name_state_type_expected_start_time",
        "ix_flow_runs_deployment_id_state_type_expected_start_time", "ix_flow_runs_idempotency_key",
        "ix_flow_runs_deployment_id_created_id",
    }
    assert index_names["task_runs"] == {"ix_task_runs_flow_run_id_created_id", "ix_task_runs_created_id"}
    assert index_names["logs"] == {"ix_logs_flow_run_id_id", "ix_logs_task_run_id_id"}


def test_a_0004_store_with_history_is_upgraded_in_place(database_url: str) -> None:
    from alembic import command

    old = Database(database_url, migrate=False)
    with old.engine.connect() as conn:
        with conn.begin():
            command.upgrade(alembic_config(connection=conn), "0004")
    flow = flow_row(parameters={"day": "2024-01-01"}, state_message="done", tags=["nightly", "prod", "prod"])
    task = task_row(flow["id"])
    with old.engine.begin() as conn:
        assert not inspect(conn).has_table("events")
        # written as a 0004 plait wrote them: the run tables have not changed since
        conn.execute(table(FLOW_RUNS).insert(), [flow])
        conn.execute(table(TASK_RUNS).insert(), [task])
        conn.execute(table(STATES).insert(), [{k: v for k, v in s.items() if k != "flow_run_id"}
                                                  for s in state_rows(flow, "flow")])
        conn.execute(table(LOGS).insert(), [log_row(flow["id"], task["id"])])
    old.dispose()

    db = Database.open(database_url)  # migrates
    assert db.current_revision() == HEAD_REVISION
    listed = pages.page_flow_runs(db)["items"]
    assert [(r["id"], r["task_run_count"], r["parameters"], r["state_message"]) for r in listed] == [
        (flow["id"], 1, {"day": "2024-01-01"}, "done")
    ]
    assert [s["type"] for s in pages.get_flow_run_full(db, flow["id"])["states"]] == ["PENDING", "RUNNING", "COMPLETED"]
    assert [line["message"] for line in pages.page_logs(db, flow_run_id=flow["id"])["items"]] == ["hello"]
    assert [r["id"] for r in pages.page_flow_runs(db, tags=["prod", "nightly"])["items"]] == [flow["id"]]
    assert pages.page_flow_runs(db, tags=["other"])["items"] == []
    assert pages.page_flow_runs(db, tags=["prod", "other"])["items"] == []
    assert count(db, EVENTS) == 0  # history from before events has none
    with db.engine.connect() as conn:
        names = {ix["name"] for ix in inspect(conn).get_indexes("flow_runs")}
    assert "ix_flow_runs_created" not in names and "ix_flow_runs_created_id" in names
    RunWriter(db).write(batch([flow_row()]))  # and the upgraded store takes new history with events
    assert count(db, EVENTS) == 3


# -- flow run pages --------------------------------------------------------------------------------
def _history_of_runs(db: Database) -> list[dict[str, Any]]:
    """40 flow runs over three flows, four states, tags and subflows; created times repeat
    (three runs a second), so pages must break ties by id."""
    flows_ = ("etl", "report", "sync")
    states = ("COMPLETED", "FAILED", "RUNNING", "COMPLETED")
    rows: list[dict[str, Any]] = []
    for i in range(40):
        tags = (["nightly"] if i % 2 else []) + (["prod"] if i % 3 == 0 else [])
        rows.append(flow_row(created=T0 + timedelta(seconds=i // 3), flow_name=flows_[i % 3], state=states[i % 4],
                             tags=tags, parent_flow_run_id=rows[0]["id"] if i % 5 == 4 else None))
    writer = RunWriter(db)
    writer.write(batch(rows[:20]))
    writer.write(batch(rows[20:]))
    return rows


def _newest_first(rows: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in sorted(rows, key=lambda r: (r["created"], r["id"]), reverse=True)]


@pytest.mark.parametrize(
    ("filters", "keep"),
    [
        ({}, lambda r: True),
        ({"flow_names": ["etl"]}, lambda r: r["flow_name"] == "etl"),
        ({"flow_names": ["etl", "sync"]}, lambda r: r["flow_name"] in ("etl", "sync")),
        ({"states": ["failed"]}, lambda r: r["state_type"] == "FAILED"),
        ({"states": ["COMPLETED", "Running"]}, lambda r: r["state_type"] in ("COMPLETED", "RUNNING")),
        ({"tags": ["nightly"]}, lambda r: "nightly" in r["tags"]),
        ({"tags": ["nightly", "prod"]}, lambda r: {"nightly", "prod"} <= set(r["tags"])),
        ({"top_level": True}, lambda r: r["parent_flow_run_id"] is None),
        ({"top_level": False}, lambda r: r["parent_flow_run_id"] is not None),
        ({"since": T0 + timedelta(seconds=4), "until": T0 + timedelta(seconds=9)},
         lambda r: T0 + timedelta(seconds=4) <= r["created"] < T0 + timedelta(seconds=9)),
        ({"flow_names": ["report"], "states": ["completed"], "tags": ["nightly"]},
         lambda r: r["flow_name"] == "report" and r["state_type"] == "COMPLETED" and "nightly" in r["tags"]),
    ],
    ids=["all", "flow", "flows", "state", "states", "tag", "tags", "top-level", "subflows", "time", "combined"],
)
def test_keyset_pages_walk_every_flow_run_once_in_order(
    db: Database, filters: dict[str, Any], keep: Callable[[dict[str, Any]], bool]
) -> None:
    rows = _history_of_runs(db)
    expected = _newest_first([r for r in rows if keep(r)])
    assert expected  # every case selects something
    for limit in (1, 4, len(expected)):
        got = walk(pages.page_flow_runs, db, limit=limit, **filters)
        assert [r["id"] for r in got] == expected


def test_flow_run_items_carry_the_listing_fields(db: Database) -> None:
    rows = _history_of_runs(db)
    parent = rows[0]
    RunWriter(db).write(batch(tasks=[task_row(parent["id"]) for _ in range(3)]))
    subflows = walk(pages.page_flow_runs, db, parent_flow_run_id=parent["id"], limit=3)
    assert _newest_first([r for r in rows if r["parent_flow_run_id"] == parent["id"]]) == [r["id"] for r in subflows]
    item = next(r for r in walk(pages.page_flow_runs, db) if r["id"] == parent["id"])
    assert item["task_run_count"] == 3 and item["tags"] == ["prod"] and item["flow_name"] == "etl"
    assert item["created"] == T0.isoformat() and item["duration_seconds"] == 2.0
    assert set(item) == {
        "id", "flow_name", "name", "state_type", "state_name", "state_message", "parameters", "tags",
        "parent_flow_run_id", "parent_task_run_id", "run_count", "task_run_count", "created", "start_time",
        "end_time", "duration_seconds", "hostname", "pid", "expected_start_time", "deployment_id", "deployment_name",
        "work_pool_name", "worker_id",
    }
    json.dumps(item)  # JSON-safe as it is


def test_history_listing_counts_only_its_page(db: Database) -> None:
    rows = _history_of_runs(db)
    RunWriter(db).write(batch(tasks=[task_row(rows[-1]["id"]) for _ in range(2)] + [task_row(rows[0]["id"])]))
    listed = history.list_flow_runs(db, limit=100)
    assert [r["id"] for r in listed] == _newest_first(rows)
    counts = {r["id"]: r["task_run_count"] for r in listed}
    assert counts[rows[-1]["id"]] == 2 and counts[rows[0]["id"]] == 1 and sum(counts.values()) == 3


# -- task runs, logs, results ----------------------------------------------------------------------
def test_task_run_pages(db: Database) -> None:
    flows = [flow_row(created=T0 + timedelta(seconds=i)) for i in range(3)]
    tasks = [
        task_row(f["id"], created=f["created"] + timedelta(milliseconds=10 * (j // 2)), name=f"t-{j}",
                 task_name="load" if j % 3 == 0 else "extract", state="FAILED" if j % 4 == 1 else "COMPLETED")
        for f in flows for j in range(7)
    ]
    loose = task_row(None, created=T0 + timedelta(minutes=5))
    RunWriter(db).write(batch(flows, [*tasks, loose]))

    mine = [t for t in tasks if t["flow_run_id"] == flows[1]["id"]]
    in_order = [t["id"] for t in sorted(mine, key=lambda t: (t["created"], t["id"]))]
    assert [t["id"] for t in walk(pages.page_task_runs, db, flow_run_id=flows[1]["id"], limit=3)] == in_order
    every = sorted([*tasks, loose], key=lambda t: (t["created"], t["id"]), reverse=True)
    assert [t["id"] for t in walk(pages.page_task_runs, db, limit=5)] == [t["id"] for t in every]
    failed = [t["id"] for t in every if t["state_type"] == "FAILED"]
    assert [t["id"] for t in walk(pages.page_task_runs, db, states=["failed"], limit=2)] == failed
    loads = [t["id"] for t in sorted(mine, key=lambda t: (t["created"], t["id"])) if t["task_name"] == "load"]
    assert [t["id"] for t in walk(pages.page_task_runs, db, flow_run_id=flows[1]["id"], task_name="load")] == loads

    one = pages.get_task_run(db, mine[0]["id"])
    assert [s["type"] for s in one["states"]] == ["PENDING", "RUNNING", "COMPLETED"]
    assert one["parameters"] == {"n": 1} and one["flow_run_id"] == flows[1]["id"] and one["results"] == []
    with pytest.raises(LookupError, match="no task run"):
        pages.get_task_run(db, str(uuid.uuid4()))


def test_log_pages_oldest_first_with_filters(db: Database) -> None:
    a, b = flow_row(), flow_row()
    ta, tb = task_row(a["id"]), task_row(a["id"])
    lines = [log_row(a["id"], [None, ta["id"], tb["id"]][i % 3], level=[10, 20, 30, 40][i % 4], message=f"a-{i}")
             for i in range(17)]
    lines += [log_row(b["id"], message=f"b-{i}") for i in range(4)]
    RunWriter(db).write(batch([a, b], [ta, tb], logs=lines))

    got = walk(pages.page_logs, db, flow_run_id=a["id"], limit=4)
    assert [x["message"] for x in got] == [f"a-{i}" for i in range(17)]
    assert [x["id"] for x in got] == sorted(x["id"] for x in got)
    assert got[1]["task_name"] == "extract" and got[1]["task_run_id"] == ta["id"] and got[1]["level"] == "INFO"
    warnings = walk(pages.page_logs, db, flow_run_id=a["id"], min_level="warning", limit=2)
    assert [x["message"] for x in warnings] == [f"a-{i}" for i in range(17) if i % 4 >= 2]
    assert [x["message"] for x in walk(pages.page_logs, db, min_level=40)] == [f"a-{i}" for i in range(17) if i % 4 == 3]
    assert [x["message"] for x in walk(pages.page_logs, db, task_run_id=tb["id"], limit=3)] == [
        f"a-{i}" for i in range(17) if i % 3 == 2
    ]
    assert len(walk(pages.page_logs, db, limit=5)) == 21
    after = got[10]["id"]
    assert [x["message"] for x in pages.page_logs(db, flow_run_id=a["id"], after_id=after)["items"]] == [
        f"a-{i}" for i in range(11, 17)
    ]
    with pytest.raises(ValueError, match="unknown log level"):
        pages.page_logs(db, min_level="LOUD")


def test_result_pages(db: Database) -> None:
    f = flow_row()
    tasks = [task_row(f["id"]) for _ in range(3)]
    results = [
        {"task_run_id": tasks[i % 3]["id"], "storage": "file:///tmp/r", "path": f"r-{i}", "serializer": "pickle",
         "cache_key": "ck" if i % 2 else None, "expires_at": None, "created": T0}
        for i in range(7)
    ]
    RunWriter(db).write(batch([f], tasks, results=results))
    assert [r["path"] for r in walk(pages.page_results, db, limit=2)] == [f"r-{i}" for i in range(7)]
    assert [r["path"] for r in walk(pages.page_results, db, task_run_id=tasks[1]["id"])] == ["r-1", "r-4"]
    assert [r["path"] for r in walk(pages.page_results, db, cache_key="ck", limit=1)] == ["r-1", "r-3", "r-5"]
    assert [r["path"] for r in pages.get_task_run(db, tasks[0]["id"])["results"]] == ["r-0", "r-3", "r-6"]


# -- large fields ----------------------------------------------------------------------------------
def test_large_values_are_cut_in_lists_and_whole_on_get(db: Database) -> None:
    big = {"blob": "x" * 3000, "n": 1}
    message = "m" * (LIST_LIMIT + 500)
    at_limit = {"s": "y" * (LIST_LIMIT - len(_json_dumps({"s": ""})))}  # exactly LIST_LIMIT bytes
    f = flow_row(parameters=big, state_message=message)
    small = flow_row(parameters=at_limit, created=T0 - timedelta(seconds=1))
    t = task_row(f["id"], parameters=big, state_message=message)
    RunWriter(db).write(batch([f, small], [t], logs=[log_row(f["id"], t["id"], message="z" * 5000)]))

    marker = {"truncated": True, "size": len(_json_dumps(big).encode()), "preview": _json_dumps(big)[:PREVIEW_CHARS]}
    cut = "m" * LIST_LIMIT + "…[truncated 500 chars]"
    first, second = pages.page_flow_runs(db)["items"]
    assert first["parameters"] == marker and first["state_message"] == cut
    assert second["parameters"] == at_limit  # at the limit: whole
    task_item = pages.page_task_runs(db, flow_run_id=f["id"])["items"][0]
    assert task_item["parameters"] == marker and task_item["state_message"] == cut
    line = pages.page_logs(db)["items"][0]
    assert line["message"] == "z" * LIST_LIMIT + "…[truncated 3000 chars]"

    full = pages.get_flow_run_full(db, f["id"])
    assert full["parameters"] == big and full["state_message"] == message
    assert full["task_runs"][0]["parameters"] == big
    assert pages.get_task_run(db, t["id"])["parameters"] == big
    assert pages.get_task_run(db, t["id"])["state_message"] == message
    assert pages.get_log(db, line["id"])["message"] == "z" * 5000


def test_get_flow_run_full_wants_an_exact_id(db: Database) -> None:
    f = flow_row()
    RunWriter(db).write(batch([f], [task_row(f["id"])]))
    got = pages.get_flow_run_full(db, f["id"])
    assert got["id"] == f["id"] and len(got["task_runs"]) == 1 and got["task_runs"][0]["states"]
    for bad in (f["id"][:8], str(uuid.uuid4()), "", "x" * 500, "nul\x00id"):
        with pytest.raises(LookupError, match="no flow run"):
            pages.get_flow_run_full(db, bad)
    with pytest.raises(LookupError, match="no log line"):
        pages.get_log(db, 10**9)


# -- bad cursors and limits ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!", "", "x" * 2000, encode_cursor("logs", [3]), encode_cursor("flow-runs", ["late", "id"]),
        encode_cursor("flow-runs", [1]), encode_cursor("flow-runs", [10**30, "id"]),
        "WyJmbG93LXJ1bnMiLA",  # a cut-off cursor
    ],
    ids=["not-base64", "empty", "huge", "other-list", "wrong-types", "short", "out-of-range", "truncated"],
)
def test_a_bad_cursor_is_a_value_error(db: Database, cursor: str) -> None:
    with pytest.raises(ValueError, match="bad cursor"):
        pages.page_flow_runs(db, cursor=cursor)


def test_bad_cursors_and_limits_on_every_listing(db: Database) -> None:
    flow_cursor = encode_cursor("flow-runs", [0, "x"])
    calls: list[Callable[[], Any]] = [

        lambda: pages.page_task_runs(db, cursor=flow_cursor),
        lambda: pages.page_task_runs(db, flow_run_id="x", cursor=encode_cursor("task-runs", [0, "x"])),
        lambda: pages.page_logs(db, cursor=flow_cursor),
        lambda: pages.page_results(db, cursor=flow_cursor),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="bad cursor"):
            call()
    for limit in (0, -1, 1001, "5", True, 2.5):
        with pytest.raises(ValueError, match="limit must be"):
            pages.page_flow_runs(db, limit=limit)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown state"):
        pages.page_flow_runs(db, states=["DONE"])
    with pytest.raises(ValueError, match="since"):
        pages.page_flow_runs(db, since="yesterday")  # type: ignore[arg-type]


# -- ingestion -------------------------------------------------------------------------------------
def test_a_batch_sent_twice_is_stored_once_and_answered_alike(db: Database) -> None:
    f = flow_row(state="RUNNING")
    tasks = [task_row(f["id"]) for _ in range(4)]
    rows = batch([f], tasks, logs=[log_row(f["id"]), log_row(f["id"], tasks[0]["id"])])
    first = ingest.ingest_batch(db, "batch-1", rows)
    assert first == {"taken": [], "dropped": 0, "reason": "", "duplicate": False}
    stored = (count(db, STATES), count(db, LOGS), count(db, EVENTS))
    assert stored == (2 + 12, 2, 14 + 1)  # a running flow has two states so far
    again = ingest.ingest_batch(db, "batch-1", BatchRows.from_wire(rows.to_wire()))  # as a retry arrives
    assert again == {**first, "duplicate": True}
    assert (count(db, STATES), count(db, LOGS), count(db, EVENTS)) == stored
    assert count(db, INGESTED_BATCHES) == 1


def test_ingestion_answers_taken_runs_and_refused_records_the_same_on_retry(db: Database) -> None:
    f = flow_row(state="RUNNING")
    ingest.ingest_batch(db, "b-1", batch([f]))
    end_flow_runs(db, {f["id"]: "its process vanished"})  # crash detection ends it meanwhile
    later = dict(f, state_type="COMPLETED", state_name="Completed", expect="RUNNING")
    rows = BatchRows(old_flows=[later], new_tasks=[task_row(f["id"])],
                     states=state_rows(later, "flow", ()))
    first = ingest.ingest_batch(db, "b-2", rows)
    assert first["taken"] == [f["id"]] and not first["duplicate"]
    assert ingest.ingest_batch(db, "b-2", rows) == {**first, "duplicate": True}
    assert history.get_flow_run(db, f["id"])["state_type"] == "CRASHED"

    g = flow_row()
    bad = task_row(g["id"], run_count=2**70)  # no database takes this integer
    good = task_row(g["id"])
    rows = batch([g], [bad, good])
    first = ingest.ingest_batch(db, "b-3", rows)
    assert first["dropped"] == 1 and first["reason"] and first["taken"] == []
    stored = (count(db, TASK_RUNS), count(db, STATES), count(db, EVENTS))
    assert ingest.ingest_batch(db, "b-3", rows) == {**first, "duplicate": True}
    assert (count(db, TASK_RUNS), count(db, STATES), count(db, EVENTS)) == stored
    assert {t["id"] for t in history.get_flow_run(db, g["id"])["task_runs"]} == {good["id"]}


def test_the_same_batch_from_two_threads_at_once_is_stored_once(db: Database) -> None:
    f = flow_row()
    rows = batch([f], [task_row(f["id"]) for _ in range(20)])
    barrier = threading.Barrier(4)
    answers: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def send() -> None:
        barrier.wait()
        try:
            answers.append(ingest.ingest_batch(db, "racing", rows))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(a["duplicate"] for a in answers) == [False, True, True, True]
    assert count(db, TASK_RUNS) == 20 and count(db, STATES) == 3 + 60


def test_replayed_journals_are_remembered_too(db: Database) -> None:
    f = flow_row()
    rows = batch([f], [task_row(f["id"])], logs=[log_row(f["id"])])
    assert ingest.ingest_replay(db, "journal-1", rows)["duplicate"] is False
    stored = (count(db, STATES), count(db, EVENTS))
    assert ingest.ingest_replay(db, "journal-1", rows)["duplicate"] is True
    assert ingest.ingest_replay(db, "journal-2", rows)["duplicate"] is False  # replay itself is idempotent
    assert (count(db, STATES), count(db, EVENTS)) == stored


def test_the_recorders_own_rows_pass_the_ingestion_check(db: Database) -> None:
    from plait._recorder import _flow_row, _task_row
    from plait._runs import FlowRun, TaskRun, utcnow
    from plait.states import State

    run = FlowRun(id=str(uuid.uuid4()), flow_name="etl", name="n", parameters={}, state=State(StateType.PENDING))
    task = TaskRun(id=str(uuid.uuid4()), flow_run_id=run.id, task_name="t", task_key="m.t", name="t-0",
                   parameters={}, state=State(StateType.PENDING))
    flow, task_values = _flow_row(run, utcnow(), 5.0), _task_row(task)
    assert set(flow) == set(flow_row()) and set(task_values) == set(task_row(None))  # these tests' rows alike
    rows = batch([flow], [task_values])
    assert ingest.ingest_batch(db, "real-rows", BatchRows.from_wire(rows.to_wire()))["dropped"] == 0
    assert pages.get_flow_run_full(db, run.id)["task_runs"][0]["id"] == task.id


def test_malformed_batches_are_refused_and_leave_nothing(db: Database) -> None:
    f = flow_row()
    broken = dict(task_row(f["id"]))
    del broken["task_name"]
    with pytest.raises(ValueError, match="rows:"):
        ingest.ingest_batch(db, "b-x", batch([f], [broken], states=[]))
    with pytest.raises(ValueError, match="rows:"):
        ingest.ingest_batch(db, "b-x", batch([f], [{**task_row(f["id"]), "colour": "red"}], states=[]))
    assert count(db, FLOW_RUNS) == 0 and count(db, INGESTED_BATCHES) == 0
    assert ingest.ingest_batch(db, "b-x", batch([f]))["duplicate"] is False  # the id was never claimed
    for bad_id in ("", "  ", "x" * 200, "tab\there", 7):
        with pytest.raises(ValueError, match="batch_id"):
            ingest.ingest_batch(db, bad_id, batch([f]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rows"):
        ingest.ingest_batch(db, "b-y", {"new_flows": []})  # type: ignore[arg-type]


# -- API keys --------------------------------------------------------------------------------------
def _key_table(db: Database) -> str:
    with db.engine.connect() as conn:
        return repr([tuple(r) for r in conn.execute(select(API_KEYS))])


def test_api_keys_are_stored_as_hashes_only(db: Database) -> None:
    assert api_keys.api_keys_exist(db) is False
    record, key = api_keys.create_api_key(db, "ci", "run")
    assert key.startswith("plait_" + record["prefix"] + "_") and len(key) == 6 + 8 + 1 + 32
    assert record["scope"] == "run" and record["name"] == "ci" and "hash" not in record
    table = _key_table(db)
    secret = key[len("plait_") + 9:]  # after "plait_<prefix>_"
    assert key not in table and secret not in table
    assert hashlib.sha256(key.encode()).hexdigest() in table
    assert api_keys.api_keys_exist(db) is True

    checked = api_keys.verify_api_key(db, key)
    assert checked is not None and checked["name"] == "ci" and checked["scope"] == "run"
    listed = api_keys.list_api_keys(db)
    assert [k["name"] for k in listed] == ["ci"] and all("hash" not in k for k in listed)
    assert key not in json.dumps(listed) and key not in json.dumps(events.list_events(db))

    wrong_secret = key[:15] + ("A" if key[15] != "A" else "B") + key[16:]
    for bad in (wrong_secret, "plait_" + "0" * 8 + "_" + "x" * 32, key + "x", key[:-1], "", "Bearer " + key):
        assert api_keys.verify_api_key(db, bad) is None


def test_revoked_and_expired_keys_are_refused(db: Database) -> None:
    _, revoked = api_keys.create_api_key(db, "old", "admin")
    assert api_keys.revoke_api_key(db, "old") is True
    assert api_keys.verify_api_key(db, revoked) is None
    assert api_keys.revoke_api_key(db, "old") is False and api_keys.revoke_api_key(db, "nobody") is False
    assert api_keys.api_keys_exist(db) is True  # revoking the last key must not open the server

    record, expiring = api_keys.create_api_key(db, "soon", "read", expires_at=datetime.now(UTC) + timedelta(days=1))
    assert api_keys.verify_api_key(db, expiring) is not None
    keys = table(API_KEYS)
    with db.engine.begin() as conn:  # a day passes
        conn.execute(keys.update().where(keys.c.name == "soon").values(expires_at=datetime.now(UTC) - timedelta(1)))
    assert api_keys.verify_api_key(db, expiring) is None

    by_prefix, key = api_keys.create_api_key(db, "third", "read")
    assert api_keys.revoke_api_key(db, by_prefix["prefix"]) is True
    assert api_keys.verify_api_key(db, key) is None
    kinds = [e["kind"] for e in events.list_events(db, kinds=["api-key.*"])["items"]]
    assert kinds == ["api-key.created", "api-key.revoked", "api-key.created", "api-key.created", "api-key.revoked"]
    assert [k["revoked_at"] is not None for k in api_keys.list_api_keys(db)] == [True, False, True]


def test_api_key_last_use_is_written_at_most_once_a_minute(db: Database) -> None:
    _, key = api_keys.create_api_key(db, "worker", "run")
    assert api_keys.list_api_keys(db)[0]["last_used_at"] is None
    first = api_keys.verify_api_key(db, key)
    assert first is not None and first["last_used_at"] is not None
    stored = api_keys.list_api_keys(db)[0]["last_used_at"]
    assert stored is not None
    api_keys.verify_api_key(db, key)
    assert api_keys.list_api_keys(db)[0]["last_used_at"] == stored


def test_api_key_input_errors_are_clear(db: Database) -> None:
    api_keys.create_api_key(db, "ci", "read")
    with pytest.raises(ValueError, match="named 'ci' already exists"):
        api_keys.create_api_key(db, "ci", "admin")
    with pytest.raises(ValueError, match="unknown API key scope 'owner'; use one of: read, run, admin"):
        api_keys.create_api_key(db, "x", "owner")
    with pytest.raises(ValueError, match="not in the future"):
        api_keys.create_api_key(db, "x", "read", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    for name in ("", "   ", "x" * 101, "new\nline"):
        with pytest.raises(ValueError, match="name"):
            api_keys.create_api_key(db, name, "read")
    assert [k["name"] for k in api_keys.list_api_keys(db)] == ["ci"]


# -- events ----------------------------------------------------------------------------------------
def _all_events(db: Database, **filters: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after = filters.pop("after_seq", None)
    while True:
        got = events.list_events(db, after_seq=after, **filters)
        items += got["items"]
        if got["next_cursor"] is None:
            return items
        after = int(got["next_cursor"])


def test_state_changes_and_log_batches_become_events(db: Database) -> None:
    f = flow_row()
    t = task_row(f["id"], task_name="load")
    writer = RunWriter(db)
    writer.write(batch([f], [t], logs=[log_row(f["id"]), log_row(f["id"], t["id"]), log_row(None, t["id"])]))
    got = _all_events(db)
    assert [(e["kind"], e["resource"]) for e in got] == [
        *[("flow-run.state-changed", f"flow-run/{f['id']}")] * 3,
        *[("task-run.state-changed", f"task-run/{t['id']}")] * 3,
        ("logs.written", f"flow-run/{f['id']}"),
        ("logs.written", f"task-run/{t['id']}"),
    ]
    assert [e["seq"] for e in got] == sorted(e["seq"] for e in got) and len({e["id"] for e in got}) == len(got)
    assert got[0]["payload"] == {"flow_run_id": f["id"], "flow_name": "etl", "state_type": "PENDING",
                                 "state_name": "Pending"}
    assert got[5]["payload"] == {"task_run_id": t["id"], "flow_run_id": f["id"], "task_name": "load",
                                 "state_type": "COMPLETED", "state_name": "Completed"}
    assert got[0]["occurred"] == T0.isoformat()
    assert got[6]["payload"] == {"count": 2, "max_level": 20, "after_log_id": 0, "flow_run_id": f["id"]}
    assert got[7]["payload"]["task_run_id"] == t["id"] and got[7]["payload"]["flow_run_id"] is None
    assert events.event_rows_for_batch(batch([f], [t]))[5]["payload"] == got[5]["payload"]

    # a later batch's lines: exactly those after the event's pointer
    writer.write(BatchRows(logs=[log_row(f["id"], message="late-1"), log_row(f["id"], message="late-2")]))
    pointer = _all_events(db, kinds=["logs.written"])[-1]["payload"]
    assert pointer["count"] == 2
    new = pages.page_logs(db, flow_run_id=f["id"], after_id=pointer["after_log_id"])["items"]
    assert [x["message"] for x in new] == ["late-1", "late-2"]


def test_a_flow_run_recorded_by_plait_has_its_events(plait_env: str) -> None:
    from plait import flow, get_run_logger, task
    from plait._recorder import get_recorder

    @task
    def double(x: int) -> int:
        get_run_logger().info("doubling %s", x)
        return 2 * x

    @flow
    def pipeline() -> int:
        return sum(double(i) for i in range(3))

    assert pipeline() == 6
    get_recorder().flush()
    db = Database.open(plait_env)
    run = history.list_flow_runs(db)[0]
    full = pages.get_flow_run_full(db, run["id"])
    got = _all_events(db)
    flow_events = [e["payload"]["state_type"] for e in got if e["resource"] == f"flow-run/{run['id']}"
                   and e["kind"] == "flow-run.state-changed"]
    assert flow_events == [s["type"] for s in full["states"]]
    for task_run in full["task_runs"]:
        task_events = [e["payload"]["state_type"] for e in got if e["resource"] == f"task-run/{task_run['id']}"]
        assert task_events == [s["type"] for s in task_run["states"]]
    written = sum(e["payload"]["count"] for e in got if e["kind"] == "logs.written")
    assert written == len(history.get_logs(db, run["id"])) >= 3


def test_crashed_runs_and_replays_have_events(db: Database) -> None:
    f = flow_row(state="RUNNING")
    t = task_row(f["id"], state="RUNNING", task_name="slow")
    RunWriter(db).write(batch([f], [t]))
    seen = events.latest_seq(db)
    assert end_flow_runs(db, {f["id"]: "its process vanished"}, StateType.CRASHED) == [f["id"]]
    crashed = _all_events(db, after_seq=seen)
    assert [(e["kind"], e["payload"]["state_type"]) for e in crashed] == [
        ("flow-run.state-changed", "CRASHED"), ("task-run.state-changed", "CRASHED"),
    ]
    assert crashed[0]["payload"]["flow_name"] == "etl"
    assert crashed[1]["payload"] == {"task_run_id": t["id"], "flow_run_id": f["id"], "task_name": "slow",
                                     "state_type": "CRASHED", "state_name": "Crashed"}

    g = flow_row(tags=["replayed"])
    rows = batch([g], [task_row(g["id"])], logs=[log_row(g["id"])])
    seen = events.latest_seq(db)
    replay(db, rows)
    assert [r["id"] for r in pages.page_flow_runs(db, tags=["replayed"])["items"]] == [g["id"]]
    assert len(_all_events(db, after_seq=seen)) == 3 + 3 + 1
    seen = events.latest_seq(db)
    replay(db, rows)  # the same journal again: nothing new, no events
    assert _all_events(db, after_seq=seen) == []


class EventsTestBlock(Block):
    """A block whose saves and deletes the events test watches."""

    host: str = Field(description="Host.")
    token: SecretStr = Field(description="Token.")


def test_block_saves_and_deletes_become_events(plait_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLAIT_ENCRYPTION_KEY", raising=False)
    canary = f"canary-{uuid.uuid4().hex}"
    EventsTestBlock(host="a", token=SecretStr(canary)).save("ops")
    EventsTestBlock(host="b", token=SecretStr(canary)).save("ops", overwrite=True)
    EventsTestBlock.delete("ops")
    db = Database.open(plait_env)
    got = _all_events(db, kinds=["block.*"])
    slug = EventsTestBlock.block_type_slug
    assert [(e["kind"], e["resource"], e["payload"].get("action")) for e in got] == [
        ("block.saved", f"block/{slug}/ops", "created"),
        ("block.saved", f"block/{slug}/ops", "updated"),
        ("block.deleted", f"block/{slug}/ops", None),
    ]
    assert got[0]["payload"]["id"] == got[2]["payload"]["id"] and got[0]["payload"]["slug"] == slug
    assert canary not in json.dumps(got)


def test_event_filters(db: Database) -> None:
    kinds = ["block.saved", "block.deleted", "flow-run.state-changed"]
    resources = ["x/a_b/1", "x/aZb/2", "x/a%/3", "y/1"]
    for i in range(12):
        events.record_event(db, kinds[i % 3], resources[i % 4], {"i": i})
    everything = _all_events(db)
    assert [e["payload"]["i"] for e in everything] == list(range(12))
    assert [e["seq"] for e in everything] == sorted({e["seq"] for e in everything})
    assert [e["payload"]["i"] for e in _all_events(db, kinds=["block.saved"], limit=1)] == [0, 3, 6, 9]
    assert [e["payload"]["i"] for e in _all_events(db, kinds=["block.*"], limit=5)] == [
        i for i in range(12) if i % 3 != 2
    ]
    assert [e["payload"]["i"] for e in _all_events(db, kinds=["block.deleted", "flow-run.state-changed"])] == [
        i for i in range(12) if i % 3
    ]
    # a prefix is a prefix: "_" and "%" match only themselves
    assert [e["resource"] for e in _all_events(db, resource="x/a_")] == ["x/a_b/1"] * 3
    assert [e["resource"] for e in _all_events(db, resource="x/a%")] == ["x/a%/3"] * 3
    assert len(_all_events(db, resource="x/")) == 9 and len(_all_events(db, resource="y/1")) == 3
    middle = everything[5]["seq"]
    assert [e["payload"]["i"] for e in _all_events(db, after_seq=middle)] == list(range(6, 12))
    assert events.latest_seq(db) == everything[-1]["seq"]
    page = events.list_events(db, limit=5)
    assert len(page["items"]) == 5 and page["next_cursor"] == str(page["items"][-1]["seq"])
    now = datetime.now(UTC)
    assert len(_all_events(db, since=now - timedelta(minutes=5), until=now + timedelta(minutes=5))) == 12
    assert _all_events(db, until=now - timedelta(minutes=5)) == []
    for bad in (["Block.Saved"], ["block"], ["*"], [7]):
        with pytest.raises(ValueError, match="unknown event kind"):
            events.list_events(db, kinds=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="event kind"):
        events.record_event(db, "Nope", "x", {})
    with pytest.raises(ValueError, match="after_seq"):
        events.list_events(db, after_seq="3")  # type: ignore[arg-type]


def test_events_become_visible_in_seq_order(db: Database) -> None:
    """A reader that has seen event N never meets a smaller seq later: an event transaction
    that began after another's waits for it to commit before taking its numbers."""
    first = events.new_event("block.saved", "block/a/1", {})
    conn = db.engine.connect()
    try:
        conn.begin()
        events.insert_events(conn, [first])  # holds the events lock (SQLite: the write lock)
        done = threading.Event()

        def second_writer() -> None:
            events.record_event(db, "block.saved", "block/b/2", {})
            done.set()

        thread = threading.Thread(target=second_writer)
        thread.start()
        assert not done.wait(0.5)
        assert events.list_events(db)["items"] == []  # the second has not committed past the first
        conn.commit()
    finally:
        conn.close()
    thread.join(30)
    got = _all_events(db)
    assert [e["resource"] for e in got] == ["block/a/1", "block/b/2"]


# -- benchmarks stay runnable ----------------------------------------------------------------------
@pytest.mark.slow
def test_the_store_benchmarks_run_at_a_tiny_size(database_url: str) -> None:
    gen = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "store_gen.py"), "--url", database_url, "--flow-runs", "300"],
        capture_output=True, text=True, timeout=300,
    )
    assert gen.returncode == 0, gen.stderr
    db = Database.open(database_url)
    assert count(db, FLOW_RUNS) == 300 and count(db, TASK_RUNS) == 3000
    Database.dispose_all()
    latency = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "list_latency.py"), "--url", database_url, "--repeat", "5"],
        capture_output=True, text=True, timeout=300,
    )
    assert latency.returncode == 0, latency.stderr
    assert "page_flow_runs" in latency.stdout and "50 ms" in latency.stdout
    with Database(database_url).engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM events")).scalar() == 0
