"""The sync and async drivers share one state machine: same inputs, same recorded history."""

import asyncio

import pytest

from plait import flow, task


def _make(kind: str):
    attempts = {"n": 0}

    def flaky_body(x):
        attempts["n"] += 1
        if attempts["n"] < 2:
            raise ConnectionError("first attempt fails")
        return x + 1

    def broken_body():
        raise ValueError("always")

    if kind == "sync":
        flaky = task(retries=2)(flaky_body)
        broken = task(broken_body)
        cached = task(cache_policy="inputs")(lambda x: x * 2)

        @flow(name=f"parity-{kind}")
        def body(x):
            a = flaky(x)
            b = cached(a)
            c = cached(a)
            d = broken(return_state=True)
            return [a, b, c, d.type.value]

        return lambda x: body(x)

    async def flaky_async(x):
        return flaky_body(x)

    async def broken_async():
        return broken_body()

    async def double_async(x):
        return x * 2

    flaky = task(retries=2)(flaky_async)
    broken = task(broken_async)
    cached = task(cache_policy="inputs")(double_async)

    @flow(name=f"parity-{kind}")
    async def body(x):
        a = await flaky(x)
        b = await cached(a)
        c = await cached(a)
        d = await broken(return_state=True)
        return [a, b, c, d.type.value]

    return lambda x: asyncio.run(body(x))


def _history(harness):
    run = harness.flow_runs()[0]
    detail = harness.flow_run(run["id"])
    tasks = sorted(detail["task_runs"], key=lambda t: t["start_time"] or t["end_time"])
    return (
        [s["type"] for s in detail["states"]],
        [[s["type"] for s in t["states"]] for t in tasks],
    )


@pytest.mark.parametrize("x", [1, 5])
def test_sync_and_async_runs_record_the_same_history(plait_harness, x):
    results, histories = {}, {}
    for kind in ("sync", "async"):
        results[kind] = _make(kind)(x)
        histories[kind] = _history(plait_harness)
    assert results["sync"] == results["async"] == [x + 1, 2 * (x + 1), 2 * (x + 1), "FAILED"]
    assert histories["sync"] == histories["async"]
    flow_states, task_states = histories["sync"]
    assert flow_states == ["PENDING", "RUNNING", "COMPLETED"]
    assert ["PENDING", "RUNNING", "RETRYING", "RUNNING", "COMPLETED"] in task_states
    assert ["PENDING", "CACHED"] in task_states
