"""The public API is what plait.__all__ says, and it changes only on purpose."""

import pickle
from types import ModuleType

import plait

EXPECTED = {
    "Cached", "Cancelled", "CancelledRun", "Cancelling", "Completed", "Crashed", "CrashedRun", "FLOW_PARAMETERS",
    "Failed", "Flow", "FlowOptions", "INPUTS", "InProcessTaskRunner", "InvalidOptions", "NO_CACHE",
    "ParameterBindError", "Paused", "Pending", "PlaitError", "PlaitFuture", "PlaitFutureList",
    "Retrying", "Running", "Scheduled", "SerializationError", "State", "StateType", "TASK_SOURCE",
    "Task", "TaskOptions", "TaskRunner", "ThreadPoolTaskRunner", "UpstreamFailed", "flow",
    "get_run_logger", "mask_secrets", "mask_url", "pause_flow_run", "register_secret", "runtime", "task", "unmapped", "wait",
    "concurrency", "rate_limit", "rate_limit_async", "tags", "allow_failure", "as_completed", "quote",
    "ProcessPoolTaskRunner", "transaction", "get_transaction",
}


def test_exported_members_are_locked():
    assert set(plait.__all__) == EXPECTED, "update EXPECTED (and the docs) when the public API changes"


def test_every_exported_member_exists_and_private_modules_stay_private():
    for name in plait.__all__:
        assert getattr(plait, name) is not None, name
    assert not any(name.startswith("_") for name in plait.__all__)


def test_all_names_the_whole_public_namespace():
    # What `import plait` leaves in its namespace is exactly __all__ (submodules aside:
    # importing one sets it as an attribute; runtime is exported on purpose).
    public = {
        name for name, value in vars(plait).items()
        if not name.startswith("_") and (not isinstance(value, ModuleType) or name in plait.__all__)
    }
    assert public == set(plait.__all__)


def test_exported_classes_report_plait_as_their_module():
    classes = [getattr(plait, name) for name in plait.__all__ if isinstance(getattr(plait, name), type)]
    assert classes and all(cls.__module__ == "plait" for cls in classes), [
        cls for cls in classes if cls.__module__ != "plait"
    ]
    state = plait.Completed(data=[1, 2])
    assert pickle.loads(pickle.dumps(state)).result() == [1, 2]  # pickles still resolve
    assert repr(plait.StateType.FAILED).startswith("<StateType.FAILED")
