"""The public API is what plait.__all__ says, and it changes only on purpose."""

import plait

EXPECTED = {
    "Cached", "Cancelled", "CancelledRun", "Completed", "Crashed", "CrashedRun", "FLOW_PARAMETERS",
    "Failed", "Flow", "FlowOptions", "INPUTS", "InProcessTaskRunner", "InvalidOptions", "NO_CACHE",
    "ParameterBindError", "Paused", "Pending", "PlaitError", "PlaitFuture", "PlaitFutureList",
    "Retrying", "Running", "Scheduled", "SerializationError", "State", "StateType", "TASK_SOURCE",
    "Task", "TaskOptions", "TaskRunner", "ThreadPoolTaskRunner", "UpstreamFailed", "flow",
    "get_run_logger", "register_secret", "runtime", "task", "unmapped", "wait",
}


def test_exported_members_are_locked():
    assert set(plait.__all__) == EXPECTED, "update EXPECTED (and the docs) when the public API changes"


def test_every_exported_member_exists_and_private_modules_stay_private():
    for name in plait.__all__:
        assert getattr(plait, name) is not None, name
    assert not any(name.startswith("_") for name in plait.__all__)
