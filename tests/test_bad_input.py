"""Bad input gets a clear error naming the thing and the fix."""

import pytest

from plait import ThreadPoolTaskRunner, flow, task
from plait.exceptions import DatabaseError, InvalidOptions, ParameterBindError


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retries": -1}, "retries must be a whole number >= 0, got -1"),
        ({"retries": 1.5}, "retries must be a whole number"),
        ({"retry_delay_seconds": -3}, "retry_delay_seconds must be a number >= 0"),
        ({"retry_delay_seconds": []}, "non-empty list"),
        ({"retry_jitter_factor": -0.1}, "retry_jitter_factor must be >= 0"),
        ({"retry_condition": "always"}, "retry_condition must be a callable"),
        ({"timeout_seconds": 0}, "timeout_seconds must be a number > 0"),
        ({"result_serializer": "yaml"}, "unknown result_serializer 'yaml'; use one of: json, pickle"),
        ({"cache_policy": "inputz"}, "unknown cache_policy 'inputz'"),
        ({"cache_policy": 42}, "cache_policy must be a CachePolicy"),
        ({"cache_expiration": -5}, "cache_expiration must be a positive"),
        ({"cache_policy": "inputs", "persist_result": False}, "caching needs persisted results"),
        ({"retires": 2}, "unknown task option 'retires'; did you mean 'retries'?"),
        ({"result_storage": 3.14}, "result_storage must be a path, a URL or an object"),
    ],
)
def test_invalid_task_options_fail_at_decoration(options, message):
    with pytest.raises(InvalidOptions, match=message.replace("(", r"\(").replace("?", r"\?")):
        task(**options)(lambda: None)


def test_invalid_flow_options_fail_at_decoration():
    with pytest.raises(InvalidOptions, match="task_runner must be a TaskRunner"):
        flow(task_runner="threads")(lambda: None)
    with pytest.raises(InvalidOptions, match="unknown flow option 'cache_policy'"):
        flow(cache_policy="inputs")(lambda: None)
    with pytest.raises(InvalidOptions, match="max_workers must be an integer >= 1"):
        ThreadPoolTaskRunner(max_workers=0)


def test_with_options_validates_too():
    @task
    def t():
        return 1

    with pytest.raises(InvalidOptions, match="retries"):
        t.with_options(retries=-2)


def test_flow_parameters_that_do_not_bind(plait_harness):
    @flow
    def etl(source: str, limit: int = 10):
        return source

    with pytest.raises(ParameterBindError) as info:
        etl()
    text = str(info.value)
    assert "flow 'etl'" in text and "missing a required argument: 'source'" in text
    assert "(source: str, limit: int = 10)" in text
    with pytest.raises(ParameterBindError, match="unexpected keyword argument 'limt'"):
        etl("x", limt=3)
    assert plait_harness.flow_runs() == []  # nothing ran, nothing recorded


def test_map_length_mismatch_and_non_iterables(plait_harness):
    @task
    def pair(a, b):
        return a, b

    @flow
    def f(kind):
        if kind == "lengths":
            return pair.map([1, 2], [1])
        return pair.map(1, [1])

    with pytest.raises(ParameterBindError, match=r"different lengths \(#1=2, #2=1\)"):
        f("lengths")
    with pytest.raises(ParameterBindError, match="needs iterables; argument #1 is a int. Wrap constants in unmapped"):
        f("scalar")


def test_unreachable_database_masks_password(monkeypatch, tmp_path):
    from plait.testing import reset_state

    monkeypatch.setenv("PLAIT_HOME", str(tmp_path))
    monkeypatch.setenv("PLAIT_DATABASE_URL", "postgresql+psycopg://plait:s3cr3t-canary@127.0.0.1:1/plait")
    reset_state()

    @flow
    def f():
        return 1

    with pytest.raises(DatabaseError) as info:
        f()
    text = str(info.value)
    assert "s3cr3t-canary" not in text
    assert "postgresql+psycopg://plait:***@127.0.0.1:1/plait" in text
    reset_state()


def test_unwritable_database_location(monkeypatch, tmp_path):
    from plait.testing import reset_state

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("PLAIT_HOME", str(tmp_path))
    monkeypatch.setenv("PLAIT_DATABASE_URL", f"sqlite:///{blocker}/sub/plait.db")
    reset_state()

    @flow
    def f():
        return 1

    with pytest.raises(DatabaseError, match="Cannot open the plait database"):
        f()
    reset_state()
