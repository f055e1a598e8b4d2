"""gs:// result storage: the storage scheme, caching, and a cache shared between processes."""

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
from plait_gcp import GcpCredentials, GcsBucket, gcs_bucket_from_url

FLOW_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from plait import flow, task

    STORAGE = sys.argv[3]

    @task(cache_policy="inputs")
    def expensive(x):
        with open(sys.argv[1], "a") as marker:
            marker.write(f"ran {x}\\n")
        return {"value": x * 10}

    @flow(result_storage=STORAGE)
    def cached_flow(x: int):
        state = expensive(x, return_state=True)
        return state.type.value, state.result()

    print(json.dumps(cached_flow(int(sys.argv[2]))))
    """
)


def test_gs_urls_resolve_to_gcs_buckets(plait_harness):
    storage = resolve_storage("gs://some-bucket/plait/results")
    assert isinstance(storage, GcsBucket)
    assert (storage.bucket_name, storage.bucket_folder, storage.uri) == (
        "some-bucket", "plait/results", "gs://some-bucket/plait/results")
    assert storage.credentials == GcpCredentials()  # no saved default: the default chain
    assert resolve_storage("gs://bare").uri == "gs://bare"
    with pytest.raises(ValueError, match="is not a gs:// URL with a bucket"):
        gcs_bucket_from_url("gs:///no-bucket")
    with pytest.raises(ValueError, match="take no '\\?' or '#' part"):
        gcs_bucket_from_url("gs://b/x?generation=1")


def test_a_saved_default_block_supplies_the_credentials(plait_harness, credentials):
    credentials.save("default")
    storage = resolve_storage("gs://some-bucket/x")
    assert storage.credentials == credentials
    assert storage.credentials.api_endpoint == credentials.api_endpoint


def test_results_and_cache_in_gcs_within_a_process(plait_harness, gcs_env, bucket):
    calls = []

    @task(cache_policy=INPUTS)
    def double(x: int) -> int:
        calls.append(x)
        return x * 2

    @flow(result_storage=f"gs://{bucket.bucket_name}/plait/results")
    def twice(x: int) -> tuple[str, str]:
        return double(x, return_state=True).type.value, double(x, return_state=True).type.value

    assert twice(21) == ("COMPLETED", "CACHED")
    assert calls == [21]
    stored = bucket.list_paths("plait/results/")
    assert len(stored) == 1
    assert bucket.read_path(stored[0]).startswith(b"PLAIT-RESULT-1")  # a signed result file
    ref = f"gs://{bucket.bucket_name}/{stored[0]}"
    assert read_result_ref(ref) == 42  # a reference resolves back through the gs scheme


def _run_script(tmp_path: Path, harness, env: dict[str, str], *args: str) -> list:
    script = tmp_path / "cached_flow.py"
    script.write_text(FLOW_SCRIPT)
    env = {**env, "PLAIT_HOME": str(harness.home), "PLAIT_DATABASE_URL": harness.database_url}
    done = subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("source", ["environment", "saved-default-block"])
def test_second_process_gets_the_cached_result_from_gcs(plait_harness, credentials, new_bucket_name, tmp_path,
                                                       monkeypatch, gcs_endpoint, source):
    """Two processes, same PLAIT_HOME and database: the second finds the first's result in
    the bucket and does not run the task body. The emulator is found through
    STORAGE_EMULATOR_HOST, or through the saved 'default' GcpCredentials block (the
    subprocess then has no Google settings)."""
    name = new_bucket_name("plait-results")
    if source == "environment":
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint)
        monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "plait-test")
    else:
        credentials.save("default")
    env = dict(os.environ)
    assert ("STORAGE_EMULATOR_HOST" in env) == (source == "environment")
    marker = tmp_path / "marker.txt"
    url = f"gs://{name}/cache"

    assert _run_script(tmp_path, plait_harness, env, str(marker), "4", url) == ["COMPLETED", {"value": 40}]
    assert _run_script(tmp_path, plait_harness, env, str(marker), "4", url) == ["CACHED", {"value": 40}]
    assert marker.read_text().splitlines() == ["ran 4"]  # the body ran once across two processes

    stored = GcsBucket(bucket_name=name, bucket_folder="cache", credentials=credentials).list_paths()
    assert len(stored) == 1  # one result object per cache key, under the folder
    runs = plait_harness.flow_runs(limit=10)
    states = [plait_harness.flow_run(r["id"])["task_runs"][0]["state_type"] for r in reversed(runs)]
    assert states == ["COMPLETED", "CACHED"]
