"""dbt_run on the jaffle project with dbt-duckdb: per-node task runs, edges, skipped nodes,
logs, artifacts, retry of failed nodes only, and clear errors."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from plait import flow
from plait_dbt import (
    DbtCliProfile,
    DbtCommandError,
    DbtCoreOperation,
    DbtError,
    DbtNodeTranslator,
    DbtProjectNotFound,
    DbtRunResult,
    DuckDbTargetConfigs,
    dbt_run,
)

BROKEN_TEST = "test.jaffle.assert_no_returned_orders"
# Everything dbt skips once the broken test fails (`--selector broken`).
DOWNSTREAM = {
    "model.jaffle.orders",
    "model.jaffle.customers",
    "test.jaffle.not_null_orders_order_id.cf6c17daed",
    "test.jaffle.unique_orders_order_id.fed79b3a6e",
    "test.jaffle.not_null_customers_customer_id.5c9bf9911d",
    "test.jaffle.unique_customers_customer_id.c5af1ff4b1",
}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("duckdb") / "jaffle.duckdb"


@pytest.fixture(scope="module")
def profile(warehouse: Path) -> DbtCliProfile:
    return DbtCliProfile(name="jaffle", target="dev", target_configs=DuckDbTargetConfigs(path=str(warehouse)))


def test_build_records_every_node_with_manifest_edges(jaffle_project: Path, profile: DbtCliProfile, history: Any) -> None:
    @flow
    def transform() -> DbtRunResult:
        return dbt_run("build", project_dir=jaffle_project, profile=profile)

    result = transform()
    assert result.success and result.executed_command == "build"
    run_results = result.run_results()
    manifest = result.manifest()
    executed = {entry["unique_id"] for entry in run_results["results"]}
    assert len(executed) == 14 and {n.unique_id for n in result.nodes} == executed
    assert run_results["metadata"]["invocation_id"] == manifest["metadata"]["invocation_id"] == result.invocation_id

    flow_run = history.latest()
    assert flow_run["state_type"] == "COMPLETED"
    assert history.task_run(flow_run, "dbt_run")["state_type"] == "COMPLETED"
    nodes = history.node_runs(flow_run)
    assert set(nodes) == executed  # one task run per executed node, keyed by its unique_id parameter
    assert {run["state_type"] for run in nodes.values()} == {"COMPLETED"}
    # the edges are dbt's own build graph (with its test edges), exactly
    edges = history.dbt_edges(flow_run)
    assert edges == history.dbt_graph(jaffle_project / "target", executed)
    assert history.manifest_edges(manifest, executed) <= edges
    assert history.node_upstream(flow_run, nodes["model.jaffle.stg_customers"]) == {"seed.jaffle.raw_customers"}
    orders = nodes["model.jaffle.orders"]
    assert (orders["task_name"], orders["name"]) == ("orders", "orders")  # short display names
    assert nodes["test.jaffle.not_null_orders_order_id.cf6c17daed"]["task_name"] == "not_null_orders_order_id"
    assert "dbt:model" in orders["tags"] and "dbt" in orders["tags"]
    dbt_task = history.task_run(flow_run, "dbt_run")
    assert f"plait.parent-task-run:{dbt_task['id']}" in orders["tags"]
    assert orders["parameters"] == {
        "unique_id": "model.jaffle.orders", "resource_type": "model", "invocation_id": result.invocation_id,
    }
    assert dbt_task["parameters"]["profile"] == "DbtCliProfile(name='jaffle', target='dev', DuckDbTargetConfigs)"
    assert result.node("model.jaffle.orders").execution_time > 0

    # dbt's log lines stream into the dbt task run's logs; each node's lines into its own run
    # dbt's log lines are stored once: a node's with its run, the others with the dbt task run
    logs = history.logs(flow_run)
    dbt_lines = [line["message"] for line in logs if line["task_name"] == "dbt_run"]
    assert any(line.startswith("Running with dbt=") for line in dbt_lines)
    assert any(line.startswith("Done. PASS=14") for line in dbt_lines)
    assert not any("OK created sql table model main.orders" in line for line in dbt_lines)
    orders_lines = [line["message"] for line in logs if line["task_name"] == "orders"]
    assert sum("OK created sql table model main.orders" in line for line in orders_lines) == 1
    assert sum("START sql table model main.orders" in line for line in orders_lines) == 1

    # the artifacts are kept in the project and copied into plait's result storage
    assert Path(result.run_results_path).parent == jaffle_project / "target"
    for name, ref in result.artifacts.items():
        assert ref.endswith(f"dbt-artifacts/{result.invocation_id}/{name}")
        copy = Path(ref.removeprefix("file://"))
        assert copy.read_bytes() == (jaffle_project / "target" / name).read_bytes()
    with duckdb.connect(str(profile.target_configs.path)) as con:
        assert con.execute("select count(*) from main.customers").fetchone() == (3,)


def seed_then_build_broken(project: Path, profile: DbtCliProfile) -> Any:
    @flow
    def broken() -> DbtRunResult:
        dbt_run("seed", project_dir=project, profile=profile)
        return dbt_run("build", project_dir=project, profile=profile, selector="broken")

    return broken


def test_failing_test_fails_its_run_and_skips_downstream(jaffle_project: Path, profile: DbtCliProfile, history: Any) -> None:
    state = seed_then_build_broken(jaffle_project, profile)(return_state=True)
    assert state.is_failed()
    assert BROKEN_TEST in state.message and "(fail)" in state.message  # dbt's message is in the node's run
    error = state.result(raise_on_failure=False)
    assert isinstance(error, DbtCommandError) and error.command == "build"
    result = error.result
    assert {n.unique_id for n in result.failed_nodes} == {BROKEN_TEST}
    assert {n.unique_id for n in result.skipped_nodes} == DOWNSTREAM

    flow_run = history.latest()
    assert flow_run["state_type"] == "FAILED"
    assert BROKEN_TEST in flow_run["state_message"]
    nodes = history.node_runs(flow_run, result.invocation_id)
    assert set(nodes) == {n.unique_id for n in result.nodes}
    failed = nodes[BROKEN_TEST]
    assert failed["state_type"] == "FAILED"
    assert "Got 1 result, configured to fail if != 0" in failed["state_message"]
    for uid in DOWNSTREAM:
        assert (nodes[uid]["state_type"], nodes[uid]["state_name"]) == ("CANCELLED", "Skipped"), uid
    assert nodes["model.jaffle.stg_orders"]["state_type"] == "COMPLETED"
    assert nodes["model.jaffle.orders"]["state_message"] == f"dbt skipped model.jaffle.orders after {BROKEN_TEST} did not succeed"
    assert BROKEN_TEST in history.node_upstream(flow_run, nodes["model.jaffle.orders"])
    assert history.task_run(flow_run, "dbt_run")["state_type"] == "FAILED"


def test_a_flow_that_handles_the_failure_completes(jaffle_project: Path, profile: DbtCliProfile, history: Any) -> None:
    @flow
    def tolerant() -> list[str]:
        dbt_run("seed", project_dir=jaffle_project, profile=profile)
        try:
            dbt_run("build", project_dir=jaffle_project, profile=profile, selector="broken")
        except DbtCommandError as exc:
            return [node.unique_id for node in exc.result.failed_nodes]
        return []

    assert tolerant() == [BROKEN_TEST]
    flow_run = history.latest()
    assert flow_run["state_type"] == "COMPLETED"  # the failed node runs do not fail it a second time
    assert history.node_runs(flow_run)[BROKEN_TEST]["state_type"] == "FAILED"


def test_retry_reruns_only_failed_and_skipped_nodes(
    jaffle_project: Path, profile: DbtCliProfile, warehouse: Path, history: Any
) -> None:
    def fix_the_data(task: Any, run: Any, state: Any) -> bool:
        with duckdb.connect(str(warehouse)) as con:
            con.execute("delete from main.raw_orders where status = 'returned'")
        return True

    @flow
    def nightly() -> DbtRunResult:
        dbt_run("seed", project_dir=jaffle_project, profile=profile)
        build = dbt_run.with_options(retries=1, retry_condition=fix_the_data)
        return build("build", project_dir=jaffle_project, profile=profile, selector="broken")

    result = nightly()
    assert result.retried and result.executed_command == "retry" and result.attempt == 2
    rerun = {entry["unique_id"]: entry["status"] for entry in result.run_results()["results"]}
    assert set(rerun) == DOWNSTREAM | {BROKEN_TEST}  # neither stg_orders nor its passing tests
    assert set(rerun.values()) <= {"success", "pass"}

    flow_run = history.latest()
    assert flow_run["state_type"] == "COMPLETED"
    build_run = history.task_run(flow_run, "dbt_run")
    assert build_run["run_count"] == 2 and build_run["state_type"] == "COMPLETED"
    retried = history.node_runs(flow_run, result.invocation_id)
    assert set(retried) == set(rerun) and {r["state_type"] for r in retried.values()} == {"COMPLETED"}


def test_missing_dbt_project_yml_is_a_clear_error_before_dbt_runs(
    tmp_path: Path, profile: DbtCliProfile, history: Any
) -> None:
    (tmp_path / "nested" / "project").mkdir(parents=True)
    (tmp_path / "nested" / "project" / "dbt_project.yml").write_text("name: x\n")

    @flow
    def transform() -> None:
        dbt_run("build", project_dir=tmp_path, profile=profile)

    state = transform(return_state=True)
    assert state.is_failed()
    assert f"no dbt_project.yml in {tmp_path}" in state.message
    assert "did you mean" in state.message and "nested/project" in state.message
    assert isinstance(state.result(raise_on_failure=False), DbtProjectNotFound)
    assert not any("Running with dbt" in line["message"] for line in history.logs(history.latest()))
    with pytest.raises(DbtProjectNotFound, match="does not exist"):
        DbtCoreOperation(command="build", project_dir=str(tmp_path / "nope")).run()


def test_compilation_error_shows_dbts_message(fresh_project: Path, warehouse: Path, history: Any) -> None:
    (fresh_project / "models" / "broken.sql").write_text("select {{ oops( }}\n")
    profile = DbtCliProfile(name="jaffle", target_configs=DuckDbTargetConfigs(path=str(warehouse.with_name("broken.duckdb"))))

    @flow
    def transform() -> None:
        dbt_run("build", project_dir=fresh_project, profile=profile)

    state = transform(return_state=True)
    assert state.is_failed()
    flow_run = history.latest()
    failed = history.task_run(flow_run, "dbt_run")
    assert failed["state_type"] == "FAILED"
    message = failed["state_message"]
    assert "dbt build failed: Compilation Error in model broken (models/broken.sql)" in message
    assert "unexpected '}'" in message and "Traceback" not in message
    assert flow_run["state_message"] == state.message and "Compilation Error" in state.message
    assert history.node_runs(flow_run) == {}  # dbt stopped before running any node
    assert state.result(raise_on_failure=False).result.nodes == []


def test_generated_profiles_dir_is_private_and_removed(jaffle_project: Path, profile: DbtCliProfile) -> None:
    seen: dict[str, Any] = {}

    def watch(event: Any) -> None:
        if event.info.name == "MainReportArgs" and "dir" not in seen:
            directory = Path(dict(event.data.args)["profiles_dir"])
            seen["dir"] = directory
            seen["dir_mode"] = stat.S_IMODE(directory.stat().st_mode)
            seen["file_mode"] = stat.S_IMODE((directory / "profiles.yml").stat().st_mode)
            seen["owner"] = directory.stat().st_uid

    result = DbtCoreOperation(command="parse", project_dir=str(jaffle_project), profile=profile,
                              store_artifacts=False).run(callbacks=[watch])
    assert seen["dir_mode"] == 0o700 and seen["file_mode"] == 0o600 and seen["owner"] == os.getuid()
    assert str(seen["dir"]) == result.profiles_dir
    assert not seen["dir"].exists()
    assert "--profiles-dir" not in result.args and result.nodes == []


def test_existing_profiles_yml_keeps_its_own_default_target(
    jaffle_project: Path, warehouse: Path, tmp_path: Path, history: Any
) -> None:
    outputs = {"local": {"type": "duckdb", "path": str(warehouse.with_name("local.duckdb")), "threads": 2}}
    (tmp_path / "team-profiles.yml").write_text(yaml.safe_dump({"jaffle": {"target": "local", "outputs": outputs}}))
    profile = DbtCliProfile(name="jaffle", existing_profiles_yml=str(tmp_path / "team-profiles.yml"))

    @flow
    def transform() -> DbtRunResult:
        dbt_run("seed", project_dir=jaffle_project, profile=profile, select="raw_orders")
        return dbt_run("run", project_dir=jaffle_project, profile=profile, select="stg_orders")

    result = transform()
    assert result.success and "--target" not in result.args
    assert [n.unique_id for n in result.nodes] == ["model.jaffle.stg_orders"]
    assert any("target='local'" in line["message"] for line in history.logs(history.latest()))


def test_translator_renames_nodes_and_leaves_passing_tests_out(
    jaffle_project: Path, profile: DbtCliProfile, history: Any
) -> None:
    class ByName(DbtNodeTranslator):
        def task_name(self, node: Any) -> str:
            return f"{node.resource_type}:{node.name}"

        def tags(self, node: Any) -> list[str]:
            return [*super().tags(node), f"file:{node.original_file_path}"]

    @flow
    def transform() -> DbtRunResult:
        return dbt_run("run", project_dir=jaffle_project, profile=profile, select="orders+",
                       translator=ByName(record_tests=False))

    result = transform()
    assert {n.unique_id for n in result.nodes} == {"model.jaffle.orders", "model.jaffle.customers"}
    nodes = history.node_runs(history.latest())
    assert {run["task_name"] for run in nodes.values()} == {"model:orders", "model:customers"}
    assert "file:models/orders.sql" in nodes["model.jaffle.orders"]["tags"]
    assert {e["task_name"] for e in nodes["model.jaffle.customers"]["upstream"]} == {"model:orders"}


def test_unknown_commands_and_options_are_refused_before_dbt_runs(jaffle_project: Path) -> None:
    with pytest.raises(DbtError, match="'biuld' is not a dbt command; did you mean 'build'"):
        DbtCoreOperation(command="biuld", project_dir=str(jaffle_project)).run()
    with pytest.raises(DbtError, match="dbt deps does not take select"):
        DbtCoreOperation(command="deps", project_dir=str(jaffle_project), select=["orders"]).run()
    with pytest.raises(ValueError, match="log_level must be one of"):
        DbtCoreOperation(command="build", project_dir=str(jaffle_project), log_level="loud")


def test_retry_from_an_earlier_flow_run_in_another_process(
    jaffle_project: Path, history: Any, tmp_path: Path
) -> None:
    # a warehouse of its own: dbt-duckdb in this process keeps the module's one open (locked)
    warehouse = tmp_path / "retry.duckdb"
    profile = DbtCliProfile(name="jaffle", target="dev", target_configs=DuckDbTargetConfigs(path=str(warehouse)))
    script = tmp_path / "nightly.py"
    script.write_text(textwrap.dedent(f"""
        from plait import flow
        from plait_dbt import DbtCliProfile, DuckDbTargetConfigs, dbt_run

        @flow
        def nightly():
            profile = DbtCliProfile(name="jaffle", target="dev",
                                    target_configs=DuckDbTargetConfigs(path={str(warehouse)!r}))
            dbt_run("seed", project_dir={str(jaffle_project)!r}, profile=profile)
            dbt_run("run", project_dir={str(jaffle_project)!r}, profile=profile, select="stg_customers")
            dbt_run("build", project_dir={str(jaffle_project)!r}, profile=profile, selector="broken")

        if __name__ == "__main__":
            nightly(return_state=True)
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          env=os.environ.copy())
    assert done.returncode == 0, done.stderr[-2000:]
    failed_run = history.latest()
    assert failed_run["state_type"] == "FAILED"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("delete from main.raw_orders where status = 'returned'")

    @flow
    def mend() -> DbtRunResult:
        return dbt_run("retry", project_dir=jaffle_project, profile=profile, from_run=failed_run["id"])

    result = mend()
    rerun = {entry["unique_id"]: entry["status"] for entry in result.run_results()["results"]}
    assert set(rerun) == DOWNSTREAM | {BROKEN_TEST}  # the failed and skipped nodes only
    assert set(rerun.values()) <= {"success", "pass"}
    nodes = history.node_runs(history.latest())
    assert set(nodes) == set(rerun) and {r["state_type"] for r in nodes.values()} == {"COMPLETED"}

    @flow
    def wrong() -> None:
        dbt_run("retry", project_dir=jaffle_project, profile=profile, from_run="no-such-run")

    state = wrong(return_state=True)
    assert state.is_failed() and "no stored dbt artifacts for flow run 'no-such-run'" in state.message
    with pytest.raises(DbtError, match="from_run= goes with the command 'retry', not 'build'"):
        DbtCoreOperation(command="build", project_dir=str(jaffle_project), from_run="x").run()


def test_artifact_retention_keeps_the_newest_copies(
    jaffle_project: Path, profile: DbtCliProfile, plait_harness: Any
) -> None:
    @flow
    def three() -> list[DbtRunResult]:
        return [dbt_run("seed", project_dir=jaffle_project, profile=profile, select="raw_orders", artifact_retention=2)
                for _ in range(3)]

    results = three()
    folder = plait_harness.home / "storage" / "dbt-artifacts"
    kept = {p.name for p in folder.iterdir() if p.is_dir() and p.name != "flow-runs"}
    assert kept == {results[1].invocation_id, results[2].invocation_id}
    assert sorted(p.name for p in (folder / results[2].invocation_id).iterdir()) == ["manifest.json", "run_results.json"]
    index = json.loads((folder / "retention.json").read_text())
    assert [e["invocation_id"] for e in index] == [results[1].invocation_id, results[2].invocation_id]
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        DbtCoreOperation(command="run", project_dir=str(jaffle_project), artifact_retention=0)


def test_the_profile_parameter_is_the_blocks_name(jaffle_project: Path, profile: DbtCliProfile, history: Any) -> None:
    profile.save("jaffle-dev", overwrite=True)
    loaded = DbtCliProfile.load("jaffle-dev")
    assert repr(loaded) == "DbtCliProfile.load('jaffle-dev')"

    @flow
    def parse() -> None:
        dbt_run("parse", project_dir=jaffle_project, profile=loaded, store_artifacts=False)
        dbt_run("parse", project_dir=jaffle_project, profile="jaffle-dev", store_artifacts=False)

    parse()
    recorded = [r["parameters"]["profile"] for r in history.latest()["task_runs"] if r["task_name"] == "dbt_run"]
    assert recorded == ["DbtCliProfile.load('jaffle-dev')", "jaffle-dev"]
