"""Artifacts through a real plait server (SQLite and PostgreSQL, one server each for the
module): a flow recording remotely (``PLAIT_API_URL``) sends its artifacts with its other
records, and the routes, the clients and ``plait artifact`` read them back; a flow process
recording remotely from a subprocess too, through its exit."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from plait import flow, runtime, task
from plait.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from plait.client import ApiNotFound, AsyncPlaitClient, PlaitClient
from plait.testing import reset_state, throwaway_postgres_database
from plait.testing._server import ServerHandle, running_server

pytestmark = pytest.mark.slow


@dataclass
class Served:
    handle: ServerHandle
    client: httpx.Client

    def get(self, path: str, *, auth: str | None = "read", **params: Any) -> httpx.Response:
        keys = {"admin": self.handle.admin_key, "run": self.handle.run_key, "read": self.handle.read_key}
        headers = {"Authorization": f"Bearer {keys[auth]}"} if auth else {}
        return self.client.get("/api/v1" + path, headers=headers, params=params)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("server-artifacts")
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{home / 'plait.db'}"
        else:
            url = stack.enter_context(throwaway_postgres_database("plait_srv_artifacts"))
        handle = stack.enter_context(running_server(url, home / "server"))
        client = stack.enter_context(httpx.Client(base_url=handle.url, timeout=60))
        yield Served(handle, client)


@pytest.fixture
def remote(served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This process as a client of the server (a key of scope run), with no database."""
    unused = tmp_path / "never-created.db"
    reset_state()
    monkeypatch.setenv("PLAIT_HOME", str(tmp_path / "client-home"))
    monkeypatch.setenv("PLAIT_DATABASE_URL", f"sqlite:///{unused}")
    monkeypatch.setenv("PLAIT_API_URL", served.handle.api_url)
    monkeypatch.setenv("PLAIT_API_KEY", served.handle.run_key)
    monkeypatch.setenv("PLAIT_LOG_TO_CONSOLE", "false")
    yield unused
    reset_state()
    assert not unused.exists(), "a call opened a local database instead of asking the server"


def unique(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}"


def record_remotely(report_key: str, table_key: str) -> dict[str, Any]:
    """Run a flow recording to the server; returns its ids once the recorder delivered."""
    seen: dict[str, Any] = {}

    @task
    def count() -> str:
        seen["task_run_id"] = runtime.task_run.id
        return create_table_artifact({"region": ["eu", "us"], "rows": [120, 80]}, key=table_key)

    @flow
    def remote_report() -> None:
        seen["flow_run_id"] = runtime.flow_run.id
        seen["first"] = create_markdown_artifact("# v1", key=report_key)
        seen["second"] = create_markdown_artifact("# v2", key=report_key, description="the second")
        seen["table"] = count()
        seen["progress"] = create_progress_artifact(10)
        update_progress_artifact(seen["progress"], 90)

    remote_report()
    reset_state()  # flushes the recorder: every record is at the server now
    return seen


def test_a_remote_flow_s_artifacts_reach_the_server_and_its_routes(served: Served, remote: Path) -> None:
    report, table = unique("report"), unique("table")
    seen = record_remotely(report, table)

    by_run = served.get("/artifacts", flow_run_id=seen["flow_run_id"])
    assert by_run.status_code == 200, by_run.text
    items = {a["id"]: a for a in by_run.json()["items"]}
    assert set(items) == {seen["first"], seen["second"], seen["table"], seen["progress"]}
    assert items[seen["table"]]["task_run_id"] == seen["task_run_id"]
    assert items[seen["table"]]["data"] == {"columns": ["region", "rows"], "rows": [["eu", 120], ["us", 80]]}
    assert items[seen["progress"]]["data"] == 90.0
    assert {a["flow_run_id"] for a in items.values()} == {seen["flow_run_id"]}

    latest = served.get("/artifacts", key=report).json()["items"]
    assert [a["id"] for a in latest] == [seen["second"]]
    versions = served.get(f"/artifacts/key/{report}")
    assert versions.status_code == 200 and versions.json()["key"] == report
    assert [v["id"] for v in versions.json()["items"]] == [seen["second"], seen["first"]]
    one = served.get(f"/artifacts/{seen['second']}").json()
    assert (one["data"], one["description"], one["type"]) == ("# v2", "the second", "markdown")
    assert [a["id"] for a in served.get("/artifacts", task_run_id=seen["task_run_id"]).json()["items"]] == [
        seen["table"]]
    types = {a["type"] for a in served.get("/artifacts", flow_run_id=seen["flow_run_id"], type="table").json()["items"]}
    assert types == {"table"}

    # pages of one, then nothing left
    first = served.get("/artifacts", flow_run_id=seen["flow_run_id"], limit=1).json()
    assert len(first["items"]) == 1 and first["next_cursor"]
    rest = served.get("/artifacts", flow_run_id=seen["flow_run_id"], limit=10, cursor=first["next_cursor"]).json()
    assert len(rest["items"]) == 3 and rest["next_cursor"] is None
    assert first["items"][0]["id"] not in {a["id"] for a in rest["items"]}


def test_the_routes_refuse_and_miss_clearly(served: Served) -> None:
    missing = served.get(f"/artifacts/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "artifact_not_found"
    no_key = served.get("/artifacts/key/no-such-key-anywhere")
    assert no_key.status_code == 404 and "no-such-key-anywhere" in no_key.json()["error"]["message"]
    assert served.get("/artifacts/key/Bad_Key").status_code == 422
    assert served.get("/artifacts", type="video").status_code == 422
    assert served.get("/artifacts", cursor="nonsense").status_code == 400
    assert served.get("/artifacts", auth=None).status_code == 401


def test_the_clients_read_artifacts(served: Served, remote: Path) -> None:
    report, table = unique("report"), unique("table")
    seen = record_remotely(report, table)
    with PlaitClient(served.handle.api_url, api_key=served.handle.read_key) as client:
        page = client.artifacts(flow_run=seen["flow_run_id"])
        assert len(page.items) == 4
        assert [a["id"] for a in client.iter_artifacts(flow_run=seen["flow_run_id"], page_size=1)] == [
            a["id"] for a in page.items]
        assert client.artifact(seen["table"])["task_run_id"] == seen["task_run_id"]
        assert [v["data"] for v in client.artifact_versions(report)] == ["# v2", "# v1"]
        with pytest.raises(ApiNotFound):
            client.artifact(str(uuid.uuid4()))

    async def read() -> tuple[list[str], list[str]]:
        async with AsyncPlaitClient(served.handle.api_url, api_key=served.handle.read_key) as client:
            versions = [v["id"] for v in await client.artifact_versions(report)]
            listed = [a["id"] async for a in client.iter_artifacts(key=table)]
            return versions, listed

    assert asyncio.run(read()) == ([seen["second"], seen["first"]], [seen["table"]])


def test_the_cli_reads_the_server(served: Served, remote: Path) -> None:
    from plait.cli.artifacts import artifact_group, artifacts_of_flow_run

    report, table = unique("report"), unique("table")
    seen = record_remotely(report, table)
    runner = CliRunner()
    listed = runner.invoke(artifact_group, ["ls", "--flow-run", seen["flow_run_id"], "--json"])
    assert listed.exit_code == 0, listed.output
    assert {a["id"] for a in json.loads(listed.stdout)} == {seen["first"], seen["second"], seen["table"],
                                                            seen["progress"]}
    shown = runner.invoke(artifact_group, ["inspect", report])
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.index("# v2") < shown.stdout.index("# v1")
    missing = runner.invoke(artifact_group, ["inspect", "nothing-here"])
    assert missing.exit_code == 1 and "no artifact with key or id 'nothing-here'" in missing.output
    assert {a["id"] for a in artifacts_of_flow_run(seen["flow_run_id"])} == {
        seen["first"], seen["second"], seen["table"], seen["progress"]}


SUBPROCESS_FLOW = textwrap.dedent(
    """
    import sys
    from plait import flow
    from plait.artifacts import create_markdown_artifact

    @flow(name="artifact-subprocess")
    def made_elsewhere():
        create_markdown_artifact("from another process", key=sys.argv[1])

    made_elsewhere()
    """
)


def test_a_flow_process_recording_to_the_server_delivers_its_artifact(served: Served, tmp_path: Path) -> None:
    key = unique("elsewhere")
    script = tmp_path / "elsewhere.py"
    script.write_text(SUBPROCESS_FLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env.update(PLAIT_HOME=str(tmp_path / "home"), PLAIT_API_URL=served.handle.api_url,
               PLAIT_API_KEY=served.handle.run_key, PLAIT_LOG_TO_CONSOLE="false",
               PLAIT_DATABASE_URL=f"sqlite:///{tmp_path / 'must-not-exist.db'}")
    done = subprocess.run([sys.executable, str(script), key], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "must-not-exist.db").exists()
    [version] = served.get(f"/artifacts/key/{key}").json()["items"]
    assert version["data"] == "from another process" and version["flow_run_id"]
