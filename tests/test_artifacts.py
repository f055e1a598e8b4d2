"""plait.artifacts on the local store (SQLite and PostgreSQL): artifacts made in a flow, in a
task and outside any run, keyed versions, the four types and progress updates, bad input,
masking of secrets, and an artifact surviving ``kill -9`` of its process (journal replay)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from plait import flow, runtime, task
from plait._batch import BatchRows
from plait._recorder import get_recorder
from plait._store.artifacts import artifact_versions, get_artifact, list_artifacts
from plait._store.database import Database, get_database
from plait._store.models import ARTIFACTS
from plait._store.runs import RunWriter
from plait.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)


@pytest.fixture
def store(plait_env: str) -> str:
    return plait_env


def stored() -> Database:
    """The store, after the recorder wrote what it holds."""
    get_recorder().flush()
    return get_database()


def test_artifacts_made_in_a_flow_and_in_a_task_are_linked_to_their_runs(store: str) -> None:
    seen: dict[str, Any] = {}

    @task
    def summarise(n: int) -> str:
        seen["task_run_id"] = runtime.task_run.id
        return create_table_artifact([{"n": n, "square": n * n}], key="squares", description="by task")

    @flow
    def report() -> tuple[str, str]:
        seen["flow_run_id"] = runtime.flow_run.id
        made = create_markdown_artifact("# Report\n\nall good", key="report")
        return made, summarise(3)

    in_flow, in_task = report()
    db = stored()
    flow_art, task_art = get_artifact(db, in_flow), get_artifact(db, in_task)
    assert flow_art is not None and task_art is not None
    assert uuid.UUID(in_flow) and uuid.UUID(in_task)
    assert (flow_art["flow_run_id"], flow_art["task_run_id"]) == (seen["flow_run_id"], None)
    assert (task_art["flow_run_id"], task_art["task_run_id"]) == (seen["flow_run_id"], seen["task_run_id"])
    assert flow_art["type"] == "markdown" and flow_art["data"] == "# Report\n\nall good"
    assert task_art["data"] == {"columns": ["n", "square"], "rows": [[3, 9]]} and task_art["description"] == "by task"
    by_run = list_artifacts(db, flow_run_id=seen["flow_run_id"])["items"]
    assert {a["id"] for a in by_run} == {in_flow, in_task}
    assert [a["id"] for a in list_artifacts(db, task_run_id=seen["task_run_id"])["items"]] == [in_task]
    assert [a["id"] for a in list_artifacts(db, type="markdown")["items"]] == [in_flow]


def test_outside_a_run_an_artifact_has_no_run(store: str) -> None:
    made = create_link_artifact("https://example.com/dash", "Dashboard")
    found = get_artifact(stored(), made)
    assert found is not None
    assert (found["flow_run_id"], found["task_run_id"], found["key"]) == (None, None, None)
    assert found["data"] == {"link": "https://example.com/dash", "text": "Dashboard"}


def test_each_create_with_a_key_is_a_new_version_and_ls_shows_the_latest(store: str) -> None:
    @flow
    def nightly(i: int) -> str:
        return create_markdown_artifact(f"run {i}", key="nightly-report")

    ids = [nightly(i) for i in range(3)]
    other = create_markdown_artifact("other", key="other-report")
    keyless = create_markdown_artifact("no key")
    db = stored()
    versions = artifact_versions(db, "nightly-report")
    assert [v["id"] for v in versions] == ids[::-1]  # newest first
    assert [v["data"] for v in versions] == ["run 2", "run 1", "run 0"]
    assert len({v["flow_run_id"] for v in versions}) == 3
    latest = list_artifacts(db)["items"]
    assert [a["id"] for a in latest] == [keyless, other, ids[2]]
    assert [a["id"] for a in list_artifacts(db, key="nightly-report")["items"]] == [ids[2]]
    assert [a["id"] for a in list_artifacts(db, key="nightly-report", latest=False)["items"]] == ids[::-1]
    assert artifact_versions(db, "never-made") == []
    # keyset pages: one at a time, nothing skipped or repeated
    seen, cursor = [], None
    while True:
        page = list_artifacts(db, latest=False, limit=2, cursor=cursor)
        seen += [a["id"] for a in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [keyless, other, *ids[::-1]]
    with pytest.raises(ValueError, match="bad cursor"):
        list_artifacts(db, cursor="nonsense")


def test_tables_in_each_shape(store: str) -> None:
    rows = create_table_artifact([{"a": 1, "b": "x"}, {"a": 2, "c": None}])
    columns = create_table_artifact({"city": ["Oslo", "Lima"], "temp": [3.5, 19.0]})
    bare = create_table_artifact([[1, 2], [3, 4, 5]])
    odd = create_table_artifact([{"when": Path("/x"), "inf": float("inf"), "ok": True}])
    db = stored()
    assert get_artifact(db, rows)["data"] == {"columns": ["a", "b", "c"], "rows": [[1, "x", None], [2, None, None]]}
    assert get_artifact(db, columns)["data"] == {"columns": ["city", "temp"], "rows": [["Oslo", 3.5], ["Lima", 19.0]]}
    assert get_artifact(db, bare)["data"] == {"columns": None, "rows": [[1, 2], [3, 4, 5]]}
    assert get_artifact(db, odd)["data"] == {"columns": ["when", "inf", "ok"], "rows": [["/x", "inf", True]]}
    with pytest.raises(ValueError, match=r"columns differ in length \(1, 2 values\)"):
        create_table_artifact({"a": [1], "b": [1, 2]})
    with pytest.raises(TypeError, match="table must be a list of dicts"):
        create_table_artifact("a,b\n1,2")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="rows mix shapes"):
        create_table_artifact([{"a": 1}, [1]])  # type: ignore[list-item]


def test_progress_and_its_updates(store: str) -> None:
    @flow
    def load() -> str:
        made = create_progress_artifact(0, key="load-progress", description="rows loaded")
        for done in (25, 50.5, 100):
            assert update_progress_artifact(made, done) == made
        return made

    made = load()
    db = stored()
    found = get_artifact(db, made)
    assert found is not None and found["type"] == "progress" and found["data"] == 100.0
    assert found["updated"] > found["created"]
    # an update delivered late (older than the stored figure) never undoes a newer one
    with db.engine.begin() as conn:
        before = conn.execute(select(ARTIFACTS.c.updated).where(ARTIFACTS.c.id == made)).scalar_one()
    from datetime import timedelta

    RunWriter(db).write(BatchRows(artifact_updates=[
        {"artifact_id": made, "data": 10.0, "updated": before - timedelta(seconds=1)}]))
    assert get_artifact(db, made)["data"] == 100.0
    # an update of an artifact that is no progress artifact changes nothing
    text = create_markdown_artifact("not progress")
    update_progress_artifact(text, 50)
    assert get_artifact(stored(), text)["data"] == "not progress"
    for bad in (-1, 100.5, float("nan")):
        with pytest.raises(ValueError, match="progress must be a number from 0 to 100"):
            create_progress_artifact(bad)
    with pytest.raises(TypeError, match="progress must be a number"):
        update_progress_artifact(made, "50")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is not an artifact id"):
        update_progress_artifact("load-progress", 50)


@pytest.mark.parametrize("key", ["Daily", "daily_report", "daily report", "", "ü", "x" * 256, 42])
def test_a_bad_key_is_refused_naming_it_and_the_rule(store: str, key: Any) -> None:
    with pytest.raises(ValueError) as caught:
        create_markdown_artifact("text", key=key)
    message = str(caught.value)
    assert "lowercase letters, digits and dashes" in message
    assert (repr(key) if isinstance(key, str) else "of type int") in message
    assert list_artifacts(stored())["items"] == []


def test_good_keys_are_taken(store: str) -> None:
    for key in ("a", "daily-report-2024", "x" * 255, "-"):
        create_markdown_artifact("text", key=key)
    assert len(list_artifacts(stored())["items"]) == 4


def test_no_registered_secret_is_stored_in_plain_text(store: str) -> None:
    from plait._masking import forget_secrets, register_secret

    secret = "s3cr3t-artifact-canary-9731"
    register_secret(secret)
    try:
        @task
        def leak() -> list[str]:
            return [
                create_markdown_artifact(f"password is {secret}", key="leaky", description=f"desc {secret}"),
                create_table_artifact([{"name": "db", secret: f"pw={secret}"}]),
                create_link_artifact(f"https://example.com/?token={secret}", f"link {secret}"),
            ]

        @flow
        def leaky() -> list[str]:
            return leak()

        ids = leaky()
        db = stored()
        with db.engine.connect() as conn:
            raw = [tuple(r) for r in conn.execute(select(ARTIFACTS))]
        assert len(raw) == 3
        assert secret not in repr(raw)
        markdown = get_artifact(db, ids[0])
        assert markdown["data"] == "password is ***" and markdown["description"] == "desc ***"
        assert get_artifact(db, ids[1])["data"] == {"columns": ["name", "***"], "rows": [["db", "pw=***"]]}
    finally:
        forget_secrets(secret)


def test_bad_text_is_refused_clearly(store: str) -> None:
    with pytest.raises(TypeError, match="markdown must be a string, not int"):
        create_markdown_artifact(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="link must be a non-empty URL"):
        create_link_artifact("  ")
    with pytest.raises(ValueError, match="at most 5,000,000 are kept"):
        create_markdown_artifact("x" * 5_000_001)


def test_a_batch_stored_twice_holds_each_artifact_once(store: str) -> None:
    from datetime import datetime

    create_markdown_artifact("once", key="once")
    db = stored()
    [row] = artifact_versions(db, "once")
    resent = {**row, "data": "sent again", "created": datetime.fromisoformat(row["created"]),
              "updated": datetime.fromisoformat(row["updated"])}
    RunWriter(db).write(BatchRows(artifacts=[resent]))  # the same id: a retried or replayed record
    assert [v["data"] for v in artifact_versions(db, "once")] == ["once"]


# -- kill -9 -------------------------------------------------------------------------------------------
KILLED = textwrap.dedent(
    """
    import os, signal
    from plait import flow, task
    from plait.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact

    @task
    def step():
        return create_markdown_artifact("made by the task", key="killed-task")

    @flow
    def doomed():
        made = create_progress_artifact(5, key="killed-progress")
        step()
        update_progress_artifact(made, 60)
        create_markdown_artifact("last words", key="killed-flow")
        os.kill(os.getpid(), signal.SIGKILL)  # before any flush: only the journal has them

    doomed()
    """
)


def test_artifacts_survive_kill_9_of_the_flow_process(store: str, tmp_path: Path) -> None:
    from plait._recovery import detect_crashed

    script = tmp_path / "doomed.py"
    script.write_text(KILLED)
    env = {**os.environ, "PLAIT_RECORDER_FLUSH_INTERVAL": "3600", "PLAIT_LOG_TO_CONSOLE": "false"}
    env.pop("PLAIT_FLOW_RUN_ID", None)
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    db = get_database()
    assert list_artifacts(db)["items"] == []  # nothing was flushed ...
    detect_crashed(db)  # ... the dead process's journal is replayed
    detect_crashed(db)  # and replaying is idempotent
    by_key = {a["key"]: a for a in list_artifacts(db)["items"]}
    assert set(by_key) == {"killed-task", "killed-flow", "killed-progress"}
    assert by_key["killed-progress"]["data"] == 60.0
    flow_run_id = by_key["killed-flow"]["flow_run_id"]
    assert flow_run_id and all(a["flow_run_id"] == flow_run_id for a in by_key.values())
    assert by_key["killed-task"]["task_run_id"] is not None and by_key["killed-flow"]["task_run_id"] is None
    assert len(list_artifacts(db, latest=False)["items"]) == 3


def test_a_server_ingests_artifacts_once_from_batches_and_replays(store: str) -> None:
    """What ``POST /records`` and ``/records/replay`` store (the spool of a dead process
    recording remotely is delivered as a replay)."""
    from datetime import UTC, datetime

    from plait._store.ingest import ingest_batch, ingest_replay

    db = get_database()
    now = datetime.now(UTC)
    made = str(uuid.uuid4())
    row = {"id": made, "key": "ingested", "type": "progress", "description": None, "data": 1.0,
           "flow_run_id": None, "task_run_id": None, "created": now, "updated": now}
    update = {"artifact_id": made, "data": 75.0, "updated": now}
    wire = BatchRows(artifacts=[row], artifact_updates=[update]).to_wire()
    assert ingest_batch(db, "batch-a", BatchRows.from_wire(wire))["duplicate"] is False
    assert ingest_batch(db, "batch-a", BatchRows.from_wire(wire))["duplicate"] is True
    assert ingest_replay(db, "replay-a", BatchRows.from_wire(wire))["dropped"] == 0
    [stored_row] = artifact_versions(db, "ingested")
    assert stored_row["data"] == 75.0
    with pytest.raises(ValueError, match=r"artifacts\[0\] has unknown field\(s\) color"):
        ingest_batch(db, "batch-b", BatchRows(artifacts=[{**row, "color": "red"}]))
    assert "artifacts" not in BatchRows().to_wire()  # an older server never sees the new lists
