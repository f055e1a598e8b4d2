"""Prefect's future helpers: wait(futures, timeout) -> (done, not_done), as_completed,
allow_failure, quote; and futures nested in dataclasses and pydantic models are resolved."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest
from pydantic import BaseModel

from plait import ThreadPoolTaskRunner, allow_failure, as_completed, flow, quote, task, wait


@task
def sleepy(seconds: float, label: str) -> str:
    time.sleep(seconds)
    return label


def test_wait_returns_done_and_not_done_after_the_timeout(plait_harness):
    release = threading.Event()

    @task
    def blocked() -> str:
        release.wait(10)
        return "late"

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
    def waiting():
        quick = [sleepy.submit(0, f"q{i}") for i in range(3)]
        slow = blocked.submit()
        done, not_done = wait([*quick, slow], timeout=0.5)
        split = ({f.result() for f in done}, list(not_done) == [slow])
        release.set()
        done_all, left = wait([*quick, slow])
        return split, len(done_all), left

    (done_values, slow_pending), count, left = waiting()
    assert done_values == {"q0", "q1", "q2"} and slow_pending and count == 4 and left == set()


def test_as_completed_yields_in_finishing_order(plait_harness):
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=3))
    def racing():
        futures = [sleepy.submit(0.6, "slow"), sleepy.submit(0.0, "fast"), sleepy.submit(0.3, "middle")]
        return [f.result() for f in as_completed(futures)]

    assert racing() == ["fast", "middle", "slow"]


def test_as_completed_times_out(plait_harness):
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def too_slow():
        futures = [sleepy.submit(1.5, "slow")]
        with pytest.raises(TimeoutError, match="did not finish within 0.2s"):
            list(as_completed(futures, timeout=0.2))
        return futures[0].result()

    assert too_slow() == "slow"


def test_allow_failure_runs_the_downstream_with_the_upstream_error(plait_harness):
    @task
    def extract():
        raise ValueError("source is down")

    @task
    def cleanup(previous):
        return f"cleaned up after {type(previous).__name__}: {previous}"

    @flow
    def pipeline():
        first = extract.submit()
        after = cleanup.submit(allow_failure(first))
        waited = cleanup.submit("x", wait_for=[allow_failure(first)])
        return after.result(), waited.result()

    assert pipeline() == ("cleaned up after ValueError: source is down", "cleaned up after str: x")
    [run] = plait_harness.flow_runs()
    states = {t["name"]: t["state_type"] for t in plait_harness.flow_run(run["id"])["task_runs"]}
    assert states == {"extract-0": "FAILED", "cleanup-0": "COMPLETED", "cleanup-1": "COMPLETED"}
    assert run["state_type"] == "COMPLETED"  # the failure was handled by allowing it


def test_without_allow_failure_the_downstream_is_skipped(plait_harness):
    @task
    def extract():
        raise ValueError("source is down")

    @task
    def cleanup(previous):
        return previous

    @flow
    def pipeline():
        return cleanup.submit(extract.submit()).wait().name

    with pytest.raises(ValueError):  # the unhandled upstream failure fails the flow
        pipeline()


class Big:
    """Looks inside it and you find futures: quote() must not."""

    def __init__(self) -> None:
        self.touched = False

    def __iter__(self):
        self.touched = True
        return iter(())


def test_quote_passes_the_value_unopened(plait_harness):
    @task
    def size(value):
        return type(value).__name__

    big = Big()

    @flow
    def quoted():
        return size(quote(big)), size.submit(quote([sleepy.submit(0, "inner")])).result()

    name, inner = quoted()
    assert name == "Big" and not big.touched
    assert inner == "list"  # the future inside a quoted list was not resolved
    [run] = plait_harness.flow_runs()
    params = [t["parameters"] for t in plait_harness.flow_run(run["id"])["task_runs"] if t["task_name"] == "size"]
    assert params[0] == {"value": "quote(<Big>)"}


@dataclass(frozen=True)
class Batch:
    rows: object
    label: str


class Settings(BaseModel):
    model_config = {"arbitrary_types_allowed": True}
    source: object
    limit: int = 3


def test_futures_inside_dataclasses_and_pydantic_models_are_resolved(plait_harness):
    @task
    def rows() -> list[int]:
        return [1, 2, 3]

    @task
    def count(batch: Batch, settings: Settings) -> tuple[int, str, list[int]]:
        return len(batch.rows), batch.label, settings.source  # type: ignore[arg-type, return-value]

    @flow
    def nested():
        future = rows.submit()
        return count(Batch(future, "b1"), Settings(source=future))

    assert nested() == (3, "b1", [1, 2, 3])
    [run] = plait_harness.flow_runs()
    [counted] = [t for t in plait_harness.flow_run(run["id"])["task_runs"] if t["task_name"] == "count"]
    assert {(u["task_name"], u["kind"]) for u in counted["upstream"]} == {("rows", "data")}  # edges recorded
