"""az:// result storage: the storage scheme, caching, and a cache shared between processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from plait import INPUTS, flow, task
from plait.results import read_result_ref, resolve_storage
from plait_azure import AzureBlobCredentials, AzureBlobStorageContainer, az_container_from_url

FLOW_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from plait import flow, task

    @task(cache_policy="inputs")
    def expensive(x):
        with open(sys.argv[1], "a") as marker:
            marker.write(f"ran {x}\\n")
        return {"value": x * 10}

    @flow(result_storage=sys.argv[3])
    def cached_flow(x: int):
        state = expensive(x, return_state=True)
        return state.type.value, state.result()

    print(json.dumps(cached_flow(int(sys.argv[2]))))
    """
)


def test_az_urls_resolve_to_containers(plait_harness):
    storage = resolve_storage("az://some-container/plait/results")
    assert isinstance(storage, AzureBlobStorageContainer)
    assert (storage.container_name, storage.container_folder, storage.uri) == (
        "some-container", "plait/results", "az://some-container/plait/results")
    assert storage.credentials == AzureBlobCredentials()  # no saved default: the environment
    assert resolve_storage("az://bare").uri == "az://bare"
    with pytest.raises(ValueError, match="is not an az:// URL with a container"):
        az_container_from_url("az:///no-container")
    with pytest.raises(ValueError, match="take no '\\?' or '#' part"):
        az_container_from_url("az://box/x?sv=1")


def test_a_saved_default_block_supplies_the_credentials(plait_harness, credentials):
    credentials.save("default")
    storage = resolve_storage("az://some-container/x")
    assert storage.credentials == credentials


def test_results_and_cache_in_azure_within_a_process(plait_harness, azure_env, container):
    calls = []

    @task(cache_policy=INPUTS)
    def double(x: int) -> int:
        calls.append(x)
        return x * 2

    @flow(result_storage=f"az://{container.container_name}/plait/results")
    def twice(x: int) -> tuple[str, str]:
        return double(x, return_state=True).type.value, double(x, return_state=True).type.value

    assert twice(21) == ("COMPLETED", "CACHED")
    assert calls == [21]
    stored = container.list_paths("plait/results/")
    assert len(stored) == 1
    ref = f"az://{container.container_name}/{stored[0]}"
    assert read_result_ref(ref) == 42  # a reference resolves back through the az scheme


def _run_script(tmp_path: Path, harness, env: dict[str, str], *args: str) -> list:
    script = tmp_path / "cached_flow.py"
    script.write_text(FLOW_SCRIPT)
    env = {**env, "PLAIT_HOME": str(harness.home), "PLAIT_DATABASE_URL": harness.database_url}
    done = subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("source", ["environment", "saved-default-block"])
def test_second_process_gets_the_cached_result_from_azure(plait_harness, credentials, connection_string,
                                                         new_container_name, tmp_path, monkeypatch, source):
    """Two processes, same PLAIT_HOME and database: the second finds the first's result in
    the container and does not run the task body. Credentials come from
    AZURE_STORAGE_CONNECTION_STRING, or from the saved 'default' block (then no AZURE_* is set)."""
    name = new_container_name("plait-results")
    if source == "environment":
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection_string)
    else:
        credentials.save("default")
    env = dict(os.environ)
    assert ("AZURE_STORAGE_CONNECTION_STRING" in env) == (source == "environment")
    marker = tmp_path / "marker.txt"
    url = f"az://{name}/cache"

    assert _run_script(tmp_path, plait_harness, env, str(marker), "4", url) == ["COMPLETED", {"value": 40}]
    assert _run_script(tmp_path, plait_harness, env, str(marker), "4", url) == ["CACHED", {"value": 40}]
    assert marker.read_text().splitlines() == ["ran 4"]  # the body ran once across two processes
    assert _run_script(tmp_path, plait_harness, env, str(marker), "5", url) == ["COMPLETED", {"value": 50}]
    assert marker.read_text().splitlines() == ["ran 4", "ran 5"]

    stored = AzureBlobStorageContainer(container_name=name, container_folder="cache", credentials=credentials)
    assert len(stored.list_paths()) == 2  # one result blob per cache key, under the folder
    runs = plait_harness.flow_runs(limit=10)
    states = [plait_harness.flow_run(r["id"])["task_runs"][0]["state_type"] for r in reversed(runs)]
    assert states == ["COMPLETED", "CACHED", "COMPLETED"]
