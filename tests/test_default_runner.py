"""The default task runner: .submit() and .map() run concurrently on threads (as Prefect 3),
direct calls stay in the calling thread, and the runner's lean futures behave as futures."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import pytest

from plait import InProcessTaskRunner, ThreadPoolTaskRunner, as_completed, flow, task, wait
from plait.task_runners import _Pending


@pytest.fixture(autouse=True)
def _env(plait_env: str) -> None:
    """Every test records to a fresh database."""


def test_ten_mapped_waits_run_at_once_on_the_default_runner() -> None:
    # Each task waits for all ten to be running: only ten concurrent threads get through.
    gate = threading.Barrier(10, timeout=20)

    @task
    def rendezvous(i: int) -> int:
        gate.wait()
        return i

    @flow
    def fan_out() -> list[int]:
        return rendezvous.map(range(10)).result()

    assert fan_out() == list(range(10))
    assert not gate.broken


def test_submitted_tasks_overlap_and_direct_calls_stay_in_the_flow_thread() -> None:
    threads: dict[str, int] = {}

    @task
    def where(label: str) -> str:
        threads[label] = threading.get_ident()
        return label

    @task
    def slow(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    @flow
    def mixed() -> float:
        threads["flow"] = threading.get_ident()
        where("direct")
        where.submit("submitted").result()
        start = time.perf_counter()
        futures = [slow.submit(0.5) for _ in range(4)]
        wait(futures)
        return time.perf_counter() - start

    took = mixed()
    assert threads["direct"] == threads["flow"]
    assert threads["submitted"] != threads["flow"]
    assert took < 1.9, f"four 0.5 s tasks took {took:.2f} s: they ran one after another"


def test_max_workers_setting_bounds_the_default_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAIT_TASK_RUNNER_MAX_WORKERS", "2")
    running = 0
    most = 0
    lock = threading.Lock()

    @task
    def busy(i: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return i

    @flow
    def bounded() -> list[int]:
        return busy.map(range(8)).result()

    assert bounded() == list(range(8))
    assert most == 2


def test_a_flow_that_only_calls_tasks_directly_starts_no_thread() -> None:
    @task
    def double(x: int) -> int:
        return 2 * x

    @flow
    def direct() -> tuple[int, int]:
        before = threading.active_count()
        double(1)
        double(2)
        return before, threading.active_count()

    before, after = direct()
    assert after == before


def test_in_process_runner_is_still_one_at_a_time() -> None:
    order: list[str] = []

    @task
    def step(label: str) -> None:
        order.append(f"start {label}")
        time.sleep(0.01)
        order.append(f"end {label}")

    @flow(task_runner=InProcessTaskRunner())
    def sequential() -> None:
        step.map(["a", "b"]).wait()

    sequential()
    assert order == ["start a", "end a", "start b", "end b"]


def test_failures_and_results_cross_the_thread_pool() -> None:
    @task
    def maybe(i: int) -> int:
        if i == 2:
            raise ValueError("two is bad")
        return i

    @flow
    def partly() -> list[str]:
        states = maybe.map(range(4)).wait()
        return [s.type.value for s in states]

    assert partly() == ["COMPLETED", "COMPLETED", "FAILED", "COMPLETED"]


def test_lean_futures_wait_for_themselves_not_their_siblings() -> None:
    runner = ThreadPoolTaskRunner(max_workers=2)
    release = threading.Event()
    quick = runner.submit(lambda: "quick")
    held = runner.submit(lambda: release.wait(10) and "held")
    assert isinstance(held, _Pending)
    assert quick.result(timeout=5) == "quick"
    # the sibling's completion wakes the shared condition; this one must still time out
    with pytest.raises(concurrent.futures.TimeoutError):
        held.result(timeout=0.2)
    release.set()
    assert held.result(timeout=5) == "held"
    done, not_done = concurrent.futures.wait([quick, held], timeout=5)
    assert not_done == set() and done == {quick, held}
    runner.shutdown()


def test_as_completed_and_exceptions_of_lean_futures() -> None:
    runner = ThreadPoolTaskRunner(max_workers=3)

    def boom() -> None:
        raise RuntimeError("crashed")

    futures = [runner.submit(lambda i=i: i) for i in range(3)] + [runner.submit(boom)]
    seen = {f for f in concurrent.futures.as_completed(futures, timeout=5)}
    assert seen == set(futures)
    assert isinstance(futures[-1].exception(timeout=1), RuntimeError)
    with pytest.raises(RuntimeError, match="crashed"):
        futures[-1].result()
    runner.shutdown()
    # a runner that was shut down takes work again (a flow run starts and stops its runner)
    assert runner.submit(lambda: 7).result(timeout=5) == 7
    runner.shutdown()


def test_plait_as_completed_over_the_default_runner() -> None:
    @task
    def nap(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    @flow
    def first_done() -> list[float]:
        return [f.result() for f in as_completed([nap.submit(0.4), nap.submit(0.05)])]

    assert first_done() == [0.05, 0.4]
