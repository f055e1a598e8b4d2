"""``plait artifact ls | inspect`` on the local store (SQLite and PostgreSQL), through click's
CliRunner, and the pieces ``plait flow-run inspect`` shows a run's artifacts with."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner, Result

from plait import flow, runtime, task
from plait._recorder import get_recorder
from plait.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
)
from plait.cli.artifacts import (
    artifact_group,
    artifact_inspect,
    artifact_ls,
    artifacts_of_flow_run,
    show_flow_run_artifacts,
)


@pytest.fixture
def made(plait_env: str) -> dict[str, Any]:
    """One flow run with an artifact of each type (two versions of one key), and one
    artifact outside any run; written to the store."""
    ids: dict[str, Any] = {}

    @task
    def tabulate() -> str:
        ids["task_run_id"] = runtime.task_run.id
        return create_table_artifact([{"region": "eu", "rows": 120}, {"region": "us", "rows": 80}],
                                     key="row-counts", description="rows per region")

    @flow
    def nightly() -> None:
        ids["flow_run_id"] = runtime.flow_run.id
        ids["v1"] = create_markdown_artifact("# Nightly v1\n\nfirst", key="nightly-report")
        ids["v2"] = create_markdown_artifact("# Nightly v2\n\nsecond", key="nightly-report")
        ids["table"] = tabulate()
        ids["progress"] = create_progress_artifact(42.5, key="load-progress")

    nightly()
    ids["link"] = create_link_artifact("https://example.com/dash", "Dashboard")
    get_recorder().flush()
    return ids


def invoke(*args: str) -> Result:
    return CliRunner().invoke(artifact_group, list(args))


def ok(*args: str) -> str:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_ls_shows_each_key_s_latest_version(made: dict[str, Any]) -> None:
    rows = json.loads(ok("ls", "--json"))
    assert [r["id"] for r in rows] == [made["link"], made["progress"], made["table"], made["v2"]]
    assert rows == artifact_ls()
    text = ok("ls")
    for shown in ("nightly-report", "# Nightly v2", "row-counts", "2 row(s) × 2 column(s)", "42.5%",
                  "Dashboard (https://example.com/dash)", made["flow_run_id"][:8]):
        assert shown in text
    assert "# Nightly v1" not in text


def test_ls_filters_and_limits(made: dict[str, Any]) -> None:
    by_run = json.loads(ok("ls", "--flow-run", made["flow_run_id"], "--json"))
    assert {r["id"] for r in by_run} == {made["v1"], made["v2"], made["table"], made["progress"]}
    assert [r["id"] for r in json.loads(ok("ls", "--key", "row-counts", "--json"))] == [made["table"]]
    assert len(json.loads(ok("ls", "--limit", "2", "--json"))) == 2
    bad = invoke("ls", "--key", "Row Counts")
    assert bad.exit_code == 1 and "artifact key 'Row Counts' is not valid" in bad.output
    assert "--limit must be a whole number from 1 to 1000" in invoke("ls", "--limit", "0").output


def test_inspect_a_key_shows_every_version_newest_first(made: dict[str, Any]) -> None:
    versions = json.loads(ok("inspect", "nightly-report", "--json"))
    assert [v["id"] for v in versions] == [made["v2"], made["v1"]]
    assert versions == artifact_inspect("nightly-report")
    text = ok("inspect", "nightly-report")
    assert text.index("# Nightly v2") < text.index("# Nightly v1")
    assert "(latest)" in text and made["flow_run_id"] in text


def test_inspect_by_id_and_each_content(made: dict[str, Any]) -> None:
    [table] = json.loads(ok("inspect", made["table"], "--json"))
    assert table["task_run_id"] == made["task_run_id"] and table["description"] == "rows per region"
    text = ok("inspect", made["table"])
    assert "region" in text and "120" in text and "us" in text and "rows per region" in text
    assert "Dashboard: https://example.com/dash" in ok("inspect", made["link"])
    assert "42.5%" in ok("inspect", "load-progress")
    for ref in ("never-made", "00000000-0000-4000-8000-000000000000"):
        missing = invoke("inspect", ref)
        assert missing.exit_code == 1 and f"no artifact with key or id {ref!r}" in missing.output
    bad = invoke("inspect", "Not A Key")
    assert bad.exit_code == 1 and "or pass an artifact's id" in bad.output


def test_the_artifacts_of_a_flow_run_for_flow_run_inspect(made: dict[str, Any],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    rows = artifacts_of_flow_run(made["flow_run_id"])
    assert {r["id"] for r in rows} == {made["v1"], made["v2"], made["table"], made["progress"]}
    show_flow_run_artifacts(rows)
    out = capsys.readouterr().out
    assert "Artifacts (4)" in out and "row-counts" in out and "# Nightly v1" in out
    show_flow_run_artifacts(artifacts_of_flow_run("00000000-0000-4000-8000-000000000000"))
    assert capsys.readouterr().out == ""  # a run without artifacts adds nothing


def test_large_data_is_whole_on_a_run_s_page(plait_env: str) -> None:
    @flow
    def big() -> str:
        return create_markdown_artifact("x" * 10_000, key="big")

    made = big()
    get_recorder().flush()
    [listed] = artifact_ls()
    assert listed["data"]["truncated"] is True  # lists cut large data ...
    assert "plait artifact inspect big" in ok("ls")
    [whole] = artifacts_of_flow_run(listed["flow_run_id"])
    assert whole["id"] == made and whole["data"] == "x" * 10_000  # ... a run's page shows it whole


def test_no_artifacts_says_how_to_make_one(plait_env: str) -> None:
    assert "No artifacts" in ok("ls")
    assert json.loads(ok("ls", "--json")) == []
