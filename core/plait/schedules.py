"""Schedules: when a deployment's runs are due, and the scheduler pass that creates them.

Three kinds, each with an IANA timezone:

- ``CronSchedule("30 2 * * *", timezone="Europe/Berlin")``: a 5-field cron expression
  (croniter), read on the wall clock of the timezone.
- ``IntervalSchedule(timedelta(hours=1), anchor=..., timezone=...)``: every ``interval``
  from the anchor. An interval of whole days keeps the anchor's wall-clock time in the
  timezone; any other interval is an absolute duration (DST does not move it).
- ``RRuleSchedule("FREQ=WEEKLY;BYDAY=MO;BYHOUR=9", timezone=...)``: an RFC 5545 rule
  (python-dateutil), its times read on the wall clock of the timezone.

Wall-clock times meet daylight saving time like this (docs/schedules.md has examples):

- A time the clocks skip (02:30 on a spring-forward night in New York) is moved forward by
  the length of the gap (03:30 local): the run happens once, as soon after the intended
  moment as the clock allows. If that instant is a slot anyway, it is one run, not two.
- A time the clocks repeat (01:30 on a fall-back night in New York) runs once, at its first
  occurrence, unless the schedule fires every hour of the day (cron hour field ``*``, or an
  hourly-or-finer rrule without BYHOUR): such a schedule runs in both occurrences, so an
  hourly job runs every real hour (25 runs on that day, 23 on the spring-forward day).

``slots(start, end, limit)`` answers the slots ``t`` with ``start < t <= end``, as UTC
datetimes, earliest first, at most ``limit``. ``to_spec()`` and ``schedule_from_spec()``
convert to and from the ``deployment_schedules`` columns. ``plan(db)`` is the scheduler
pass: it creates the scheduled runs of every active schedule of every unpaused deployment.
"""

from __future__ import annotations

import abc
import difflib
import heapq
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from plait.exceptions import InvalidOptions

if TYPE_CHECKING:
    from plait._store.database import Database

__all__ = [
    "Schedule",
    "CronSchedule",
    "IntervalSchedule",
    "RRuleSchedule",
    "InvalidSchedule",
    "schedule_from_spec",
    "plan",
    "plan_deployment",
    "DEFAULT_ANCHOR",
]

logger = logging.getLogger("plait.schedules")

# Where interval schedules without an anchor and rrules without DTSTART start counting:
# midnight of 2020-01-01 on the wall clock of the schedule's timezone. A fixed point (not
# "now") keeps the slots of a schedule the same in every scheduler pass.
DEFAULT_ANCHOR = datetime(2020, 1, 1)
# How far a wall-clock time can land from where the plain offset puts it (a DST gap or a
# repeated hour; no zone has moved its clocks by more than this at once since 1970 apart from
# two date-line moves). Slots are searched this much beyond both ends of a window.
_DST_MARGIN = timedelta(hours=3)
_CRON_ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


class InvalidSchedule(InvalidOptions):
    """A schedule's field has a value plait cannot use; the message names the field."""


# -- time zones and the wall clock -----------------------------------------------------------
def _zone(name: object) -> ZoneInfo:
    """The ZoneInfo named ``name``, or an InvalidSchedule that suggests the right spelling."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidSchedule(f"timezone: give an IANA time zone name such as 'Europe/Berlin', not {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    known = available_timezones()
    exact = [zone for zone in known if zone.lower() == name.lower()]
    close = exact or difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else " Use e.g. 'UTC' or 'America/New_York'."
    raise InvalidSchedule(f"timezone: {name!r} is not a known IANA time zone.{hint}")


def _aware(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidSchedule(f"{what} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidSchedule(
            f"{what} must be timezone-aware (got naive {value.isoformat()}); pass e.g. datetime(..., tzinfo=UTC)"
        )
    return value.astimezone(UTC)


def _wall(instant: datetime, zone: tzinfo) -> datetime:
    """The naive wall-clock time of ``instant`` in ``zone``."""
    return instant.astimezone(zone).replace(tzinfo=None)


def _instant(wall: datetime, zone: tzinfo) -> datetime:
    """The UTC instant of a naive wall-clock time: the first occurrence of a repeated time;
    a skipped time moved forward by the gap (PEP 495's fold=0 does exactly this)."""
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _instants(wall: datetime, zone: tzinfo, *, every_hour: bool) -> tuple[datetime, ...]:
    """The instants a wall-clock slot runs at: one, or two for a repeated time of a
    schedule that fires every hour."""
    first = _instant(wall, zone)
    if every_hour:
        second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
        if second != first and _wall(second, zone) == wall:  # a repeated time, not a gap
            return (first, second)
    return (first,)


def _collect(
    walls: Iterator[datetime], zone: tzinfo, start: datetime, end: datetime, limit: int, *, every_hour: bool
) -> list[datetime]:
    """Sorted, distinct instants in (start, end] of ascending wall-clock times, at most limit.

    Wall order and instant order differ only around DST changes, by less than _DST_MARGIN:
    an instant is final once the wall clock has moved that far past it.
    """
    pending: list[datetime] = []
    seen: set[datetime] = set()
    found: list[datetime] = []
    for wall in walls:
        settled = _instant(wall, zone) - _DST_MARGIN
        while pending and pending[0] <= settled:
            found.append(heapq.heappop(pending))
            if len(found) >= limit:
                return found
        if settled > end:
            break
        for instant in _instants(wall, zone, every_hour=every_hour):
            if start < instant <= end and instant not in seen:
                seen.add(instant)
                heapq.heappush(pending, instant)
    while pending and len(found) < limit:
        found.append(heapq.heappop(pending))
    return found


def _window(start: datetime, end: datetime, limit: int) -> tuple[datetime, datetime]:
    start, end = _aware(start, "slots(): start"), _aware(end, "slots(): end")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidSchedule(f"slots(): limit must be a whole number >= 0, not {limit!r}")
    return start, end


# -- the schedules -----------------------------------------------------------------------------
class Schedule(abc.ABC):
    """What every schedule offers. Subclasses are frozen dataclasses."""

    kind: ClassVar[str]
    timezone: str

    @abc.abstractmethod
    def slots(self, start: datetime, end: datetime, limit: int = 1000) -> list[datetime]:
        """The slots ``t`` with ``start < t <= end``, earliest first.

        Args:
            start: Exclusive lower bound (timezone-aware).
            end: Inclusive upper bound (timezone-aware).
            limit: At most this many slots are returned (the earliest ones).

        Returns:
            UTC-aware datetimes, ascending, without duplicates.

        Raises:
            InvalidSchedule: start or end is naive, or limit is negative.
        """

    @abc.abstractmethod
    def to_spec(self) -> dict[str, Any]:
        """The ``deployment_schedules`` columns of this schedule: kind, cron,
        interval_seconds, anchor (UTC datetime or None), rrule and timezone."""

    def _spec(self, **values: Any) -> dict[str, Any]:
        spec: dict[str, Any] = dict.fromkeys(("cron", "interval_seconds", "anchor", "rrule"))
        return {"kind": self.kind, **spec, **values, "timezone": self.timezone}


@dataclass(frozen=True)
class CronSchedule(Schedule):
    """A cron expression on the wall clock of ``timezone``.

    Args:
        cron: Five fields (minute hour day-of-month month day-of-week), or one of @hourly,
            @daily, @midnight, @weekly, @monthly, @yearly, @annually.
        timezone: IANA time zone name the expression is read in.

    Raises:
        InvalidSchedule: The expression or the time zone is not valid (the message names it).
    """

    kind: ClassVar[str] = "cron"
    cron: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if not isinstance(self.cron, str) or not self.cron.strip():
            raise InvalidSchedule(f"cron: give a cron expression such as '0 9 * * *', not {self.cron!r}")
        expression = " ".join(self.cron.split())
        object.__setattr__(self, "cron", expression)
        _zone(self.timezone)
        fields = expression.split(" ")
        if expression.startswith("@"):
            if expression.lower() not in _CRON_ALIASES:
                aliases = ", ".join(_CRON_ALIASES)
                raise InvalidSchedule(f"cron: {self.cron!r} is not a known alias; use one of {aliases}")
        elif len(fields) != 5:
            raise InvalidSchedule(
                f"cron: {self.cron!r} has {len(fields)} fields; a cron expression has 5 (minute hour "
                "day-of-month month day-of-week), e.g. '30 2 * * *'. For seconds use IntervalSchedule."
            )
        from croniter import CroniterError, croniter

        try:
            croniter(expression, DEFAULT_ANCHOR).get_next(datetime)
        except CroniterError as exc:
            raise InvalidSchedule(f"cron: {self.cron!r} is not a valid cron expression ({exc})") from None

    def _every_hour(self) -> bool:
        from croniter import croniter

        return bool(croniter(self.cron, DEFAULT_ANCHOR).expanded[1] == ["*"])

    def _walls(self, after: datetime) -> Iterator[datetime]:
        from croniter import CroniterBadDateError, croniter

        iterator = croniter(self.cron, after)
        while True:
            try:
                yield iterator.get_next(datetime)
            except CroniterBadDateError:  # no further date (e.g. a leap day far away)
                return

    def slots(self, start: datetime, end: datetime, limit: int = 1000) -> list[datetime]:
        start, end = _window(start, end, limit)
        if limit == 0 or end <= start:
            return []
        zone = _zone(self.timezone)
        walls = self._walls(_wall(start, zone) - _DST_MARGIN)
        return _collect(walls, zone, start, end, limit, every_hour=self._every_hour())

    def to_spec(self) -> dict[str, Any]:
        return self._spec(cron=self.cron)


def _to_interval(value: object) -> timedelta:
    if isinstance(value, bool) or not isinstance(value, (timedelta, int, float)):
        raise InvalidSchedule(f"interval: give a timedelta or a number of seconds, not {value!r}")
    try:
        interval = value if isinstance(value, timedelta) else timedelta(seconds=value)
    except (OverflowError, ValueError):
        raise InvalidSchedule(f"interval: {value!r} seconds is not a usable duration") from None
    if interval <= timedelta(0):
        raise InvalidSchedule(f"interval: must be positive, got {value!r}; e.g. timedelta(minutes=10) or 600")
    return interval


@dataclass(frozen=True, init=False)
class IntervalSchedule(Schedule):
    """Every ``interval``, starting at ``anchor`` (the first slot is the anchor itself).

    An interval of whole days keeps the anchor's wall-clock time in ``timezone`` (a daily job
    at 09:00 stays at 09:00 across DST changes); any other interval is an absolute duration
    (an hourly job runs every 3600 s, whatever the clocks do).

    Args:
        interval: A timedelta, or seconds.
        anchor: The first slot. A naive datetime is read on the wall clock of ``timezone``;
            default: midnight of 2020-01-01 in ``timezone`` (``DEFAULT_ANCHOR``).
        timezone: IANA time zone name.

    Raises:
        InvalidSchedule: A non-positive interval, a bad anchor or an unknown time zone.
    """

    kind: ClassVar[str] = "interval"
    interval: timedelta
    anchor: datetime | None
    timezone: str

    def __init__(self, interval: timedelta | float, anchor: datetime | None = None, timezone: str = "UTC") -> None:
        zone = _zone(timezone)
        object.__setattr__(self, "interval", _to_interval(interval))
        if anchor is not None:
            if not isinstance(anchor, datetime):
                raise InvalidSchedule(f"anchor: give a datetime, not {anchor!r}")
            anchor = _instant(anchor, zone) if anchor.tzinfo is None else anchor.astimezone(UTC)
        object.__setattr__(self, "anchor", anchor)
        object.__setattr__(self, "timezone", timezone)

    @property
    def keeps_wall_clock(self) -> bool:
        """Whether slots keep the anchor's wall-clock time (the interval is whole days)."""
        return self.interval % timedelta(days=1) == timedelta(0)

    def effective_anchor(self) -> datetime:
        """The anchor as a UTC datetime (the default one when none was given)."""
        return self.anchor or _instant(DEFAULT_ANCHOR, _zone(self.timezone))

    def slots(self, start: datetime, end: datetime, limit: int = 1000) -> list[datetime]:
        start, end = _window(start, end, limit)
        if limit == 0 or end <= start:
            return []
        anchor = self.effective_anchor()
        if self.keeps_wall_clock:
            return self._wall_clock_slots(anchor, start, end, limit)
        step = 0 if start < anchor else (start - anchor) // self.interval + 1
        found: list[datetime] = []
        slot = anchor + step * self.interval
        while slot <= end and len(found) < limit:
            found.append(slot)
            step += 1
            slot = anchor + step * self.interval
        return found

    def _wall_clock_slots(self, anchor: datetime, start: datetime, end: datetime, limit: int) -> list[datetime]:
        zone = _zone(self.timezone)
        anchor_wall = _wall(anchor, zone)
        step = max(0, (_wall(start, zone) - _DST_MARGIN - anchor_wall) // self.interval)

        def walls() -> Iterator[datetime]:
            index = step
            while True:
                yield anchor_wall + index * self.interval
                index += 1

        return _collect(walls(), zone, start, end, limit, every_hour=False)

    def to_spec(self) -> dict[str, Any]:
        return self._spec(interval_seconds=self.interval.total_seconds(), anchor=self.anchor)


@dataclass(frozen=True)
class _Rule:
    """One RRULE or EXRULE line, its times already on the schedule's wall clock."""

    text: str  # the rule's parts, e.g. "FREQ=DAILY;BYHOUR=2"
    period: timedelta | None  # its fixed repeat period (None: months, years or COUNT)
    every_hour: bool


@dataclass(frozen=True)
class _ParsedRRule:
    dtstart: datetime
    rules: tuple[_Rule, ...]
    exrules: tuple[_Rule, ...]
    rdates: tuple[datetime, ...]
    exdates: tuple[datetime, ...]


_FIXED_PERIODS = {"SECONDLY": 1, "MINUTELY": 60, "HOURLY": 3600, "DAILY": 86400, "WEEKLY": 7 * 86400}
_DATE_TIME = re.compile(r"^(\d{8})(?:T(\d{6})(Z?))?$")


def _rrule_time(value: str, zone: tzinfo, what: str) -> datetime:
    """A DATE or DATE-TIME value of an rrule, as a naive wall-clock time in ``zone``
    (a UTC value, ending in Z, is converted)."""
    match = _DATE_TIME.match(value.strip())
    if not match:
        raise InvalidSchedule(f"rrule: {what} value {value!r} is not YYYYMMDD or YYYYMMDDTHHMMSS[Z]")
    day, clock, utc = match.groups()
    try:
        parsed = datetime.strptime(day + (clock or "000000"), "%Y%m%d%H%M%S")
    except ValueError:
        raise InvalidSchedule(f"rrule: {what} value {value!r} is not a real date and time") from None
    return _wall(parsed.replace(tzinfo=UTC), zone) if utc else parsed


def _parse_rule(value: str, zone: tzinfo) -> _Rule:
    parts: list[str] = []
    keys: dict[str, str] = {}
    for part in filter(None, value.strip().split(";")):
        key, sep, val = part.partition("=")
        key = key.strip().upper()
        if not sep:
            raise InvalidSchedule(f"rrule: {part!r} is not NAME=VALUE (in {value!r})")
        if key == "UNTIL":
            val = _rrule_time(val, zone, "UNTIL").strftime("%Y%m%dT%H%M%S")
        keys[key] = val.strip().upper()
        parts.append(f"{key}={val.strip()}")
    freq = keys.get("FREQ")
    if freq is None:
        raise InvalidSchedule(f"rrule: {value!r} has no FREQ; start with e.g. FREQ=DAILY")
    try:
        interval = int(keys.get("INTERVAL", "1"))
    except ValueError:
        raise InvalidSchedule(f"rrule: INTERVAL must be a whole number, not {keys['INTERVAL']!r}") from None
    fixed = freq in _FIXED_PERIODS and "COUNT" not in keys and interval > 0
    period = timedelta(seconds=_FIXED_PERIODS[freq] * interval) if fixed else None
    every_hour = freq in ("HOURLY", "MINUTELY", "SECONDLY") and "BYHOUR" not in keys
    return _Rule(";".join(parts), period, every_hour)


@lru_cache(maxsize=512)
def _parse_rrule(text: str, timezone: str) -> _ParsedRRule:
    """Parse an rrule text (lines DTSTART, RRULE, EXRULE, RDATE, EXDATE, or a bare
    ``FREQ=...`` rule) with every time on the wall clock of ``timezone``."""
    zone = _zone(timezone)
    dtstart: datetime | None = None
    rules: list[_Rule] = []
    exrules: list[_Rule] = []
    rdates: list[datetime] = []
    exdates: list[datetime] = []
    for line in filter(None, (line.strip() for line in text.splitlines())):
        if ":" not in line and "=" in line:  # a bare rule, e.g. "FREQ=DAILY;BYHOUR=9"
            line = "RRULE:" + line
        head, sep, value = line.partition(":")
        if not sep:
            raise InvalidSchedule(f"rrule: cannot read line {line!r}; write e.g. 'FREQ=DAILY;BYHOUR=9'")
        name, *params = (piece.strip() for piece in head.split(";"))
        name = name.upper()
        for param in params:
            pname, _, pvalue = param.partition("=")
            if pname.upper() == "TZID" and pvalue.lower() != timezone.lower():
                raise InvalidSchedule(
                    f"rrule: {name} has TZID={pvalue} but the schedule's timezone is {timezone!r}; pass "
                    f"timezone={pvalue!r} (times in the rule are read in the schedule's timezone)"
                )
        if name == "DTSTART":
            dtstart = _rrule_time(value, zone, "DTSTART")
        elif name in ("RRULE", "EXRULE"):
            (rules if name == "RRULE" else exrules).append(_parse_rule(value, zone))
        elif name in ("RDATE", "EXDATE"):
            times = [_rrule_time(v, zone, name) for v in value.split(",") if v.strip()]
            (rdates if name == "RDATE" else exdates).extend(times)
        else:
            raise InvalidSchedule(f"rrule: unknown line {name!r}; use DTSTART, RRULE, EXRULE, RDATE or EXDATE")
    if not rules and not rdates:
        raise InvalidSchedule(f"rrule: {text!r} has no RRULE (nor RDATE); write e.g. 'FREQ=DAILY;BYHOUR=9'")
    if dtstart is None and any(rule.period is None and ";COUNT=" in f";{rule.text.upper()}" for rule in rules):
        raise InvalidSchedule(
            "rrule: COUNT needs a DTSTART line (without one the rule counts from 2020-01-01 and its runs are "
            "long past); add e.g. 'DTSTART:20250101T090000'"
        )
    parsed = _ParsedRRule(dtstart or DEFAULT_ANCHOR, tuple(rules), tuple(exrules), tuple(rdates), tuple(exdates))
    _build_rruleset(parsed, None)  # let dateutil judge the rules now, not at the first slot
    return parsed


def _build_rruleset(parsed: _ParsedRRule, near: datetime | None) -> Any:
    """A dateutil rruleset of the parsed rule. With ``near``, each rule of a fixed period
    starts at the last whole period before ``near`` instead of DTSTART (the same
    occurrences from there on; iterating from 2020 each time would be slow)."""
    from dateutil.rrule import rruleset, rrulestr

    def build(rule: _Rule) -> Any:
        dtstart = parsed.dtstart
        if near is not None and rule.period is not None and near > dtstart:
            dtstart += ((near - dtstart) // rule.period) * rule.period
        try:
            return rrulestr(rule.text, dtstart=dtstart)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise InvalidSchedule(f"rrule: {rule.text!r} is not a valid recurrence rule ({exc})") from None

    rset = rruleset()
    for rule in parsed.rules:
        rset.rrule(build(rule))
    for rule in parsed.exrules:
        rset.exrule(build(rule))
    for when in parsed.rdates:
        rset.rdate(when)
    for when in parsed.exdates:
        rset.exdate(when)
    return rset


@dataclass(frozen=True)
class RRuleSchedule(Schedule):
    """An RFC 5545 recurrence rule on the wall clock of ``timezone``.

    Args:
        rrule: A rule such as ``"FREQ=WEEKLY;BYDAY=MO,FR;BYHOUR=9;BYMINUTE=0"``, optionally
            with ``RRULE:`` and further lines ``DTSTART:``, ``EXRULE:``, ``RDATE:``,
            ``EXDATE:``. Times in it are wall-clock times in ``timezone`` (values ending in
            ``Z`` are UTC and converted; a TZID must name ``timezone``). Without DTSTART the
            rule counts from midnight of 2020-01-01 in ``timezone``.
        timezone: IANA time zone name.

    Raises:
        InvalidSchedule: The rule or the time zone is not valid (the message names it).
    """

    kind: ClassVar[str] = "rrule"
    rrule: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if not isinstance(self.rrule, str) or not self.rrule.strip():
            raise InvalidSchedule(f"rrule: give a recurrence rule such as 'FREQ=DAILY;BYHOUR=9', not {self.rrule!r}")
        _zone(self.timezone)
        lines = (line.strip() for line in self.rrule.splitlines())
        object.__setattr__(self, "rrule", "\n".join(line for line in lines if line))
        _parse_rrule(self.rrule, self.timezone)

    def slots(self, start: datetime, end: datetime, limit: int = 1000) -> list[datetime]:
        start, end = _window(start, end, limit)
        if limit == 0 or end <= start:
            return []
        zone = _zone(self.timezone)
        parsed = _parse_rrule(self.rrule, self.timezone)
        after = _wall(start, zone) - _DST_MARGIN
        rset = _build_rruleset(parsed, after)
        every_hour = any(rule.every_hour for rule in parsed.rules)
        return _collect(rset.xafter(after), zone, start, end, limit, every_hour=every_hour)

    def to_spec(self) -> dict[str, Any]:
        return self._spec(rrule=self.rrule)


def schedule_from_spec(spec: Mapping[str, Any]) -> Schedule:
    """The schedule a ``deployment_schedules`` row (or ``to_spec()`` dict) describes.

    Other keys of the row (id, active, parameters, ...) are ignored. An ``anchor`` may be a
    datetime or an ISO 8601 string; a naive one is read as UTC (the stored form).

    Raises:
        InvalidSchedule: The kind is unknown or its field is missing or invalid.
    """
    kind = spec.get("kind")
    timezone = spec.get("timezone") or "UTC"
    if kind == "cron":
        return CronSchedule(_required(spec, "cron"), timezone=timezone)
    if kind == "rrule":
        return RRuleSchedule(_required(spec, "rrule"), timezone=timezone)
    if kind == "interval":
        anchor = spec.get("anchor")
        if isinstance(anchor, str):
            try:
                anchor = datetime.fromisoformat(anchor)
            except ValueError:
                raise InvalidSchedule(f"anchor: {anchor!r} is not an ISO 8601 datetime") from None
        if isinstance(anchor, datetime) and anchor.tzinfo is None:
            anchor = anchor.replace(tzinfo=UTC)
        return IntervalSchedule(_required(spec, "interval_seconds"), anchor=anchor, timezone=timezone)
    raise InvalidSchedule(f"kind: {kind!r} is not a schedule kind; use 'cron', 'interval' or 'rrule'")


def _required(spec: Mapping[str, Any], field: str) -> Any:
    value = spec.get(field)
    if value is None:
        raise InvalidSchedule(f"{field}: a schedule of kind {spec.get('kind')!r} needs {field!r}")
    return value


# -- the scheduler pass --------------------------------------------------------------------------
def _setting(name: str, default: float) -> float:
    from plait.settings import get_settings

    return float(getattr(get_settings(), name, default))


def plan(
    db: Database,
    *,
    now: datetime | None = None,
    horizon: timedelta | float | None = None,
    max_runs: int | None = None,
) -> int:
    """The scheduler pass: create the scheduled runs of every active schedule of every
    unpaused deployment for the slots in ``(now, now + horizon]``.

    Idempotent: a slot's run has the key ``schedule:<schedule id>:<slot>``, so a second pass
    creates nothing new. A deployment keeps at most ``max_runs`` scheduled runs in the
    future; a pass plans on from its latest planned slot. A deployment whose stored schedule
    cannot be read is logged and skipped; the others are planned.

    Args:
        db: The store.
        now: The time of the pass (timezone-aware); default: the current time.
        horizon: How far ahead to plan, a timedelta or seconds; default: the
            ``scheduler_horizon`` setting (one day).
        max_runs: Most future scheduled runs per deployment; default: the
            ``scheduler_max_runs`` setting (100).

    Returns:
        How many runs were created.

    Raises:
        InvalidSchedule: ``now`` is naive, or ``horizon``/``max_runs`` is negative.
        DatabaseError: The store cannot be read or written.
    """
    from plait._store.deployments import list_deployments

    now = _aware(now, "plan(): now") if now is not None else datetime.now(UTC)
    if horizon is None:
        horizon = _setting("scheduler_horizon", 24 * 3600.0)
    if not isinstance(horizon, timedelta):
        horizon = timedelta(seconds=float(horizon))
    if horizon < timedelta(0):
        raise InvalidSchedule(f"plan(): horizon must be >= 0, not {horizon}")
    if max_runs is None:
        max_runs = int(_setting("scheduler_max_runs", 100))
    if max_runs < 0:
        raise InvalidSchedule(f"plan(): max_runs must be >= 0, not {max_runs}")
    created = 0
    cursor: str | None = None
    while True:
        rows, cursor = list_deployments(db, limit=100, cursor=cursor)
        for deployment in rows:
            if deployment.get("paused"):
                continue
            try:
                created += plan_deployment(db, deployment, now=now, horizon=horizon, max_runs=max_runs)
            except InvalidSchedule as exc:
                _warn_once(deployment, str(exc))
        if not cursor:
            return created


_WARNED: set[tuple[str, str]] = set()  # (deployment id, problem): said once per process, not every pass


def _warn_once(deployment: Mapping[str, Any], problem: str) -> None:
    key = (str(deployment.get("id")), problem)
    if key not in _WARNED:
        _WARNED.add(key)
        logger.warning(
            "deployment %s/%s: a schedule cannot be read, so its runs are not planned (fix the deployment's "
            "schedules and apply it again): %s", deployment.get("flow_name"), deployment.get("name"), problem,
        )


def plan_deployment(
    db: Database, deployment: Mapping[str, Any], *, now: datetime, horizon: timedelta, max_runs: int
) -> int:
    """Plan one deployment's runs (see ``plan``); ``deployment`` is a row with "schedules".

    Each schedule's parameters are merged over the deployment's. Slots are taken earliest
    first across all the deployment's schedules, up to ``max_runs`` minus its runs already
    scheduled in the future; slots of several schedules at one instant are never split (a
    pass may exceed ``max_runs`` only when more schedules fire at one instant than it allows).

    Returns:
        How many runs were created.
    """
    from plait._store.scheduling import last_planned, plan_deployment_runs, scheduled_count

    active = [row for row in deployment.get("schedules") or () if row.get("active", True)]
    if not active or deployment.get("paused"):
        return 0
    budget = max_runs - scheduled_count(db, deployment["id"], now)
    if budget <= 0:
        return 0
    latest = last_planned(db, deployment["id"])
    start = max(now, latest) if latest is not None else now
    end = now + horizon
    if end <= start:
        return 0
    defaults = dict(deployment.get("parameters") or {})
    candidates: list[tuple[datetime, int, str, dict[str, Any]]] = []
    for position, row in enumerate(active):
        parameters = {**defaults, **(row.get("parameters") or {})}
        for slot in schedule_from_spec(row).slots(start, end, budget):
            candidates.append((slot, position, row["id"], parameters))
    candidates.sort(key=lambda c: (c[0], c[1]))
    chosen = _whole_instants(candidates, budget)
    if not chosen:
        return 0
    return plan_deployment_runs(db, deployment["id"], [(slot, sid, params) for slot, _, sid, params in chosen],
                                as_of=deployment.get("updated"))


def _whole_instants(
    candidates: list[tuple[datetime, int, str, dict[str, Any]]], budget: int
) -> list[tuple[datetime, int, str, dict[str, Any]]]:
    """The first ``budget`` candidates, without splitting a group of one instant: the next
    pass starts after the latest planned slot, so a split group would lose its rest."""
    if len(candidates) <= budget:
        return candidates
    cut = budget
    while 0 < cut < len(candidates) and candidates[cut][0] == candidates[cut - 1][0]:
        cut -= 1
    if cut == 0:  # one instant holds more slots than the budget: take that instant whole
        cut = 1
        while cut < len(candidates) and candidates[cut][0] == candidates[0][0]:
            cut += 1
    return candidates[:cut]
