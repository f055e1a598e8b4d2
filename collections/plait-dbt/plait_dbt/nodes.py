"""Per-node task runs, recorded live: each dbt node becomes its own plait task run as dbt
starts and finishes it.

``LiveNodes`` is a dbt event callback. On ``NodeStart`` it records the node as a task run,
Running since dbt's ``node_started_at``; on ``NodeFinished`` it ends it at dbt's
``node_finished_at``: Completed (success, pass, warn, no-op), Failed with dbt's message
(error, fail, runtime error), or Cancelled named "Skipped" (skipped after an upstream
failure). It uses plait's external-work API (``plait.external``), so the runs are in the
store while dbt is still running, and every finished node survives the death of the
process.

Dependency edges are dbt's own graph: ``target/graph_summary.json``, which dbt writes
before it runs any node (for ``dbt build`` the graph *with test edges*, the order dbt
really used). A predecessor that was not recorded (not selected, a source, an unrecorded
passing test) is looked through to its own predecessors. Without a graph summary the
manifest's ``depends_on`` is used.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from plait import StateType
from plait.external import ExternalRuns, ExternalTaskRun
from plait_dbt.artifacts import FAILED_STATUSES
from plait_dbt.translator import DbtNode, DbtNodeTranslator

__all__ = ["LiveNodes", "dbt_graph"]

_SKIPPED = "skipped"


def dbt_graph(target_dir: Path, invocation_id: str | None) -> dict[str, list[str]] | None:
    """``{unique_id: [predecessor unique_ids]}`` of the graph dbt executes in this
    invocation (with test edges under ``dbt build``); None when dbt left no summary of it."""
    try:
        summary = json.loads((target_dir / "graph_summary.json").read_text())
    except (OSError, ValueError):
        return None
    if invocation_id and summary.get("_invocation_id") not in (None, invocation_id):
        return None  # an earlier command's graph
    graph = summary.get("with_test_edges") or summary.get("linked")
    if not isinstance(graph, dict):
        return None
    names = {str(index): node["name"] for index, node in graph.items()}
    parents: dict[str, list[str]] = {name: [] for name in names.values()}
    for index, node in graph.items():
        for succ in node.get("succ") or ():
            parents[names[str(succ)]].append(names[str(index)])
    return parents


def _end_time(info: Any, run_result: Any) -> Any:
    """When dbt finished the node: its start plus dbt's ``execution_time`` (what
    run_results.json reports as the node's duration), else the end of its last timed step,
    else ``node_finished_at`` (dbt sets that later, after printing the node's result line)."""
    took = float(getattr(run_result, "execution_time", 0.0) or 0.0)
    if took > 0 and info.node_started_at:
        try:
            return datetime.fromisoformat(str(info.node_started_at)) + timedelta(seconds=took)
        except ValueError:
            pass
    given = getattr(run_result, "executed_until", None)  # worked out by the child process
    if given:
        return given
    ends = [step.completed_at.ToDatetime() for step in getattr(run_result, "timing_info", None) or ()
            if step.HasField("completed_at")]
    if ends:
        return max(ends)
    return info.node_finished_at or info.node_started_at or None


def _entries(manifest: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    entries: dict[str, dict[str, Any]] = {}
    for section in ("sources", "unit_tests", "nodes"):
        entries.update((manifest or {}).get(section) or {})
    return entries


class LiveNodes:
    """A dbt event callback recording each node as a task run of the current flow run.

    Made inside the task run that runs dbt (it binds that flow run and task run); dbt then
    calls it from its worker threads.

    Args:
        translator: Names, tags, descriptions and which nodes are recorded.
        artifacts: The EventSink's ``{file name: path}`` of what dbt wrote (the manifest
            is there before the first node starts).
        invocation_id: A callable returning dbt's invocation id once known.
    """

    def __init__(self, translator: DbtNodeTranslator, artifacts: dict[str, str],
                 invocation_id: Callable[[], str | None]) -> None:
        self.runs = ExternalRuns()
        self.translator = translator
        self._artifacts = artifacts
        self._invocation_id = invocation_id
        self._lock = threading.Lock()
        self._loaded = False
        self._entries: dict[str, dict[str, Any]] = {}
        self._graph: dict[str, list[str]] | None = None
        self.handles: dict[str, ExternalTaskRun] = {}
        self.statuses: dict[str, str] = {}
        self._deferred: dict[str, DbtNode] = {}  # started, recorded only if they fail

    # -- what dbt tells ----------------------------------------------------------------
    def __call__(self, event: Any) -> None:
        name = event.info.name
        if name == "NodeStart":
            self._started(event.data.node_info)
        elif name == "NodeFinished":
            self._finished(event.data.node_info, event.data.run_result)

    def handle(self, unique_id: str) -> ExternalTaskRun | None:
        """The task run recorded for a node (None if it has none)."""
        return self.handles.get(unique_id)

    def _load(self) -> None:
        # Caller holds the lock. The manifest and graph summary are written before any node runs.
        if self._loaded:
            return
        self._loaded = True
        path = self._artifacts.get("manifest.json")
        if path:
            try:
                self._entries = _entries(json.loads(Path(path).read_text()))
            except (OSError, ValueError):
                self._entries = {}
            self._graph = dbt_graph(Path(path).parent, self._invocation_id())

    def _node(self, unique_id: str) -> DbtNode:
        return DbtNode.from_manifest(unique_id, self._entries.get(unique_id))

    def _predecessors(self, unique_id: str) -> list[str]:
        if self._graph is not None:
            return self._graph.get(unique_id, [])
        return list(((self._entries.get(unique_id) or {}).get("depends_on") or {}).get("nodes") or ())

    def upstream(self, unique_id: str) -> list[str]:
        """The recorded nodes ``unique_id`` waited for, unrecorded ones looked through."""
        found: list[str] = []
        seen = {unique_id}
        stack = list(reversed(self._predecessors(unique_id)))
        while stack:
            parent = stack.pop()
            if parent in seen:
                continue
            seen.add(parent)
            if parent in self.handles:
                found.append(parent)
            else:
                stack.extend(reversed(self._predecessors(parent)))
        return found

    def _start(self, node: DbtNode, started_at: str | None) -> ExternalTaskRun:
        # Caller holds the lock.
        name = self.translator.task_name(node)
        handle = self.runs.start(
            name,
            started_at=started_at or None,
            run_name=name,
            task_key=f"dbt.{node.unique_id}",
            parameters={"unique_id": node.unique_id, "resource_type": node.resource_type,
                        "invocation_id": self._invocation_id()},
            tags=self.translator.tags(node),
            upstream=[self.handles[u] for u in self.upstream(node.unique_id)],
        )
        self.handles[node.unique_id] = handle
        return handle

    def _started(self, info: Any) -> None:
        unique_id = info.unique_id
        with self._lock:
            self._load()
            node = self._node(unique_id)
            if self.translator.should_record(node):
                self._start(node, info.node_started_at)
            else:
                self._deferred[unique_id] = node

    def _finished(self, info: Any, run_result: Any) -> None:
        unique_id = info.unique_id
        status = str(info.node_status or getattr(run_result, "status", "") or "")
        message = str(getattr(run_result, "message", "") or "")
        with self._lock:
            self.statuses[unique_id] = status
            handle = self.handles.get(unique_id)
            deferred = self._deferred.pop(unique_id, None)
            if handle is None and deferred is not None and status in FAILED_STATUSES:
                handle = self._start(deferred, info.node_started_at)  # a failure is always recorded
            if handle is None:
                return
            node = self._node(unique_id)
            finished_at = _end_time(info, run_result)
            took = float(getattr(run_result, "execution_time", 0.0) or 0.0)
            if status in FAILED_STATUSES:
                text = f"dbt {node.resource_type} {unique_id} {status}: {message.strip() or 'no message'}"
                handle.logger.error("%s", text)  # the one place dbt's message for this node is shown
                handle.finish(StateType.FAILED, text, finished_at=finished_at)
            elif status == _SKIPPED:
                causes = self._failed_ancestors(unique_id)
                why = f" after {', '.join(causes)} did not succeed" if causes else ""
                handle.finish(StateType.CANCELLED, f"dbt skipped {unique_id}{why}", finished_at=finished_at,
                              name="Skipped")
            else:
                handle.finish(StateType.COMPLETED, f"dbt {status}: {message.strip() or status} ({took:.2f}s)",
                              finished_at=finished_at)

    def _failed_ancestors(self, unique_id: str) -> list[str]:
        found: list[str] = []
        seen = {unique_id}
        stack = list(self._predecessors(unique_id))
        while stack:
            parent = stack.pop()
            if parent in seen:
                continue
            seen.add(parent)
            if self.statuses.get(parent) in FAILED_STATUSES:
                found.append(parent)
            else:
                stack.extend(self._predecessors(parent))
        return sorted(found)

    def close(self, reason: str) -> None:
        """End runs dbt never finished (it stopped early): Crashed, with ``reason``."""
        with self._lock:
            for unique_id, handle in self.handles.items():
                if not handle.state.is_final():
                    logging.getLogger("plait_dbt").debug("dbt did not finish %s", unique_id)
                    handle.finish(StateType.CRASHED, f"dbt stopped before finishing {unique_id}: {reason}")
