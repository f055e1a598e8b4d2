"""Real dbt for plait-dbt's tests: the jaffle project of tests/jaffle, copied once per test
module (dbt's partial parsing then keeps later commands fast), built on DuckDB files and on
a throwaway PostgreSQL database per module on 127.0.0.1:5432.

PostgreSQL tests skip with the reason when no server answers, unless
PLAIT_REQUIRE_POSTGRES=1 (CI), where they fail instead.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plait.testing import throwaway_postgres_database

JAFFLE = Path(__file__).resolve().parent / "jaffle"
MULTIPARENT = Path(__file__).resolve().parent / "multiparent"
PG_HOST = "127.0.0.1"
PG_PORT = 5432


def copy_project(destination: Path, source: Path = JAFFLE) -> Path:
    """A fresh copy of a test project (without anything dbt wrote into the original)."""
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages", ".user.yml"))
    return destination


@pytest.fixture(scope="module")
def jaffle_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's copy of the jaffle project."""
    return copy_project(tmp_path_factory.mktemp("dbt") / "jaffle")


@pytest.fixture(scope="module")
def multiparent_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's copy of the multiparent project (a test with two parents, a slow model)."""
    return copy_project(tmp_path_factory.mktemp("dbt") / "multiparent", MULTIPARENT)


@pytest.fixture
def fresh_project(tmp_path: Path) -> Path:
    """A copy of the jaffle project for this test alone (to break it on purpose)."""
    return copy_project(tmp_path / "jaffle")


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[str]:
    """The name of a fresh PostgreSQL database, dropped when the module's tests are done."""
    from sqlalchemy.engine import make_url

    with throwaway_postgres_database("plait_dbt") as url:
        yield make_url(url).database


# -- reading the run history back ----------------------------------------------------------------
class History:
    """Queries over plait's run history for one test (wraps the ``plait_harness``)."""

    def __init__(self, harness: Any) -> None:
        self.harness = harness

    def latest(self) -> dict[str, Any]:
        """The newest flow run with its task runs (states, upstream edges)."""
        return self.harness.flow_run(self.harness.flow_runs(limit=1)[0]["id"])

    @staticmethod
    def node_runs(flow_run: dict[str, Any], invocation_id: str | None = None) -> dict[str, dict[str, Any]]:
        """The flow run's dbt node task runs by dbt unique_id (of one dbt invocation if given)."""
        runs = {}
        for run in flow_run["task_runs"]:
            if "dbt" not in (run["tags"] or []) or "unique_id" not in (run["parameters"] or {}):
                continue
            if invocation_id is not None and run["parameters"].get("invocation_id") != invocation_id:
                continue
            runs[run["parameters"]["unique_id"]] = run
        return runs

    @staticmethod
    def node_upstream(flow_run: dict[str, Any], run: dict[str, Any]) -> set[str]:
        """The unique_ids of the node runs ``run`` has edges from."""
        by_id = {r["id"]: (r["parameters"] or {}).get("unique_id") for r in flow_run["task_runs"]}
        return {by_id[edge["id"]] for edge in run["upstream"] if by_id.get(edge["id"])}

    @staticmethod
    def dbt_edges(flow_run: dict[str, Any], invocation_id: str | None = None) -> set[tuple[str, str]]:
        """Every recorded (upstream unique_id, downstream unique_id) edge between node runs."""
        nodes = History.node_runs(flow_run, invocation_id)
        return {(up, uid) for uid, run in nodes.items() for up in History.node_upstream(flow_run, run)}

    @staticmethod
    def task_run(flow_run: dict[str, Any], task_name: str) -> dict[str, Any]:
        """The last task run of ``task_name`` in the flow run."""
        matches = [run for run in flow_run["task_runs"] if run["task_name"] == task_name]
        assert matches, f"no task run of {task_name!r}: {[r['task_name'] for r in flow_run['task_runs']]}"
        return matches[-1]

    def logs(self, flow_run: dict[str, Any]) -> list[dict[str, Any]]:
        return self.harness.logs(flow_run["id"])

    @staticmethod
    def dbt_graph(target_dir: Path, executed: set[str]) -> set[tuple[str, str]]:
        """The graph dbt executed the command that just ran on: its graph summary
        (target/graph_summary.json; under ``dbt build`` the graph with test edges) cut down
        to the executed nodes by dbt's own ``Graph.get_subset_graph``, as dbt's queue is."""
        import networkx
        from dbt.graph.graph import Graph

        summary = json.loads((target_dir / "graph_summary.json").read_text())
        graph = summary.get("with_test_edges") or summary["linked"]
        full = networkx.DiGraph()
        full.add_nodes_from(node["name"] for node in graph.values())
        full.add_edges_from(
            (node["name"], graph[str(succ)]["name"]) for node in graph.values() for succ in node.get("succ", [])
        )
        return set(Graph(full).get_subset_graph(executed).graph.edges())

    @staticmethod
    def manifest_edges(manifest: dict[str, Any], executed: set[str]) -> set[tuple[str, str]]:
        """The manifest's parent_map restricted to the executed nodes."""
        return {(parent, uid) for uid in executed for parent in manifest["parent_map"].get(uid, []) if parent in executed}


@pytest.fixture
def history(plait_harness: Any) -> History:
    """Run-history queries in this test's throwaway plait home."""
    return History(plait_harness)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: needs the PostgreSQL server on 127.0.0.1:5432")
