"""Result persistence and caching, including across processes."""

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest

from plait import INPUTS, TASK_SOURCE, flow, task
from plait.cache_policies import FLOW_PARAMETERS, Inputs
from plait.exceptions import SerializationError
from plait.results import LocalStorage, read_result_ref

FLOW_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from plait import flow, task

    @task(cache_policy="inputs")
    def expensive(x):
        with open(sys.argv[1], "a") as marker:
            marker.write(f"ran {x}\\n")
        return {"value": x * 10}

    @flow
    def cached_flow(x: int):
        return expensive(x)

    state = cached_flow(int(sys.argv[2]), return_state=True)
    print(json.dumps(state.result()))
    """
)


def _run_script(tmp_path: Path, harness, *args: str) -> str:
    script = tmp_path / "cached_flow.py"
    script.write_text(FLOW_SCRIPT)
    env = {**os.environ, "PLAIT_HOME": str(harness.home), "PLAIT_DATABASE_URL": harness.database_url}
    done = subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_second_process_gets_cached_state_without_running_body(plait_harness, tmp_path):
    marker = tmp_path / "marker.txt"
    assert json.loads(_run_script(tmp_path, plait_harness, str(marker), "4")) == {"value": 40}
    assert json.loads(_run_script(tmp_path, plait_harness, str(marker), "4")) == {"value": 40}
    assert marker.read_text().splitlines() == ["ran 4"]  # body ran once across two processes
    _run_script(tmp_path, plait_harness, str(marker), "5")  # other inputs, other key
    assert marker.read_text().splitlines() == ["ran 4", "ran 5"]
    runs = plait_harness.flow_runs(limit=10)
    types = []
    for run in reversed(runs):
        types.append(plait_harness.flow_run(run["id"])["task_runs"][0]["state_type"])
    assert types == ["COMPLETED", "CACHED", "COMPLETED"]


def test_cache_expiration_and_refresh_cache(plait_harness):
    calls = []

    @task(cache_policy=INPUTS, cache_expiration=timedelta(seconds=0.3))
    def fetch(x):
        calls.append(x)
        return x

    @flow
    def f(x):
        return fetch(x, return_state=True).type.value, fetch(x, return_state=True).type.value

    assert f(1) == ("COMPLETED", "CACHED")
    time.sleep(0.35)
    assert f(1) == ("COMPLETED", "CACHED")  # expired: ran again
    assert calls == [1, 1]

    refreshing = fetch.with_options(refresh_cache=True)

    @flow
    def g(x):
        return refreshing(x, return_state=True).type.value

    assert g(1) == "COMPLETED"
    assert calls == [1, 1, 1]


def test_policies_combine_and_task_source_is_part_of_key(plait_harness):
    @task(cache_policy=INPUTS + TASK_SOURCE)
    def one(x):
        return x

    @task(cache_policy=Inputs(exclude=("noise",)))
    def two(x, noise):
        return x

    @task(cache_policy=FLOW_PARAMETERS)
    def three(x):
        return x

    @flow
    def f(p):
        return [
            one(1, return_state=True).type.value,
            one(1, return_state=True).type.value,
            two(1, 0, return_state=True).type.value,
            two(1, 99, return_state=True).type.value,  # noise excluded: same key
            three(1, return_state=True).type.value,
            three(2, return_state=True).type.value,  # same flow parameters: cached
        ]

    assert f("a") == ["COMPLETED", "CACHED", "COMPLETED", "CACHED", "COMPLETED", "CACHED"]
    assert f("b")[4] == "COMPLETED"  # new flow parameters, new key


def test_cache_key_fn(plait_harness):
    calls = []

    @task(cache_key_fn=lambda ctx, params: str(params["path"]).lower())
    def load(path):
        calls.append(path)
        return path

    @flow
    def f():
        return load("A.csv"), load("a.csv")

    assert f() == ("A.csv", "A.csv")  # second call served from cache (same key)
    assert calls == ["A.csv"]


def test_unhashable_input_runs_uncached_with_warning(plait_harness):
    import threading

    @task(cache_policy="inputs")
    def uses_lock(lock):
        return 1

    @flow
    def f():
        return uses_lock(threading.Lock(), return_state=True).type.value

    assert f() == "COMPLETED"
    logs = plait_harness.logs(plait_harness.flow_runs()[0]["id"])
    assert any("not cached this time" in row["message"] and "'lock'" in row["message"] for row in logs)


def test_persisted_result_is_referenced_and_readable(plait_harness, tmp_path):
    storage_dir = tmp_path / "results"

    @task(persist_result=True, result_storage=str(storage_dir), result_serializer="json")
    def produce():
        return {"rows": [1, 2, 3]}

    @flow
    def f():
        return [produce(return_state=True)]

    [state] = f()
    assert state.result_ref and state.result_ref.startswith(storage_dir.resolve().as_uri())
    assert read_result_ref(state.result_ref) == {"rows": [1, 2, 3]}
    task_run = next(
        t for r in plait_harness.flow_runs() for t in plait_harness.flow_run(r["id"])["task_runs"]
    )
    assert task_run["result_ref"] == state.result_ref


def test_json_serializer_failure_names_task_and_serializer(plait_harness):
    @task(persist_result=True, result_serializer="json")
    def returns_set():
        return {1, 2}

    @flow
    def f():
        return [returns_set(return_state=True)]

    [state] = f()
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, SerializationError)
    assert "task 'returns_set'" in str(error) and "'json'" in str(error) and "pickle" in str(error)


def test_local_storage_refuses_escaping_paths(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.write_path("a/b.bin", b"x")
    assert storage.read_path("a/b.bin") == b"x"
    with pytest.raises(ValueError, match="escapes"):
        storage.read_path("../outside")


def test_unknown_storage_scheme_fails_the_task_clearly(plait_harness):
    @task(persist_result=True, result_storage="nosuch://bucket/x")
    def t():
        return 1

    @flow
    def f():
        return [t(return_state=True)]

    [state] = f()
    assert state.is_failed() and "no storage is registered for nosuch://" in state.message
