"""Result files are signed: a planted, unsigned, changed or copied file is never unpickled.

A cached task whose entry is refused logs a WARNING naming the file, runs again, and its new
(signed) result replaces the file. Runs on SQLite and PostgreSQL (the run history records
what happened), with result files under the test's PLAIT_HOME.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional
from urllib.parse import unquote, urlparse

import pytest
from cryptography.fernet import Fernet

from plait import flow, task
from plait.results import MAGIC, LocalStorage, ResultRefused, read_result, read_result_ref, type_mismatch, write_result
from plait.testing import PlaitTestHarness, plait_test_harness


class Planted:
    """What an attacker writes to result storage: unpickling it runs code (creates a file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.fixture
def harness(database_url: str) -> Iterator[PlaitTestHarness]:
    with plait_test_harness(database_url) as h:
        yield h


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings() -> Iterator[Warnings]:
    handler = Warnings()
    logging.getLogger("plait.tasks").addHandler(handler)
    yield handler
    logging.getLogger("plait.tasks").removeHandler(handler)


def path_of(ref: str) -> Path:
    return Path(unquote(urlparse(ref).path))


def make_cached_task(calls: list[int]) -> Any:
    @task(cache_policy="inputs")
    def expensive(x: int) -> dict:
        calls.append(x)
        return {"value": x * 10}

    @flow
    def cached_flow(x: int) -> list:
        return [expensive(x, return_state=True)]  # a State in a list: the flow keeps it as it is

    return lambda x: cached_flow(x)[0]


def test_a_planted_pickle_is_never_unpickled_and_the_task_runs_again(
    harness: PlaitTestHarness, warnings: Warnings, tmp_path: Path
) -> None:
    calls: list[int] = []
    cached = make_cached_task(calls)
    first = cached(4)
    assert first.type.value == "COMPLETED" and calls == [4]
    target = path_of(first.result_ref)
    assert target.is_file() and target.read_bytes().startswith(MAGIC)
    marker = tmp_path / "pwned"
    evil = pickle.dumps(Planted(marker))
    header = json.dumps({"serializer": "pickle", "created": "2020-01-01T00:00:00+00:00", "expires_at": None}).encode()
    forged = json.dumps({"serializer": "pickle", "created": "2020-01-01T00:00:00+00:00", "expires_at": None,
                         "key": target.name, "encryption": None}).encode()
    plantings = {
        "a bare pickle": evil,
        "the old unsigned format": header + b"\n" + evil,
        "a made-up signature": MAGIC + b"0" * 64 + b"\n" + forged + b"\n" + evil,
        "no signature after the magic": MAGIC + b"\n" + forged + b"\n" + evil,
    }
    for what, content in plantings.items():
        target.write_bytes(content)
        warnings.messages.clear()
        state = cached(4)
        assert not marker.exists(), f"{what}: the planted pickle ran"
        assert state.type.value == "COMPLETED", f"{what}: served from cache"
        assert state.result() == {"value": 40}
        assert any(str(target) in m and "was not read" in m for m in warnings.messages), (what, warnings.messages)
        # The re-run replaced the planted file with a signed result, served from cache next time.
        assert target.read_bytes().startswith(MAGIC)
        assert cached(4).type.value == "CACHED"
    assert calls == [4] * (1 + len(plantings))
    runs = harness.flow_runs(limit=50)
    states = [harness.flow_run(r["id"])["task_runs"][0]["state_type"] for r in reversed(runs)]
    assert states == ["COMPLETED"] + ["COMPLETED", "CACHED"] * len(plantings)


def test_one_changed_byte_anywhere_is_refused(harness: PlaitTestHarness, warnings: Warnings) -> None:
    calls: list[int] = []
    cached = make_cached_task(calls)
    target = path_of(cached(7).result_ref)
    good = target.read_bytes()
    first_line_end = good.index(b"\n")
    header_end = good.index(b"\n", first_line_end + 1)
    positions = {"signature": len(MAGIC) + 3, "header": first_line_end + 5, "payload": len(good) - 2}
    for where, position in positions.items():
        changed = bytearray(good)
        changed[position] ^= 0x01
        target.write_bytes(bytes(changed))
        warnings.messages.clear()
        assert cached(7).type.value == "COMPLETED", where
        assert any(str(target) in m and "signature does not match" in m for m in warnings.messages), where
        target.write_bytes(good)
    assert cached(7).type.value == "CACHED"  # the original, untouched, still reads
    assert header_end > first_line_end
    assert calls == [7] * (1 + len(positions))


def test_a_result_copied_to_another_key_is_refused(harness: PlaitTestHarness, warnings: Warnings) -> None:
    calls: list[int] = []
    cached = make_cached_task(calls)
    one, two = path_of(cached(1).result_ref), path_of(cached(2).result_ref)
    two.write_bytes(one.read_bytes())  # a valid, signed file, but of other inputs
    state = cached(2)
    assert state.type.value == "COMPLETED" and state.result() == {"value": 20}
    assert any(str(two) in m and "copied here" in m for m in warnings.messages), warnings.messages


def test_a_file_signed_with_another_key_is_refused(
    harness: PlaitTestHarness, warnings: Warnings, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    cached = make_cached_task(calls)
    monkeypatch.setenv("PLAIT_ENCRYPTION_KEY", Fernet.generate_key().decode())
    assert cached(3).type.value == "COMPLETED"
    monkeypatch.setenv("PLAIT_ENCRYPTION_KEY", Fernet.generate_key().decode())
    assert cached(3).type.value == "COMPLETED"  # another key: refused, run again
    assert any("another encryption key" in m for m in warnings.messages)
    assert cached(3).type.value == "CACHED"  # now written with this key
    assert calls == [3, 3]


def test_processes_with_one_home_share_one_key(harness: PlaitTestHarness, tmp_path: Path) -> None:
    """The key file under PLAIT_HOME is created once; every process signs with it."""
    import subprocess
    import sys

    storage = LocalStorage(tmp_path / "shared")
    code = (
        "import sys; from plait.results import LocalStorage, write_result; "
        f"write_result(LocalStorage({str(tmp_path / 'shared')!r}), sys.argv[1], {{'from': sys.argv[1]}}, 'json')"
    )
    env = {**os.environ, "PLAIT_HOME": str(harness.home)}
    for name in ("a", "b"):
        done = subprocess.run([sys.executable, "-c", code, name], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    assert read_result(storage, "a") == {"from": "a"} and read_result(storage, "b") == {"from": "b"}
    assert (harness.home / "encryption.key").is_file()


def test_read_result_refuses_without_unpickling(harness: PlaitTestHarness, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    marker = tmp_path / "marker"
    storage.write_path("entry", pickle.dumps(Planted(marker)))
    with pytest.raises(ResultRefused) as info:
        read_result(storage, "entry")
    assert info.value.where == f"{storage.uri}/entry" and "carries no signature" in str(info.value)
    assert not marker.exists()
    ref = write_result(storage, "nested/key", [1, 2], "json")  # a key with a slash reads back by ref
    assert read_result_ref(ref) == [1, 2]


# -- the cached value against the declared return type ------------------------------------------
def test_a_cached_value_of_the_wrong_type_runs_the_task_again(harness: PlaitTestHarness, warnings: Warnings) -> None:
    calls: list[int] = []

    @task(cache_policy="inputs")
    def counts(x: int) -> list[int]:
        calls.append(x)
        return [x, x + 1]

    @task(cache_policy="inputs")
    def untyped(x):  # no annotation: anything cached is taken
        calls.append(-x)
        return [x]

    @flow
    def f(x: int) -> list:
        return [counts(x, return_state=True), untyped(x, return_state=True)]

    first, loose = f(5)
    target, loose_target = path_of(first.result_ref), path_of(loose.result_ref)
    storage = LocalStorage(target.parent)
    write_result(storage, target.name, [5, "six"], "pickle")  # validly signed, wrong type
    write_result(storage, loose_target.name, "anything", "pickle")
    again, loose_again = f(5)
    assert again.type.value == "COMPLETED" and again.result() == [5, 6]
    assert loose_again.type.value == "CACHED" and loose_again.result() == "anything"
    message = next(m for m in warnings.messages if "return annotation" in m)
    assert str(target.name) in message and "list[int]" in message and "[1] is a str, not int" in message
    assert f(5)[0].type.value == "CACHED"  # the re-run wrote a value of the right type
    assert calls == [5, -5, 5]


@pytest.mark.parametrize(
    ("value", "annotation", "problem"),
    [
        (1, int, None),
        (1, float, None),
        ("1", int, "a str, not int"),
        (None, Optional[dict[str, int]], None),  # noqa: UP045 - the typing spelling is what is tested
        ({"a": "1"}, Optional[dict[str, int]], "a dict, not Optional[dict[str, int]]"),  # noqa: UP045
        ({"a": "1"}, dict[str, int], "['a'] is a str, not int"),
        ([[1], ["x"]], list[list[int]], "[1][0] is a str, not int"),
        ((1, "a"), tuple[int, str], None),
        ((1, "a", 2), tuple[int, str], "a tuple of 3 items, not 2"),
        ((1, 2, 3), tuple[int, ...], None),
        ({1, 2}, set[int], None),
        ("b", Any, None),
        (3, int | str, None),
        (3.5, int | str, "a float, not int | str"),
        (None, None, None),
        (0, None, "an int, not None"),
    ],
)
def test_type_mismatch(value: Any, annotation: Any, problem: str | None) -> None:
    assert type_mismatch(value, annotation) == problem
