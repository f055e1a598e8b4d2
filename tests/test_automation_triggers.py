"""The trigger state machine on its own (no store): reactive thresholds, windows and keys,
``after``, proactive windows that fire only when what was expected did not come, compound
triggers, label and payload matching, and the state names of state changes."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from plait.automations import parse_automation
from plait.automations._triggers import Seen, Windows, event_names, matches

T0 = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
_seq = itertools.count(1)


def event(kind: str, at: float = 0.0, resource: str = "flow-run/r1", **labels: Any) -> Seen:
    payload = labels.pop("payload", {})
    return Seen(f"e{next(_seq)}", next(_seq), kind, T0 + timedelta(seconds=at), resource, payload,
                {"resource": resource, **labels})


def windows(trigger: dict[str, Any]) -> Windows:
    spec = parse_automation({"name": "a", "trigger": trigger, "actions": [{"type": "cancel-flow-run"}]})
    w = Windows()
    w.set_specs({"A": spec}, T0)
    return w


def test_state_changes_are_known_by_their_state() -> None:
    names = event_names("flow-run.state-changed", {"state_type": "SCHEDULED", "state_name": "Late"})
    assert names == ["flow-run.state-changed", "flow-run.scheduled", "flow-run.late"]
    assert event_names("warehouse.table.refreshed", {"state_type": "X"}) == ["warehouse.table.refreshed"]


def test_reactive_threshold_within_a_window_per_key() -> None:
    w = windows({"expect": ["flow-run.failed"], "threshold": 3, "within": "1m", "for_each": ["deployment"]})
    failed = {"payload": {"state_type": "FAILED"}}
    assert w.observe(event("flow-run.state-changed", 0, deployment="a/a", **failed)) == []
    assert w.observe(event("flow-run.state-changed", 10, deployment="b/b", **failed)) == []
    assert w.observe(event("flow-run.state-changed", 20, deployment="a/a", **failed)) == []
    # the third failure of b/b comes too late for its window: that window starts over
    assert w.observe(event("flow-run.state-changed", 30, deployment="b/b", **failed)) == []
    assert w.observe(event("flow-run.state-changed", 75, deployment="b/b", **failed)) == []
    fired = w.observe(event("flow-run.state-changed", 40, deployment="a/a", **failed))
    assert [(f.key, f.count, f.posture) for f in fired] == [({"deployment": "a/a"}, 3, "reactive")]
    # after firing the window is gone: two more do not fire
    assert w.observe(event("flow-run.state-changed", 41, deployment="a/a", **failed)) == []
    assert w.observe(event("flow-run.state-changed", 42, deployment="a/a", **failed)) == []


def test_reactive_fires_on_each_match_and_ignores_others() -> None:
    w = windows({"expect": "flow-run.completed", "match": {"deployment": "raw/*", "payload.state_name": "Completed"}})
    done = {"payload": {"state_type": "COMPLETED", "state_name": "Completed"}}
    assert len(w.observe(event("flow-run.state-changed", 0, deployment="raw/load", **done))) == 1
    assert w.observe(event("flow-run.state-changed", 0, deployment="dbt/run", **done)) == []
    assert w.observe(event("flow-run.state-changed", 0, deployment="raw/load",
                           payload={"state_type": "FAILED", "state_name": "Failed"})) == []
    assert len(w.observe(event("flow-run.state-changed", 1, deployment="raw/load", **done))) == 1


def test_match_lists_negation_and_tags() -> None:
    spec = parse_automation({"name": "a", "trigger": {"match": {"tags": ["prod", "staging"], "flow": "!test-*"}},
                             "actions": [{"type": "cancel-flow-run"}]})
    trigger = spec.trigger
    assert matches(trigger, event("x.y", tags=["prod", "eu"], flow="etl"))  # type: ignore[arg-type]
    assert not matches(trigger, event("x.y", tags=["dev"], flow="etl"))  # type: ignore[arg-type]
    assert not matches(trigger, event("x.y", tags=["prod"], flow="test-etl"))  # type: ignore[arg-type]
    assert not matches(trigger, event("x.y", flow="etl"))  # type: ignore[arg-type]


def test_reactive_after_counts_only_what_follows() -> None:
    w = windows({"after": ["warehouse.load.started"], "expect": ["warehouse.load.finished"], "for_each": ["resource"]})
    assert w.observe(event("warehouse.load.finished", 0, resource="t/orders")) == []  # nothing came first
    assert w.observe(event("warehouse.load.started", 1, resource="t/orders")) == []
    fired = w.observe(event("warehouse.load.finished", 2, resource="t/orders"))
    assert [f.key for f in fired] == [{"resource": "t/orders"}]


def test_proactive_fires_when_the_expected_event_does_not_come() -> None:
    w = windows({"posture": "proactive", "after": ["flow-run.running"],
                 "expect": ["flow-run.completed", "flow-run.failed"], "for_each": ["flow_run_id"], "within": "2h"})
    running = {"payload": {"state_type": "RUNNING"}}
    w.observe(event("flow-run.state-changed", 0, flow_run_id="slow", **running))
    w.observe(event("flow-run.state-changed", 0, flow_run_id="quick", **running))
    w.observe(event("flow-run.state-changed", 600, flow_run_id="quick", payload={"state_type": "COMPLETED"}))
    assert w.advance(T0 + timedelta(hours=1)) == []
    fired = w.advance(T0 + timedelta(hours=2, seconds=1))
    assert [(f.key, f.posture, f.count) for f in fired] == [({"flow_run_id": "slow"}, "proactive", 0)]
    assert fired[0].event is not None and fired[0].event["labels"]["flow_run_id"] == "slow"
    assert w.advance(T0 + timedelta(hours=5)) == []  # once


def test_standing_proactive_window_fires_each_silent_window() -> None:
    w = windows({"posture": "proactive", "expect": ["warehouse.heartbeat"], "within": 60})
    w.observe(event("warehouse.heartbeat", 30))
    assert w.advance(T0 + timedelta(seconds=61)) == []
    assert len(w.advance(T0 + timedelta(seconds=91))) == 1  # 30..90 had no heartbeat
    w.observe(event("warehouse.heartbeat", 100))  # a new window 100..160
    assert w.advance(T0 + timedelta(seconds=150)) == []
    assert len(w.advance(T0 + timedelta(seconds=161))) == 1


def test_compound_all_within_a_window() -> None:
    w = windows({"type": "compound", "require": "all", "within": 300, "triggers": [
        {"expect": ["raw.orders.loaded"]}, {"expect": ["raw.customers.loaded"]}]})
    assert w.observe(event("raw.orders.loaded", 0)) == []
    assert w.observe(event("raw.orders.loaded", 10)) == []
    assert len(w.observe(event("raw.customers.loaded", 20))) == 1
    assert w.observe(event("raw.orders.loaded", 400)) == []
    assert w.observe(event("raw.customers.loaded", 800)) == []  # too late for the tally opened at 400


def test_compound_any() -> None:
    w = windows({"type": "compound", "require": "any", "triggers": [{"expect": ["a.x"]}, {"expect": ["b.x"]}]})
    assert len(w.observe(event("b.x"))) == 1


def test_changes_are_reported_for_storage() -> None:
    w = windows({"expect": ["a.x"], "threshold": 2})
    w.take_changes()
    w.observe(event("a.x"))
    upserts, removals = w.take_changes()
    assert [(u["count"], u["key"]) for u in upserts] == [(1, "")] and removals == []
    w.observe(event("a.x"))
    upserts, removals = w.take_changes()
    assert upserts == [] and removals == [("A", "", "")]


@pytest.mark.parametrize("bad, message", [
    ({"posture": "proactive", "expect": ["a.x"]}, "needs a window"),
    ({"expect": ["Not A Name"]}, "is not an event name"),
    ({"within": "soon"}, "a duration like"),
    ({"type": "compound", "require": 3, "triggers": [{}]}, "require: a number from 1 to 1"),
])
def test_bad_triggers_are_refused_by_path(bad: dict[str, Any], message: str) -> None:
    from plait.automations import AutomationSpecError

    with pytest.raises(AutomationSpecError, match=message):
        parse_automation({"name": "a", "trigger": bad, "actions": [{"type": "cancel-flow-run"}]})
