"""Where the CLI's reads come from when ``PLAIT_API_URL`` is set: a plait server, through
``plait.client.PlaitClient``, with the very output the local store gives.

``plait.cli.commands`` (flow runs) and ``plait.cli.blocks`` (blocks) ask ``remote()``
first and, when it says so, return what the functions here return: the same keys, the same
order, the same formats (timestamps ISO 8601 in UTC, durations in seconds, log levels by
name). Before a read, records a process left in the spool while the server was down are
delivered (``plait._spool.deliver_pending``), so what the CLI shows includes them.

What differs from a local store, by design: list items the server truncated (a state
message over 2,000 characters) stay truncated, and log messages over 2,000 characters are
cut, with a marker saying so.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plait.client import PlaitClient

__all__ = ["remote", "flow_run_ls", "flow_run_inspect", "flow_run_logs", "block_ls", "block_inspect"]

# The keys of each answer, in the local store's order (plait._store.history).
_LS_KEYS = (
    "id", "flow_name", "name", "state_type", "state_name", "state_message", "start_time", "end_time",
    "duration_seconds", "task_run_count", "parent_flow_run_id", "tags", "expected_start_time",
)
_RUN_KEYS = (
    "id", "flow_name", "name", "parameters", "tags", "state_type", "state_name", "state_message",
    "parent_flow_run_id", "parent_task_run_id", "run_count", "created", "start_time", "end_time",
    "duration_seconds", "pid", "hostname", "heartbeat_at", "states", "subflows", "task_runs",
    # where a deployment's run ran, and what a paused run waits for
    "expected_start_time", "retry_of", "entrypoint", "deployment_id", "deployment_name", "work_pool_name",
    "work_pool_type", "work_queue_name", "worker_id", "worker_name", "pause_schema", "pause_deadline",
)
_LOG_KEYS = ("timestamp", "level", "logger", "flow_run_id", "task_run_id", "task_name", "task_run_name", "message")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NOT_FINAL = {"SCHEDULED", "PENDING", "RUNNING", "RETRYING", "PAUSED", "CANCELLING"}
_PAGE = 500  # the most a server's list route gives at once
_MAX_SUBFLOW_DEPTH = 50
_PREFIX_SCAN = 5000  # newest runs searched for an id prefix


def remote() -> bool:
    """Whether the CLI reads from a plait server (``PLAIT_API_URL`` is set)."""
    from plait.settings import get_settings

    return get_settings().api_url is not None


@contextmanager
def _client() -> Iterator[PlaitClient]:
    """A client of the configured server, after the spool was delivered to it."""
    from plait._spool import deliver_pending
    from plait.client import PlaitClient

    deliver_pending()
    client = PlaitClient()
    try:
        yield client
    finally:
        client.close()


def _not_found(flow_run_id: str, exc: Exception) -> LookupError:
    message = getattr(exc, "message", "") or str(exc)
    if getattr(exc, "code", "").startswith("http_"):  # not the server's own answer
        return LookupError(message)
    return LookupError(f"no flow run matches {flow_run_id.strip()!r}; run `plait flow-run ls` to see ids"
                       if "flow run" not in message else message.split(" (plait server at ")[0])


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _duration(row: dict[str, Any], now: datetime) -> float | None:
    """Seconds from start to end; for a run still going, to now (as the local store says)."""
    if "duration_seconds" in row:
        value = row["duration_seconds"]
        return float(value) if isinstance(value, (int, float)) else None
    start, end = _time(row.get("start_time")), _time(row.get("end_time"))
    if start is None:
        return None
    if end is None:
        if str(row.get("state_type")) not in _NOT_FINAL:
            return None
        end = now
    return round((end - start).total_seconds(), 3)


def _project(row: dict[str, Any], keys: tuple[str, ...], now: datetime) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in keys:
        if key == "duration_seconds":
            out[key] = _duration(row, now)
        elif key == "task_run_count":
            out[key] = int(row.get(key) or 0)
        elif key == "tags":
            out[key] = row.get(key) or []
        else:
            out[key] = row.get(key)
    return out


# -- flow runs ---------------------------------------------------------------------------------------
def flow_run_ls(state: str | None, flow_name: str | None, limit: int, upcoming: bool | None = None
                ) -> list[dict[str, Any]]:
    """``plait.cli.commands.flow_run_ls`` from the server (``state`` already normalized)."""
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    with _client() as client:
        items = client.iter_flow_runs(state=state, flow=flow_name, upcoming=upcoming, page_size=min(limit, _PAGE))
        for item in items:
            rows.append(_project(item, _LS_KEYS, now))
            if len(rows) >= limit:
                break
    if upcoming:  # soonest first, as the local listing
        rows.sort(key=lambda r: (r.get("expected_start_time") or "", r["id"]))
    return rows


def _resolve(client: PlaitClient, flow_run_id: str) -> str:
    """The full id of the one flow run whose id is, or starts with, ``flow_run_id``.

    The API takes whole ids only; a prefix is looked for among the newest ``_PREFIX_SCAN``
    runs (what a person copies from ``plait flow-run ls``).

    Raises:
        LookupError: No flow run, or more than one, matches.
    """
    prefix = flow_run_id.strip()
    if not prefix:
        raise LookupError("give a flow run id (or its first characters); run `plait flow-run ls` to see ids")
    from plait.client import ApiError

    try:
        if client.flow_run_state(prefix) is not None:
            return prefix
    except ApiError as exc:
        if exc.status != 422:  # 422: not even the shape of an id
            raise
        raise LookupError(f"no flow run matches {prefix!r}; run `plait flow-run ls` to see ids") from None
    matches: list[str] = []
    for seen, item in enumerate(client.iter_flow_runs(page_size=_PAGE)):
        if seen >= _PREFIX_SCAN:
            break
        if str(item["id"]).startswith(prefix):
            matches.append(str(item["id"]))
    if not matches:
        raise LookupError(f"no flow run matches {prefix!r}; run `plait flow-run ls` to see ids (through a server, "
                          f"a prefix is looked for among the newest {_PREFIX_SCAN:,} runs: give the whole id of an "
                          "older one)")
    if len(matches) > 1:
        raise LookupError(f"{prefix!r} matches {len(matches)} flow runs; give more characters")
    return matches[0]


def _fetch_run(client: PlaitClient, flow_run_id: str) -> dict[str, Any]:
    from plait.client import ApiNotFound

    run_id = _resolve(client, flow_run_id)
    try:
        return client.flow_run(run_id)
    except ApiNotFound as exc:  # deleted meanwhile
        raise _not_found(run_id, exc) from None


def flow_run_inspect(flow_run_id: str) -> dict[str, Any]:
    """``plait.cli.commands.flow_run_inspect`` from the server."""
    with _client() as client:
        run = _fetch_run(client, flow_run_id)
    return _project(run, _RUN_KEYS, datetime.now(UTC))


def _level_name(level: Any) -> Any:
    if isinstance(level, int) and not isinstance(level, bool):
        return logging.getLevelName(level)
    return level


def flow_run_logs(flow_run_id: str) -> list[dict[str, Any]]:
    """``plait.cli.commands.flow_run_logs`` from the server: the lines of the flow run, its
    task runs and its subflow runs (at any depth), oldest first, with ``source``."""
    with _client() as client:
        run_id = _resolve(client, flow_run_id)
        flow_ids, frontier = [run_id], [run_id]
        depth = 0
        while frontier and depth < _MAX_SUBFLOW_DEPTH:  # one listing per run and nesting level
            children = [str(sub["id"]) for parent in frontier
                        for sub in client.iter_flow_runs(parent=parent, page_size=_PAGE)]
            frontier = [i for i in children if i not in flow_ids]
            flow_ids.extend(frontier)
            depth += 1
        lines: list[tuple[int, dict[str, Any]]] = []
        for flow_id in flow_ids:
            for item in client.iter_logs(flow_run=flow_id, page_size=_PAGE):
                lines.append((len(lines), item))
    # oldest first across the runs, equal times in the order they were stored (as locally)
    lines.sort(key=lambda pair: (_time(pair[1].get("timestamp")) or _EPOCH, _log_order(pair[1], pair[0])))
    rows = []
    for _, item in lines:
        row = {key: item.get(key) for key in _LOG_KEYS}
        row["level"] = _level_name(row["level"])
        task_run_id = row.get("task_run_id")
        if task_run_id:
            row["task_run_name"] = row.get("task_run_name") or row.get("task_name")
            row["source"] = row["task_run_name"] or str(task_run_id)[:8]
        else:
            row["task_run_name"] = None
            owner = row.get("flow_run_id")
            row["source"] = "flow" if owner is None or owner == run_id else f"subflow {str(owner)[:8]}"
        rows.append(row)
    return rows


def _log_order(item: dict[str, Any], position: int) -> tuple[int, int]:
    log_id = item.get("id")
    return (log_id, position) if isinstance(log_id, int) and not isinstance(log_id, bool) else (position, position)


# -- blocks --------------------------------------------------------------------------------------------
def block_ls(type_slug: str | None, include_anonymous: bool) -> list[dict[str, Any]]:
    """``plait.cli.blocks.block_ls`` from the server."""
    from plait.blocks._remote import _entry

    with _client() as client:
        if type_slug:
            _known_type(client, type_slug)
        found = client.block_documents(type=type_slug or None, include_anonymous=include_anonymous)
    rows = [_entry(raw) for raw in found]
    if not include_anonymous:
        from plait.blocks._references import _is_anonymous

        rows = [r for r in rows if not _is_anonymous(str(r["name"]))]
    return sorted(rows, key=lambda e: (e["slug"], str(e["name"])))


def _known_type(client: PlaitClient, slug: str) -> None:
    """An unknown type is an error, not an empty list (as locally): known when a plugin
    here or the server has it."""
    from plait.blocks._types import _registry, get_block_class
    from plait.client import ApiNotFound

    if slug in _registry():
        return
    try:
        client.block_type(slug)
    except ApiNotFound:
        get_block_class(slug)  # raises BlockNotFound with the local suggestions


def _flatten(value: Any) -> Any:
    """A document's data as ``block_to_dict`` shows values: each nested block as its fields."""
    if isinstance(value, dict):
        if set(value) == {"$block"} and isinstance(value["$block"], dict):
            return _flatten(value["$block"].get("data") or {})
        return {k: _flatten(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_flatten(v) for v in value]
    return value


def block_inspect(reference: str) -> dict[str, Any]:
    """``plait.cli.blocks.block_inspect(reference)`` (secrets masked) from the server. Needs
    only a key of scope ``read``: the server sends the values with secrets masked.
    (With ``--show-secrets`` the CLI loads the block itself, through the server.)"""
    from plait._masking import MASK
    from plait.blocks._remote import _find_any
    from plait.blocks._types import _registry
    from plait.exceptions import BlockNotFound

    with _client() as client:
        from plait.client import ApiNotFound

        slug, name = _find_any(reference.strip())
        try:
            document = client.block_document(slug, name)
        except ApiNotFound as exc:
            raise BlockNotFound(exc.message) from None
        cls = _registry().get(slug)
        if cls is not None:
            capabilities, secret_fields = sorted(cls.capabilities or ()), cls.secret_fields()
            type_name = cls.block_type_name
        else:
            info = client.block_type(slug)
            capabilities, secret_fields = sorted(info.get("capabilities") or []), list(info.get("secret_fields") or [])
            type_name = document.get("type_name") or info.get("name") or slug
    fields = _flatten(document.get("data") or {})
    for field in secret_fields:  # belt and braces: whatever the server sent, no secret leaves here
        if "." not in field and fields.get(field) is not None:
            fields[field] = MASK
    return {
        "name": document.get("name"),
        "slug": document.get("slug"),
        "type_name": type_name,
        "id": document.get("id"),
        "created": document.get("created"),
        "updated": document.get("updated"),
        "capabilities": capabilities,
        "secret_fields": secret_fields,
        "fields": fields,
    }
