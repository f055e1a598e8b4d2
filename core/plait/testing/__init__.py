"""Helpers for testing flows, blocks and collections.

    from plait.testing import plait_test_harness

    def test_my_flow():
        with plait_test_harness() as harness:
            assert my_flow() == 42
            assert harness.flow_runs()[0]["state_type"] == "COMPLETED"

With pytest, the ``plait_harness`` fixture (registered automatically when plait is
installed) does the same for one test. ``assert_block_conforms`` checks a block type
against what every block must get right.
"""

from plait.testing._blocks import BLOCK_CONFORMANCE_CHECKS, assert_block_conforms
from plait.testing._collections import CollectionSuite
from plait.testing._harness import (
    POSTGRES_ADMIN_URL,
    PlaitTestHarness,
    plait_test_harness,
    reset_state,
    throwaway_postgres_database,
)
from plait.testing._server import ServerHandle, free_port, running_server, sample_batch

__all__ = [
    "plait_test_harness",
    "PlaitTestHarness",
    "reset_state",
    "throwaway_postgres_database",
    "POSTGRES_ADMIN_URL",
    "assert_block_conforms",
    "BLOCK_CONFORMANCE_CHECKS",
    "CollectionSuite",
    "running_server",
    "ServerHandle",
    "free_port",
    "sample_batch",
]
