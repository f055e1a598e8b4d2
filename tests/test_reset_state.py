"""What a process keeps between calls, and reset_state() forgetting it; plugins cannot
bypass the transition table."""

from __future__ import annotations

import types
from typing import Any

import pytest

from plait import flow, plugins, task
from plait.hookspecs import hookimpl
from plait.results import resolve_storage
from plait.states import Pending
from plait.testing import plait_test_harness, reset_state


def _module(name: str, **members: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(members)
    return module


class _Memory:
    """A storage whose identity shows whether it was built again."""

    def __init__(self, url: str) -> None:
        self.uri = url

    def read_path(self, path: str) -> bytes:
        raise FileNotFoundError(path)

    def write_path(self, path: str, content: bytes) -> None:
        pass


@pytest.fixture
def plugin() -> Any:
    added: list[str] = []

    def add(name: str, **hooks: Any) -> None:
        plugins.register_plugin(name, _module(name, **hooks))
        added.append(name)

    yield add
    for name in added:
        plugins.unregister_plugin(name)


def test_reset_state_forgets_storage_built_from_a_plugin_scheme(plugin: Any) -> None:
    # Built once per URL; a stale one (say, an S3 bucket built with yesterday's credentials)
    # must not survive reset_state().
    plugin("memory_scheme", plait_register_storage=hookimpl(lambda: {"mem": _Memory}))
    with plait_test_harness():
        first = resolve_storage("mem://bucket/prefix")
        assert resolve_storage("mem://bucket/prefix") is first
    reset_state()
    with plait_test_harness():
        again = resolve_storage("mem://bucket/prefix")
    assert isinstance(again, _Memory) and again is not first


def test_a_plugin_cannot_move_a_run_outside_the_transition_table(plugin: Any) -> None:
    # A lifecycle hook that tries to put a task run back to Pending once it completed: the
    # assignment is refused (one diagnosis), and the history stays consistent.
    def meddle(task_run: Any, state: Any) -> None:
        if state.is_completed():
            task_run.state = Pending()

    plugin("meddler", plait_task_run_state_changed=hookimpl(meddle))

    @task
    def double(x: int) -> int:
        return 2 * x

    @flow
    def twice() -> list[int]:
        return [double(1), double(2)]

    with plait_test_harness() as harness:
        assert twice() == [2, 4]
        [run] = harness.flow_runs()
        detail = harness.flow_run(run["id"])
        meddler = [d for d in plugins.diagnoses() if d.plugin == "meddler"]
    assert run["state_type"] == "COMPLETED"
    assert {t["state_type"] for t in detail["task_runs"]} == {"COMPLETED"}
    assert len(meddler) == 1 and "cannot be assigned" in meddler[0].reason
