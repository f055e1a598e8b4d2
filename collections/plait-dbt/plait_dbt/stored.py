"""dbt artifacts in plait result storage: a copy per invocation, an index per flow run, and
retention.

Layout, under the storage (default: plait's result storage):

- ``dbt-artifacts/<invocation id>/run_results.json`` and ``manifest.json``: the copies;
- ``dbt-artifacts/flow-runs/<flow run id>.json``: the dbt commands of that flow run, oldest
  first (``invocation_id``, ``project_dir``, ``command``, ``success``...). It is how
  ``dbt_run("retry", from_run=<flow run id>)`` finds the run_results.json to retry, from any
  process;
- ``dbt-artifacts/retention.json``: the invocations whose copies are kept, oldest first,
  for ``artifact_retention`` (keep the copies of the newest N invocations).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from plait_dbt.artifacts import DbtRunResult
from plait_dbt.exceptions import DbtError

__all__ = ["store_artifacts", "fetch_previous_state", "ARTIFACTS", "FOLDER"]

FOLDER = "dbt-artifacts"
ARTIFACTS = ("run_results.json", "manifest.json")
_INDEX_LOCK = threading.Lock()  # read-modify-write of the index files, within this process


def _read_json(storage: Any, path: str, default: Any) -> Any:
    try:
        return json.loads(storage.read_path(path))
    except Exception:  # noqa: BLE001 - missing or unreadable: start afresh
        return default


def _write_json(storage: Any, path: str, value: Any) -> None:
    storage.write_path(path, json.dumps(value, indent=1).encode())


def _delete(storage: Any, path: str) -> bool:
    """Delete ``path`` from the storage if it can: a local ``file://`` storage (its emptied
    folder too), or one with a ``delete_path`` method. False when the storage cannot delete."""
    uri = str(getattr(storage, "uri", "") or "")
    if uri.startswith("file://"):
        target = Path(uri.removeprefix("file://")) / path
        target.unlink(missing_ok=True)
        if target.parent.is_dir() and not any(target.parent.iterdir()):
            target.parent.rmdir()
        return True
    delete = getattr(storage, "delete_path", None)
    if callable(delete):
        try:
            delete(path)
        except FileNotFoundError:
            pass
        return True
    return False


def store_artifacts(
    result: DbtRunResult,
    storage_spec: Any,
    logger: Any,
    flow_run_id: str | None = None,
    task_run_id: str | None = None,
    retention: int | None = None,
) -> dict[str, str]:
    """Copy this invocation's artifacts into result storage; ``{name: reference}``.

    Never fails the dbt command: a storage error is a warning.
    """
    from plait.results import resolve_storage

    paths = {"run_results.json": result.run_results_path, "manifest.json": result.manifest_path}
    if not any(paths.values()):
        return {}
    try:
        storage = resolve_storage(storage_spec)
    except Exception as exc:
        logger.warning("dbt artifacts not stored: %s: %s", type(exc).__name__, exc)
        return {}
    base = str(getattr(storage, "uri", "") or storage).rstrip("/")
    stored: dict[str, str] = {}
    invocation = result.invocation_id or "unknown"
    folder = f"{FOLDER}/{invocation}"
    for name in ARTIFACTS:
        path = paths[name]
        if not path:
            continue
        try:
            storage.write_path(f"{folder}/{name}", Path(path).read_bytes())
        except Exception as exc:  # storing a copy must not fail the dbt run
            logger.warning("could not store %s: %s: %s", name, type(exc).__name__, exc)
            continue
        stored[name] = f"{base}/{folder}/{name}"
    if not stored:
        return stored
    try:
        with _INDEX_LOCK:
            if flow_run_id:
                _note_in_flow_run(storage, flow_run_id, task_run_id, result, list(stored))
            _apply_retention(storage, invocation, list(stored), retention, logger)
    except Exception as exc:
        logger.warning("dbt artifact index not updated: %s: %s", type(exc).__name__, exc)
    return stored


def _note_in_flow_run(storage: Any, flow_run_id: str, task_run_id: str | None, result: DbtRunResult,
                      names: list[str]) -> None:
    path = f"{FOLDER}/flow-runs/{flow_run_id}.json"
    entries = _read_json(storage, path, [])
    entries.append({
        "invocation_id": result.invocation_id, "task_run_id": task_run_id, "project_dir": result.project_dir,
        "command": result.command, "executed_command": result.executed_command, "success": result.success,
        "artifacts": names,
    })
    _write_json(storage, path, entries)


def _apply_retention(storage: Any, invocation: str, names: list[str], keep: int | None, logger: Any) -> None:
    path = f"{FOLDER}/retention.json"
    kept = [e for e in _read_json(storage, path, []) if e.get("invocation_id") != invocation]
    kept.append({"invocation_id": invocation, "artifacts": names})
    if keep is not None and len(kept) > keep:
        cut = len(kept) - keep
        old, kept = kept[:cut], kept[cut:]
        for i, entry in enumerate(old):
            if not all([_delete(storage, f"{FOLDER}/{entry['invocation_id']}/{name}")
                        for name in entry.get("artifacts") or ()]):
                logger.warning("artifact_retention: %s cannot delete files; older dbt artifacts are kept",
                               type(storage).__name__)
                kept = old[i:] + kept  # still there: still listed
                break
    _write_json(storage, path, kept)


def fetch_previous_state(from_run: str, project_dir: str, storage_spec: Any, into: Path) -> dict[str, Any]:
    """Write into ``into`` the run_results.json (and manifest.json) of the last dbt command
    of flow run ``from_run`` on ``project_dir`` that did not succeed; return its index entry.

    Raises:
        DbtError: The flow run left no stored dbt artifacts, none for this project, or no
            failed command (nothing to retry).
    """
    from plait.results import resolve_storage

    storage = resolve_storage(storage_spec)
    entries = _read_json(storage, f"{FOLDER}/flow-runs/{from_run}.json", None)
    if not entries:
        raise DbtError(
            f"no stored dbt artifacts for flow run {from_run!r}: give the id of a flow run whose dbt_run "
            "stored its artifacts (store_artifacts=True, the default) in this result storage"
        )
    ours = [e for e in entries if e.get("project_dir") == project_dir]
    if not ours:
        seen = ", ".join(sorted({str(e.get("project_dir")) for e in entries}))
        raise DbtError(f"flow run {from_run!r} ran no dbt command on {project_dir}; it ran dbt on: {seen}")
    failed = [e for e in ours if not e.get("success")]
    if not failed:
        raise DbtError(f"every dbt command of flow run {from_run!r} on {project_dir} succeeded; nothing to retry")
    entry = failed[-1]
    into.mkdir(parents=True, exist_ok=True)
    for name in entry.get("artifacts") or ():
        try:
            (into / name).write_bytes(storage.read_path(f"{FOLDER}/{entry['invocation_id']}/{name}"))
        except Exception as exc:
            raise DbtError(
                f"the stored {name} of dbt invocation {entry['invocation_id']} (flow run {from_run!r}) cannot be "
                f"read ({type(exc).__name__}: {exc}); it may have been removed by artifact_retention"
            ) from None
    if not (into / "run_results.json").is_file():
        raise DbtError(f"dbt invocation {entry.get('invocation_id')} of flow run {from_run!r} stored no "
                       f"run_results.json (only {entry.get('artifacts')}); nothing to retry")
    return dict(entry)
