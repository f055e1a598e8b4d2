"""plait.external: task runs of work done elsewhere, recorded with that work's own times,
on the SQLite store of a throwaway home."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from plait import flow, task
from plait.exceptions import PlaitError
from plait.external import PARENT_TAG_PREFIX, ExternalRuns, start_external_task_run
from plait.states import StateType

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def runs_by_name(flow_run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {run["task_name"]: run for run in flow_run["task_runs"]}


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_runs_keep_their_own_times_states_edges_and_parent(plait_harness: Any) -> None:
    seen: dict[str, Any] = {}

    @task
    def drive() -> None:
        runs = ExternalRuns()
        extract = runs.start("extract", started_at=T0, parameters={"table": "orders"}, tags=["warehouse"])
        # visible Running before it ends
        plait_harness.flush()
        seen["running"] = runs_by_name(plait_harness.flow_run(runs.flow_run_id))["extract"]
        extract.finish(StateType.COMPLETED, "1,200 rows", finished_at=T0 + timedelta(seconds=3.25))
        load = runs.start("load", started_at="2026-03-01T12:00:03.500000Z", upstream=[extract])
        load.finish("FAILED", "disk full", finished_at="2026-03-01T12:00:04Z")
        report = runs.start("report", started_at=T0 + timedelta(seconds=4), upstream=[load.id])
        report.finish(StateType.CANCELLED, "load failed", name="Skipped", finished_at=T0 + timedelta(seconds=4))
        seen["parent"] = runs.parent_task_run_id

    @flow
    def pipeline() -> None:
        drive()

    pipeline()
    flow_run = plait_harness.flow_run(plait_harness.flow_runs(limit=1)[0]["id"])
    runs = runs_by_name(flow_run)
    running = seen["running"]
    assert running["state_type"] == "RUNNING" and when(running["start_time"]) == T0 and running["end_time"] is None

    extract, load, report = runs["extract"], runs["load"], runs["report"]
    assert (when(extract["start_time"]), when(extract["end_time"])) == (T0, T0 + timedelta(seconds=3.25))
    assert extract["state_type"] == "COMPLETED" and extract["state_message"] == "1,200 rows"
    assert [s["type"] for s in extract["states"]] == ["PENDING", "RUNNING", "COMPLETED"]
    assert [when(s["timestamp"]) for s in extract["states"]] == [T0, T0, T0 + timedelta(seconds=3.25)]
    assert extract["parameters"] == {"table": "orders"}
    assert "warehouse" in extract["tags"] and PARENT_TAG_PREFIX + seen["parent"] in extract["tags"]
    assert runs["drive"]["id"] == seen["parent"]
    assert (load["state_type"], load["state_message"]) == ("FAILED", "disk full")
    assert when(load["end_time"]) - when(load["start_time"]) == timedelta(seconds=0.5)
    assert (report["state_type"], report["state_name"]) == ("CANCELLED", "Skipped")
    assert [(e["task_name"], e["kind"]) for e in load["upstream"]] == [("extract", "wait_for")]
    assert [e["task_name"] for e in report["upstream"]] == ["load"]
    # the flow run is not failed by a failed external run: the driving task reports the outcome
    assert flow_run["state_type"] == "COMPLETED"


def test_runs_can_be_recorded_from_other_threads(plait_harness: Any) -> None:
    @flow
    def pipeline() -> None:
        runs = ExternalRuns()

        def worker(i: int) -> None:
            run = runs.start("step", started_at=T0 + timedelta(seconds=i))
            run.finish(StateType.COMPLETED, finished_at=T0 + timedelta(seconds=i + 1))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    pipeline()
    flow_run = plait_harness.flow_run(plait_harness.flow_runs(limit=1)[0]["id"])
    steps = [r for r in flow_run["task_runs"] if r["task_name"] == "step"]
    assert len(steps) == 8 and {r["state_type"] for r in steps} == {"COMPLETED"}
    assert sorted(r["dynamic_key"] for r in steps) == list(range(8))
    assert sorted(r["name"] for r in steps) == sorted(f"step-{i}" for i in range(8))
    assert {r["duration_seconds"] for r in steps} == {1.0}


def test_bad_use_is_a_clear_error(plait_harness: Any) -> None:
    with pytest.raises(PlaitError, match="outside a flow run"):
        ExternalRuns()

    @flow
    def pipeline() -> list[str]:
        run = start_external_task_run("x", started_at=T0)
        errors = []
        for bad in ("RUNNING", "LATE"):
            try:
                run.finish(bad)
            except PlaitError as exc:
                errors.append(str(exc))
        run.finish(StateType.COMPLETED, finished_at=T0 - timedelta(seconds=1))  # clock skew: ends at its start
        try:
            run.finish(StateType.FAILED)
        except PlaitError as exc:
            errors.append(str(exc))
        try:
            start_external_task_run("y", started_at="yesterday")
        except PlaitError as exc:
            errors.append(str(exc))
        return errors

    errors = pipeline()
    assert "finishes in a final state" in errors[0] and "'RUNNING'" in errors[0]
    assert "'LATE'" in errors[1]
    assert "already ended Completed; it finishes once" in errors[2]
    assert "started_at must be a datetime or ISO 8601 text" in errors[3]
    x = runs_by_name(plait_harness.flow_run(plait_harness.flow_runs(limit=1)[0]["id"]))["x"]
    assert x["start_time"] == x["end_time"]


def test_a_run_never_started_can_end_skipped_or_completed(plait_harness: Any) -> None:
    @flow
    def pipeline() -> None:
        runs = ExternalRuns()
        runs.start("never", started_at=T0, running=False).finish(
            StateType.CANCELLED, "upstream failed", name="Skipped", finished_at=T0)
        runs.start("instant", started_at=T0, running=False).finish(StateType.COMPLETED, finished_at=T0)

    pipeline()
    runs = runs_by_name(plait_harness.flow_run(plait_harness.flow_runs(limit=1)[0]["id"]))
    assert [s["type"] for s in runs["never"]["states"]] == ["PENDING", "CANCELLED"]
    assert runs["never"]["start_time"] is None and runs["never"]["run_count"] == 0
    assert [s["type"] for s in runs["instant"]["states"]] == ["PENDING", "RUNNING", "COMPLETED"]


def test_run_logs_are_stored_with_the_external_run(plait_harness: Any) -> None:
    @flow
    def pipeline() -> None:
        run = start_external_task_run("remote")
        run.logger.info("remote said hello")
        run.finish(StateType.COMPLETED)

    pipeline()
    flow_run_id = plait_harness.flow_runs(limit=1)[0]["id"]
    lines = [line for line in plait_harness.logs(flow_run_id) if line["message"] == "remote said hello"]
    assert [line["task_name"] for line in lines] == ["remote"]
