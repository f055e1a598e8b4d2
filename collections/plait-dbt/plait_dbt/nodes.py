"""Per-node task runs: each node a dbt command executed becomes its own plait task run.

dbt runs to completion first; then, in dependency order, one small task per node replays
that node's outcome through plait's public API:

- success / pass / warn / no-op: the task returns the node's result (Completed);
- error / fail: the task raises ``DbtNodeError`` with dbt's message (Failed);
- skipped: the task waits (``wait_for``) on its upstream nodes, one of which failed, so plait
  records it Cancelled with the name "Skipped", exactly like any task whose upstream failed.

Dependency edges come from the manifest's ``depends_on`` (through nodes that were not
executed), plus, for ``dbt build``, the tests on a node's parents, which ``build`` runs first.
The task runs' own start and end times are those of the replay; dbt's timing is in each
result (``execution_time``, ``started_at``, ``completed_at``) and in the run's log.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

from plait import get_run_logger, runtime, task
from plait_dbt.artifacts import FAILED_STATUSES, DbtNodeResult, DbtRunResult
from plait_dbt.exceptions import DbtNodeError, DbtNodeSkipped
from plait_dbt.translator import DbtNode, DbtNodeTranslator

__all__ = ["record_nodes", "node_upstream"]

_TESTS = ("test", "unit_test")
_NOT_COMPLETED = FAILED_STATUSES | {"skipped"}


def _manifest_entries(manifest: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    if not manifest:
        return {}
    entries: dict[str, dict[str, Any]] = {}
    for section in ("sources", "unit_tests", "nodes"):
        entries.update(manifest.get(section) or {})
    return entries


def _parents(entries: dict[str, dict[str, Any]], unique_id: str) -> list[str]:
    return list(((entries.get(unique_id) or {}).get("depends_on") or {}).get("nodes") or ())


def _ancestors(entries: dict[str, dict[str, Any]], unique_id: str, memo: dict[str, frozenset[str]]) -> frozenset[str]:
    if unique_id in memo:
        return memo[unique_id]
    memo[unique_id] = frozenset()  # cycle guard (dbt refuses cycles anyway)
    found: set[str] = set()
    for parent in _parents(entries, unique_id):
        found.add(parent)
        found |= _ancestors(entries, parent, memo)
    memo[unique_id] = frozenset(found)
    return memo[unique_id]


def node_upstream(
    recorded: list[str], entries: dict[str, dict[str, Any]], build_graph: bool
) -> dict[str, list[str]]:
    """For each recorded node, the recorded nodes it waits for.

    A parent that was not recorded (not selected, ephemeral, a source, an unrecorded test)
    is looked through to its own parents. With ``build_graph`` (``dbt build``), a non-test
    node also waits for the tests of its parents whose every model is upstream of it.
    """
    keep = set(recorded)
    memo: dict[str, frozenset[str]] = {}
    upstream: dict[str, list[str]] = {}
    tests_by_parent: dict[str, list[str]] = {}
    if build_graph:
        for uid in recorded:
            if entries.get(uid, {}).get("resource_type", uid.split(".")[0]) in _TESTS:
                for parent in _parents(entries, uid):
                    tests_by_parent.setdefault(parent, []).append(uid)
    for uid in recorded:
        found: list[str] = []
        seen: set[str] = set()
        stack = list(reversed(_parents(entries, uid)))
        while stack:
            parent = stack.pop()
            if parent in seen or parent == uid:
                continue
            seen.add(parent)
            if parent in keep:
                found.append(parent)
            else:
                stack.extend(reversed(_parents(entries, parent)))
        resource_type = entries.get(uid, {}).get("resource_type", uid.split(".")[0])
        if build_graph and resource_type not in _TESTS:
            ancestors = _ancestors(entries, uid, memo)
            for parent in _parents(entries, uid):
                for test_id in tests_by_parent.get(parent, ()):
                    if test_id not in found and set(_parents(entries, test_id)) <= ancestors:
                        found.append(test_id)
        upstream[uid] = found
    return upstream


def _topological(recorded: list[str], upstream: dict[str, list[str]]) -> list[str]:
    """Parents before children; otherwise dbt's order."""
    position = {uid: i for i, uid in enumerate(recorded)}
    waiting = {uid: len(upstream[uid]) for uid in recorded}
    children: dict[str, list[str]] = {uid: [] for uid in recorded}
    for uid in recorded:
        for parent in upstream[uid]:
            children[parent].append(uid)
    ready = [(position[uid], uid) for uid in recorded if waiting[uid] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, uid = heapq.heappop(ready)
        order.append(uid)
        for child in children[uid]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (position[child], child))
    return order + [uid for uid in recorded if uid not in order]  # a cycle: keep dbt's order


def _replay_task(
    node: DbtNode, outcome: DbtNodeResult, lines: list[tuple[int, str]], translator: DbtNodeTranslator
) -> Any:
    """A task whose single run replays ``outcome`` (its body runs no dbt)."""
    took = f"{outcome.execution_time:.2f}s in dbt"

    def replay(unique_id: str, status: str, invocation_id: str | None) -> dict[str, Any]:
        logger = get_run_logger()
        for level, text in lines:
            logger.log(level, "%s", text)
        if outcome.failed:
            raise DbtNodeError(
                f"dbt {node.resource_type} {unique_id} {status}: {outcome.message or 'no message'} ({took})",
                unique_id=unique_id, status=status,
            )
        if outcome.skipped:
            raise DbtNodeSkipped(f"dbt skipped {unique_id} and no failed upstream node was recorded to explain it")
        logger.info("dbt %s %s: %s, %s (started %s)", node.resource_type, unique_id, status,
                    took, outcome.started_at or "?")
        return {**outcome.to_dict(), "invocation_id": invocation_id}

    replay.__name__ = f"dbt_node_{node.resource_type}"
    replay.__qualname__ = f"dbt_node.{node.unique_id}"  # one task key per node
    replay.__module__ = __name__
    return task(
        replay,
        name=translator.task_name(node),
        tags=translator.tags(node),
        description=translator.description(node),
        retries=0,
    )


def record_nodes(
    result: DbtRunResult,
    manifest: dict[str, Any] | None,
    node_lines: dict[str, list[tuple[int, str]]],
    translator: DbtNodeTranslator,
    graph_command: str,
    warn: Callable[[str], None] | None = None,
) -> list[Any]:
    """Record each executed node of ``result`` as a task run of the current flow run.

    Returns the futures, already marked as looked at: the outcome of the dbt command is
    the calling task's to report, so a failed node does not fail the flow a second time.
    Outside a flow run nothing is recorded.
    """
    if runtime.flow_run.id is None or not result.nodes:
        return []
    entries = _manifest_entries(manifest)
    outcomes = {n.unique_id: n for n in result.nodes}
    nodes = {uid: DbtNode.from_manifest(uid, entries.get(uid)) for uid in outcomes}
    recorded = [uid for uid in outcomes if outcomes[uid].failed or translator.should_record(nodes[uid])]
    upstream = node_upstream(recorded, entries, build_graph=graph_command == "build")
    failed = [uid for uid in recorded if outcomes[uid].failed]
    memo: dict[str, frozenset[str]] = {}
    for uid in recorded:
        outcome = outcomes[uid]
        ups = upstream[uid]
        if outcome.skipped:
            if not any(outcomes[u].status in _NOT_COMPLETED for u in ups):
                # make the skip visible as one: wait on the failure that caused it
                ancestors = _ancestors(entries, uid, memo)
                cause = [u for u in failed if u in ancestors] or failed
                ups.extend(u for u in cause if u not in ups and u != uid)
        else:
            dropped = [u for u in ups if outcomes[u].status in _NOT_COMPLETED]
            if dropped:  # dbt ran it anyway (e.g. a warn-only test): waiting would skip it
                ups[:] = [u for u in ups if u not in dropped]
                if warn is not None:
                    warn(f"{uid} ran although {', '.join(dropped)} did not succeed; not recording those edges")
    futures: dict[str, Any] = {}
    for uid in _topological(recorded, upstream):
        replay = _replay_task(nodes[uid], outcomes[uid], node_lines.get(uid, []), translator)
        future = replay.submit(uid, outcomes[uid].status, result.invocation_id,
                               wait_for=[futures[u] for u in upstream[uid] if u in futures])
        future.state  # noqa: B018 - looked at: the dbt task reports the failure, not each node
        futures[uid] = future
    return list(futures.values())
