"""A task or flow that returns a State ends in that state (as in Prefect): a returned
``Failed(...)`` fails the run with its message, a returned ``Completed(...)`` keeps its name
and message; ``.map()`` broadcasts arguments that are not iterables."""

from __future__ import annotations

import pytest

from plait import Cancelled, Completed, Failed, Running, flow, task, unmapped
from plait.exceptions import ParameterBindError, RunFailed


def test_a_task_returning_failed_fails_with_its_message(plait_harness):
    @task
    def check(rows: int):
        if rows == 0:
            return Failed(message="no rows arrived")
        return rows

    @flow
    def load():
        state = check(0, return_state=True)
        assert state.is_failed() and state.message == "no rows arrived"
        with pytest.raises(RunFailed, match="no rows arrived"):
            state.result()
        return state  # a returned failed state fails the flow too, with its message

    state = load(return_state=True)
    assert state.is_failed() and state.message == "no rows arrived"
    [run] = plait_harness.flow_runs()
    [task_run] = plait_harness.flow_run(run["id"])["task_runs"]
    assert (task_run["state_type"], task_run["state_message"]) == ("FAILED", "no rows arrived")


def test_a_returned_failed_state_is_retried_like_a_raised_error(plait_harness):
    calls = []

    @task(retries=2)
    def flaky():
        calls.append(1)
        return Failed(message="not yet") if len(calls) < 3 else "done"

    @flow
    def run_it():
        return flaky()

    assert run_it() == "done" and len(calls) == 3


def test_a_task_returning_completed_keeps_its_name_message_and_data(plait_harness):
    @task
    def summarize():
        return Completed(message="3 files", name="Summarized", data={"files": 3})

    @flow
    def pipeline():
        state = summarize(return_state=True)
        assert (state.name, state.message, state.result()) == ("Summarized", "3 files", {"files": 3})
        return summarize()

    assert pipeline() == {"files": 3}
    [run] = plait_harness.flow_runs()
    task_runs = plait_harness.flow_run(run["id"])["task_runs"]
    names = {(t["state_type"], t["state_name"], t["state_message"]) for t in task_runs}
    assert names == {("COMPLETED", "Summarized", "3 files")}


def test_a_task_returning_cancelled_is_cancelled_and_a_non_final_state_fails(plait_harness):
    @task
    def skip():
        return Cancelled(message="nothing to do today")

    @task
    def odd():
        return Running()

    @flow
    def both():
        return skip(return_state=True), odd(return_state=True)

    skipped, wrong = both()  # looked at by the flow (return_state): they do not fail it
    assert (skipped.type.value, wrong.type.value) == ("CANCELLED", "FAILED")
    [run] = plait_harness.flow_runs()
    task_runs = plait_harness.flow_run(run["id"])["task_runs"]
    got = {t["task_name"]: (t["state_type"], t["state_message"]) for t in task_runs}
    assert got["skip"] == ("CANCELLED", "nothing to do today")
    assert got["odd"][0] == "FAILED" and "returned a Running state" in got["odd"][1]


def test_a_flow_returning_completed_keeps_its_name_and_message(plait_harness):
    @flow
    def nightly():
        return Completed(message="42 rows loaded", name="Loaded", data=42)

    state = nightly(return_state=True)
    assert (state.type.value, state.name, state.message) == ("COMPLETED", "Loaded", "42 rows loaded")
    assert state.result() == 42
    [run] = plait_harness.flow_runs()
    assert (run["state_name"], run["state_message"]) == ("Loaded", "42 rows loaded")


def test_a_flow_returning_failed_fails_with_its_message(plait_harness):
    @flow
    def nightly():
        return Failed(message="the warehouse was read-only")

    state = nightly(return_state=True)
    assert state.is_failed() and state.message == "the warehouse was read-only"
    [run] = plait_harness.flow_runs()
    assert run["state_message"] == "the warehouse was read-only"


def test_map_broadcasts_arguments_that_are_not_iterables(plait_harness):
    @task
    def scale(x: int, factor: int, label: str, pairs: tuple[int, int]) -> str:
        return f"{label}:{x * factor}:{pairs}"

    @flow
    def fan():
        return scale.map([1, 2, 3], 10, "n", unmapped((0, 1))).result()

    assert fan() == ["n:10:(0, 1)", "n:20:(0, 1)", "n:30:(0, 1)"]  # an int and a str go whole to each run


def test_map_still_needs_one_iterable(plait_harness):
    @task
    def one(x: int) -> int:
        return x

    @flow
    def none_iterable():
        return one.map(5)

    with pytest.raises(ParameterBindError, match="needs at least one iterable"):
        none_iterable()
