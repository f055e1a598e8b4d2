"""plait.history: the run history in batches after a cursor, on SQLite and PostgreSQL stores."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from plait import flow, task
from plait.history import MAX_BATCH, HistoryBatch, HistoryUnavailable, copy_history, export_history, iter_history
from plait.testing import free_port


@task
def add(x: int) -> int:
    return x + 1


@flow
def pipeline(n: int = 1) -> int:
    return sum(add(i) for i in range(n))


@flow
def chatty() -> None:
    raise ValueError("x" * 5000)


def _flush() -> None:
    from plait._recording import current_recorder

    current_recorder().flush()


def test_a_batch_holds_new_states_and_the_runs_they_belong_to(plait_env: str) -> None:
    assert export_history() == HistoryBatch(cursor=0)
    pipeline(2)
    _flush()
    batch = export_history()
    assert [f["flow_name"] for f in batch.flow_runs] == ["pipeline"]
    assert len(batch.task_runs) == 2
    assert {t["flow_run_id"] for t in batch.task_runs} == {batch.flow_runs[0]["id"]}
    ids = [s["id"] for s in batch.states]
    assert ids == sorted(ids) and batch.cursor == ids[-1] and not batch.more
    assert [s["type"] for s in batch.states if s["run_kind"] == "flow"] == ["PENDING", "RUNNING", "COMPLETED"]
    run = batch.flow_runs[0]
    assert run["state_type"] == "COMPLETED" and run["tags"] == [] and "parameters" not in run
    assert run["start_time"].tzinfo is not None and run["end_time"] >= run["start_time"]

    assert not export_history(since=batch.cursor)  # nothing new
    assert export_history(since=batch.cursor).cursor == batch.cursor
    pipeline(1)
    _flush()
    later = export_history(since=batch.cursor)
    assert len(later.flow_runs) == 1 and later.flow_runs[0]["id"] != run["id"] and len(later.task_runs) == 1
    assert min(s["id"] for s in later.states) > batch.cursor


def test_small_batches_page_through_everything(plait_env: str) -> None:
    for _ in range(3):
        pipeline(1)
    _flush()
    whole = export_history(limit=MAX_BATCH)
    batches = list(iter_history(batch_size=4))
    assert len(batches) > 2 and all(b.more for b in batches[:-1])
    assert [s["id"] for b in batches for s in b.states] == [s["id"] for s in whole.states]
    assert {f["id"] for b in batches for f in b.flow_runs} == {f["id"] for f in whole.flow_runs}
    assert batches[-1].cursor == whole.cursor
    assert list(iter_history(since=whole.cursor)) == []


def test_excluded_flows_are_left_out_but_the_cursor_moves_past_them(plait_env: str) -> None:
    pipeline(1)
    _flush()
    batch = export_history(exclude_flows=["pipeline"])
    assert not batch and batch.cursor > 0
    assert [b.cursor for b in iter_history(exclude_flows=["pipeline"])] == [batch.cursor]


def test_long_messages_are_cut(plait_env: str) -> None:
    with pytest.raises(ValueError):
        chatty()
    _flush()
    batch = export_history()
    message = batch.flow_runs[0]["state_message"]
    assert len(message) < 2100 and "truncated" in message
    assert any("truncated" in (s["message"] or "") for s in batch.states)
    # a window below the cursor comes again, whole: what a copier re-reads
    window = export_history(since=batch.cursor - 2)
    assert [s["id"] for s in window.states] == [s["id"] for s in batch.states][-2:]
    assert [f["id"] for f in window.flow_runs] == [batch.flow_runs[0]["id"]]


@pytest.mark.parametrize("kwargs", [{"since": -1}, {"since": "3"}, {"since": 2**63}, {"limit": 0}, {"limit": MAX_BATCH + 1},
                                    {"limit": True}])
def test_bad_arguments_are_refused(plait_env: str, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="since|limit"):
        export_history(**kwargs)  # type: ignore[arg-type]


@contextlib.contextmanager
def _serving(database_url: str, *, with_export: bool = True) -> Iterator[str]:
    """A real uvicorn server (in a thread) of the store; ``with_export=False`` takes the
    export route out, as on a server of an older plait."""
    import uvicorn

    from plait._store.database import Database
    from plait.server.app import API_PREFIX, create_app

    app = create_app(Database.open(database_url), auth=False, services=False)
    if not with_export:
        from starlette.responses import JSONResponse

        @app.middleware("http")
        async def older_server(request: Any, call_next: Any) -> Any:  # it has no such route
            if request.url.path == f"{API_PREFIX}/history/export":
                return JSONResponse({"detail": "Not Found"}, status_code=404)
            return await call_next(request)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/api"
    finally:
        server.should_exit = True
        thread.join(10)


def test_through_the_server_when_plait_api_url_is_set(plait_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline(2)
    with pytest.raises(ValueError):
        chatty()
    _flush()
    local = export_history()
    with _serving(plait_env) as url:
        monkeypatch.setenv("PLAIT_API_URL", url)
        remote = export_history()
        assert remote == local  # times come back as the same aware datetimes
        assert [b.cursor for b in iter_history(batch_size=5)][-1] == local.cursor
        assert not export_history(since=local.cursor)
        only = export_history(exclude_flows=["chatty"])
        assert {f["flow_name"] for f in only.flow_runs} == {"pipeline"}
        with pytest.raises(ValueError, match="limit"):
            export_history(limit=0)


def test_a_server_without_the_export_says_what_to_do(plait_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline(1)
    _flush()
    with _serving(plait_env, with_export=False) as url:
        monkeypatch.setenv("PLAIT_API_URL", url)
        with pytest.raises(HistoryUnavailable, match="database_url="):
            export_history()
        assert len(export_history(database_url=plait_env).flow_runs) == 1


def test_the_limits_agree() -> None:
    from plait._store.export import MAX_BATCH as STORE_MAX

    assert MAX_BATCH == STORE_MAX


def test_copy_history_drives_an_incremental_copy(plait_env: str) -> None:
    """The loop the warehouse copy flows share: batches from the cursor (minus the overlap)
    to ``load``, what it wrote summed, the cursor moved on; a second copy loads nothing."""
    copied: dict[str, set[Any]] = {"flow_runs": set(), "task_runs": set(), "states": set()}

    def load(batch: HistoryBatch) -> dict[str, int]:
        fresh = [s for s in batch.states if s["id"] not in copied["states"]]
        copied["states"] |= {s["id"] for s in fresh}
        changed = {s["run_id"] for s in fresh}
        flows = {r["id"] for r in batch.flow_runs if r["id"] in changed}
        tasks = {r["id"] for r in batch.task_runs if r["id"] in changed}
        copied["flow_runs"] |= flows
        copied["task_runs"] |= tasks
        return {"flow_runs": len(flows), "task_runs": len(tasks), "states": len(fresh)}

    pipeline(2)
    _flush()
    first = copy_history(load, 0, batch_size=3)  # several batches: a run may be rewritten in each
    assert (len(copied["flow_runs"]), len(copied["task_runs"])) == (1, 2)
    assert first["states"] == len(copied["states"]) >= 9 and first["flow_runs"] >= 1
    assert first["cursor"] == max(copied["states"])
    again = copy_history(load, first["cursor"], overlap=5)
    assert (again.get("states", 0), again["cursor"]) == (0, first["cursor"])
    with pytest.raises(ValueError, match="overlap is a number of state ids"):
        copy_history(load, 0, overlap=-1)
