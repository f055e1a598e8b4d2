"""ProcessPoolTaskRunner: task bodies in real worker processes (spawned), while states,
retries, timeouts, caching, results and logs are recorded by the flow's process."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from plait import flow, get_run_logger, task
from plait.exceptions import InvalidOptions
from plait.task_runners import ProcessPoolTaskRunner, RemoteTaskRunner

RUNNER = ProcessPoolTaskRunner(max_workers=2)


@task
def square(x: int) -> tuple[int, int]:
    get_run_logger().info("squaring %d in %d", x, os.getpid())
    return x * x, os.getpid()


@task(retries=2)
def flaky(marker: str) -> int:
    # the attempts may land in different processes: count them in a file
    path = Path(marker)
    attempts = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(attempts))
    if attempts < 2:
        raise RuntimeError(f"attempt {attempts} fails")
    return attempts


@task
def broken(x: int) -> int:
    raise ValueError(f"bad input {x}")


@task(timeout_seconds=0.5)
def sleepy() -> str:
    time.sleep(5)
    return "woke up"


@task(cache_policy="inputs", persist_result=True)
def expensive(x: int, marker: str) -> int:
    with open(marker, "a") as f:
        f.write(f"{os.getpid()}\n")
    return x + 1


def test_bodies_run_in_worker_processes_and_everything_is_recorded(plait_harness) -> None:
    @flow(task_runner=RUNNER)
    def squares() -> list[tuple[int, int]]:
        return [f.result() for f in square.map(range(6))]

    state = squares(return_state=True)
    assert state.is_completed(), state.message
    values = state.result()
    assert [v for v, _ in values] == [0, 1, 4, 9, 16, 25]
    pids = {pid for _, pid in values}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    run = plait_harness.flow_run(plait_harness.flow_runs()[0]["id"])
    assert sorted(t["state_type"] for t in run["task_runs"]) == ["COMPLETED"] * 6
    lines = [line["message"] for line in plait_harness.logs(run["id"]) if line.get("task_run_id")]
    assert sum("squaring" in m for m in lines) == 6  # logged in the workers, stored here
    assert any(str(pids.pop()) in m for m in lines)


def test_retries_go_through_the_flow_process(plait_harness, tmp_path: Path) -> None:
    @flow(task_runner=RUNNER)
    def retried() -> int:
        return flaky.submit(str(tmp_path / "attempts")).result()

    state = retried(return_state=True)
    assert state.is_completed(), state.message
    assert state.result() == 2
    run = plait_harness.flow_run(plait_harness.flow_runs()[0]["id"])
    (task_run,) = run["task_runs"]
    assert task_run["run_count"] == 2
    assert "RETRYING" in [s["type"] for s in task_run["states"]]


def test_a_failing_body_fails_its_run_with_the_worker_error(plait_harness) -> None:
    @flow(task_runner=RUNNER)
    def failing() -> int:
        return broken.submit(3).result()

    state = failing(return_state=True)
    assert state.is_failed()
    assert state.message.startswith("ValueError: bad input 3")
    run = plait_harness.flow_run(plait_harness.flow_runs()[0]["id"])
    (task_run,) = run["task_runs"]
    assert task_run["state_type"] == "FAILED"
    assert "ValueError: bad input 3 (after 1 attempt)" in task_run["state_message"]
    error = state.result(raise_on_failure=False)
    assert isinstance(error, ValueError)
    assert any("raised in process" in note for note in getattr(error, "__notes__", []))


def test_a_timeout_fails_the_run_without_waiting_for_the_body(plait_harness) -> None:
    @flow(task_runner=RUNNER)
    def slow() -> str:
        return sleepy.submit().result()

    started = time.monotonic()
    state = slow(return_state=True)
    assert state.is_failed()
    assert "exceeded its timeout of 0.5s" in state.message
    assert time.monotonic() - started < 4.5


def test_cached_and_persisted_results(plait_harness, tmp_path: Path) -> None:
    marker = tmp_path / "calls"

    @flow(task_runner=RUNNER)
    def twice() -> list[int]:
        return [expensive.submit(1, str(marker)).result() for _ in range(2)]

    assert twice() == [2, 2]
    assert twice() == [2, 2]
    assert len(marker.read_text().split()) == 1  # one body ran; three runs were cache hits
    run = plait_harness.flow_run(plait_harness.flow_runs()[0]["id"])
    assert sorted(t["state_type"] for t in run["task_runs"]) == ["CACHED", "CACHED"]
    assert all(t["result_ref"] for t in run["task_runs"])


@task
def dies() -> None:
    os._exit(3)


def test_a_worker_that_dies_fails_its_run_and_the_pool_is_replaced(plait_harness) -> None:
    @flow(task_runner=RUNNER)
    def survives() -> int:
        assert dies.submit().wait().is_failed()
        return square.submit(4).result()[0]  # runs in a new pool

    assert survives() == 16
    runs = {r["name"]: r for r in plait_harness.flow_run(plait_harness.flow_runs()[0]["id"])["task_runs"]}
    assert runs["dies-0"]["state_type"] == "FAILED"
    assert "did not come back from a worker process: BrokenProcessPool" in runs["dies-0"]["state_message"]


def test_an_unpicklable_function_fails_its_run_naming_the_task(plait_harness) -> None:
    lock = threading.Lock()

    @task
    def holds_a_lock() -> bool:
        with lock:
            return True

    @flow(task_runner=RUNNER)
    def uses_it() -> bool:
        return holds_a_lock.submit().result()

    state = uses_it(return_state=True)
    assert state.is_failed()
    assert "task 'holds_a_lock' cannot run in a worker process" in state.message
    assert "cannot be pickled" in state.message and "ThreadPoolTaskRunner" in state.message


def test_an_unpicklable_argument_is_named_too(plait_harness) -> None:
    @flow(task_runner=RUNNER)
    def passes_a_lock() -> object:
        return square.submit(threading.Lock()).result()

    state = passes_a_lock(return_state=True)
    assert state.is_failed()
    assert "task 'square' cannot run in a worker process: its arguments cannot be pickled" in state.message


def test_the_runner_is_a_remote_runner_and_checks_its_options() -> None:
    assert isinstance(RUNNER, RemoteTaskRunner)
    copy = RUNNER.duplicate()
    assert copy is not RUNNER and copy.max_workers == 2
    assert repr(copy) == "ProcessPoolTaskRunner(max_workers=2)"
    with pytest.raises(InvalidOptions, match="max_workers must be an integer >= 1, got 0"):
        ProcessPoolTaskRunner(0)


def test_a_direct_call_runs_in_the_flow_process_as_with_every_runner(plait_harness) -> None:
    # as in Prefect: only submit() and map() go through the task runner
    @flow(task_runner=RUNNER)
    def direct() -> int:
        return square(2)[1]

    assert direct() == os.getpid()


# -- the plait_register_task_runners hook ------------------------------------------------------
RUNNER_PLUGIN = '''
from plait.hookspecs import hookimpl
from plait.task_runners import ProcessPoolTaskRunner


class FewProcesses(ProcessPoolTaskRunner):
    """A process pool of one worker."""

    def __init__(self):
        super().__init__(max_workers=1)

    def duplicate(self):
        return FewProcesses()


@hookimpl
def plait_register_task_runners():
    return {"few-processes": FewProcesses, **EXTRA}
'''


def _runner_distribution(site: Path, name: str, extra: str = "{}", declares: tuple[str, ...] = ("few-processes",)) -> None:
    module = name.replace("-", "_")
    (site / f"{module}.py").write_text(RUNNER_PLUGIN.replace("**EXTRA", f"**{extra}"))
    info = site / f"{module}-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0.0\n")
    (info / "entry_points.txt").write_text(
        f"[plait.plugins]\n{module} = {module}\n[plait.task_runners]\n"
        + "".join(f"{n} = {module}\n" for n in declares))


def test_plait_register_task_runners_finds_a_runner_by_name_lazily(site: Path, plait_harness) -> None:
    import sys

    from plait import plugins

    _runner_distribution(site, "fake-runners")
    assert {p.name: p for p in plugins.plugins()}["fake_runners"].declares["task_runners"] == ["few-processes"]
    assert "fake_runners" not in sys.modules  # declared: imported only when the runner is asked for
    cls = plugins.task_runner_class("few-processes")
    assert cls is not None and cls.__name__ == "FewProcesses" and "fake_runners" in sys.modules
    assert plugins.task_runner_class("no-such-runner") is None
    assert plugins.task_runner_names()["few-processes"] is cls

    @flow(task_runner=cls())
    def remote() -> int:
        return square.submit(3).result()[1]

    assert remote() != os.getpid()
    assert plugins.diagnoses() == []


def test_plait_register_task_runners_diagnoses_what_is_not_a_runner(site: Path) -> None:
    from plait import plugins

    _runner_distribution(site, "fake-bad-runners", extra='{"object": object, "Bad Name": FewProcesses}')
    assert plugins.task_runner_class("few-processes") is not None  # the valid one still loads
    reasons = sorted(d.reason for d in plugins.diagnoses() if d.plugin == "fake_bad_runners")
    assert any("builtins.object is not a task runner (subclass plait.task_runners.TaskRunner" in r for r in reasons)
    assert any("'Bad Name' is not a task runner name" in r for r in reasons)


def test_plait_register_task_runners_undeclared_runner_is_diagnosed(site: Path) -> None:
    from plait import plugins

    _runner_distribution(site, "fake-sly-runners", extra='{"sly": FewProcesses}')
    assert plugins.task_runner_class("few-processes") is not None
    reasons = [d.reason for d in plugins.diagnoses() if d.plugin == "fake_sly_runners"]
    assert reasons == ["registers task runner 'sly' without declaring it"]
