"""result_storage_key (where a result is written, and its cache key, as in Prefect) and
cache_result_in_memory=False (only a reference is kept; futures read the value back)."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest

from plait import InvalidOptions, flow, task


@pytest.fixture(autouse=True)
def _env(plait_env: str) -> None:
    """Every test records to a fresh database (and results under a fresh PLAIT_HOME)."""


class Blob:
    """A value that can be watched for being freed (weakref) and pickled."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Blob) and other.payload == self.payload


def test_the_result_is_written_at_the_rendered_key_and_read_back_next_time(tmp_path: Path) -> None:
    calls: list[str] = []

    @task(result_storage_key="sales/{parameters[day]}.json", result_serializer="json", result_storage=tmp_path)
    def sales(day: str) -> dict[str, int]:
        calls.append(day)
        return {"rows": len(calls)}

    @flow
    def daily(day: str) -> dict[str, int]:
        return sales(day)

    assert daily("2026-12-01") == {"rows": 1}
    assert (tmp_path / "sales" / "2026-12-01.json").is_file()
    assert daily("2026-12-01") == {"rows": 1}  # the result at the key is read, not recomputed
    assert calls == ["2026-12-01"]
    assert daily("2026-12-02") == {"rows": 2}
    refreshed = sales.with_options(refresh_cache=True)

    @flow
    def again() -> dict[str, int]:
        return refreshed("2026-12-01")

    assert again() == {"rows": 3}
    assert calls == ["2026-12-01", "2026-12-02", "2026-12-01"]


def test_the_key_may_name_the_flow_run_and_the_task_run(tmp_path: Path) -> None:
    @task(result_storage_key="{flow_run.name}/{task_run.name}", result_storage=tmp_path)
    def extract() -> int:
        return 5

    @flow(flow_run_name="nightly-{day}")
    def nightly(day: str) -> int:
        return extract()

    assert nightly("mon") == 5
    assert (tmp_path / "nightly-mon" / "extract-0").is_file()


def test_a_key_that_does_not_fit_fails_the_run_and_says_what_it_may_use(tmp_path: Path) -> None:
    @task(result_storage_key="{parameters[table]}", result_storage=tmp_path)
    def load(name: str) -> int:
        return 1

    @task(result_storage_key="../{parameters[name]}", result_storage=tmp_path)
    def escape(name: str) -> int:
        return 1

    @flow
    def pipeline() -> None:
        load("x")

    @flow
    def escaping() -> None:
        escape("x")

    state = pipeline(return_state=True)
    assert state.is_failed()
    assert "result_storage_key '{parameters[table]}' cannot be filled in" in (state.message or "")
    assert "parameters: name" in (state.message or "")
    state = escaping(return_state=True)
    assert state.is_failed() and "not a relative path" in (state.message or "")
    with pytest.raises(InvalidOptions, match="result_storage_key must be a template string"):
        task(result_storage_key="")(lambda: 1)
    with pytest.raises(InvalidOptions, match="caching needs persisted results"):
        task(result_storage_key="k", persist_result=False)(lambda: 1)


def test_without_memory_caching_only_a_reference_is_kept_and_futures_read_it_back() -> None:
    freed: list[weakref.ref[Blob]] = []

    @task(cache_result_in_memory=False)
    def produce(size: int) -> Blob:
        blob = Blob(b"x" * size)
        freed.append(weakref.ref(blob))
        return blob

    @flow
    def pipeline() -> tuple[bool, bool, Blob, Blob]:
        future = produce.submit(1000)
        state = future.wait()
        gc.collect()
        gone = freed[0]() is None
        direct = produce(10)
        return gone, state.has_data, future.result(), direct

    gone, has_data, value, direct = pipeline()
    assert gone, "the finished run kept its value alive"
    assert has_data is False
    assert value == Blob(b"x" * 1000)
    assert direct == Blob(b"x" * 10)


def test_without_memory_caching_downstream_tasks_get_the_value() -> None:
    @task(cache_result_in_memory=False)
    def produce() -> list[int]:
        return [1, 2, 3]

    @task
    def total(values: list[int]) -> int:
        return sum(values)

    @flow
    def pipeline() -> int:
        return total.submit(produce.submit()).result()

    assert pipeline() == 6


def test_memory_caching_off_needs_persistence() -> None:
    with pytest.raises(InvalidOptions, match="cache_result_in_memory=False keeps only the persisted result"):
        task(cache_result_in_memory=False, persist_result=False)(lambda: 1)
    with pytest.raises(InvalidOptions, match="cache_result_in_memory must be"):
        task(cache_result_in_memory="no")(lambda: 1)
