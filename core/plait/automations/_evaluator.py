"""The automation evaluator: the server service that reads events, fires triggers and takes
actions.

One pass (``Evaluator.run_pass``, every tenth of a second in the evaluator process of the
server holding the ``automations`` lease, ``plait.automations._runner``):

1. read the events after the cursor (500 at most) and what the store knows of the flow
   runs they concern;
2. feed them to the triggers' windows in seq order, moving the clock to each event's time
   first (so a backlog after an outage closes proactive windows where they really ended),
   then to now once the backlog is read;
3. store the pass in one transaction: the windows that changed, one ``pending`` row per
   action of each firing, ``automation.triggered`` events, the cursor — compared-and-set,
   so an evaluator that lost its lease meanwhile stores nothing and reloads;
4. hand the pending actions to a small thread pool that claims each (``pending`` ->
   ``running``), takes it and records the outcome as an event. Slow actions never hold up
   evaluation, and evaluation never runs on the API's event loop.

An action is recorded before it is taken and taken at most once: one left ``running`` by an
evaluator that died is failed with a reason, except a ``run-deployment`` (its run is keyed by
the action's id, so taking it again makes no second run).

A loop — an automation set off, through the runs its own actions made, for the
``LOOP_LIMIT``-th time in one causal chain — is stopped: the automation is disabled and an
``automation.loop-detected`` event says why.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from plait._masking import mask
from plait._runs import utcnow
from plait._store.database import Database
from plait.automations._model import AutomationSpec, AutomationSpecError, parse_automation
from plait.automations._triggers import Firing, Seen, Windows

__all__ = ["Evaluator", "CURSOR", "LOOP_LIMIT"]

logger = logging.getLogger("plait.server")

CURSOR = "automations"
LOOP_LIMIT = 3  # the same automation this many times in one causal chain is a loop
_BATCH = 500
_INTERRUPTED_AFTER = timedelta(seconds=30)
_RETAKEN = ("run-deployment",)  # idempotent by key: safe to take again after a crash
_RECOVER_EVERY = 5.0  # seconds between looks for actions left pending or interrupted


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    from plait._runs import parse_utc

    moment = parse_utc(str(value))
    if not isinstance(moment, datetime):
        raise ValueError(f"an event's time {value!r} is not ISO 8601")
    return moment


def _resource_labels(resource: str) -> dict[str, Any]:
    noun, _, rest = resource.partition("/")
    known = {"deployment": "deployment", "work-pool": "work_pool", "automation": "automation",
             "block": "block", "webhook": "webhook", "concurrency-limit": "concurrency_limit"}
    return {known[noun]: rest} if noun in known and rest else {}


class Evaluator:
    """The automations of one store, evaluated pass by pass (see the module docstring)."""

    def __init__(self, db: Database, *, workers: int = 4) -> None:
        self.db = db
        self.windows = Windows()
        self.rows: dict[str, dict[str, Any]] = {}  # automation id -> stored row
        self.cursor: tuple[int, datetime] | None = None  # (seq, stamp) as stored
        self.loaded = False
        self._version: tuple[Any, ...] | None = None
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="plait-action")
        self._taking: set[str] = set()
        self._outcomes: list[tuple[dict[str, Any], dict[str, Any] | None, str | None]] = []
        self._recovered_at = float("-inf")
        self._lock = threading.Lock()

    def close(self) -> None:
        """Wait for the actions under way, store their outcomes; queued ones are left to the
        next evaluator (recorded running, so taken again only if idempotent)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        try:
            self._flush_outcomes()
        except Exception as exc:
            logger.warning("automations: the outcomes of the last actions could not be stored: %s", mask(str(exc)))

    # -- loading -----------------------------------------------------------------------------
    def _specs(self, rows: list[dict[str, Any]]) -> dict[str, AutomationSpec]:
        specs: dict[str, AutomationSpec] = {}
        for row in rows:
            try:
                specs[row["id"]] = parse_automation({"name": row["name"], "description": row["description"],
                                                     "enabled": row["enabled"], "trigger": row["trigger"],
                                                     "actions": row["actions"]})
            except AutomationSpecError as exc:  # saved by an older plait, say
                logger.warning("automation %s cannot be evaluated: %s", row["name"], exc)
        return specs

    def _refresh(self, now: datetime) -> None:
        from plait._store.automations import list_automations, load_buckets, read_cursor
        from plait._store.events import latest_seq

        rows = list_automations(self.db, enabled_only=True)
        version = tuple((r["id"], r["updated"]) for r in rows)
        if self.loaded and version == self._version:
            return
        specs = self._specs(rows)
        if not self.loaded:
            self.cursor = read_cursor(self.db, CURSOR)
            if self.cursor is None:  # (migration 0009 made the row) start from now, never from history
                from plait._store.automations import commit_pass

                commit_pass(self.db, CURSOR, seen=None, seq=latest_seq(self.db))
                self.cursor = read_cursor(self.db, CURSOR)
            self.windows.load(specs, load_buckets(self.db))
            self._recovered_at = float("-inf")  # look for actions left behind at once
        self.windows.set_specs(specs, now)
        self.rows = {r["id"]: r for r in rows if r["id"] in specs}
        self._version = version
        self.loaded = True

    # -- a pass ------------------------------------------------------------------------------
    def run_pass(self, now: datetime | None = None) -> int:
        """One pass; returns how many actions it recorded. Raises ``DatabaseError`` when the
        store cannot be read or written (the service retries)."""
        from plait._store.automations import commit_pass
        from plait._store.events import list_events

        now = now or utcnow()
        self._flush_outcomes()
        try:
            self._refresh(now)
            assert self.cursor is not None
            page = list_events(self.db, after_seq=self.cursor[0], limit=_BATCH)
            events = self._seen(page["items"])
            firings: list[Firing] = []
            for seen in events:
                firings.extend(self.windows.advance(seen.occurred))
                firings.extend(self.windows.observe(seen))
            if page["next_cursor"] is None:
                firings.extend(self.windows.advance(now))
            actions, notes, disable = self._record(firings, now)
            upserts, removals = self.windows.take_changes()
            seq = events[-1].seq if events else self.cursor[0]
            if not (events or upserts or removals or actions or notes):
                self._maintain()
                return 0
            stored = commit_pass(self.db, CURSOR, seen=self.cursor, seq=seq, upserts=upserts, removals=removals,
                                 actions=actions, events=notes, disable=disable)
            if stored is None:
                logger.info("automations: another evaluator passed meanwhile; reloading")
                self.loaded = False
                return 0
            self.cursor = stored
        except Exception:
            self.loaded = False  # memory may be ahead of the store now: start again from it
            raise
        live = {aid for aid in self.rows if aid not in disable}
        for row in actions:  # stored as running: ours to take now
            if row["automation_id"] in live:
                self._submit({**row, "type": row["action"].get("type")})
        self._maintain()
        return len(actions)

    def _seen(self, items: list[dict[str, Any]]) -> list[Seen]:
        from plait._store.automations import flow_run_facts

        run_ids = set()
        for item in items:
            payload = item.get("payload") or {}
            if isinstance(payload.get("flow_run_id"), str):
                run_ids.add(payload["flow_run_id"])
        facts = flow_run_facts(self.db, run_ids) if run_ids else {}
        self.facts = facts
        out = []
        for item in items:
            payload = item.get("payload") or {}
            labels: dict[str, Any] = {"resource": item["resource"], **_resource_labels(item["resource"])}
            labels.update(item.get("labels") or {})
            chain: tuple[Any, ...] = ()
            run = facts.get(payload.get("flow_run_id") or "")
            if run is not None:
                labels.update(flow=run["flow_name"], deployment=run["deployment"], work_pool=run["work_pool"],
                              tags=run["tags"], flow_run_id=run["id"])
                chain = tuple(run["caused_by"])
            for name in ("state_type", "state_name", "task_name", "flow_name"):
                if name in payload:
                    labels[name] = payload[name]
            if item["kind"].startswith("automation.action."):
                chain = (*payload.get("chain", []), payload.get("automation_id"))
            out.append(Seen(item["id"], int(item["seq"]), item["kind"], _parse_time(item["occurred"]),
                            item["resource"], payload, labels, tuple(c for c in chain if isinstance(c, str))))
        return out

    def _record(
        self, firings: list[Firing], now: datetime
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
        from plait._store.automations import automation_event

        actions: list[dict[str, Any]] = []
        notes: list[dict[str, Any]] = []
        disable: list[str] = []
        for firing in firings:
            row = self.rows.get(firing.automation_id)
            if row is None or firing.automation_id in disable:
                continue
            chain = [*firing.chain, firing.automation_id]
            if chain.count(firing.automation_id) >= LOOP_LIMIT:
                disable.append(firing.automation_id)
                notes.append(automation_event("automation.loop-detected", row["name"], {
                    "automation_id": row["id"], "chain": chain,
                    "reason": f"its actions set it off again {LOOP_LIMIT - 1} times in a row; it is disabled. "
                              "Fix its trigger (match fewer events), then `plait automation enable`"}))
                logger.warning("automation %s stopped: it keeps triggering itself (chain %s)", row["name"], chain)
                continue
            firing_id = str(uuid.uuid4())
            context = self._context(row, firing, firing_id)
            for position, action in enumerate(row["actions"]):
                actions.append({"id": str(uuid.uuid4()), "automation_id": row["id"], "automation_name": row["name"],
                                "firing_id": firing_id, "position": position, "action": action,
                                "context": context, "chain": chain[:-1], "flow_run_id": None})
            notes.append(automation_event("automation.triggered", row["name"], {
                "automation_id": row["id"], "firing_id": firing_id, "posture": firing.posture,
                "count": firing.count, "key": firing.key,
                "event_id": (firing.event or {}).get("id"), "event_kind": (firing.event or {}).get("kind")}))
        return actions, notes, disable

    def _context(self, row: Mapping[str, Any], firing: Firing, firing_id: str) -> dict[str, Any]:
        event = firing.event or {}
        run_id = (event.get("labels") or {}).get("flow_run_id") or (event.get("payload") or {}).get("flow_run_id")
        run = getattr(self, "facts", {}).get(run_id) if run_id else None
        if run_id and run is None:
            from plait._store.automations import flow_run_facts

            run = flow_run_facts(self.db, [run_id]).get(run_id)
        flow_run = None
        if run is not None:
            flow_run = {k: v for k, v in run.items() if k != "caused_by"}
        return {"event": event, "flow_run": flow_run, "automation": {"id": row["id"], "name": row["name"]},
                "firing": {"id": firing_id, "fired_at": firing.fired_at.isoformat(), "count": firing.count,
                           "key": firing.key, "posture": firing.posture}}

    # -- actions -----------------------------------------------------------------------------
    def _maintain(self) -> None:
        """Every ``_RECOVER_EVERY`` seconds: take pending actions, settle interrupted ones."""
        clock = time.monotonic()
        if clock - self._recovered_at < _RECOVER_EVERY:
            return
        self._recovered_at = clock
        self._recover()

    def _recover(self) -> None:
        from plait._store.automations import actions_to_take, interrupted_actions

        for action in actions_to_take(self.db):  # recorded pending (never claimed): claim and take
            self._submit(action, claim=True)
        cutoff = utcnow() - _INTERRUPTED_AFTER
        for action in interrupted_actions(self.db):
            started = action.get("started")
            with self._lock:
                if action["id"] in self._taking:
                    continue  # ours, under way
            if started is not None and _parse_time(started) > cutoff:
                continue  # perhaps still being taken by the server that just lost the lease
            if action["type"] in _RETAKEN:
                self._submit(action)
            else:
                with self._lock:
                    self._outcomes.append((action, None, "interrupted: the server stopped while taking this "
                                           "action; it is not taken again, so that it happens at most once"))

    def _submit(self, action: dict[str, Any], claim: bool = False) -> None:
        with self._lock:
            if action["id"] in self._taking:
                return
            self._taking.add(action["id"])
        try:
            self._pool.submit(self._take, action, claim)
        except RuntimeError:  # closing: the action stays in the store for the next evaluator
            with self._lock:
                self._taking.discard(action["id"])

    def _take(self, action: dict[str, Any], claim: bool) -> None:
        from plait._store.automations import claim_action

        outcome: tuple[dict[str, Any], dict[str, Any] | None, str | None] | None = None
        try:
            if claim and not claim_action(self.db, action["id"]):
                return
            try:
                from plait.automations._actions import take_action

                result = take_action(self.db, action["action"], action["context"], action_id=action["id"])
                outcome = (action, result if isinstance(result, dict) else {}, None)
            except Exception as exc:  # ActionFailed, or a bug: either way the log and an event say so
                message = mask(str(exc) or type(exc).__name__)
                logger.warning("automation %s: action %d (%s) failed: %s", action["automation_name"],
                               action["position"], action["type"], message)
                outcome = (action, None, message)
        except Exception as exc:
            logger.error("automation %s: taking action %s failed: %s", action.get("automation_name"),
                         action.get("id"), mask(str(exc)))
        finally:
            with self._lock:
                if outcome is not None:
                    self._outcomes.append(outcome)
                self._taking.discard(action["id"])

    def _flush_outcomes(self) -> None:
        """Store the outcomes of actions taken since the last pass, in one transaction."""
        from plait._store.automations import finish_actions

        with self._lock:
            outcomes, self._outcomes = self._outcomes, []
        try:
            finish_actions(self.db, outcomes)
        except Exception:
            with self._lock:  # kept for the next pass
                self._outcomes[:0] = outcomes
            raise
