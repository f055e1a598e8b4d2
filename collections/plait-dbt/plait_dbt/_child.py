"""The child process of ``dbt_run(..., isolation="process")``: one dbt command.

Reads ``{"args": [...], "level": "info"}`` as JSON on stdin, runs dbt with ``dbtRunner``
and writes each dbt event the parent needs as one JSON line on its stdout (anything else
printed goes to stderr), then a last line ``{"final": true, "success": ..., "exception": ...}``.
The parent (``plait_dbt._invoke.invoke_in_process``) turns the lines back into events for
the same EventSink and LiveNodes as an in-process run, so node task runs are recorded live.

Run with ``python -P -m plait_dbt._child``: ``-P`` keeps the working directory off
``sys.path``, so dbt's plugin discovery never imports the user's ``dbt_*.py`` flow script.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any

_ALWAYS = frozenset({"NodeStart", "NodeFinished", "ArtifactWritten"})
_RANK = {"debug": 0, "info": 1, "warn": 2, "error": 3}


def _node(info: Any) -> dict[str, Any] | None:
    if info is None or not getattr(info, "unique_id", ""):
        return None
    return {
        "unique_id": info.unique_id, "node_status": info.node_status,
        "node_started_at": info.node_started_at, "node_finished_at": info.node_finished_at,
    }


def _run_result(result: Any) -> dict[str, Any]:
    ends = [step.completed_at.ToDatetime().isoformat() for step in result.timing_info
            if step.HasField("completed_at")]
    return {"status": result.status, "message": result.message, "execution_time": result.execution_time,
            "executed_until": max(ends) if ends else None}


def event_dict(event: Any) -> dict[str, Any]:
    """What the parent needs of one dbt event, JSON-safe."""
    info, data = event.info, event.data
    out: dict[str, Any] = {"name": info.name, "level": info.level, "msg": info.msg,
                           "invocation_id": info.invocation_id, "node": _node(getattr(data, "node_info", None))}
    if info.name == "NodeFinished":
        out["run_result"] = _run_result(data.run_result)
    elif info.name == "ArtifactWritten":
        out["artifact_path"] = str(data.artifact_path)
    return out


def main() -> int:
    spec = json.loads(sys.stdin.read())
    lowest = _RANK.get(spec.get("level", "info"), 1)
    events = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # stray prints (Python models, adapters) must not garble the event stream
    lock = threading.Lock()

    def send(item: dict[str, Any]) -> None:
        line = json.dumps(item, default=str)
        with lock:
            events.write(line + "\n")
            events.flush()

    def forward(event: Any) -> None:
        if event.info.name in _ALWAYS or _RANK.get(event.info.level, 1) >= lowest:
            send(event_dict(event))

    from dbt.cli.main import dbtRunner

    try:
        outcome = dbtRunner(callbacks=[forward]).invoke(spec["args"])
        exception = outcome.exception
        send({"final": True, "success": bool(outcome.success),
              "exception": (str(exception).strip() or type(exception).__name__) if exception is not None else None})
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        send({"final": True, "success": False, "exception": f"{type(exc).__name__}: {exc}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
