"""Triggers as an I/O-free state machine: events and the clock in, firings out.

``Windows`` holds the open windows ("buckets") of every trigger of every automation, keyed
by automation id, trigger path (``""`` for the trigger itself, ``"0"``, ``"1"``… for a
compound trigger's parts, ``"all"`` for the compound's own tally) and ``for_each`` key. The
evaluator feeds it events in seq order (``observe``) and the time (``advance``), stores what
changed (``dirty``, ``removed``) and turns each ``Firing`` into recorded actions.

An event as seen here (``Seen``) carries ``labels``: its resource id as ``resource``, a
custom event's own labels, and for flow and task runs what the store knows of the flow run
(``flow``, ``deployment``, ``work_pool``, ``tags``, ``flow_run_id``, ``state_type``,
``state_name``). A trigger's ``match`` looks labels up by name and payload fields as
``payload.<path>``.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from plait.automations._model import AutomationSpec, CompoundTrigger, EventTrigger

__all__ = ["Seen", "Firing", "Windows", "event_names", "matches", "bucket_key", "brief"]

_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Seen:
    """One stored event with what triggers look at."""

    id: str
    seq: int
    kind: str
    occurred: datetime
    resource: str
    payload: Mapping[str, Any]
    labels: Mapping[str, Any]
    chain: tuple[str, ...] = ()  # automations whose actions led to this event, oldest first


@dataclass
class Firing:
    """A trigger that fired: the event that made it fire (for a proactive trigger, the one
    that opened the window, or none), its ``for_each`` key and count."""

    automation_id: str
    fired_at: datetime
    posture: str
    key: dict[str, Any]
    count: int
    event: dict[str, Any] | None
    chain: tuple[str, ...] = ()


def event_names(kind: str, payload: Mapping[str, Any]) -> list[str]:
    """The names ``expect`` and ``after`` match: the kind, and for a state change its state
    type and name too (``flow-run.completed``, ``flow-run.late``)."""
    names = [kind]
    if kind.endswith(".state-changed"):
        noun = kind.split(".", 1)[0]
        for value in (payload.get("state_type"), payload.get("state_name")):
            if isinstance(value, str) and value:
                name = f"{noun}.{_SLUG.sub('-', value.lower()).strip('-')}"
                if name not in names:
                    names.append(name)
    return names


def _named(patterns: Iterable[str], names: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns for name in names)


def _lookup(seen: Seen, label: str) -> Any:
    if label.startswith("payload."):
        value: Any = seen.payload
        for part in label.split(".")[1:]:
            if not isinstance(value, Mapping) or part not in value:
                return None
            value = value[part]
        return value
    return seen.labels.get(label)


def _values(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [v if isinstance(v, str) else json.dumps(v) for v in value]
    if isinstance(value, bool):
        return ["true" if value else "false"]
    return [value if isinstance(value, str) else str(value)]


def matches(trigger: EventTrigger, seen: Seen) -> bool:
    """Whether ``seen`` passes the trigger's ``match`` (each label: any glob matches; a glob
    starting with ``!`` means none of its values may match it)."""
    for label, wanted in trigger.match.items():
        patterns = [wanted] if isinstance(wanted, str) else list(wanted)
        values = _values(_lookup(seen, label))
        positive = [p for p in patterns if not p.startswith("!")]
        negative = [p[1:] for p in patterns if p.startswith("!")]
        if positive and not any(fnmatch.fnmatchcase(v, p) for p in positive for v in values):
            return False
        if any(fnmatch.fnmatchcase(v, p) for p in negative for v in values):
            return False
    return True


def bucket_key(trigger: EventTrigger, seen: Seen | None) -> str:
    """The window key: the ``for_each`` labels' values, as JSON text."""
    if not trigger.for_each:
        return ""
    values = [(_lookup(seen, label) if seen is not None else None) for label in trigger.for_each]
    return json.dumps(values, separators=(",", ":"), default=str)


def brief(seen: Seen) -> dict[str, Any]:
    """The event as templates see it (``event``) and as a window remembers it."""
    return {"id": seen.id, "seq": seen.seq, "kind": seen.kind, "occurred": seen.occurred.isoformat(),
            "resource": seen.resource, "labels": dict(seen.labels), "payload": dict(seen.payload),
            "chain": list(seen.chain)}


@dataclass
class Bucket:
    automation_id: str
    path: str
    key: str
    opened_at: datetime
    expires_at: datetime | None
    count: int = 0
    state: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {"automation_id": self.automation_id, "path": self.path, "key": self.key,
                "opened_at": self.opened_at, "expires_at": self.expires_at, "count": self.count,
                "state": self.state}


def _window(start: datetime, within: float) -> datetime | None:
    return start + timedelta(seconds=within) if within > 0 else None


def _key_labels(trigger: EventTrigger, key: str) -> dict[str, Any]:
    if not key:
        return {}
    return dict(zip(trigger.for_each, json.loads(key), strict=False))


class Windows:
    """Every open window of the given automations, and the rules that open, count, close
    and fire them."""

    def __init__(self) -> None:
        self.specs: dict[str, AutomationSpec] = {}
        self.buckets: dict[tuple[str, str, str], Bucket] = {}
        self.dirty: set[tuple[str, str, str]] = set()
        self.removed: set[tuple[str, str, str]] = set()

    # -- state --------------------------------------------------------------------------------
    def load(self, specs: Mapping[str, AutomationSpec], rows: Iterable[Mapping[str, Any]]) -> None:
        """Start from stored windows (those of automations not in ``specs`` are dropped)."""
        self.specs = dict(specs)
        self.buckets.clear()
        for row in rows:
            if row["automation_id"] in self.specs:
                bucket = Bucket(row["automation_id"], row["path"], row["key"], row["opened_at"], row["expires_at"],
                                int(row["count"]), dict(row["state"] or {}))
                self.buckets[(bucket.automation_id, bucket.path, bucket.key)] = bucket
        self.dirty.clear()
        self.removed.clear()

    def set_specs(self, specs: Mapping[str, AutomationSpec], now: datetime) -> None:
        """Follow saved automations: forget windows of ones gone or changed, open the
        standing windows of new proactive triggers without ``after``."""
        changed = {aid for aid, spec in self.specs.items() if specs.get(aid) != spec}
        for ident in [i for i in self.buckets if i[0] in changed]:
            self._remove(ident)
        self.specs = dict(specs)
        for aid, spec in self.specs.items():
            for path, trigger in _parts(spec):
                if trigger.posture == "proactive" and not trigger.after and not trigger.for_each:
                    if (aid, path, "") not in self.buckets:
                        self._put(Bucket(aid, path, "", now, _window(now, trigger.within)))

    def take_changes(self) -> tuple[list[dict[str, Any]], list[tuple[str, str, str]]]:
        """What changed since the last call: window rows to store, and keys to delete."""
        upserts = [self.buckets[i].row() for i in self.dirty if i in self.buckets]
        removals = sorted(i for i in self.removed if i not in self.buckets)
        self.dirty.clear()
        self.removed.clear()
        return upserts, removals

    def _put(self, bucket: Bucket) -> Bucket:
        ident = (bucket.automation_id, bucket.path, bucket.key)
        self.buckets[ident] = bucket
        self.dirty.add(ident)
        self.removed.discard(ident)
        return bucket

    def _remove(self, ident: tuple[str, str, str]) -> None:
        if self.buckets.pop(ident, None) is not None:
            self.removed.add(ident)
            self.dirty.discard(ident)

    # -- events and time ------------------------------------------------------------------------
    def observe(self, seen: Seen) -> list[Firing]:
        """Count ``seen`` into every trigger it concerns; the firings it causes."""
        fired: list[Firing] = []
        names = event_names(seen.kind, seen.payload)
        for aid, spec in self.specs.items():
            for path, trigger in _parts(spec):
                firing = self._observe(aid, path, trigger, seen, names)
                if firing is not None:
                    fired.extend(self._settle(spec, aid, path, firing))
        return fired

    def advance(self, now: datetime) -> list[Firing]:
        """Close every window that ended by ``now``; the proactive firings that causes."""
        fired: list[Firing] = []
        for ident in sorted((i for i, b in self.buckets.items() if b.expires_at is not None and b.expires_at <= now),
                            key=lambda i: self.buckets[i].expires_at or now):
            bucket = self.buckets.get(ident)
            spec = self.specs.get(ident[0])
            if bucket is None or spec is None:
                continue
            if ident[1] == "all":
                self._remove(ident)  # a compound's tally that did not complete in time
                continue
            trigger = _trigger_at(spec, ident[1])
            if trigger.posture != "proactive":
                self._remove(ident)
                continue
            ended = bucket.expires_at or now
            if trigger.after:
                self._remove(ident)
            else:  # a standing window: the next one starts where this one ended
                self._put(Bucket(ident[0], ident[1], ident[2], ended, _window(ended, trigger.within)))
            if bucket.count < trigger.threshold:
                firing = Firing(ident[0], ended, "proactive", _key_labels(trigger, ident[2]), bucket.count,
                                bucket.state.get("event"), tuple(bucket.state.get("chain") or ()))
                fired.extend(self._settle(spec, ident[0], ident[1], firing))
        return fired

    def _observe(self, aid: str, path: str, trigger: EventTrigger, seen: Seen, names: list[str]) -> Firing | None:
        opens = bool(trigger.after) and _named(trigger.after, names)
        counts = not trigger.expect or _named(trigger.expect, names)
        if not (opens or counts) or not matches(trigger, seen):
            return None
        key = bucket_key(trigger, seen)
        ident = (aid, path, key)
        bucket = self.buckets.get(ident)
        if bucket is not None and bucket.expires_at is not None and seen.occurred > bucket.expires_at \
                and trigger.posture == "reactive":
            self._remove(ident)
            bucket = None
        if opens and bucket is None:
            bucket = self._put(Bucket(aid, path, key, seen.occurred, _window(seen.occurred, trigger.within),
                                      0, {"event": brief(seen), "chain": list(seen.chain)}))
            return None  # the event that opens a window is not counted in it
        if not counts:
            return None
        if bucket is None:
            if trigger.after:
                return None  # expected, but nothing came first
            bucket = self._put(Bucket(aid, path, key, seen.occurred, _window(seen.occurred, trigger.within)))
        bucket.count += 1
        bucket.state = {**bucket.state, "last": brief(seen)}
        self.dirty.add(ident)
        if bucket.count < trigger.threshold:
            return None
        if trigger.posture == "proactive":
            # what was expected came: the window closes quietly (a standing one starts over)
            self._remove(ident)
            if not trigger.after and not trigger.for_each:
                self._put(Bucket(aid, path, key, seen.occurred, _window(seen.occurred, trigger.within)))
            return None
        self._remove(ident)
        return Firing(aid, seen.occurred, "reactive", _key_labels(trigger, key), bucket.count, brief(seen),
                      seen.chain)

    def _settle(self, spec: AutomationSpec, aid: str, path: str, firing: Firing) -> list[Firing]:
        """A part's firing is the automation's when its trigger is not compound; else it
        counts toward the compound's tally."""
        compound = spec.trigger
        if not isinstance(compound, CompoundTrigger):
            return [firing]
        ident = (aid, "all", "")
        tally = self.buckets.get(ident)
        if tally is not None and tally.expires_at is not None and firing.fired_at > tally.expires_at:
            self._remove(ident)
            tally = None
        if tally is None:
            tally = self._put(Bucket(aid, "all", "", firing.fired_at, _window(firing.fired_at, compound.within)))
        parts = set(tally.state.get("parts") or [])
        parts.add(path)
        tally.state = {"parts": sorted(parts)}
        tally.count = len(parts)
        self.dirty.add(ident)
        if len(parts) < compound.needed:
            return []
        self._remove(ident)
        return [Firing(aid, firing.fired_at, firing.posture, firing.key, len(parts), firing.event, firing.chain)]


def _parts(spec: AutomationSpec) -> Iterator[tuple[str, EventTrigger]]:
    if isinstance(spec.trigger, CompoundTrigger):
        for i, trigger in enumerate(spec.trigger.triggers):
            yield str(i), trigger
    else:
        yield "", spec.trigger


def _trigger_at(spec: AutomationSpec, path: str) -> EventTrigger:
    if isinstance(spec.trigger, CompoundTrigger):
        return spec.trigger.triggers[int(path)]
    return spec.trigger
