"""pytest plugin (entry point ``pytest11``): the ``plait_harness`` fixture, and run logs that
reach pytest's ``caplog`` (plait's records propagate to the root logger under pytest)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from plait.testing import PlaitTestHarness, plait_test_harness


def pytest_configure(config: pytest.Config) -> None:
    from plait import _logging

    _logging.propagate_to_root = True


@pytest.fixture
def plait_harness() -> Iterator[PlaitTestHarness]:
    """A throwaway PLAIT_HOME and SQLite database for one test."""
    with plait_test_harness() as harness:
        yield harness
