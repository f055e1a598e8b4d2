"""flow_run_name and task_run_name: templates of the parameters, or functions."""

from __future__ import annotations

from datetime import date

import pytest

from plait import flow, runtime, task
from plait.exceptions import InvalidOptions, PlaitError


def test_templates_name_flow_and_task_runs_from_their_parameters(plait_harness):
    @task(task_run_name="load-{table}-{limit}")
    def load(table: str, limit: int = 5) -> str:
        return runtime.task_run.name

    @flow(flow_run_name="report-{day:%Y-%m-%d}")
    def report(day: date) -> tuple[str, list[str]]:
        return runtime.flow_run.name, [load("orders"), load("users", limit=1)]

    name, task_names = report("2026-12-04")
    assert name == "report-2026-12-04"
    assert task_names == ["load-orders-5", "load-users-1"]
    [run] = plait_harness.flow_runs()
    assert run["name"] == "report-2026-12-04"
    assert sorted(t["name"] for t in plait_harness.flow_run(run["id"])["task_runs"]) == task_names


def test_functions_name_runs_with_or_without_the_parameters(plait_harness):
    @task(task_run_name=lambda parameters: f"square-{parameters['x']}")
    def square(x: int) -> int:
        return x * x

    @flow(flow_run_name=lambda: "fixed-name")
    def squares() -> list[int]:
        return square.map([1, 2]).result()

    assert squares() == [1, 4]
    [run] = plait_harness.flow_runs()
    assert run["name"] == "fixed-name"
    assert sorted(t["name"] for t in plait_harness.flow_run(run["id"])["task_runs"]) == ["square-1", "square-2"]


def test_a_template_naming_no_parameter_is_refused_at_decoration():
    with pytest.raises(InvalidOptions, match="names 'dya', which is not one of its parameters \\(day\\)"):
        @flow(flow_run_name="report-{dya}")
        def report(day: str) -> None: ...

    with pytest.raises(InvalidOptions, match="must be a template string"):
        task(task_run_name=42)(lambda: None)


def test_a_name_function_that_fails_or_returns_nothing_gives_a_clear_error(plait_harness):
    @flow(flow_run_name=lambda: 1 / 0)
    def broken() -> None: ...

    @flow(flow_run_name=lambda: "  ")
    def empty() -> None: ...

    with pytest.raises(PlaitError, match="flow_run_name of flow 'broken' failed: ZeroDivisionError"):
        broken()
    with pytest.raises(PlaitError, match="must give a non-empty string"):
        empty()
    assert plait_harness.flow_runs() == []  # nothing ran


def test_a_secret_in_a_run_name_is_masked(plait_harness):
    from plait import register_secret

    register_secret("hunter2-very-secret")

    @flow(flow_run_name="deploy-{token}")
    def deploy(token: str) -> str:
        return runtime.flow_run.name

    assert deploy("hunter2-very-secret") == "deploy-***"
