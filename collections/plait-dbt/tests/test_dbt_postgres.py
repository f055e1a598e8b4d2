"""dbt_run on the jaffle project with dbt-postgres against the real PostgreSQL server:
per-node task runs, skipped nodes, retry of failed nodes only, and a password that is never
stored or logged anywhere."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from plait import flow
from plait_dbt import DbtCliProfile, DbtRunResult, PostgresTargetConfigs, dbt_run
from plait_sqlalchemy import DatabaseCredentials

pytestmark = pytest.mark.postgres

SCHEMA = "analytics"
CANARY = f"plait-canary-{uuid.uuid4().hex}"  # trust auth ignores it; it must never show up anywhere
BROKEN_TEST = "test.jaffle.assert_no_returned_orders"


@pytest.fixture(scope="module")
def profile(postgres_database: str) -> DbtCliProfile:
    credentials = DatabaseCredentials(
        driver="postgresql+psycopg", host="127.0.0.1", port=5432, database=postgres_database,
        username="postgres", password=CANARY, query={"connect_timeout": "10", "application_name": "plait-dbt-tests"},
    )
    return DbtCliProfile(name="jaffle", target="ci",
                         target_configs=PostgresTargetConfigs(credentials=credentials, schema_name=SCHEMA, threads=4))


def sql(database: str, statement: str) -> list[tuple]:
    with psycopg.connect(host="127.0.0.1", port=5432, dbname=database, user="postgres", autocommit=True) as conn:
        cursor = conn.execute(statement)
        return cursor.fetchall() if cursor.description else []


def files_under(*roots: Path) -> list[Path]:
    return [path for root in roots for path in root.rglob("*") if path.is_file()]


def test_build_on_postgres_records_nodes_and_never_stores_the_password(
    jaffle_project: Path, profile: DbtCliProfile, postgres_database: str, history: Any, plait_harness: Any
) -> None:
    @flow
    def transform(profile: DbtCliProfile) -> DbtRunResult:
        return dbt_run("build", project_dir=jaffle_project, profile=profile)

    result = transform(profile)
    assert result.success and len(result.nodes) == 14
    assert sql(postgres_database, f"select count(*) from {SCHEMA}.customers") == [(3,)]
    assert sql(postgres_database, f"select sum(lifetime_value) from {SCHEMA}.customers")[0][0] == 210

    flow_run = history.latest()
    assert flow_run["state_type"] == "COMPLETED"
    nodes = history.node_runs(flow_run)
    executed = {n.unique_id for n in result.nodes}
    assert set(nodes) == executed and {r["state_type"] for r in nodes.values()} == {"COMPLETED"}
    assert history.dbt_edges(flow_run) == history.dbt_graph(jaffle_project / "target", executed)
    logs = history.logs(flow_run)
    assert any("Registered adapter: postgres" in line["message"] for line in logs)

    # the password went into the private profiles.yml only: not into run history, logs,
    # stored artifacts, dbt's target/ and logs/, nor the block's rendering
    assert profile.profiles_yml().count("**********") == 1 and CANARY not in profile.profiles_yml()
    assert CANARY in profile.profiles_yml(reveal_secrets=True)
    assert not any(CANARY in line["message"] for line in logs)
    assert CANARY not in repr(flow_run)
    plait_harness.flush()
    leaks = [str(p) for p in files_under(plait_harness.home, jaffle_project) if CANARY.encode() in p.read_bytes()]
    assert leaks == []
    assert not Path(result.profiles_dir).exists()


def test_failing_test_on_postgres_skips_downstream_then_retry_fixes_it(
    jaffle_project: Path, profile: DbtCliProfile, postgres_database: str, history: Any
) -> None:
    @flow
    def broken() -> DbtRunResult:
        dbt_run("seed", project_dir=jaffle_project, profile=profile)
        return dbt_run("build", project_dir=jaffle_project, profile=profile, selector="broken")

    state = broken(return_state=True)
    assert state.is_failed() and BROKEN_TEST in state.message
    result = state.result(raise_on_failure=False).result
    nodes = history.node_runs(history.latest(), result.invocation_id)
    assert nodes[BROKEN_TEST]["state_type"] == "FAILED"
    skipped = {uid for uid, run in nodes.items() if (run["state_type"], run["state_name"]) == ("CANCELLED", "Skipped")}
    assert skipped == {n.unique_id for n in result.skipped_nodes} and "model.jaffle.customers" in skipped

    def fix_the_data(task: Any, run: Any, state: Any) -> bool:
        sql(postgres_database, f"delete from {SCHEMA}.raw_orders where status = 'returned'")
        return True

    @flow
    def nightly() -> DbtRunResult:
        dbt_run("seed", project_dir=jaffle_project, profile=profile)
        build = dbt_run.with_options(retries=1, retry_condition=fix_the_data)
        return build("build", project_dir=jaffle_project, profile=profile, selector="broken")

    retried = nightly()
    assert retried.retried
    assert {e["unique_id"] for e in retried.run_results()["results"]} == {n.unique_id for n in result.nodes
                                                                           if n.failed or n.skipped}
    assert history.latest()["state_type"] == "COMPLETED"
    assert sql(postgres_database, f"select count(*) from {SCHEMA}.orders") == [(5,)]
