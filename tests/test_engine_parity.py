"""Engine features a Prefect user expects: jitter that keeps the mean delay,
``exponential_backoff``, ``with plait.tags(...)``."""

from __future__ import annotations

import random
from statistics import mean

import pytest

import plait
from plait import flow, task
from plait._engine import jittered, retry_delay
from plait._options import TaskOptions
from plait.exceptions import InvalidOptions
from plait.tasks import exponential_backoff


@pytest.mark.parametrize("factor", [0.1, 0.5, 1.0, 3.0])
def test_jitter_keeps_the_mean_delay_and_never_exceeds_the_bound(factor):
    random.seed(20261204)
    draws = [jittered(5.0, factor) for _ in range(40_000)]
    assert abs(mean(draws) - 5.0) < 0.05 * 5.0  # the configured delay, on average
    assert max(draws) <= 5.0 * (1 + factor) + 1e-9 and min(draws) >= 0
    assert len({round(d, 6) for d in draws}) > 1_000  # and it does spread them


def test_retry_delay_applies_the_jitter_of_the_options():
    random.seed(7)
    options = TaskOptions(retries=3, retry_delay_seconds=[1, 10], retry_jitter_factor=3)
    second = [retry_delay(options, 2) for _ in range(20_000)]
    assert abs(mean(second) - 10) < 0.5 and max(second) <= 40
    assert retry_delay(TaskOptions(retries=1, retry_delay_seconds=2), 1) == 2.0  # no factor: exact


def test_exponential_backoff_gives_one_doubling_delay_per_retry(plait_harness):
    assert exponential_backoff(backoff_factor=10)(4) == [10.0, 20.0, 40.0, 80.0]
    options = TaskOptions(retries=3, retry_delay_seconds=exponential_backoff(2))
    assert [options.retry_delay(n) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    with pytest.raises(ValueError, match="backoff_factor >= 0"):
        exponential_backoff(-1)
    attempts = []

    @task(retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=0.01))
    def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("not yet")
        return len(attempts)

    @flow
    def run_it():
        return flaky()

    assert run_it() == 3


def test_a_delay_function_that_returns_garbage_is_refused_at_decoration():
    with pytest.raises(InvalidOptions, match="retry_delay_seconds"):
        TaskOptions(retries=2, retry_delay_seconds=lambda n: ["soon"] * n)


def test_tags_context_tags_every_run_started_inside(plait_harness):
    @task(tags=["own"])
    def step():
        return 1

    @flow(tags=["flow-own"])
    def tagged():
        with plait.tags("inner"):
            step()
        return step()

    with plait.tags("nightly", "finance") as current:
        assert current == {"nightly", "finance"}
        tagged()
    tagged()  # outside: only its own tags
    runs = plait_harness.flow_runs()
    assert sorted(r["tags"] for r in runs) == [["flow-own"], ["flow-own", "nightly", "finance"]]
    [first] = [r for r in runs if "nightly" in r["tags"]]
    task_tags = [t["tags"] for t in plait_harness.flow_run(first["id"])["task_runs"]]
    assert sorted(task_tags) == sorted([["own", "nightly", "finance", "inner"], ["own", "nightly", "finance"]])
    with pytest.raises(TypeError, match="takes strings"):
        with plait.tags(3):  # type: ignore[arg-type]
            pass


def test_caplog_sees_run_logs_with_console_logging_on(plait_harness, caplog, monkeypatch):
    monkeypatch.setenv("PLAIT_LOG_TO_CONSOLE", "true")  # settings are re-read when a variable changes

    @task
    def shout():
        plait.get_run_logger().warning("the task says hello")

    @flow
    def loud():
        plait.get_run_logger().info("the flow says hello")
        shout()

    with caplog.at_level("INFO"):
        loud()
    messages = [r.getMessage() for r in caplog.records]
    assert "the flow says hello" in messages and "the task says hello" in messages


MODEL_KEY = '''
import sys
from pydantic import BaseModel, SecretStr
from plait.cache_policies import hash_objects

class Window(BaseModel):
    start: str
    days: int
    labels: set[str]
    token: SecretStr | None = None

token = SecretStr(sys.argv[1]) if len(sys.argv) > 1 else None
print(hash_objects(Window(start="2026-12-01", days=3, labels={"a", "b", "c", "d"}, token=token)))
'''


def test_a_pydantic_input_gives_the_same_cache_key_in_every_process(tmp_path):
    import os
    import subprocess
    import sys

    script = tmp_path / "key.py"
    script.write_text(MODEL_KEY)

    def key(seed: str, *args: str) -> str:
        env = dict(os.environ, PYTHONHASHSEED=seed)
        done = subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    plain = {key(seed) for seed in ("1", "2", "3")}
    assert len(plain) == 1  # sets inside, hash randomisation: one key
    assert key("1", "secret-a") != key("1", "secret-b")  # a secret still tells two inputs apart
    assert key("1", "secret-a") == key("2", "secret-a")


def test_a_task_cached_on_a_pydantic_input_hits_for_an_equal_model(plait_harness):
    from pydantic import BaseModel

    from plait import INPUTS

    class Query(BaseModel):
        table: str
        limit: int

    calls = []

    @task(cache_policy=INPUTS)
    def run_query(query: Query) -> int:
        calls.append(query.table)
        return query.limit

    @flow
    def twice() -> list[int]:
        return [run_query(Query(table="t", limit=3)), run_query(Query(table="t", limit=3)),
                run_query(Query(table="u", limit=3))]

    assert twice() == [3, 3, 3] and calls == ["t", "u"]


@flow
def deployed_report(day: str = "today") -> dict:
    return {"id": plait.runtime.deployment.id, "name": plait.runtime.deployment.name,
            "defaults": plait.runtime.deployment.parameters, "day": day}


def test_runtime_deployment_names_the_deployment_of_a_launched_run(plait_harness, monkeypatch):
    from plait.deployments._control import control_plane

    assert deployed_report() == {"id": None, "name": None, "defaults": {}, "day": "today"}  # no deployment
    control_plane().create_work_pool("runtime-pool", "process")
    saved = deployed_report.deploy("nightly", work_pool="runtime-pool", parameters={"day": "monday"})
    run = control_plane().create_flow_run(f"{deployed_report.name}/nightly", {"day": "tuesday"})
    monkeypatch.setenv("PLAIT_FLOW_RUN_ID", run["id"])  # as a worker's launched process has it
    got = deployed_report(day="tuesday")
    assert got == {"id": saved["id"], "name": "nightly", "defaults": {"day": "monday"}, "day": "tuesday"}


class Pipeline:
    """@flow and @task on instance, class and static methods, as in Prefect."""

    scale = 10

    def __init__(self, offset: int) -> None:
        self.offset = offset

    @task
    def shift(self, x: int) -> int:
        return x + self.offset

    @classmethod
    @task
    def scaled(cls, x: int) -> int:
        return x * cls.scale

    @staticmethod
    @task
    def double(x: int) -> int:
        return 2 * x

    @flow
    def run(self, xs: list[int]) -> list[int]:
        direct = self.shift(xs[0])
        mapped = self.shift.map(xs).result()
        submitted = self.scaled.submit(xs[0]).result()
        return [direct, *mapped, submitted, self.double(xs[0])]

    @classmethod
    @flow
    def summary(cls, x: int) -> int:
        return cls.scaled(x)

    @staticmethod
    @flow
    def plain(x: int) -> int:
        return Pipeline.double(x)


def test_flows_and_tasks_work_as_instance_class_and_static_methods(plait_harness):
    assert Pipeline(offset=1).run([1, 2]) == [2, 2, 3, 10, 2]
    assert Pipeline.summary(3) == 30 and Pipeline.plain(4) == 8
    assert Pipeline(offset=5).run.name == "run" and Pipeline.shift.name == "shift"  # the flow and task themselves
    runs = {r["flow_name"]: r for r in plait_harness.flow_runs()}
    assert set(runs) == {"run", "summary", "plain"}
    task_names = sorted(t["name"] for t in plait_harness.flow_run(runs["run"]["id"])["task_runs"])
    assert task_names == ["double-0", "scaled-0", "shift-0", "shift-1", "shift-2"]
