"""Flows and tasks as a user writes them; history checked through the real store."""

import asyncio
import threading
import time

import pytest

from plait import (
    ThreadPoolTaskRunner,
    flow,
    get_run_logger,
    runtime,
    task,
    unmapped,
)
from plait.exceptions import PlaitError


@task
def double(x):
    return x * 2


@task
def add(x, y):
    return x + y


@task
def explode(message="boom"):
    raise RuntimeError(message)


def test_task_call_in_flow_returns_value_and_records_history(plait_harness):
    @task
    def rows(n):
        return list(range(n))

    @flow
    def pipeline(n: int):
        return add(len(double(rows(n))), 1)

    state = pipeline(5, return_state=True)
    assert state.is_completed() and state.result() == 11
    runs = plait_harness.flow_runs()
    assert [r["flow_name"] for r in runs] == ["pipeline"]
    detail = plait_harness.flow_run(runs[0]["id"])
    assert detail["parameters"] == {"n": 5}
    assert [s["type"] for s in detail["states"]] == ["PENDING", "RUNNING", "COMPLETED"]
    by_name = {t["name"]: t for t in detail["task_runs"]}
    assert set(by_name) == {"rows-0", "double-0", "add-0"}
    # the list rows returned was passed to double: that is a dependency edge (ints are
    # not tracked by identity, so add has none)
    assert [u["id"] for u in by_name["double-0"]["upstream"]] == [by_name["rows-0"]["id"]]
    assert by_name["add-0"]["upstream"] == []
    assert [s["type"] for s in by_name["add-0"]["states"]] == ["PENDING", "RUNNING", "COMPLETED"]


def test_retries_with_backoff_list_then_success(plait_harness):
    attempts = []

    @task(retries=3, retry_delay_seconds=[0.01, 0.05])
    def flaky():
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise ConnectionError(f"attempt {len(attempts)}")
        return "ok"

    @flow
    def f():
        return flaky()

    assert f() == "ok"
    assert len(attempts) == 3
    assert attempts[1] - attempts[0] >= 0.01 and attempts[2] - attempts[1] >= 0.05
    detail = plait_harness.flow_run(plait_harness.flow_runs()[0]["id"])
    run = detail["task_runs"][0]
    assert run["run_count"] == 3 and run["retries"] == 2
    assert [s["type"] for s in run["states"]] == [
        "PENDING", "RUNNING", "RETRYING", "RUNNING", "RETRYING", "RUNNING", "COMPLETED",
    ]
    assert "ConnectionError: attempt 1" in run["states"][2]["message"]


def test_retry_condition_can_stop_retries(plait_harness):
    seen = []

    def only_connection_errors(task_, run, state):
        seen.append((task_.name, run.run_count, state.type.value))
        return isinstance(state.result(raise_on_failure=False), ConnectionError)

    @task(retries=5, retry_condition=only_connection_errors)
    def picky():
        raise ValueError("not retryable")

    @flow
    def f():
        return {"state": picky(return_state=True)}  # returning a bare failed State would fail the flow

    state = f()["state"]
    assert state.is_failed() and "not retryable" in state.message
    assert seen == [("picky", 1, "FAILED")]


def test_flow_with_unhandled_task_failure_fails_and_reraises_original(plait_harness):
    @flow
    def f():
        explode.submit("kaput")
        return "unreachable verdict"

    with pytest.raises(RuntimeError, match="kaput"):
        f()
    run = plait_harness.flow_runs()[0]
    assert run["state_type"] == "FAILED" and "kaput" in run["state_message"]


def test_handled_failure_keeps_flow_completed(plait_harness):
    @flow
    def f():
        state = explode(return_state=True)
        try:
            explode("caught")
        except RuntimeError:
            pass
        future = explode.submit()
        return state.is_failed(), future.result(raise_on_failure=False).args

    assert f() == (True, ("boom",))
    assert plait_harness.flow_runs()[0]["state_type"] == "COMPLETED"


def test_submit_map_and_unmapped_record_edges(plait_harness):
    @task
    def total(values):
        return sum(values)

    @flow
    def f():
        base = double.submit(1)
        mapped = add.map([1, 2, 3], unmapped(base))
        return total(mapped)

    assert f() == (1 + 2) + (2 + 2) + (3 + 2)
    detail = plait_harness.flow_run(plait_harness.flow_runs()[0]["id"])
    by_name = {t["name"]: t for t in detail["task_runs"]}
    assert {f"add-{i}" for i in range(3)} <= set(by_name)
    for i in range(3):
        assert [u["task_name"] for u in by_name[f"add-{i}"]["upstream"]] == ["double"]
    assert sorted(u["task_name"] for u in by_name["total-0"]["upstream"]) == ["add", "add", "add"]


def test_wait_for_adds_edge_without_data_and_skips_on_failure(plait_harness):
    @flow
    def f():
        first = double.submit(2)
        second = add.submit(1, 1, wait_for=[first])
        broken = explode.submit()
        skipped = add.submit(1, 2, wait_for=[broken])
        return second.result(), skipped.state, broken

    with pytest.raises(RuntimeError, match="boom"):
        f()
    detail = plait_harness.flow_run(plait_harness.flow_runs()[0]["id"])
    by_name = {t["name"]: t for t in detail["task_runs"]}
    assert by_name["add-0"]["upstream"][0]["kind"] == "wait_for"
    assert by_name["add-1"]["state_type"] == "CANCELLED"
    assert by_name["add-1"]["state_name"] == "Skipped"
    assert "explode-0" in by_name["add-1"]["state_message"]


def test_future_api(plait_harness):
    @task
    def slow(x):
        time.sleep(0.05)
        return x

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def f():
        future = slow.submit(7)
        with pytest.raises(TimeoutError):
            future.result(timeout=0.001)
        state = future.wait()
        return state.is_completed(), future.state.type.value, future.result(timeout=5)

    assert f() == (True, "COMPLETED", 7)


def test_thread_pool_runs_tasks_concurrently(plait_harness):
    threads = set()
    # Each task waits until all four are running at once: run one after another, the first
    # would wait in vain and fail (a barrier, not a stopwatch, so a loaded machine passes).
    all_running = threading.Barrier(4, timeout=30)

    @task
    def together(i):
        threads.add(threading.current_thread().name)
        all_running.wait()
        return i

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
    def f():
        return together.map(range(4)).result()

    assert f() == [0, 1, 2, 3]
    assert len(threads) == 4


def test_async_tasks_run_concurrently_on_the_event_loop(plait_harness):
    arrived = []

    @task
    async def nap(i):
        # Returns only once all six tasks are running at the same time (run one after
        # another, the first would time out waiting and fail).
        arrived.append(i)
        async with asyncio.timeout(30):
            while len(arrived) < 6:
                await asyncio.sleep(0.01)
        return i

    @flow
    async def f():
        futures = [nap.submit(i) for i in range(5)]
        direct = await nap(99)
        return [await fut for fut in futures] + [direct]

    assert asyncio.run(f()) == [0, 1, 2, 3, 4, 99]
    detail = plait_harness.flow_run(plait_harness.flow_runs()[0]["id"])
    assert len(detail["task_runs"]) == 6
    assert all(t["state_type"] == "COMPLETED" for t in detail["task_runs"])


def test_async_task_submitted_from_sync_flow(plait_harness):
    @task
    async def nap(i):
        await asyncio.sleep(0.01)
        return i * 3

    @flow
    def f():
        return nap.map([1, 2]).result()

    assert f() == [3, 6]


def test_subflows_link_to_parent(plait_harness):
    @flow
    def child(x):
        return double(x)

    @flow
    def parent():
        return child(3) + child(4)

    assert parent() == 14
    runs = plait_harness.flow_runs()
    parent_run = next(r for r in runs if r["flow_name"] == "parent")
    children = [r for r in runs if r["flow_name"] == "child"]
    assert len(children) == 2 and all(r["parent_flow_run_id"] == parent_run["id"] for r in children)
    assert len(plait_harness.flow_run(parent_run["id"])["subflows"]) == 2


def test_dynamic_graph_from_plain_python(plait_harness):
    @flow
    def f(items):
        out = []
        for item in items:
            if item % 2:
                out.append(double(item))
        return out

    assert f([1, 2, 3]) == [2, 6]
    detail = plait_harness.flow_run(plait_harness.flow_runs()[0]["id"])
    assert sorted(t["name"] for t in detail["task_runs"]) == ["double-0", "double-1"]


def test_task_outside_flow_runs_and_is_recorded(plait_harness):
    assert double(21) == 42
    from plait._store import history as queries

    db = plait_harness.database()
    with db.engine.connect() as conn:
        from sqlalchemy import text

        rows = conn.execute(text("select task_name, state_type, flow_run_id from task_runs")).all()
    assert rows == [("double", "COMPLETED", None)]
    assert queries is not None


def test_run_logger_and_log_prints_are_stored(plait_harness):
    @task(log_prints=True)
    def chatty():
        print("printed from task")
        get_run_logger().warning("careful %s", runtime.task_run.name)

    @flow
    def f():
        get_run_logger().info("flow %s with %s", runtime.flow_run.flow_name, runtime.flow_run.parameters)
        print("not captured: log_prints is off for the flow")
        chatty()

    f()
    logs = plait_harness.logs(plait_harness.flow_runs()[0]["id"])
    messages = [(row["level"], row["message"], row["task_name"]) for row in logs]
    assert ("INFO", "flow f with {}", None) in messages
    assert ("INFO", "printed from task", "chatty") in messages
    assert ("WARNING", "careful chatty-0", "chatty") in messages
    assert not any("not captured" in m for _, m, _ in messages)


def test_get_run_logger_outside_run_is_a_clear_error():
    with pytest.raises(PlaitError, match="outside a flow or task run"):
        get_run_logger()


def test_runtime_access(plait_harness):
    seen = {}

    @task
    def inner():
        seen["task"] = (runtime.task_run.name, runtime.task_run.parameters, runtime.flow_run.id)

    @flow
    def f(a, b=2):
        seen["flow"] = (runtime.flow_run.id, runtime.flow_run.parameters)
        inner()

    f(1)
    flow_id, params = seen["flow"]
    assert params == {"a": 1, "b": 2}
    assert seen["task"] == ("inner-0", {}, flow_id)
    assert runtime.flow_run.id is None and runtime.task_run.parameters == {}


def test_timeouts_fail_sync_and_async_tasks(plait_harness):
    @task(timeout_seconds=0.1)
    def stuck():
        time.sleep(6)

    @task(timeout_seconds=0.1)
    async def stuck_async():
        await asyncio.sleep(6)

    @flow
    def f():
        return [stuck(return_state=True)]

    start = time.perf_counter()
    [state] = f()
    assert state.is_failed() and "timeout" in state.message
    assert time.perf_counter() - start < 5  # the task would sleep 6 s

    @flow
    async def g():
        return [await stuck_async(return_state=True)]

    [state] = asyncio.run(g())
    assert state.is_failed() and "timeout of 0.1s" in state.message


def test_flow_retries_rerun_the_body(plait_harness):
    calls = []

    @flow(retries=1)
    def f():
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("first time")
        return len(calls)

    assert f() == 2
    states = plait_harness.flow_run(plait_harness.flow_runs()[0]["id"])["states"]
    assert [s["type"] for s in states] == ["PENDING", "RUNNING", "RETRYING", "RUNNING", "COMPLETED"]


def test_with_options_copies(plait_harness):
    quick = explode.with_options(name="explode-fast", retries=1)
    assert quick.options.retries == 1 and explode.options.retries == 0
    assert quick.name == "explode-fast"

    @flow
    def f():
        return [quick(return_state=True)]

    assert f()[0].is_failed()
    named = f.with_options(name="renamed")
    named()
    assert {r["flow_name"] for r in plait_harness.flow_runs()} == {"f", "renamed"}


def test_keyboard_interrupt_marks_runs_crashed(plait_harness):
    @task
    def interrupted():
        raise KeyboardInterrupt

    @flow
    def f():
        interrupted()

    with pytest.raises(KeyboardInterrupt):
        f()
    run = plait_harness.flow_runs()[0]
    assert run["state_type"] == "CRASHED"
    assert plait_harness.flow_run(run["id"])["task_runs"][0]["state_type"] == "CRASHED"
