from datetime import datetime

import pytest

from plait import Completed, Failed, Pending, Running, State, StateType
from plait.exceptions import CrashedRun, RunFailed
from plait.states import TRANSITIONS, IllegalTransition, check_transition


def test_state_is_an_immutable_value():
    state = Completed("done", data=41)
    assert state.type is StateType.COMPLETED
    assert state.message == "done"
    assert isinstance(state.timestamp, datetime) and state.timestamp.tzinfo is not None
    assert state.result() == 41
    with pytest.raises(AttributeError):
        state.message = "changed"  # type: ignore[misc]


def test_predicates_follow_the_type():
    assert Completed().is_completed() and not Completed().is_failed()
    assert State(StateType.CACHED).is_completed() and State(StateType.CACHED).is_cached()
    assert Failed().is_failed() and Failed().is_final()
    assert Running().is_running() and not Running().is_final()
    assert State(StateType.CRASHED).is_crashed()
    assert State(StateType.PAUSED).is_paused()
    assert State(StateType.SCHEDULED).is_scheduled()


def test_failed_state_result_raises_its_exception():
    error = ValueError("bad row 7")
    state = Failed("ValueError: bad row 7", data=error)
    with pytest.raises(ValueError, match="bad row 7"):
        state.result()
    assert state.result(raise_on_failure=False) is error


def test_failed_state_without_exception_raises_run_failed_with_message():
    with pytest.raises(RunFailed, match="it broke"):
        Failed("it broke").result()
    with pytest.raises(CrashedRun, match="pid gone"):
        State(StateType.CRASHED, "pid gone").result()


def test_running_state_has_no_result_yet():
    with pytest.raises(RuntimeError, match="no result yet"):
        Running().result()


@pytest.mark.parametrize("source", list(StateType))
def test_transition_table_is_the_only_authority(source):
    for target in StateType:
        current, proposed = State(source), State(target)
        if target in TRANSITIONS[source]:
            check_transition(current, proposed)
        else:
            with pytest.raises(IllegalTransition, match=f"cannot move from {source.title} to {target.title}"):
                check_transition(current, proposed)


def test_final_states_cannot_complete_again():
    with pytest.raises(IllegalTransition):
        check_transition(Completed(), Running())
    with pytest.raises(IllegalTransition, match="must start Scheduled or Pending"):
        check_transition(None, Running())
    check_transition(None, Pending())


def test_states_survive_pickling():
    import pickle

    state = pickle.loads(pickle.dumps(Completed("ok", data={"rows": 3})))
    assert state.result() == {"rows": 3} and state.message == "ok"
