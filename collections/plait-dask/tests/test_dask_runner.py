"""DaskTaskRunner on a real LocalCluster (two worker processes): bodies run on the workers,
while states, retries, timeouts, caching and history are recorded by the flow's process."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from distributed import Client, LocalCluster
from plait_dask import DaskTaskRunner

from plait import flow, get_run_logger, task
from plait.exceptions import InvalidOptions, PlaitError


@task
def whereabouts(i: int) -> tuple[int, int]:
    get_run_logger().info("task %d on worker %d", i, os.getpid())
    return i, os.getpid()


@task(retries=2)
def flaky(marker: str) -> int:
    path = Path(marker)  # attempts may land on either worker: count them in a file
    attempts = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(attempts))
    if attempts < 3:
        raise ConnectionError(f"attempt {attempts}: the warehouse hung up")
    return attempts


@task
def broken(x: int) -> int:
    raise KeyError(f"no row {x}")


@task(timeout_seconds=0.5)
def stuck() -> None:
    time.sleep(4)


@task(cache_policy="inputs")
def costly(x: int, marker: str) -> int:
    with open(marker, "a") as f:
        f.write(f"{os.getpid()}\n")
    return x * 10


@task
def noop(i: int) -> int:
    return i


def _runs(harness) -> list[dict]:
    return harness.flow_run(harness.flow_runs()[0]["id"])["task_runs"]


def test_bodies_run_on_the_workers_and_plait_records_them(plait_harness, dask_address, worker_pids) -> None:
    @flow(task_runner=DaskTaskRunner(address=dask_address))
    def spread() -> list[tuple[int, int]]:
        return [f.result() for f in whereabouts.map(range(8))]

    state = spread(return_state=True)
    assert state.is_completed(), state.message
    values = state.result()
    assert [i for i, _ in values] == list(range(8))
    pids = {pid for _, pid in values}
    assert os.getpid() not in pids and pids <= worker_pids
    runs = _runs(plait_harness)
    assert [r["state_type"] for r in runs] == ["COMPLETED"] * 8
    lines = [line for line in plait_harness.logs(plait_harness.flow_runs()[0]["id"]) if line.get("task_run_id")]
    assert len([line for line in lines if "on worker" in line["message"]]) == 8
    assert {line["task_run_id"] for line in lines} == {r["id"] for r in runs}


def test_retries(plait_harness, dask_address, tmp_path: Path) -> None:
    @flow(task_runner=DaskTaskRunner(address=dask_address))
    def retried() -> int:
        return flaky.submit(str(tmp_path / "attempts")).result()

    assert retried() == 3
    (run,) = _runs(plait_harness)
    assert run["run_count"] == 3 and run["state_type"] == "COMPLETED"
    assert [s["type"] for s in run["states"]].count("RETRYING") == 2


def test_a_failing_task_has_its_state_and_message(plait_harness, dask_address) -> None:
    @flow(task_runner=DaskTaskRunner(address=dask_address))
    def failing() -> int:
        return broken.submit(7).result()

    state = failing(return_state=True)
    assert state.is_failed()
    (run,) = _runs(plait_harness)
    assert run["state_type"] == "FAILED"
    assert run["state_message"] == "KeyError: 'no row 7' (after 1 attempt)"
    assert isinstance(state.result(raise_on_failure=False), KeyError)


def test_a_timeout_fails_the_run_at_once(plait_harness, dask_address) -> None:
    @flow(task_runner=DaskTaskRunner(address=dask_address))
    def slow() -> None:
        stuck.submit().result()

    started = time.monotonic()
    state = slow(return_state=True)
    assert state.is_failed() and "exceeded its timeout of 0.5s" in state.message
    assert time.monotonic() - started < 3.5


def test_a_cache_hit_does_not_reach_the_cluster(plait_harness, dask_address, tmp_path: Path) -> None:
    marker = tmp_path / "calls"

    @flow(task_runner=DaskTaskRunner(address=dask_address))
    def twice() -> list[int]:
        return [costly.submit(4, str(marker)).result() for _ in range(2)]

    assert twice() == [40, 40]
    assert [r["state_type"] for r in sorted(_runs(plait_harness), key=lambda r: r["name"])] == ["COMPLETED", "CACHED"]
    assert len(marker.read_text().split()) == 1


def test_an_unpicklable_function_names_the_task(plait_harness, dask_address) -> None:
    lock = threading.Lock()

    @task
    def guarded() -> bool:
        with lock:
            return True

    @flow(task_runner=DaskTaskRunner(address=dask_address))
    def uses_it() -> bool:
        return guarded.submit().result()

    state = uses_it(return_state=True)
    assert state.is_failed()
    assert state.message.startswith(f"SerializationError: task 'guarded' cannot run in the Dask cluster at "
                                    f"{dask_address}: its function")


def test_connecting_by_address_leaves_the_cluster_running(plait_harness, dask_address) -> None:
    runner = DaskTaskRunner(address=dask_address)

    @flow(task_runner=runner)
    def one() -> int:
        return noop.submit(5).result()

    assert one() == 5
    assert one() == 5  # each flow run connects a new client to the same scheduler
    with Client(dask_address) as client:
        assert len(client.scheduler_info()["workers"]) == 2
    assert repr(runner) == f"DaskTaskRunner(address={dask_address!r})"


def test_an_unreachable_scheduler_is_a_clear_error(plait_harness) -> None:
    @flow(task_runner=DaskTaskRunner(address="tcp://127.0.0.1:9", client_kwargs={"timeout": 1}))
    def nowhere() -> int:
        return noop.submit(1).result()

    with pytest.raises(PlaitError, match=r"cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"):
        nowhere()


class RecordingCluster(LocalCluster):
    """A real LocalCluster that notes that it was closed."""

    closed: list[str] = []

    def close(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        RecordingCluster.closed.append(self.scheduler_address)
        return super().close(*args, **kwargs)


def test_the_runner_starts_adapts_and_closes_its_own_cluster(plait_harness) -> None:
    runner = DaskTaskRunner(cluster_class=RecordingCluster,
                            cluster_kwargs={"n_workers": 0, "processes": True, "threads_per_worker": 1,
                                            "dashboard_address": None},
                            adapt_kwargs={"minimum": 1, "maximum": 1})

    @flow(task_runner=runner)
    def own() -> int:
        return whereabouts.submit(1).result()[1]

    pid = own()
    assert pid != os.getpid()
    assert len(RecordingCluster.closed) == 1  # closed when the flow run ended
    assert "cluster_kwargs=['dashboard_address', 'n_workers', 'processes', 'threads_per_worker']" in repr(runner)


def test_options_are_checked() -> None:
    with pytest.raises(InvalidOptions, match="either address="):
        DaskTaskRunner(address="tcp://127.0.0.1:8786", cluster_kwargs={"n_workers": 2})
    with pytest.raises(InvalidOptions, match="cluster_kwargs must be a dict"):
        DaskTaskRunner(cluster_kwargs=[("n_workers", 2)])  # type: ignore[arg-type]
    copy = DaskTaskRunner(cluster_class="distributed.LocalCluster", adapt_kwargs={"maximum": 4}).duplicate()
    assert copy.cluster_class == "distributed.LocalCluster" and copy.adapt_kwargs == {"maximum": 4}


@pytest.mark.slow
def test_ten_thousand_mapped_tasks_on_two_workers(plait_harness, dask_address, worker_pids) -> None:
    @task
    def pid_of(i: int) -> int:
        return os.getpid()

    @flow(task_runner=DaskTaskRunner(address=dask_address))
    def wide() -> set[int]:
        return {f.result() for f in pid_of.map(range(10_000))}

    state = wide(return_state=True)
    assert state.is_completed(), state.message
    assert state.result() == worker_pids  # both workers took part, the flow's process none
    runs = _runs(plait_harness)
    assert len(runs) == 10_000 and {r["state_type"] for r in runs} == {"COMPLETED"}
