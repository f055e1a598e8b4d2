"""Node task runs recorded as dbt runs them (on the multiparent project, dbt-duckdb): in the
store while dbt still runs, with dbt's own times, dbt's graph as edges (a test with two
parents included, passing or failing), each log line stored once and each error shown once."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from plait import flow, runtime
from plait_dbt import DbtCliProfile, DbtCommandError, DbtRunResult, DuckDbTargetConfigs, dbt_run

SLOW = "model.multiparent.slow"
RELATIONSHIPS = "test.multiparent.relationships_b_a_id__id__ref_a_.ac6b86afb4"
PLAIT = Path(sys.executable).with_name("plait")


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> DbtCliProfile:
    path = tmp_path_factory.mktemp("duckdb") / "multiparent.duckdb"
    return DbtCliProfile(name="multiparent", target_configs=DuckDbTargetConfigs(path=str(path), threads=4))


def inspect(flow_run_id: str) -> dict[str, Any]:
    """The flow run as another process sees it: ``plait flow-run inspect --json``."""
    out = subprocess.run([str(PLAIT), "flow-run", "inspect", flow_run_id, "--json"], capture_output=True,
                         text=True, timeout=60, env=os.environ.copy())
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def by_unique_id(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {(r.get("parameters") or {}).get("unique_id"): r for r in record["task_runs"]
            if (r.get("parameters") or {}).get("unique_id")}


def seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_node_runs_are_in_the_store_while_dbt_runs_with_dbts_times(
    multiparent_project: Path, profile: DbtCliProfile, history: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLAIT_DBT_TEST_SLOW_SECONDS", "6")
    seen: dict[str, Any] = {}
    slow_finished = threading.Event()

    def watch_the_store(flow_run_id: str) -> None:
        # from another process, while the slow model runs: the nodes dbt finished are there
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not slow_finished.is_set():
            record = by_unique_id(inspect(flow_run_id))
            if record.get(SLOW, {}).get("state_type") == "RUNNING" and \
                    record.get("model.multiparent.a", {}).get("state_type") == "COMPLETED":
                seen["record"], seen["before_slow_finished"] = record, not slow_finished.is_set()
                return
            time.sleep(0.3)

    @flow
    def transform() -> DbtRunResult:
        flow_run_id = runtime.flow_run.id

        def on_event(event: Any) -> None:
            uid = getattr(getattr(event.data, "node_info", None), "unique_id", "")
            if uid == SLOW and event.info.name == "NodeStart":
                seen["watcher"] = threading.Thread(target=watch_the_store, args=(flow_run_id,))
                seen["watcher"].start()
            elif uid == SLOW and event.info.name == "NodeFinished":
                slow_finished.set()

        return dbt_run("build", project_dir=multiparent_project, profile=profile, callbacks=[on_event])

    result = transform()
    seen["watcher"].join()
    assert seen.get("before_slow_finished"), "no node run was visible in the store while dbt ran"
    live = seen["record"]
    assert live[SLOW]["state_type"] == "RUNNING" and live[SLOW]["end_time"] is None
    assert live["model.multiparent.a"]["state_type"] == "COMPLETED"

    # the stored runs carry dbt's own times: each starts at dbt's node_started_at and lasts
    # dbt's execution_time. Asserted within 10% of run_results.json, or 5 ms absolute for
    # nodes under 50 ms (stored times keep microseconds; 5 ms leaves room for a store that
    # rounds, and is still far below the 0.000 s a replay recorded)
    nodes = history.node_runs(history.latest())
    timings = {e["unique_id"]: e for e in result.run_results()["results"]}
    assert set(nodes) == set(timings)
    for uid, run in nodes.items():
        took = seconds(run["end_time"]) - seconds(run["start_time"])
        dbt_took = timings[uid]["execution_time"]
        assert abs(took - dbt_took) <= max(0.1 * dbt_took, 0.005), (uid, took, dbt_took)
        first = min(t["started_at"] for t in timings[uid]["timing"])
        assert abs(seconds(run["start_time"]) - seconds(first)) < 0.05, uid
    assert seconds(nodes[SLOW]["end_time"]) - seconds(nodes[SLOW]["start_time"]) > 5.5


@pytest.mark.parametrize("a_id", [1, 3], ids=["passing", "failing"])
def test_edges_are_dbts_build_graph_exactly(
    multiparent_project: Path, profile: DbtCliProfile, history: Any, a_id: int
) -> None:
    @flow
    def transform() -> DbtRunResult:
        return dbt_run("build", project_dir=multiparent_project, profile=profile, vars={"a_id": a_id})

    state = transform(return_state=True)
    outcome = state.result(raise_on_failure=False)
    result = outcome if a_id == 1 else outcome.result
    executed = {n.unique_id for n in result.nodes}
    graph = history.dbt_graph(multiparent_project / "target", executed)
    flow_run = history.latest()
    nodes = history.node_runs(flow_run)
    assert set(nodes) == executed
    assert history.dbt_edges(flow_run) == graph
    # the relationships test has two parents, and both children wait for it, pass or fail
    assert {e for e in graph if e[0] == RELATIONSHIPS} == {
        (RELATIONSHIPS, "model.multiparent.c"), (RELATIONSHIPS, "model.multiparent.d"),
    }
    assert {("model.multiparent.a", RELATIONSHIPS), ("model.multiparent.b", RELATIONSHIPS)} <= graph
    manifest = history.manifest_edges(result.manifest(), executed)
    assert manifest <= graph and all(up.startswith("test.") for up, _ in graph - manifest)
    if a_id == 1:
        assert {r["state_type"] for r in nodes.values()} == {"COMPLETED"}
    else:
        assert nodes[RELATIONSHIPS]["state_type"] == "FAILED"
        skipped = {uid for uid, r in nodes.items() if r["state_name"] == "Skipped"}
        assert skipped == {"model.multiparent.c", "model.multiparent.d", "test.multiparent.not_null_c_id.2f016e14d2"}


def test_each_log_line_is_stored_once_and_each_error_shown_once(
    multiparent_project: Path, profile: DbtCliProfile, history: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    @flow
    def transform() -> None:
        dbt_run("build", project_dir=multiparent_project, profile=profile, vars={"a_id": 3})

    state = transform(return_state=True)
    error = state.result(raise_on_failure=False)
    assert isinstance(error, DbtCommandError)
    flow_run = history.latest()
    logs = history.logs(flow_run)
    # "N of 9 START/OK/PASS/FAIL/SKIP ..." lines: two or one per node, each stored once,
    # with its node's task run
    node_lines = [line for line in logs if re.match(r"\d+ of 9 (START|OK|PASS|FAIL|SKIP) ", line["message"])]
    assert len(node_lines) == 2 * 6 + 3, [line["message"] for line in node_lines]  # 6 ran, 3 skipped
    assert max(Counter(line["message"] for line in node_lines).values()) == 1
    nodes = history.node_runs(flow_run)
    names = {run["task_name"] for run in nodes.values()}
    assert {line["task_name"] for line in node_lines} <= names
    assert len(logs) == len({(line["task_run_id"], line["message"]) for line in logs})

    # dbt's message for the failed test: in its run's state, and once on the console
    message = "Got 1 result, configured to fail if != 0"
    assert message in nodes[RELATIONSHIPS]["state_message"]
    assert message not in str(error)  # the dbt task names the failed node; the node run explains it
    console = capsys.readouterr().err
    assert console.count(message) == 1, console
    assert sum(message in line["message"] for line in logs) == 1


def test_a_killed_process_keeps_the_nodes_dbt_finished(
    multiparent_project: Path, profile: DbtCliProfile, plait_harness: Any, tmp_path: Path
) -> None:
    script = tmp_path / "transform.py"
    script.write_text(textwrap.dedent(f"""
        from plait import flow
        from plait_dbt import DbtCliProfile, DuckDbTargetConfigs, dbt_run

        @flow
        def transform():
            profile = DbtCliProfile(name="multiparent",
                                    target_configs=DuckDbTargetConfigs(path={str(tmp_path / 'killed.duckdb')!r}))
            dbt_run("build", project_dir={str(multiparent_project)!r}, profile=profile)

        if __name__ == "__main__":
            transform()
    """))
    env = {**os.environ, "PLAIT_DBT_TEST_SLOW_SECONDS": "60"}
    child = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        record: dict[str, Any] = {}
        while time.monotonic() < deadline:
            runs = plait_harness.flow_runs(limit=1)
            if runs:
                record = by_unique_id(plait_harness.flow_run(runs[0]["id"]))
                done = [uid for uid, run in record.items() if run["state_type"] == "COMPLETED"]
                if record.get(SLOW, {}).get("state_type") == "RUNNING" and len(done) == 8:
                    break
            time.sleep(0.5)
        assert record.get(SLOW, {}).get("state_type") == "RUNNING", record
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    flow_run = plait_harness.flow_run(plait_harness.flow_runs(limit=1)[0]["id"])
    assert flow_run["state_type"] == "CRASHED"
    after = by_unique_id(flow_run)
    completed = {uid for uid, run in after.items() if run["state_type"] == "COMPLETED"}
    assert len(completed) == 8 and SLOW not in completed  # every node dbt finished before the kill


def test_a_dbt_named_flow_script_without_main_guard_fails_at_once(
    multiparent_project: Path, plait_harness: Any, tmp_path: Path
) -> None:
    # dbt imports every dbt_*.py module on sys.path as a plugin: this script, which starts
    # its flow on import, would call dbt_run from inside dbt and wait for ever on the lock
    script = tmp_path / "dbt_nightly.py"
    script.write_text(textwrap.dedent(f"""
        from plait import flow
        from plait_dbt import DbtCliProfile, DuckDbTargetConfigs, dbt_run

        @flow
        def nightly():
            profile = DbtCliProfile(name="multiparent",
                                    target_configs=DuckDbTargetConfigs(path={str(tmp_path / 'wh.duckdb')!r}))
            dbt_run("build", project_dir={str(multiparent_project)!r}, profile=profile)

        nightly()
    """))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env=os.environ.copy())
    assert done.returncode != 0
    assert "dbt_run was called again while dbt was already running in this thread" in done.stderr
    assert f"importing {script} started its flow a second time" in done.stderr
    assert 'under `if __name__ == "__main__":`' in done.stderr


def test_two_builds_in_child_processes_run_in_parallel(
    tmp_path: Path, history: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLAIT_DBT_TEST_SLOW_SECONDS", "3")
    source = Path(__file__).resolve().parent / "multiparent"
    ignore = shutil.ignore_patterns("target", "logs", ".user.yml")
    projects = [Path(shutil.copytree(source, tmp_path / f"p{i}", ignore=ignore)) for i in (1, 2)]
    profiles = [DbtCliProfile(name="multiparent", target_configs=DuckDbTargetConfigs(path=str(tmp_path / f"w{i}.duckdb")))
                for i in (1, 2)]

    @flow
    def both() -> list[DbtRunResult]:
        futures = [dbt_run.submit("build", project_dir=project, profile=profile, isolation="process")
                   for project, profile in zip(projects, profiles, strict=True)]
        return [future.result() for future in futures]

    results = both()
    assert all(r.success for r in results) and results[0].invocation_id != results[1].invocation_id
    flow_run = history.latest()
    slow = []
    for result in results:
        nodes = history.node_runs(flow_run, result.invocation_id)
        assert len(nodes) == 9 and {r["state_type"] for r in nodes.values()} == {"COMPLETED"}
        assert history.dbt_edges(flow_run, result.invocation_id) == history.dbt_graph(
            Path(result.project_dir) / "target", set(nodes))
        slow.append((seconds(nodes[SLOW]["start_time"]), seconds(nodes[SLOW]["end_time"])))
    # the two slow models ran at the same time: each started before the other ended
    assert max(start for start, _ in slow) < min(end for _, end in slow)
    dbt_runs = [r for r in flow_run["task_runs"] if r["task_name"] == "dbt_run"]
    (s1, e1), (s2, e2) = [(seconds(r["start_time"]), seconds(r["end_time"])) for r in dbt_runs]
    assert max(s1, s2) < min(e1, e2)
