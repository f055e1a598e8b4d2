"""The concurrency limits repository against real databases (SQLite file and PostgreSQL
server): idempotent saves, all-or-nothing acquisitions, stale slots of ended flow runs,
the rate bucket's arithmetic, reset and delete, and 8 threads racing for 2 slots."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from plait._store.concurrency import (
    CONCURRENCY_LIMITS,
    CONCURRENCY_SLOTS,
    acquire_slots,
    active_limits,
    delete_limit,
    get_limit,
    list_limits,
    release_slots,
    reset_limit,
    save_limit,
)
from plait._store.database import Database
from plait._store.events import list_events
from plait._store.models import FLOW_RUNS

HOLDER = {"hostname": "host-a", "pid": 4242, "label": "a test"}
T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def _slot_count(db: Database, name: str) -> int:
    with db.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(CONCURRENCY_SLOTS)
                               .where(CONCURRENCY_SLOTS.c.limit_name == name)) or 0)


def _flow_run(db: Database, state_type: str) -> str:
    """A stored flow run in ``state_type`` (written as the recorder writes one)."""
    run_id = str(uuid.uuid4())
    with db.engine.begin() as conn:
        conn.execute(insert(FLOW_RUNS).values(
            id=run_id, flow_name="etl", name=f"etl-{run_id[:8]}", parameters={}, tags=[], state_type=state_type,
            state_name=state_type.title(), created=datetime.now(UTC),
        ))
    return run_id


# -- save / get / list / events ----------------------------------------------------------------------
def test_save_is_created_then_unchanged_then_updated(database_url: str) -> None:
    db = Database.open(database_url)
    row, outcome = save_limit(db, "db", 2, description="the warehouse")
    assert outcome == "created"
    assert {k: row[k] for k in ("name", "limit", "slot_decay_per_second", "active", "description", "used",
                                "slots")} == {
        "name": "db", "limit": 2, "slot_decay_per_second": 0.0, "active": True, "description": "the warehouse",
        "used": 0.0, "slots": []}
    assert row["created"].tzinfo is not None and row["created"] == row["updated"]

    again, outcome = save_limit(db, "db", 2, description="the warehouse")
    assert outcome == "unchanged" and again["updated"] == row["updated"]
    changed, outcome = save_limit(db, "db", 3, slot_decay_per_second=0.5, description="the warehouse")
    assert outcome == "updated" and changed["limit"] == 3 and changed["slot_decay_per_second"] == 0.5
    assert changed["updated"] > row["updated"] and changed["created"] == row["created"]
    save_limit(db, "api", 10, slot_decay_per_second=5, active=False)

    assert [r["name"] for r in list_limits(db)] == ["api", "db"]
    assert all("slots" not in r and r["used"] == 0.0 for r in list_limits(db))
    assert get_limit(db, "db")["limit"] == 3  # type: ignore[index]
    assert get_limit(db, "nope") is None
    assert active_limits(db) == {"db": {"limit": 3, "slot_decay_per_second": 0.5}}

    events = list_events(db, kinds=["concurrency-limit.*"])["items"]
    assert [(e["kind"], e["resource"]) for e in events] == [
        ("concurrency-limit.created", "concurrency-limit/db"), ("concurrency-limit.updated", "concurrency-limit/db"),
        ("concurrency-limit.created", "concurrency-limit/api")]
    assert events[1]["payload"]["changed"] == ["limit", "slot_decay_per_second"]
    assert "description" not in events[0]["payload"]


@pytest.mark.parametrize(("args", "kwargs", "field"), [
    (("", 1), {}, "name"),
    (("a\nb", 1), {}, "name"),
    ((" db", 1), {}, "name"),
    (("x" * 201, 1), {}, "name"),
    (("db", -1), {}, "limit"),
    (("db", 1_000_001), {}, "limit"),
    (("db", True), {}, "limit"),
    (("db", 1.5), {}, "limit"),
    (("db", 1), {"slot_decay_per_second": -0.1}, "slot_decay_per_second"),
    (("db", 1), {"slot_decay_per_second": float("nan")}, "slot_decay_per_second"),
    (("db", 1), {"active": "yes"}, "active"),
    (("db", 1), {"description": 3}, "description"),
])
def test_malformed_values_are_refused_naming_the_field(database_url: str, args: tuple[Any, ...],
                                                       kwargs: dict[str, Any], field: str) -> None:
    db = Database.open(database_url)
    with pytest.raises(ValueError, match=field):
        save_limit(db, *args, **kwargs)
    assert list_limits(db) == []


def test_two_first_saves_at_once_make_one_limit(database_url: str) -> None:
    db = Database.open(database_url)
    outcomes: list[str] = []
    start = threading.Barrier(4)

    def save() -> None:
        start.wait()
        outcomes.append(save_limit(db, "db", 2)[1])

    threads = [threading.Thread(target=save) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["created", "unchanged", "unchanged", "unchanged"]


# -- acquiring ---------------------------------------------------------------------------------------
def test_acquire_is_all_or_nothing_over_two_names(database_url: str) -> None:
    db = Database.open(database_url)
    save_limit(db, "a", 1)
    save_limit(db, "b", 2)
    first = acquire_slots(db, ["a"], holder={**HOLDER, "label": "first"})
    assert first["acquired"] is True and len(first["slot_ids"]) == 1
    assert first["used"] == {"a": 1.0} and first["limits"] == {"a": 1} and first["missing"] == []

    blocked = acquire_slots(db, ["b", "a", "b"], holder=HOLDER)
    assert blocked == {"acquired": False, "slot_ids": [], "blocked_by": "a", "used": {"a": 1.0, "b": 0.0},
                       "limits": {"a": 1, "b": 2}, "missing": [], "retry_after": None}
    assert _slot_count(db, "b") == 0, "nothing of b was taken while a was full"

    assert release_slots(db, first["slot_ids"]) == 1
    both = acquire_slots(db, ("b", "a"), holder={**HOLDER, "flow_run_id": "f" * 36, "task_run_id": "t" * 36,
                                                 "label": "task run extract-3"})
    assert both["acquired"] is True and both["blocked_by"] is None
    assert both["used"] == {"a": 1.0, "b": 1.0} and len(set(both["slot_ids"])) == 2
    (slot,) = get_limit(db, "b")["slots"]  # type: ignore[index]
    assert slot["id"] == both["slot_ids"][1]  # in name order: a, b
    assert {k: slot[k] for k in ("limit_name", "occupy", "flow_run_id", "task_run_id", "hostname", "pid",
                                 "label")} == {
        "limit_name": "b", "occupy": 1, "flow_run_id": "f" * 36, "task_run_id": "t" * 36, "hostname": "host-a",
        "pid": 4242, "label": "task run extract-3"}
    assert slot["acquired_at"].tzinfo is not None
    assert get_limit(db, "b")["used"] == 1.0  # type: ignore[index]
    assert release_slots(db, both["slot_ids"]) == 2
    assert release_slots(db, both["slot_ids"]) == 0  # released already: ignored


def test_occupy_takes_several_slots_and_several_holders_fill_a_limit(database_url: str) -> None:
    db = Database.open(database_url)
    save_limit(db, "db", 5)
    three = acquire_slots(db, "db", 3, holder=HOLDER)
    assert three["acquired"] and three["used"] == {"db": 3.0}
    assert not acquire_slots(db, "db", 3, holder=HOLDER)["acquired"]
    two = acquire_slots(db, "db", 2, holder=HOLDER)
    assert two["acquired"] and two["used"] == {"db": 5.0}
    listed = {r["name"]: r["used"] for r in list_limits(db)}
    assert listed == {"db": 5.0}
    held = get_limit(db, "db")["slots"]  # type: ignore[index]
    assert [s["occupy"] for s in held] == [3, 2], "oldest first"


def test_names_without_a_limit_and_inactive_limits_constrain_nothing(database_url: str) -> None:
    db = Database.open(database_url)
    save_limit(db, "off", 0, active=False)
    save_limit(db, "db", 1)
    got = acquire_slots(db, ["nightly", "off", "db"], holder=HOLDER)
    assert got["acquired"] and got["missing"] == ["nightly"]
    assert got["limits"] == {"db": 1} and got["used"] == {"db": 1.0} and len(got["slot_ids"]) == 1
    free = acquire_slots(db, ["nightly", "off"], 7, holder=HOLDER)
    assert free == {"acquired": True, "slot_ids": [], "blocked_by": None, "used": {}, "limits": {},
                    "missing": ["nightly"], "retry_after": None}
    assert _slot_count(db, "off") == 0


def test_what_can_never_fit_and_malformed_acquisitions_are_refused(database_url: str) -> None:
    db = Database.open(database_url)
    save_limit(db, "db", 2)
    save_limit(db, "closed", 0)
    with pytest.raises(ValueError, match=r"can never fit.*plait concurrency-limit create db 3"):
        acquire_slots(db, ["db"], 3, holder=HOLDER)
    with pytest.raises(ValueError, match="can never fit"):
        acquire_slots(db, ["closed"], holder=HOLDER)
    with pytest.raises(ValueError, match=r"rate limit.*plait concurrency-limit create db 2 --per-second R"):
        acquire_slots(db, ["db"], mode="rate", holder=HOLDER)
    for bad, match in (
        ({"names": []}, "1 to 50"), ({"names": [f"n{i}" for i in range(51)]}, "1 to 50"),
        ({"names": ["db"], "occupy": 0}, "occupy"), ({"names": ["db"], "occupy": True}, "occupy"),
        ({"names": ["db"], "mode": "burst"}, "mode"), ({"names": ["db\x00"]}, "name"),
        ({"names": ["db"], "holder": {"pid": 1}}, "hostname"),
        ({"names": ["db"], "holder": {**HOLDER, "pod": 1}}, "pod"),
        ({"names": ["db"], "holder": {**HOLDER, "pid": "1"}}, "pid"),
        ({"names": ["db"], "holder": {**HOLDER, "flow_run_id": "x" * 37}}, "flow_run_id"),
    ):
        call: dict[str, Any] = {"holder": HOLDER, **bad}
        with pytest.raises(ValueError, match=match):
            acquire_slots(db, call.pop("names"), **call)
    assert _slot_count(db, "db") == 0


def test_slots_of_an_ended_flow_run_are_freed_on_the_next_acquire(database_url: str) -> None:
    db = Database.open(database_url)
    save_limit(db, "db", 3)
    crashed = _flow_run(db, "RUNNING")
    running = _flow_run(db, "RUNNING")
    unrecorded = str(uuid.uuid4())  # a recorder may not have written this run yet
    for run_id in (crashed, running, unrecorded):
        assert acquire_slots(db, "db", holder={**HOLDER, "flow_run_id": run_id})["acquired"]
    assert not acquire_slots(db, "db", holder=HOLDER)["acquired"]

    with db.engine.begin() as conn:  # the crash detector marked the first run Crashed
        table = FLOW_RUNS
        conn.execute(table.update().where(table.c.id == crashed).values(state_type="CRASHED", state_name="Crashed"))
    # a stale slot is no longer counted, even before an acquisition frees it
    assert get_limit(db, "db")["used"] == 2.0  # type: ignore[index]
    assert {s["flow_run_id"] for s in get_limit(db, "db")["slots"]} == {running, unrecorded}  # type: ignore[index]
    assert _slot_count(db, "db") == 3
    got = acquire_slots(db, "db", holder=HOLDER)
    assert got["acquired"] and got["used"] == {"db": 3.0}
    assert _slot_count(db, "db") == 3, "the crashed run's slot row was deleted, the new one inserted"
    with db.engine.connect() as conn:
        holders = set(conn.scalars(select(CONCURRENCY_SLOTS.c.flow_run_id)))
    assert holders == {running, unrecorded, None}


# -- rate limits ------------------------------------------------------------------------------------
def test_rate_bucket_arithmetic(database_url: str) -> None:
    db = Database.open(database_url)
    save_limit(db, "api", 5, slot_decay_per_second=10)  # 5 at once, then 10 per second
    for i in range(5):
        got = acquire_slots(db, "api", mode="rate", holder=HOLDER, now=T0)
        assert got["acquired"] and got["slot_ids"] == [] and got["used"] == {"api": float(i + 1)}
    full = acquire_slots(db, "api", mode="rate", holder=HOLDER, now=T0)
    assert not full["acquired"] and full["blocked_by"] == "api" and full["used"] == {"api": 5.0}
    assert full["retry_after"] == pytest.approx(0.1)
    assert _slot_count(db, "api") == 0, "a rate limit keeps no slot rows"

    # 50 ms later half a slot has drained: not yet; 100 ms later one has
    half = acquire_slots(db, "api", mode="rate", holder=HOLDER, now=T0 + timedelta(milliseconds=50))
    assert not half["acquired"] and half["used"]["api"] == pytest.approx(4.5)
    assert half["retry_after"] == pytest.approx(0.05)
    later = acquire_slots(db, "api", mode="rate", holder=HOLDER, now=T0 + timedelta(milliseconds=100))
    assert later["acquired"] and later["used"]["api"] == pytest.approx(5.0)
    # occupying 3 needs 3 drained: 0.3 s after the last
    three = acquire_slots(db, "api", 3, mode="rate", holder=HOLDER, now=T0 + timedelta(milliseconds=200))
    assert not three["acquired"] and three["retry_after"] == pytest.approx(0.2)
    assert acquire_slots(db, "api", 3, mode="rate", holder=HOLDER, now=T0 + timedelta(milliseconds=400))["acquired"]
    # long after, the bucket is empty (never below 0)
    empty = acquire_slots(db, "api", 5, mode="rate", holder=HOLDER, now=T0 + timedelta(hours=1))
    assert empty["acquired"] and empty["used"]["api"] == pytest.approx(5.0)
    # the held slots of a concurrency use count in the same limit
    assert acquire_slots(db, "api", 5, holder=HOLDER, now=T0 + timedelta(hours=2))["acquired"]
    held = acquire_slots(db, "api", mode="rate", holder=HOLDER, now=T0 + timedelta(hours=3))
    assert not held["acquired"] and held["used"]["api"] == pytest.approx(5.0)


def test_a_rate_limit_drains_in_real_time(database_url: str) -> None:
    db = Database.open(database_url)
    save_limit(db, "api", 2, slot_decay_per_second=20)
    took = 0
    start = time.monotonic()
    while took < 6:
        got = acquire_slots(db, "api", mode="rate", holder=HOLDER)
        if got["acquired"]:
            took += 1
        else:
            time.sleep(got["retry_after"])
    # 2 at once, then 4 more at 20 per second: at least 0.2 s
    assert time.monotonic() - start >= 0.19
    assert 0 < get_limit(db, "api")["used"] <= 2.0  # type: ignore[index]


# -- reset / delete ---------------------------------------------------------------------------------
def test_reset_frees_every_slot_and_empties_the_bucket(database_url: str) -> None:
    db = Database.open(database_url)
    save_limit(db, "db", 2, slot_decay_per_second=0.001)
    held = acquire_slots(db, "db", holder=HOLDER)["slot_ids"] + acquire_slots(db, "db", holder=HOLDER)["slot_ids"]
    assert not acquire_slots(db, "db", mode="rate", holder=HOLDER)["acquired"]
    assert reset_limit(db, "db") == 2
    assert get_limit(db, "db")["used"] == 0.0  # type: ignore[index]
    assert acquire_slots(db, "db", 2, mode="rate", holder=HOLDER)["acquired"]
    assert reset_limit(db, "db") == 0
    row = get_limit(db, "db")
    assert row is not None and row["level"] == 0.0 and row["level_at"] is None and row["used"] == 0.0
    assert release_slots(db, held) == 0
    with pytest.raises(LookupError, match="plait concurrency-limit create nope N"):
        reset_limit(db, "nope")
    events = list_events(db, kinds=["concurrency-limit.reset"])["items"]
    assert [e["payload"] for e in events] == [{"name": "db", "freed": 2}, {"name": "db", "freed": 0}]


def test_delete_takes_the_slots_with_it(database_url: str) -> None:
    db = Database.open(database_url)
    save_limit(db, "db", 2)
    slot_ids = acquire_slots(db, "db", holder=HOLDER)["slot_ids"]
    assert delete_limit(db, "db") is True
    assert delete_limit(db, "db") is False
    assert get_limit(db, "db") is None and _slot_count(db, "db") == 0
    assert release_slots(db, slot_ids) == 0
    # gone, the name constrains nothing
    assert acquire_slots(db, "db", 9, holder=HOLDER)["missing"] == ["db"]
    (event,) = list_events(db, kinds=["concurrency-limit.deleted"])["items"]
    assert event["payload"] == {"name": "db", "limit": 2, "freed": 1}
    with pytest.raises(ValueError, match="slot_ids"):
        release_slots(db, "not-a-list")
    with pytest.raises(ValueError, match="slot id"):
        release_slots(db, [None])  # type: ignore[list-item]


# -- the race ---------------------------------------------------------------------------------------
def test_eight_threads_never_hold_more_than_the_limit(database_url: str) -> None:
    db = Database.open(database_url)
    save_limit(db, "db", 2)
    seen: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)
    rounds = 4

    def holder(n: int) -> None:
        try:
            start.wait()
            taken = 0
            while taken < rounds:
                got = acquire_slots(db, ["db"], holder={**HOLDER, "label": f"thread {n}"})
                if not got["acquired"]:
                    time.sleep(0.005)
                    continue
                taken += 1
                seen.append(_slot_count(db, "db"))  # counted while this holder holds its slot
                time.sleep(0.02)
                assert release_slots(db, got["slot_ids"]) == 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=holder, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert len(seen) == 8 * rounds
    assert max(seen) == 2, f"never more than 2 held, and 2 reached: {sorted(seen)}"
    assert min(seen) >= 1
    assert _slot_count(db, "db") == 0
    with db.engine.connect() as conn:
        assert conn.scalar(select(CONCURRENCY_LIMITS.c.level).where(CONCURRENCY_LIMITS.c.name == "db")) == 0.0
