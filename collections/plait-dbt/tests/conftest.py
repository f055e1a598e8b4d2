"""Real dbt for plait-dbt's tests: the jaffle project of tests/jaffle, copied once per test
module (dbt's partial parsing then keeps later commands fast), built on DuckDB files and on
a throwaway PostgreSQL database per module on 127.0.0.1:5432.

PostgreSQL tests skip with the reason when no server answers, unless
PLAIT_REQUIRE_POSTGRES=1 (CI), where they fail instead.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plait.testing import throwaway_postgres_database

JAFFLE = Path(__file__).resolve().parent / "jaffle"
PG_HOST = "127.0.0.1"
PG_PORT = 5432


def copy_project(destination: Path) -> Path:
    """A fresh copy of the jaffle project (without anything dbt wrote into the original)."""
    shutil.copytree(JAFFLE, destination, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages", ".user.yml"))
    return destination


@pytest.fixture(scope="module")
def jaffle_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's copy of the jaffle project."""
    return copy_project(tmp_path_factory.mktemp("dbt") / "jaffle")


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
        """The flow run's dbt node task runs by task name (of one dbt invocation if given)."""
        runs = {}
        for run in flow_run["task_runs"]:
            if "dbt" not in (run["tags"] or []) or "unique_id" not in (run["parameters"] or {}):
                continue
            if invocation_id is not None and run["parameters"].get("invocation_id") != invocation_id:
                continue
            runs[run["task_name"]] = run
        return runs

    @staticmethod
    def task_run(flow_run: dict[str, Any], task_name: str) -> dict[str, Any]:
        """The last task run of ``task_name`` in the flow run."""
        matches = [run for run in flow_run["task_runs"] if run["task_name"] == task_name]
        assert matches, f"no task run of {task_name!r}: {[r['task_name'] for r in flow_run['task_runs']]}"
        return matches[-1]

    def logs(self, flow_run: dict[str, Any]) -> list[dict[str, Any]]:
        return self.harness.logs(flow_run["id"])

    @staticmethod
    def expected_upstream(manifest: dict[str, Any], executed: set[str], build: bool) -> dict[str, set[str]]:
        """What each executed node must wait for, worked out from the manifest: its parents
        that were executed and, under ``dbt build``, the tests of its parents whose every
        parent is upstream of it (dbt build runs those tests first)."""
        nodes = {**manifest["nodes"], **manifest.get("unit_tests", {})}

        def parents(uid: str) -> list[str]:
            return list(nodes.get(uid, {}).get("depends_on", {}).get("nodes", []))

        def ancestors(uid: str) -> set[str]:
            found: set[str] = set()
            stack = parents(uid)
            while stack:
                parent = stack.pop()
                if parent not in found:
                    found.add(parent)
                    stack.extend(parents(parent))
            return found

        expected = {}
        for uid in executed:
            wanted = {p for p in parents(uid) if p in executed}
            if build and nodes[uid]["resource_type"] != "test":
                above = ancestors(uid)
                for test_id in executed:
                    if nodes[test_id]["resource_type"] == "test":
                        deps = set(parents(test_id))
                        if deps & set(parents(uid)) and deps <= above:
                            wanted.add(test_id)
            expected[uid] = wanted
        return expected


@pytest.fixture
def history(plait_harness: Any) -> History:
    """Run-history queries in this test's throwaway plait home."""
    return History(plait_harness)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: needs the PostgreSQL server on 127.0.0.1:5432")
