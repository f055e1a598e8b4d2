"""Which recorder the engine reports to: the database one, or none when history is off."""

from __future__ import annotations

from plait._runs import NullRecorder, Recorder

_NULL = NullRecorder()


def current_recorder() -> Recorder:
    """The process-wide recorder for the effective settings (started on first use)."""
    from plait.settings import get_settings

    if not get_settings().record_history:
        return _NULL
    from plait._store.recorder import get_recorder

    return get_recorder()
