"""State hooks on flows and tasks (Prefect's on_completion, on_failure, on_cancellation,
on_crashed, on_running): called with (flow or task, run, state); a hook that raises is
logged and never changes the run's state."""

from __future__ import annotations

import asyncio
import logging

import pytest

from plait import flow, task
from plait.exceptions import InvalidOptions


def recorder(calls: list[tuple[str, str, str]], label: str):
    def hook(owner, run, state):
        calls.append((label, owner.name, state.type.value))

    return hook


def test_task_hooks_run_on_each_state_they_name(plait_harness):
    calls: list[tuple[str, str, str]] = []

    @task(retries=1, on_running=recorder(calls, "running"), on_failure=[recorder(calls, "failure")],
          on_completion=recorder(calls, "completion"))
    def flaky(fail_times: int, attempts: list[int]):
        attempts.append(1)
        if len(attempts) <= fail_times:
            raise RuntimeError("boom")
        return len(attempts)

    @flow
    def both():
        ok = flaky(1, [])  # fails once, then completes: two attempts
        bad = flaky(5, [], return_state=True)  # fails both attempts
        return ok, bad.type.value

    assert both() == (2, "FAILED")
    assert calls == [
        ("running", "flaky", "RUNNING"), ("running", "flaky", "RUNNING"), ("completion", "flaky", "COMPLETED"),
        ("running", "flaky", "RUNNING"), ("running", "flaky", "RUNNING"), ("failure", "flaky", "FAILED"),
    ]


def test_flow_hooks_get_the_flow_its_run_and_the_final_state(plait_harness):
    seen = []

    @flow(on_completion=lambda f, run, state: seen.append((f.name, run.id, state.result())))
    def nightly():
        return 42

    state = nightly(return_state=True)
    [run] = plait_harness.flow_runs()
    assert seen == [("nightly", run["id"], 42)] and state.result() == 42


def test_decorator_form_and_cancellation_of_a_skipped_task(plait_harness):
    calls: list[tuple[str, str, str]] = []

    @task
    def upstream():
        raise ValueError("no data")

    @task
    def downstream(x):
        return x

    downstream.on_cancellation(recorder(calls, "cancellation"))

    @flow
    def pipeline():
        return downstream.submit(upstream.submit()).result()

    @pipeline.on_failure
    def page_someone(f, run, state):
        calls.append(("failure", f.name, state.message))

    with pytest.raises(ValueError, match="no data"):
        pipeline()
    assert calls == [("cancellation", "downstream", "CANCELLED"), ("failure", "pipeline", "ValueError: no data")]


def test_a_hook_that_raises_is_logged_and_changes_nothing(plait_harness, caplog):
    def broken(owner, run, state):
        raise RuntimeError("hook is broken")

    @flow(on_completion=[broken, lambda f, run, state: None])
    def fine():
        return "ok"

    with caplog.at_level(logging.ERROR):
        state = fine(return_state=True)
    assert state.is_completed() and state.result() == "ok"
    [run] = plait_harness.flow_runs()
    assert run["state_type"] == "COMPLETED"
    logs = [line["message"] for line in plait_harness.logs(run["id"])]
    assert any("on_completion hook" in m and "hook is broken" in m and "stays Completed" in m for m in logs)


def test_async_hooks_of_sync_and_async_runs(plait_harness):
    calls = []

    async def note(owner, run, state):
        await asyncio.sleep(0)
        calls.append((owner.name, state.type.value))

    @task(on_completion=note)
    def sync_step():
        return 1

    @flow(on_completion=note)
    async def async_flow():
        return sync_step()

    assert asyncio.run(async_flow()) == 1
    assert calls == [("sync_step", "COMPLETED"), ("async-flow", "COMPLETED")]


def test_on_crashed_runs_when_the_run_is_interrupted(plait_harness):
    calls = []

    @flow(on_crashed=lambda f, run, state: calls.append(state.type.value))
    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert calls == ["CRASHED"]


def test_hooks_must_be_callables():
    with pytest.raises(InvalidOptions, match="on_failure must be callables"):
        task(on_failure=["not a function"])(lambda: None)
