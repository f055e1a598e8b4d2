"""Schedules: cron, interval and rrule slots (DST included, with fixed times), their specs,
and the scheduler pass ``plan`` against real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from plait._store.database import Database
from plait._store.deployments import save_deployment, set_deployment_paused
from plait._store.models import FLOW_RUNS
from plait.exceptions import InvalidOptions, PlaitError
from plait.schedules import (
    CronSchedule,
    IntervalSchedule,
    InvalidSchedule,
    RRuleSchedule,
    Schedule,
    plan,
    schedule_from_spec,
)

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
# (zone, spring-forward day, fall-back day) in 2024
DST_DAYS = [
    ("America/New_York", (2024, 3, 10), (2024, 11, 3)),
    ("Europe/Berlin", (2024, 3, 31), (2024, 10, 27)),
]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def local_day(zone: str, day: tuple[int, int, int]) -> tuple[datetime, datetime]:
    """(just before local midnight, just before the next local midnight): a window holding
    exactly the slots of that local day."""
    tz = ZoneInfo(zone)
    start = datetime(*day, tzinfo=tz)
    end = datetime.combine(start.date() + timedelta(days=1), datetime.min.time(), tz)
    tick = timedelta(microseconds=1)
    return start.astimezone(UTC) - tick, end.astimezone(UTC) - tick


def local_clock(slots: list[datetime], zone: str) -> list[str]:
    return [s.astimezone(ZoneInfo(zone)).strftime("%H:%M%z") for s in slots]


# -- validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: CronSchedule("61 * * * *"), ["cron:", "'61 * * * *'", "not a valid cron"]),
        (lambda: CronSchedule("0 9 * *"), ["cron:", "4 fields", "5"]),
        (lambda: CronSchedule("0 0 9 * * *"), ["cron:", "6 fields", "IntervalSchedule"]),
        (lambda: CronSchedule("@fortnightly"), ["cron:", "alias", "@daily"]),
        (lambda: CronSchedule(""), ["cron:"]),
        (lambda: CronSchedule("0 0 30 2 *"), ["cron:", "'0 0 30 2 *'"]),
        (lambda: CronSchedule("0 9 * * *", timezone="Europe/Berln"), ["timezone:", "'Europe/Berln'", "'Europe/Berlin'"]),
        (lambda: CronSchedule("0 9 * * *", timezone="america/new_york"), ["timezone:", "'America/New_York'"]),
        (lambda: CronSchedule("0 9 * * *", timezone="Mars/Olympus"), ["timezone:", "not a known IANA time zone"]),
        (lambda: IntervalSchedule(0), ["interval:", "positive"]),
        (lambda: IntervalSchedule(-5.0), ["interval:", "positive"]),
        (lambda: IntervalSchedule(timedelta(seconds=-1)), ["interval:", "positive"]),
        (lambda: IntervalSchedule(True), ["interval:", "timedelta or a number"]),
        (lambda: IntervalSchedule("60"), ["interval:", "timedelta or a number"]),  # type: ignore[arg-type]
        (lambda: IntervalSchedule(float("nan")), ["interval:"]),
        (lambda: IntervalSchedule(60, anchor="2024-01-01"), ["anchor:"]),  # type: ignore[arg-type]
        (lambda: IntervalSchedule(60, timezone="Nowhere/Land"), ["timezone:"]),
        (lambda: RRuleSchedule("FREQ=DAILLY"), ["rrule:", "FREQ=DAILLY"]),
        (lambda: RRuleSchedule("BYHOUR=9"), ["rrule:", "no FREQ"]),
        (lambda: RRuleSchedule("FREQ=DAILY;BYHOUR=25"), ["rrule:", "BYHOUR=25"]),
        (lambda: RRuleSchedule("FREQ=DAILY;INTERVAL=two"), ["rrule:", "INTERVAL"]),
        (lambda: RRuleSchedule("FREQ=DAILY\nALARM:now"), ["rrule:", "unknown line 'ALARM'"]),
        (lambda: RRuleSchedule("DTSTART:2024-01-01\nFREQ=DAILY"), ["rrule:", "DTSTART", "YYYYMMDD"]),
        (lambda: RRuleSchedule("DTSTART:20240231T090000\nFREQ=DAILY"), ["rrule:", "not a real date"]),
        (
            lambda: RRuleSchedule("DTSTART;TZID=Europe/Berlin:20240101T090000\nRRULE:FREQ=DAILY", timezone="UTC"),
            ["rrule:", "TZID=Europe/Berlin", "timezone='Europe/Berlin'"],
        ),
        (lambda: RRuleSchedule("DTSTART:20240101T090000"), ["rrule:", "no RRULE"]),
        (lambda: RRuleSchedule("FREQ=DAILY;COUNT=3"), ["rrule:", "COUNT needs a DTSTART"]),
    ],
)
def test_invalid_schedules_name_the_field(make: Any, words: list[str]) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        make()
    message = str(caught.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert isinstance(caught.value, (InvalidOptions, PlaitError, ValueError))


def test_slots_refuse_naive_times_and_negative_limits() -> None:
    schedule = IntervalSchedule(60)
    with pytest.raises(InvalidSchedule, match="start must be timezone-aware"):
        schedule.slots(datetime(2024, 1, 1), utc(2024, 1, 2), 10)
    with pytest.raises(InvalidSchedule, match="end must be timezone-aware"):
        schedule.slots(utc(2024, 1, 1), datetime(2024, 1, 2), 10)
    with pytest.raises(InvalidSchedule, match="limit"):
        schedule.slots(utc(2024, 1, 1), utc(2024, 1, 2), -1)


def test_schedules_are_frozen_values() -> None:
    cron = CronSchedule("0  9 * *   *", timezone="Europe/Berlin")
    assert cron == CronSchedule("0 9 * * *", timezone="Europe/Berlin")
    assert cron.cron == "0 9 * * *"  # whitespace normalised
    assert len({cron, CronSchedule("0 9 * * *", "Europe/Berlin"), IntervalSchedule(60)}) == 2
    with pytest.raises(AttributeError):
        cron.cron = "0 10 * * *"  # type: ignore[misc]
    assert IntervalSchedule(90).interval == timedelta(seconds=90)
    assert all(isinstance(s, Schedule) for s in (cron, IntervalSchedule(1), RRuleSchedule("FREQ=DAILY")))


# -- the window ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "schedule",
    [CronSchedule("*/10 * * * *"), IntervalSchedule(600), RRuleSchedule("FREQ=MINUTELY;INTERVAL=10")],
    ids=["cron", "interval", "rrule"],
)
def test_slots_are_after_start_up_to_and_including_end(schedule: Schedule) -> None:
    start, end = utc(2024, 5, 1, 12, 0), utc(2024, 5, 1, 13, 0)
    slots = schedule.slots(start, end, 100)
    assert slots == [utc(2024, 5, 1, 12, 10) + timedelta(minutes=10 * i) for i in range(6)]
    assert all(s.tzinfo is UTC for s in slots)
    assert schedule.slots(start, end, 2) == slots[:2]
    assert schedule.slots(start, end, 0) == []
    assert schedule.slots(end, start, 10) == []
    # a start given in another zone is the same instant
    assert schedule.slots(start.astimezone(BERLIN), end.astimezone(NEW_YORK), 100) == slots


def test_split_windows_give_the_same_slots_across_dst() -> None:
    """(a, c] is (a, b] followed by (b, c], wherever b falls (inside gaps and repeated
    hours too), for every kind and zone: the margin around wall-clock windows is enough."""
    rng = random.Random(10)
    schedules: list[Schedule] = []
    for zone in ("America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kolkata"):
        schedules += [
            CronSchedule("*/20 * * * *", zone),
            CronSchedule("30 1,2 * * *", zone),
            RRuleSchedule("FREQ=HOURLY;BYMINUTE=15,45", zone),
            RRuleSchedule("FREQ=DAILY;BYHOUR=2;BYMINUTE=30", zone),
            IntervalSchedule(timedelta(days=1), anchor=datetime(2023, 1, 1, 2, 30), timezone=zone),
            IntervalSchedule(timedelta(minutes=50), timezone=zone),
        ]
    for schedule in schedules:
        for first, last in ((utc(2024, 3, 9), utc(2024, 3, 12)), (utc(2024, 10, 25), utc(2024, 11, 5))):
            whole = schedule.slots(first, last, 10_000)
            assert whole == sorted(set(whole)) and all(first < s <= last for s in whole)
            middle = first + timedelta(seconds=rng.randrange(int((last - first).total_seconds())))
            assert schedule.slots(first, middle, 10_000) + schedule.slots(middle, last, 10_000) == whole, schedule
            for limit in (1, 7):
                assert schedule.slots(middle, last, limit) == [s for s in whole if s > middle][:limit]


# -- DST: wall-clock schedules --------------------------------------------------------------------
def _daily_0230(zone: str) -> list[Schedule]:
    return [
        CronSchedule("30 2 * * *", timezone=zone),
        RRuleSchedule("FREQ=DAILY;BYHOUR=2;BYMINUTE=30", timezone=zone),
        IntervalSchedule(timedelta(days=1), anchor=datetime(2024, 1, 1, 2, 30), timezone=zone),
    ]


@pytest.mark.parametrize(("zone", "spring", "fall"), DST_DAYS)
def test_a_daily_0230_job_runs_once_on_both_dst_days(zone: str, spring: tuple[int, int, int], fall: tuple[int, int, int]) -> None:
    tz = ZoneInfo(zone)
    for schedule in _daily_0230(zone):
        # spring forward: 02:30 does not exist; the run is at 03:30 local (moved by the gap)
        on_spring = schedule.slots(*local_day(zone, spring), 100)
        assert len(on_spring) == 1, schedule
        assert on_spring[0].astimezone(tz).strftime("%H:%M") == "03:30"
        assert on_spring[0] == datetime(*spring, 3, 30, tzinfo=tz).astimezone(UTC)
        # fall back: 02:30 (Berlin) or the test's hour happens twice; the run is the first one
        on_fall = schedule.slots(*local_day(zone, fall), 100)
        assert len(on_fall) == 1, schedule
        assert on_fall[0].astimezone(tz).strftime("%H:%M") == "02:30"
        # the days before are untouched
        for day in (spring, fall):
            before = datetime(*day) - timedelta(days=1)
            (slot,) = schedule.slots(*local_day(zone, (before.year, before.month, before.day)), 100)
            assert slot.astimezone(tz).strftime("%H:%M") == "02:30"


def test_fall_back_daily_job_in_the_repeated_hour_runs_at_its_first_occurrence() -> None:
    # New York repeats 01:00-02:00 on 2024-11-03: 01:30 EDT (05:30Z), then 01:30 EST (06:30Z)
    for schedule in (
        CronSchedule("30 1 * * *", "America/New_York"),
        RRuleSchedule("FREQ=DAILY;BYHOUR=1;BYMINUTE=30", "America/New_York"),
        IntervalSchedule(timedelta(days=1), anchor=datetime(2024, 11, 1, 1, 30), timezone="America/New_York"),
    ):
        assert schedule.slots(*local_day("America/New_York", (2024, 11, 3)), 100) == [utc(2024, 11, 3, 5, 30)]
    # Berlin repeats 02:00-03:00 on 2024-10-27: 02:30 CEST is 00:30Z
    for berlin in _daily_0230("Europe/Berlin"):
        assert berlin.slots(*local_day("Europe/Berlin", (2024, 10, 27)), 100) == [utc(2024, 10, 27, 0, 30)]


@pytest.mark.parametrize(("zone", "spring", "fall"), DST_DAYS)
def test_an_hourly_job_runs_every_real_hour(zone: str, spring: tuple[int, int, int], fall: tuple[int, int, int]) -> None:
    for schedule in (
        CronSchedule("0 * * * *", zone),
        CronSchedule("@hourly", zone),
        RRuleSchedule("FREQ=HOURLY", zone),
        IntervalSchedule(timedelta(hours=1), timezone=zone),
    ):
        on_spring = schedule.slots(*local_day(zone, spring), 100)
        on_fall = schedule.slots(*local_day(zone, fall), 100)
        assert (len(on_spring), len(on_fall)) == (23, 25), schedule
        for day in (on_spring, on_fall):  # one real hour apart, every one of them
            assert {b - a for a, b in pairwise(day)} == {timedelta(hours=1)}, schedule
    repeated = local_clock(CronSchedule("0 * * * *", zone).slots(*local_day(zone, fall), 100), zone)
    hour = "01" if zone == "America/New_York" else "02"
    assert [c for c in repeated if c.startswith(hour)] == (
        ["01:00-0400", "01:00-0500"] if hour == "01" else ["02:00+0200", "02:00+0100"]
    )


def test_quarter_hourly_cron_across_dst() -> None:
    zone = "America/New_York"
    assert len(CronSchedule("*/15 * * * *", zone).slots(*local_day(zone, (2024, 3, 10)), 1000)) == 23 * 4
    assert len(CronSchedule("*/15 * * * *", zone).slots(*local_day(zone, (2024, 11, 3)), 1000)) == 25 * 4
    # a job for the skipped hour only: moved to 03:xx, where the clock allows it, once each
    assert local_clock(CronSchedule("0,30 2 * * *", zone).slots(*local_day(zone, (2024, 3, 10)), 10), zone) == [
        "03:00-0400",
        "03:30-0400",
    ]


def test_a_window_starting_inside_the_repeated_hour() -> None:
    hourly = CronSchedule("0 * * * *", "America/New_York")
    # 01:30 EDT (05:30Z) to 02:30 EST (07:30Z): 01:00 EST (06:00Z) and 02:00 EST (07:00Z)
    assert hourly.slots(utc(2024, 11, 3, 5, 30), utc(2024, 11, 3, 7, 30), 10) == [utc(2024, 11, 3, 6), utc(2024, 11, 3, 7)]


# -- intervals ------------------------------------------------------------------------------------
def test_interval_slots_start_at_the_anchor_and_keep_its_phase() -> None:
    schedule = IntervalSchedule(timedelta(minutes=45), anchor=utc(2024, 6, 1, 10, 7))
    assert schedule.slots(utc(2024, 6, 1), utc(2024, 6, 1, 12), 10) == [
        utc(2024, 6, 1, 10, 7), utc(2024, 6, 1, 10, 52), utc(2024, 6, 1, 11, 37)
    ]
    # start exactly on a slot: that slot is excluded, the next one comes
    assert schedule.slots(utc(2024, 6, 1, 10, 52), utc(2024, 6, 1, 12), 1) == [utc(2024, 6, 1, 11, 37)]
    # far later: the same phase, computed without walking from the anchor
    far = schedule.slots(utc(2030, 1, 1), utc(2030, 1, 1, 2), 10)
    assert all((s - schedule.effective_anchor()) % timedelta(minutes=45) == timedelta(0) for s in far)
    assert len(far) == 3


def test_interval_anchor_defaults_to_local_midnight_2020_and_naive_anchors_are_local() -> None:
    # Kolkata is UTC+05:30: hourly slots fall at hh:30 UTC
    hourly = IntervalSchedule(3600, timezone="Asia/Kolkata")
    assert [s.minute for s in hourly.slots(utc(2024, 1, 1), utc(2024, 1, 1, 3), 10)] == [30, 30, 30]
    assert hourly.effective_anchor() == datetime(2020, 1, 1, tzinfo=ZoneInfo("Asia/Kolkata")).astimezone(UTC)
    naive = IntervalSchedule(600, anchor=datetime(2024, 7, 1, 9, 0), timezone="Europe/Berlin")
    assert naive.anchor == utc(2024, 7, 1, 7, 0)
    assert naive == IntervalSchedule(600, anchor=utc(2024, 7, 1, 7, 0), timezone="Europe/Berlin")


def test_whole_day_intervals_keep_wall_clock_others_are_absolute() -> None:
    zone = "America/New_York"
    daily = IntervalSchedule(timedelta(days=1), anchor=datetime(2024, 3, 1, 9, 0), timezone=zone)
    assert daily.keeps_wall_clock
    week = daily.slots(utc(2024, 3, 7), utc(2024, 3, 14), 10)
    assert local_clock(week, zone) == ["09:00-0500"] * 3 + ["09:00-0400"] * 4  # DST began on the 10th
    every_two_days = IntervalSchedule(timedelta(days=2), anchor=datetime(2024, 10, 30, 9, 0), timezone=zone)
    assert local_clock(every_two_days.slots(utc(2024, 10, 29), utc(2024, 11, 6), 10), zone) == [
        "09:00-0400", "09:00-0400", "09:00-0500", "09:00-0500"
    ]
    # 25 hours is not whole days: an absolute duration, so the local clock time drifts by DST
    absolute = IntervalSchedule(timedelta(hours=25), anchor=datetime(2024, 3, 9, 9, 0), timezone=zone)
    assert not absolute.keeps_wall_clock
    slots = absolute.slots(utc(2024, 3, 9), utc(2024, 3, 12), 10)
    assert {b - a for a, b in pairwise(slots)} == {timedelta(hours=25)}
    assert local_clock(slots, zone) == ["09:00-0500", "11:00-0400", "12:00-0400"]


def test_slots_of_a_fine_schedule_far_from_its_start_are_fast() -> None:
    started = time.perf_counter()
    for schedule in (
        CronSchedule("* * * * *", "Europe/Berlin"),
        RRuleSchedule("FREQ=MINUTELY", "Europe/Berlin"),
        RRuleSchedule("DTSTART:20200101T000000\nRRULE:FREQ=SECONDLY;INTERVAL=7", "UTC"),
        IntervalSchedule(1, timezone="Europe/Berlin"),
    ):
        assert len(schedule.slots(utc(2031, 5, 5), utc(2031, 5, 6), 100)) == 100
    assert time.perf_counter() - started < 2.0


# -- rrules ---------------------------------------------------------------------------------------
def test_rrule_with_dtstart_exdate_and_utc_until() -> None:
    text = "\n".join([
        "DTSTART;TZID=Europe/Berlin:20240301T090000",
        "RRULE:FREQ=WEEKLY;BYDAY=MO,FR;UNTIL=20240401T070000Z",
        "EXDATE;TZID=Europe/Berlin:20240315T090000",
    ])
    schedule = RRuleSchedule(text, timezone="Europe/Berlin")
    slots = schedule.slots(utc(2024, 1, 1), utc(2025, 1, 1), 100)
    # Fridays and Mondays at 09:00 Berlin from 1 March, not 15 March, until 09:00 CEST on 1 April
    assert [s.astimezone(BERLIN).strftime("%a %d %H:%M") for s in slots] == [
        "Fri 01 09:00", "Mon 04 09:00", "Fri 08 09:00", "Mon 11 09:00", "Mon 18 09:00",
        "Fri 22 09:00", "Mon 25 09:00", "Fri 29 09:00", "Mon 01 09:00",
    ]


def test_rrule_count_counts_from_dtstart() -> None:
    schedule = RRuleSchedule("DTSTART:20240101T120000\nRRULE:FREQ=DAILY;INTERVAL=3;COUNT=4")
    assert schedule.slots(utc(2024, 1, 5), utc(2024, 12, 31), 100) == [utc(2024, 1, 7, 12), utc(2024, 1, 10, 12)]


def test_rrule_far_windows_match_dateutil_walking_from_dtstart() -> None:
    from dateutil.rrule import rrulestr

    for rule in ("FREQ=HOURLY;INTERVAL=5;BYMINUTE=10", "FREQ=WEEKLY;INTERVAL=3;BYDAY=TU,SU;BYHOUR=7",
                 "FREQ=DAILY;INTERVAL=4;BYSETPOS=-1;BYHOUR=1,6,20", "FREQ=MONTHLY;BYMONTHDAY=-1;BYHOUR=23"):
        mine = RRuleSchedule(f"DTSTART:20210105T031500\nRRULE:{rule}").slots(utc(2027, 2, 1), utc(2027, 8, 1), 1000)
        expected = rrulestr(rule, dtstart=datetime(2021, 1, 5, 3, 15, tzinfo=UTC)).between(
            utc(2027, 2, 1), utc(2027, 8, 1), inc=True
        )
        assert mine == expected and mine, rule


# -- specs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "schedule",
    [
        CronSchedule("30 2 * * 1-5", timezone="America/New_York"),
        IntervalSchedule(timedelta(minutes=90), anchor=utc(2024, 2, 3, 4, 5, 6), timezone="Europe/Berlin"),
        IntervalSchedule(0.25),
        RRuleSchedule("DTSTART:20240101T090000\nRRULE:FREQ=DAILY;BYHOUR=9", timezone="Asia/Tokyo"),
    ],
    ids=["cron", "interval", "interval-default-anchor", "rrule"],
)
def test_specs_round_trip(schedule: Schedule) -> None:
    spec = schedule.to_spec()
    assert set(spec) == {"kind", "cron", "interval_seconds", "anchor", "rrule", "timezone"}
    assert spec["kind"] == schedule.kind
    again = schedule_from_spec({**spec, "id": "x", "active": False, "parameters": {"a": 1}, "position": 0})
    assert again == schedule
    window = (utc(2024, 5, 1), utc(2024, 5, 4))
    assert again.slots(*window, 50) == schedule.slots(*window, 50)


def test_spec_values_and_wire_forms() -> None:
    assert CronSchedule("0 9 * * *").to_spec() == {
        "kind": "cron", "cron": "0 9 * * *", "interval_seconds": None, "anchor": None, "rrule": None, "timezone": "UTC",
    }
    interval = IntervalSchedule(timedelta(hours=2), anchor=datetime(2024, 1, 1, 9), timezone="Europe/Berlin")
    assert interval.to_spec()["interval_seconds"] == 7200.0
    assert interval.to_spec()["anchor"] == utc(2024, 1, 1, 8)
    # the anchor arrives as an ISO string over the API, naive from some stores (read as UTC)
    for anchor in ("2024-01-01T08:00:00+00:00", "2024-01-01T09:00:00+01:00", datetime(2024, 1, 1, 8)):
        spec = {"kind": "interval", "interval_seconds": 7200, "anchor": anchor, "timezone": "Europe/Berlin"}
        assert schedule_from_spec(spec) == interval
    assert schedule_from_spec({"kind": "cron", "cron": "0 9 * * *", "timezone": None}).timezone == "UTC"


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"kind": "weekly"}, ["kind:", "'weekly'", "'cron'"]),
        ({}, ["kind:", "None"]),
        ({"kind": "cron"}, ["cron:", "needs 'cron'"]),
        ({"kind": "interval", "interval_seconds": None}, ["interval_seconds:"]),
        ({"kind": "rrule", "rrule": None}, ["rrule:"]),
        ({"kind": "interval", "interval_seconds": 60, "anchor": "yesterday"}, ["anchor:", "ISO 8601"]),
        ({"kind": "cron", "cron": "0 9 * * *", "timezone": "Moon/Base"}, ["timezone:"]),
    ],
)
def test_bad_specs_name_the_field(spec: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        schedule_from_spec(spec)
    for word in words:
        assert word in str(caught.value)


# -- the scheduler pass, on SQLite and PostgreSQL -----------------------------------------------------
@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database.open(database_url)
    yield database
    Database.dispose_all()


def _base_time() -> datetime:
    """A whole hour a week ahead: "future" for the store's own clock (re-planning deletes
    runs after the real now), fixed for the slots of a test."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=7)


def _deploy(db: Database, name: str, schedules: list[dict[str, Any]] | None, **values: Any) -> dict[str, Any]:
    spec = {"flow_name": "etl", "name": name, "entrypoint": "flows.py:etl", "schedules": schedules, **values}
    row, _ = save_deployment(db, spec)
    return row


def _runs(db: Database, deployment_id: str) -> list[dict[str, Any]]:
    runs = FLOW_RUNS
    with db.engine.connect() as conn:
        rows = conn.execute(
            select(runs).where(runs.c.deployment_id == deployment_id).order_by(runs.c.expected_start_time, runs.c.id)
        )
        return [dict(r._mapping) for r in rows]


def _slot_times(db: Database, deployment_id: str) -> list[datetime]:
    return [r["expected_start_time"].astimezone(UTC) for r in _runs(db, deployment_id)]


def test_plan_creates_one_run_per_slot_idempotently(db: Database) -> None:
    now = _base_time()
    hourly = IntervalSchedule(3600).to_spec() | {"parameters": {"b": 3}}
    off = CronSchedule("*/5 * * * *").to_spec() | {"active": False}
    row = _deploy(db, "hourly", [hourly, off], parameters={"a": 1, "b": 2}, tags=["nightly"])
    assert plan(db, now=now, horizon=timedelta(hours=6), max_runs=100) == 6
    runs = _runs(db, row["id"])
    assert [r["expected_start_time"].astimezone(UTC) for r in runs] == [now + timedelta(hours=h) for h in range(1, 7)]
    schedule_id = row["schedules"][0]["id"]
    for run in runs:
        assert (run["state_type"], run["state_name"], run["auto_scheduled"]) == ("SCHEDULED", "Scheduled", True)
        assert run["parameters"] == {"a": 1, "b": 3}  # the schedule's over the deployment's
        assert run["idempotency_key"] == f"schedule:{schedule_id}:{run['expected_start_time'].astimezone(UTC).isoformat()}"
        assert run["flow_name"] == "etl"
    # a second pass, and a pass a little later inside the same horizon, create nothing new
    assert plan(db, now=now, horizon=timedelta(hours=6), max_runs=100) == 0
    assert plan(db, now=now + timedelta(minutes=30), horizon=timedelta(hours=6), max_runs=100) == 0
    # the horizon moves on: one more slot
    assert plan(db, now=now + timedelta(hours=1), horizon=timedelta(hours=6), max_runs=100) == 1
    assert len(_runs(db, row["id"])) == 7


def test_plan_keeps_at_most_max_runs_in_the_future(db: Database) -> None:
    now = _base_time()
    row = _deploy(db, "capped", [IntervalSchedule(timedelta(minutes=10)).to_spec()])
    assert plan(db, now=now, horizon=timedelta(days=1), max_runs=5) == 5
    assert plan(db, now=now, horizon=timedelta(days=1), max_runs=5) == 0
    # 20 minutes later two slots are past (still Scheduled, no worker): two more are planned
    assert plan(db, now=now + timedelta(minutes=20), horizon=timedelta(days=1), max_runs=5) == 2
    assert _slot_times(db, row["id"]) == [now + timedelta(minutes=10 * i) for i in range(1, 8)]
    assert plan(db, now=now + timedelta(minutes=20), horizon=timedelta(days=1), max_runs=0) == 0


def test_plan_never_splits_slots_of_one_instant(db: Database) -> None:
    now = _base_time()
    row = _deploy(db, "twins", [CronSchedule("0 * * * *").to_spec(), IntervalSchedule(3600).to_spec()])
    ids = [s["id"] for s in row["schedules"]]
    assert plan(db, now=now, horizon=timedelta(hours=10), max_runs=3) == 2  # 2 at +1 h; +2 h would split
    assert plan(db, now=now, horizon=timedelta(hours=10), max_runs=3) == 2  # budget 1 < the group: whole group
    assert plan(db, now=now, horizon=timedelta(hours=10), max_runs=3) == 0
    keys = {r["idempotency_key"] for r in _runs(db, row["id"])}
    assert keys == {f"schedule:{i}:{(now + timedelta(hours=h)).isoformat()}" for i in ids for h in (1, 2)}


def test_plan_skips_paused_deployments_and_inactive_schedules(db: Database) -> None:
    now = _base_time()
    paused = _deploy(db, "paused", [IntervalSchedule(3600).to_spec()], paused=True)
    inactive = _deploy(db, "inactive", [IntervalSchedule(3600).to_spec() | {"active": False}])
    bare = _deploy(db, "bare", [])
    assert plan(db, now=now, horizon=timedelta(hours=3), max_runs=10) == 0
    assert _runs(db, paused["id"]) == _runs(db, inactive["id"]) == _runs(db, bare["id"]) == []
    set_deployment_paused(db, "etl/paused", False)
    assert plan(db, now=now, horizon=timedelta(hours=3), max_runs=10) == 3
    # pausing deletes the future runs; plan leaves it alone until it is resumed
    set_deployment_paused(db, "etl/paused", True)
    assert _runs(db, paused["id"]) == []
    assert plan(db, now=now, horizon=timedelta(hours=3), max_runs=10) == 0
    set_deployment_paused(db, "etl/paused", False)
    assert plan(db, now=now, horizon=timedelta(hours=3), max_runs=10) == 3


def test_changed_schedules_are_planned_afresh(db: Database) -> None:
    now = _base_time()
    row = _deploy(db, "changing", [IntervalSchedule(3600).to_spec()])
    assert plan(db, now=now, horizon=timedelta(hours=4), max_runs=10) == 4
    row = _deploy(db, "changing", [IntervalSchedule(7200, anchor=now + timedelta(minutes=30)).to_spec()])
    assert plan(db, now=now, horizon=timedelta(hours=4), max_runs=10) == 2
    assert _slot_times(db, row["id"]) == [now + timedelta(minutes=30), now + timedelta(minutes=150)]
    _deploy(db, "changing", [])
    assert plan(db, now=now, horizon=timedelta(hours=4), max_runs=10) == 0
    assert _runs(db, row["id"]) == []


def test_plan_stores_dst_slots_as_the_right_instants(db: Database) -> None:
    # a daily 02:30 New York job, planned across the spring-forward and fall-back nights of
    # the coming years (fixed future dates, so re-planning rules do not matter here)
    spring, fall = (2031, 3, 9), (2031, 11, 2)
    row = _deploy(db, "dst", [CronSchedule("30 2 * * *", "America/New_York").to_spec()])
    for day, expected in ((spring, utc(2031, 3, 9, 7, 30)), (fall, utc(2031, 11, 2, 7, 30))):
        start, end = local_day("America/New_York", day)
        assert plan(db, now=start, horizon=end - start, max_runs=10) == 1
        assert _slot_times(db, row["id"])[-1] == expected  # 03:30 EDT / 02:30 EST
    rrule = _deploy(db, "dst-rrule", [RRuleSchedule("FREQ=HOURLY", "Europe/Berlin").to_spec()])
    start, end = local_day("Europe/Berlin", (2031, 10, 26))
    assert plan(db, now=start, horizon=end - start, max_runs=100) == 25
    hours = _slot_times(db, rrule["id"])
    assert len(hours) == 25 and {b - a for a, b in pairwise(hours)} == {timedelta(hours=1)}


def test_plan_reads_its_defaults_from_settings(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    now = _base_time()
    row = _deploy(db, "defaults", [IntervalSchedule(600).to_spec()])
    monkeypatch.setenv("PLAIT_SCHEDULER_HORIZON", "3600")
    monkeypatch.setenv("PLAIT_SCHEDULER_MAX_RUNS", "4")
    assert plan(db, now=now) == 4
    assert _slot_times(db, row["id"])[-1] == now + timedelta(minutes=40)
    with pytest.raises(InvalidSchedule, match="now must be timezone-aware"):
        plan(db, now=datetime(2031, 1, 1))
    with pytest.raises(InvalidSchedule, match="horizon"):
        plan(db, now=now, horizon=-1)


def test_a_schedule_that_cannot_be_read_skips_only_its_deployment(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    now = _base_time()
    broken = _deploy(db, "broken", [{"kind": "cron", "cron": "every day at nine", "timezone": "UTC"}])
    fine = _deploy(db, "fine", [IntervalSchedule(3600).to_spec()])
    with caplog.at_level("WARNING", logger="plait.schedules"):
        assert plan(db, now=now, horizon=timedelta(hours=2), max_runs=10) == 2
    assert _runs(db, broken["id"]) == [] and len(_runs(db, fine["id"])) == 2
    assert "etl/broken" in caplog.text and "cron:" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="plait.schedules"):
        assert plan(db, now=now, horizon=timedelta(hours=2), max_runs=10) == 0
    assert "etl/broken" not in caplog.text  # said once, not at every pass


def test_plan_goes_through_every_page_of_deployments(db: Database) -> None:
    now = _base_time()
    for i in range(105):  # more than one page of list_deployments
        _deploy(db, f"many-{i:03}", [IntervalSchedule(3600).to_spec()])
    assert plan(db, now=now, horizon=timedelta(hours=1), max_runs=10) == 105
    assert plan(db, now=now, horizon=timedelta(hours=1), max_runs=10) == 0


def test_concurrent_passes_create_each_slot_once(db: Database) -> None:
    now = _base_time()
    row = _deploy(db, "raced", [IntervalSchedule(300).to_spec()])
    results: list[int] = []
    errors: list[BaseException] = []

    def one_pass() -> None:
        try:
            results.append(plan(db, now=now, horizon=timedelta(hours=2), max_runs=100))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=one_pass) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert sum(results) == 24
    assert _slot_times(db, row["id"]) == [now + timedelta(minutes=5 * i) for i in range(1, 25)]
