"""Transactions: task runs staged in a block commit together (results written, on_commit
hooks) or roll back together (nothing written, on_rollback hooks, latest first); a keyed
transaction runs at most once. Prefect's transactions page is the reference."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from plait import INPUTS, flow, get_transaction, task, transaction
from plait.transactions import StagedTask, TransactionState


@pytest.fixture(autouse=True)
def _env(plait_env: str) -> None:
    """Every test records to a fresh database (and results under a fresh PLAIT_HOME)."""


def test_a_failure_after_a_side_effect_rolls_the_side_effect_back(tmp_path: Path) -> None:
    target = tmp_path / "side-effect.txt"

    @task
    def write_file(contents: str) -> None:
        target.write_text(contents)

    @write_file.on_rollback
    def delete_file(txn: StagedTask) -> None:
        assert txn.task_run.task_name == "write_file"
        target.unlink()

    @task
    def quality_test() -> None:
        if len(target.read_text().splitlines()) < 2:
            raise ValueError("not enough data")

    @flow
    def pipeline(contents: str) -> None:
        with transaction():
            write_file(contents)
            quality_test()

    state = pipeline("hello world", return_state=True)
    assert state.is_failed() and "not enough data" in (state.message or "")
    assert not target.exists()

    pipeline("hello\nworld")  # two lines: the test passes, nothing is rolled back
    assert target.read_text() == "hello\nworld"


def test_commit_runs_on_commit_hooks_in_order_and_rollback_hooks_run_latest_first() -> None:
    calls: list[str] = []

    @task
    def step(name: str) -> str:
        return name

    @step.on_commit
    def committed(txn: StagedTask) -> None:
        calls.append(f"commit {txn.value}")

    @step.on_rollback
    def rolled_back(txn: StagedTask) -> None:
        calls.append(f"rollback {txn.value}")

    @flow
    def ok() -> None:
        with transaction():
            step("a")
            step("b")

    @flow
    def bad() -> None:
        with transaction():
            step("a")
            step("b")
            raise RuntimeError("boom")

    ok()
    assert calls == ["commit a", "commit b"]
    calls.clear()
    assert bad(return_state=True).is_failed()
    assert calls == ["rollback b", "rollback a"]


def test_cached_results_are_written_only_when_the_transaction_commits() -> None:
    runs: list[int] = []

    @task(cache_policy=INPUTS)
    def expensive(x: int) -> int:
        runs.append(x)
        return x * 10

    @flow
    def pipeline(fail: bool) -> int:
        with transaction():
            value = expensive(1)
            if fail:
                raise RuntimeError("later step failed")
        return value

    assert pipeline(True, return_state=True).is_failed()
    assert runs == [1]
    assert pipeline(False) == 10  # the rolled-back run left no cache entry: it runs again
    assert runs == [1, 1]
    assert pipeline(False) == 10  # now committed: read from the cache
    assert runs == [1, 1]


def test_a_keyed_transaction_runs_at_most_once(tmp_path: Path) -> None:
    writes: list[str] = []

    @task
    def write(day: str) -> None:
        writes.append(day)

    @flow(log_prints=True)
    def daily(day: str) -> bool:
        with transaction(key=f"daily-{day}") as txn:
            if txn.is_committed():
                return False
            write(day)
        assert txn.is_committed() and txn.state is TransactionState.COMMITTED
        return True

    assert daily("2026-12-01") is True
    assert daily("2026-12-01") is False
    assert daily("2026-12-02") is True
    assert writes == ["2026-12-01", "2026-12-02"]


def test_a_keyed_transaction_that_rolled_back_is_not_committed() -> None:
    @flow
    def attempt(fail: bool) -> bool:
        try:
            with transaction(key="once") as txn:
                committed_before = txn.is_committed()
                if fail:
                    raise ValueError("failed")
        except ValueError:
            assert txn.is_rolled_back()
        return committed_before

    assert attempt(True) is False
    assert attempt(False) is False  # the failed block wrote no record
    assert attempt(False) is True


def test_a_tampered_transaction_record_is_not_trusted(caplog: pytest.LogCaptureFixture) -> None:
    @flow
    def once() -> bool:
        with transaction(key="signed") as txn:
            return txn.is_committed()

    assert once() is False
    with transaction(key="signed") as probe:
        storage = probe.storage()
    path = Path(storage.basepath) / "transactions" / "signed"
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"task_runs"', b'"task_runz"'))
    with caplog.at_level(logging.WARNING, logger="plait.transactions"):
        assert once() is False
    assert "signed" in caplog.text


def test_values_set_on_the_transaction_reach_the_hooks() -> None:
    seen: list[str] = []

    @task
    def upload(path: str) -> str:
        get_transaction().set("uploaded", path)  # type: ignore[union-attr]
        return path

    @upload.on_rollback
    def remove(txn: StagedTask) -> None:
        seen.append(txn.get("uploaded"))
        seen.append(txn.get("missing", "default"))

    @flow
    def pipeline() -> None:
        with transaction() as txn:
            txn.set("run", "nightly")
            upload("s3://bucket/file.csv")
            assert txn.get("run") == "nightly"
            with pytest.raises(KeyError, match="no value 'nope'"):
                txn.get("nope")
            txn.rollback()
        assert txn.is_rolled_back()

    pipeline()
    assert seen == ["s3://bucket/file.csv", "default"]


def test_submitted_runs_finish_before_the_commit() -> None:
    committed: list[int] = []

    @task
    def slow(i: int) -> int:
        import time

        time.sleep(0.05 * i)
        return i

    @slow.on_commit
    def note(txn: StagedTask) -> None:
        committed.append(txn.value)

    @flow
    def fan_out() -> None:
        with transaction():
            slow.map(range(4))  # not waited for in the block

    fan_out()
    assert sorted(committed) == [0, 1, 2, 3]


def test_a_nested_block_commits_with_the_outer_one() -> None:
    calls: list[str] = []

    @task
    def step(name: str) -> str:
        return name

    @step.on_commit
    def committed(txn: StagedTask) -> None:
        calls.append(f"commit {txn.value}")

    @step.on_rollback
    def rolled_back(txn: StagedTask) -> None:
        calls.append(f"rollback {txn.value}")

    @flow
    def outer(fail: bool) -> None:
        with transaction():
            step("outer")
            with transaction(key="inner") as inner:
                step("inner")
            assert calls == []  # nothing commits before the outer block does
            assert inner.staged_runs
            if fail:
                raise RuntimeError("outer fails")

    assert outer(True, return_state=True).is_failed()
    assert calls == ["rollback inner", "rollback outer"]
    calls.clear()
    outer(False)
    assert calls == ["commit outer", "commit inner"]


def test_a_hook_that_raises_is_logged_and_the_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    def broken(txn: StagedTask) -> None:
        raise OSError("disk gone")

    def fine(txn: StagedTask) -> None:
        calls.append("fine")

    @task(on_rollback=[broken, fine])
    def step() -> int:
        return 1

    @flow
    def pipeline() -> None:
        with transaction():
            step()
            raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR):
        state = pipeline(return_state=True)
    assert state.is_failed() and "boom" in (state.message or "")
    assert calls == ["fine"]
    assert "on_rollback hook" in caplog.text and "disk gone" in caplog.text


def test_bad_keys_and_hooks_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="transaction key '../etc' is not usable"):
        transaction(key="../etc")
    with pytest.raises(ValueError, match="not usable"):
        transaction(key="")
    from plait import InvalidOptions

    with pytest.raises(InvalidOptions, match=r"on_commit must be callables fn\(txn\)"):
        task(on_commit=["not callable"])(lambda: 1)


def test_a_transaction_outside_a_flow_stages_plain_task_calls() -> None:
    calls: list[str] = []

    @task
    def step() -> int:
        return 7

    @step.on_commit
    def committed(txn: StagedTask) -> None:
        calls.append(txn.task_run.name)

    with transaction() as txn:
        assert step() == 7
        assert len(txn.staged) == 1
    assert txn.is_committed() and calls == ["step-0"]
