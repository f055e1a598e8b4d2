"""Which recorder the engine reports to, and the plugins that observe what it reports.

The recorder is the one place every state transition passes through, so lifecycle and
notification hooks are fired by wrapping it — only when some plugin implements them, so the
hot path pays nothing otherwise. The hooks are called through pluggy (ordering, wrappers,
tracing); each plugin's implementation is isolated by the plugin manager.
"""

from __future__ import annotations

from typing import Any

from plait import plugins
from plait._runs import FlowRun, NullRecorder, Recorder
from plait.plugins import StateChangeEvent
from plait.states import State

_NULL = NullRecorder()


def current_recorder() -> Recorder:
    """The process-wide recorder for the effective settings (started on first use)."""
    from plait.settings import get_settings

    if get_settings().record_history:
        from plait._recorder import get_recorder

        recorder: Recorder = get_recorder()
    else:
        recorder = _NULL
    observe_flows, observe_tasks = plugins.lifecycle_observers()
    if observe_flows or observe_tasks:
        return ObservedRecorder(recorder, observe_tasks)
    return recorder


class ObservedRecorder:
    """Passes everything to the real recorder, then tells the observing plugins."""

    def __init__(self, inner: Recorder, observe_tasks: bool) -> None:
        self.inner = inner
        self.observe_tasks = observe_tasks
        # pluggy's callers, looked up once: a task state costs one pluggy call, nothing more
        self._flow_changed = plugins.hook_caller("plait_flow_run_state_changed")
        self._notify = plugins.hook_caller("plait_notify")
        self._task_changed = plugins.hook_caller("plait_task_run_state_changed") if observe_tasks else None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def add_state(self, run: Any, state: State) -> None:
        self.inner.add_state(run, state)
        if run.__class__ is FlowRun:
            self._flow_changed(flow_run=run, state=state)
            self._notify(event=StateChangeEvent(
                flow_run_id=run.id,
                flow_run_name=run.name,
                flow_name=run.flow_name,
                tags=tuple(run.tags),
                state_type=state.type.value,
                state_name=state.name,
                state_message=state.message,
                timestamp=state.timestamp.isoformat(),
                parameters=dict(run.parameters),
            ))
        elif self._task_changed is not None:  # task runs are the hot path: only when a plugin listens
            self._task_changed(task_run=run, state=state)
