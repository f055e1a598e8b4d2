"""What a dbt command leaves behind: run_results.json, manifest.json, and their summary.

``DbtRunResult`` is what ``dbt_run`` returns (and what a failed run's ``DbtCommandError``
carries): the artifacts' paths, where copies were stored in plait result storage, and one
``DbtNodeResult`` per node dbt executed.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DbtNodeResult", "DbtRunResult", "FAILED_STATUSES", "load_json"]

# dbt node statuses that fail a node's task run.
FAILED_STATUSES = frozenset({"error", "fail", "runtime error", "partial success"})


def load_json(path: str | Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


@dataclass
class DbtNodeResult:
    """One node's outcome in a dbt command (an entry of run_results.json).

    Attributes:
        unique_id: e.g. ``"model.jaffle.orders"``.
        status: dbt's status: ``success``, ``pass``, ``warn``, ``error``, ``fail``,
            ``skipped``, ``no-op``, ``runtime error``...
        message: dbt's message (``"OK"``, ``"Got 3 results, configured to fail if != 0"``).
        execution_time: Seconds dbt spent on the node.
        started_at: When dbt started the node (ISO 8601, UTC), None if it never ran.
        completed_at: When dbt finished it.
        failures: Failing rows, for tests.
        adapter_response: What the database reported (rows affected, query id...).
        relation_name: The table or view it built, if any.
    """

    unique_id: str
    status: str
    message: str | None = None
    execution_time: float = 0.0
    started_at: str | None = None
    completed_at: str | None = None
    failures: int | None = None
    adapter_response: dict[str, Any] = field(default_factory=dict)
    relation_name: str | None = None

    @property
    def resource_type(self) -> str:
        return self.unique_id.split(".", 1)[0]

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES

    @property
    def skipped(self) -> bool:
        return self.status == "skipped"

    def to_dict(self) -> dict[str, Any]:
        return {
            "unique_id": self.unique_id,
            "resource_type": self.resource_type,
            "status": self.status,
            "message": self.message,
            "execution_time": self.execution_time,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "failures": self.failures,
            "adapter_response": self.adapter_response,
            "relation_name": self.relation_name,
        }

    @classmethod
    def from_run_results(cls, entry: dict[str, Any]) -> DbtNodeResult:
        timing = entry.get("timing") or []
        starts = [t.get("started_at") for t in timing if t.get("started_at")]
        ends = [t.get("completed_at") for t in timing if t.get("completed_at")]
        return cls(
            unique_id=str(entry.get("unique_id")),
            status=str(entry.get("status")),
            message=entry.get("message"),
            execution_time=float(entry.get("execution_time") or 0.0),
            started_at=min(starts) if starts else None,
            completed_at=max(ends) if ends else None,
            failures=entry.get("failures"),
            adapter_response=dict(entry.get("adapter_response") or {}),
            relation_name=entry.get("relation_name"),
        )


@dataclass
class DbtRunResult:
    """The outcome of one dbt command run by plait.

    Attributes:
        command: The dbt command as given (``"build"``, ``"run --select orders"``).
        executed_command: The command dbt ran: ``"retry"`` when only failed and skipped
            nodes of the previous attempt were run again, else ``command``.
        args: The arguments given to dbt (without the private profiles directory).
        success: Whether dbt reported success.
        project_dir: The dbt project.
        invocation_id: dbt's id of the invocation (also in the artifacts' metadata).
        run_results_path: run_results.json of this invocation (None if dbt wrote none).
        manifest_path: manifest.json of this invocation (None if dbt wrote none).
        artifacts: Copies in plait result storage: ``{"run_results.json": "<storage uri>/<key>", ...}``.
        nodes: One result per node dbt executed, in dbt's order.
        elapsed_time: Seconds dbt reported for the whole command.
        error: dbt's error message when the command failed, else None.
        profiles_dir: The private directory the generated profiles.yml was in (already
            removed) or the existing profiles directory used.
        attempt: The task run attempt that ran this command (1 for the first).
    """

    command: str
    executed_command: str
    args: list[str]
    success: bool
    project_dir: str
    invocation_id: str | None = None
    run_results_path: str | None = None
    manifest_path: str | None = None
    artifacts: dict[str, str] = field(default_factory=dict)
    nodes: list[DbtNodeResult] = field(default_factory=list)
    elapsed_time: float | None = None
    error: str | None = None
    profiles_dir: str | None = None
    attempt: int = 1

    @property
    def retried(self) -> bool:
        """True when this was ``dbt retry`` of a previous attempt's failed and skipped nodes."""
        return self.executed_command == "retry" and self.command.split()[:1] != ["retry"]

    def counts(self) -> dict[str, int]:
        """How many nodes ended in each status, e.g. ``{"success": 4, "pass": 8}``."""
        return dict(Counter(node.status for node in self.nodes))

    @property
    def failed_nodes(self) -> list[DbtNodeResult]:
        return [node for node in self.nodes if node.failed]

    @property
    def skipped_nodes(self) -> list[DbtNodeResult]:
        return [node for node in self.nodes if node.skipped]

    def node(self, unique_id: str) -> DbtNodeResult:
        """The result of one node; KeyError naming the executed nodes when it did not run."""
        for node in self.nodes:
            if node.unique_id == unique_id:
                return node
        raise KeyError(f"{unique_id!r} was not executed; executed: {', '.join(n.unique_id for n in self.nodes)}")

    def run_results(self) -> dict[str, Any]:
        """run_results.json, parsed (from the project's target directory)."""
        if not self.run_results_path:
            raise FileNotFoundError(f"dbt {self.executed_command} wrote no run_results.json")
        return load_json(self.run_results_path)

    def manifest(self) -> dict[str, Any]:
        """manifest.json, parsed."""
        if not self.manifest_path:
            raise FileNotFoundError(f"dbt {self.executed_command} wrote no manifest.json")
        return load_json(self.manifest_path)

    def summary(self) -> str:
        """``"dbt build: 14 nodes (success=6, pass=8) in 1.40s"``."""
        counts = ", ".join(f"{status}={n}" for status, n in sorted(self.counts().items()))
        took = f" in {self.elapsed_time:.2f}s" if self.elapsed_time is not None else ""
        return f"dbt {self.executed_command}: {len(self.nodes)} node(s) ({counts or 'none'}){took}"
