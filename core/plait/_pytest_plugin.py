"""pytest plugin (entry point ``pytest11``): the ``plait_harness`` fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from plait.testing import PlaitTestHarness, plait_test_harness


@pytest.fixture
def plait_harness() -> Iterator[PlaitTestHarness]:
    """A throwaway PLAIT_HOME and SQLite database for one test."""
    with plait_test_harness() as harness:
        yield harness
