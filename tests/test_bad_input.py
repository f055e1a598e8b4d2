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
        flow(task_runner=42)(lambda: None)
    # a name is a runner some collection registers ("dask"): an unknown one says which exist
    with pytest.raises(InvalidOptions, match="no installed plugin provides the task runner 'threads' \\(installed: "):
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
        if kind == "scalars":
            return pair.map(1, "ab")
        return pair.map(1, [1, 2]).result()

    with pytest.raises(ParameterBindError, match=r"different lengths \(#1=2, #2=1\)"):
        f("lengths")
    # a non-iterable (or a string) is broadcast to every run, as in Prefect; one iterable is needed
    with pytest.raises(ParameterBindError, match="needs at least one iterable argument"):
        f("scalars")
    assert f("broadcast") == [(1, 1), (1, 2)]


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


# -- a parameter whose __repr__ raises ---------------------------------------------------------
class Unprintable:
    """A value whose repr fails, like a half-initialised client object."""

    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")


def test_a_parameter_whose_repr_raises_is_recorded_as_a_placeholder(plait_harness):
    @task
    def use(thing, n: int) -> int:
        return n + 1

    @flow
    def f(thing) -> int:
        return use(thing, 1) + use([thing], 2)

    assert f(Unprintable()) == 5
    [run] = plait_harness.flow_runs()
    assert run["state_type"] == "COMPLETED"
    detail = plait_harness.flow_run(run["id"])
    placeholder = f"<{__name__}.Unprintable object; its __repr__ raised RuntimeError>"
    assert detail["parameters"] == {"thing": placeholder}
    assert [t["parameters"] for t in detail["task_runs"]] == [
        {"thing": placeholder, "n": 1}, {"thing": [placeholder], "n": 2},
    ]


# -- bool options given strings -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"persist_result": "no"},
         "task option persist_result must be True, False or None (inherit), got the string 'no'; pass persist_result=False"),
        ({"persist_result": "yes"}, "got the string 'yes'; pass persist_result=True instead of a string"),
        ({"log_prints": "false"},
         "task option log_prints must be True, False or None (inherit), got the string 'false'; pass log_prints=False"),
        ({"refresh_cache": "no"},
         "task option refresh_cache must be True or False, got the string 'no'; pass refresh_cache=False"),
        ({"encrypt_result": "on"},
         "task option encrypt_result must be True, False or None (inherit), got the string 'on'; pass encrypt_result=True"),
        ({"persist_result": "sometimes"}, "got the string 'sometimes'; pass True or False"),
        ({"persist_result": 1}, "persist_result must be True, False or None (inherit), got 1 (int); pass True or False"),
    ],
)
def test_bool_options_refuse_strings(options, message):
    with pytest.raises(InvalidOptions, match=message.replace("(", r"\(").replace(")", r"\)")):
        task(**options)(lambda: None)


def test_bool_options_refuse_strings_on_flows_and_with_options():
    with pytest.raises(InvalidOptions, match="flow option validate_parameters must be True or False, got the string 'no'"):
        flow(validate_parameters="no")(lambda: None)
    with pytest.raises(InvalidOptions, match="flow option persist_result must be True, False or None"):
        flow(persist_result="false")(lambda: None)

    @task
    def t():
        return 1

    with pytest.raises(InvalidOptions, match="got the string 'no'; pass persist_result=False"):
        t.with_options(persist_result="no")
    assert t.with_options(persist_result=False).options.persist_result is False  # the bool itself is fine


# -- unknown keys in config.toml ----------------------------------------------------------------
def test_unknown_config_file_keys_are_named_with_the_file_and_a_guess(monkeypatch, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from plait.settings import get_settings

    config = tmp_path / "config.toml"
    monkeypatch.setenv("PLAIT_HOME", str(tmp_path))
    config.write_text('persist_result = true\nlogging_level = "WARNING"\n')
    with pytest.raises(ValueError) as info:
        get_settings()
    text = str(info.value)
    assert str(config) in text and "unknown setting 'persist_result'" in text
    assert "did you mean 'persist_results'?" in text and "Fix or remove it" in text

    config.write_text('PLAIT_LOGGING_LEVEL = "DEBUG"\n')
    with pytest.raises(ValueError, match=r"unknown setting 'PLAIT_LOGGING_LEVEL' \(did you mean 'logging_level'\? "
                                         r"names in config.toml are lower case, without PLAIT_\)"):
        get_settings()

    config.write_text('[plait]\nhome = "/x"\n')
    with pytest.raises(ValueError, match="unknown table 'plait'. Fix or remove it; the settings are a flat table of: home,"):
        get_settings()

    config.write_text("persist_result = true\n")
    plait = Path(sys.executable).with_name("plait")
    done = subprocess.run([str(plait), "config", "show"], capture_output=True, text=True, timeout=60,
                          env={**__import__("os").environ, "PLAIT_HOME": str(tmp_path)})
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("Error: ") and "unknown setting 'persist_result'" in done.stderr
    assert str(config) in done.stderr

    config.write_text("persist_results = true\n")  # the control: the right name is read
    assert get_settings().persist_results is True
