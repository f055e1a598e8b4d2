"""Artifacts: what a run makes for people to read — a markdown report, a table, a link, a
progress figure — kept with the run's history.

    from plait import flow
    from plait.artifacts import create_markdown_artifact, create_table_artifact

    @flow
    def nightly():
        create_table_artifact([{"region": "eu", "rows": 120}], key="row-counts")
        create_markdown_artifact("# All good", key="nightly-report", description="Summary")

Each ``create_*`` returns the new artifact's id (a uuid string). Made inside a flow run or a
task run, the artifact is linked to the flow run and the task run; made outside any run it
is kept on its own. An artifact with a ``key`` (lowercase letters, digits and dashes) is a
new *version* of that key: ``plait artifact ls`` shows each key's latest version,
``plait artifact inspect KEY`` every version, newest first.

Artifacts travel as the run's other records do: journaled at once (they survive ``kill -9``
of the process), then written with the recorder's next batch — to the local store, or to the
plait server ``PLAIT_API_URL`` names. Every text in an artifact passes through the masking
function first, so no registered secret is stored in plain text. With history switched off
(``PLAIT_RECORD_HISTORY=false``) artifacts are not kept either; the calls still answer an id.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from plait._batch import clean_text
from plait._masking import mask
from plait._runs import utcnow

__all__ = [
    "create_markdown_artifact",
    "create_table_artifact",
    "create_link_artifact",
    "create_progress_artifact",
    "update_progress_artifact",
    "KEY_PATTERN",
    "MAX_KEY_LENGTH",
    "MAX_DATA_CHARS",
]

KEY_PATTERN = r"^[a-z0-9-]+$"
MAX_KEY_LENGTH = 255
MAX_DATA_CHARS = 5_000_000  # an artifact's data as JSON text: a report, not a data set
_KEY = re.compile(KEY_PATTERN)
_SCALARS = (str, int, float, bool, type(None))


# -- checking and cleaning what the caller gives ----------------------------------------------------
def check_key(key: Any) -> str | None:
    """``key`` when it is None or a valid artifact key.

    Raises:
        ValueError: It is not (names the key and the rule).
    """
    if key is None:
        return None
    if not isinstance(key, str) or not _KEY.match(key) or len(key) > MAX_KEY_LENGTH:
        shown = repr(key) if isinstance(key, str) else f"of type {type(key).__name__}"
        raise ValueError(
            f"artifact key {shown} is not valid: a key uses only lowercase letters, digits and dashes, "
            f"1 to {MAX_KEY_LENGTH} characters (e.g. 'daily-report')"
        )
    return key


def _text(value: Any, what: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, not {type(value).__name__}")
    return clean_text(mask(value))


def _cell(value: Any) -> Any:
    """A table cell as stored: JSON numbers, booleans and null as they are, text masked,
    anything else (dates, decimals, objects) as its masked ``str``."""
    if isinstance(value, str):
        return clean_text(mask(value))
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, _SCALARS):
        return value
    return clean_text(mask(str(value)))


def _table(table: Any) -> dict[str, Any]:
    """A table as ``{"columns": [names] | None, "rows": [[cells]]}``.

    Raises:
        TypeError: ``table`` is none of the three shapes.
        ValueError: A dict of columns whose columns differ in length.
    """
    shapes = "a list of dicts (rows), a dict of lists (columns) or a list of lists (rows without names)"
    if isinstance(table, Mapping):
        columns = [str(name) for name in table]
        values = [list(v) if isinstance(v, Sequence) and not isinstance(v, (str, bytes)) else None
                  for v in table.values()]
        if any(v is None for v in values):
            raise TypeError(f"a table given as a dict maps each column name to a list of values; use {shapes}")
        lengths = {len(v) for v in values if v is not None}
        if len(lengths) > 1:
            raise ValueError(f"the table's columns differ in length ({', '.join(map(str, sorted(lengths)))} "
                             "values): give every column the same number of values")
        rows = [list(r) for r in zip(*(v or [] for v in values), strict=True)] if values else []
        return {"columns": [_cell(c) for c in columns], "rows": [[_cell(v) for v in r] for r in rows]}
    if isinstance(table, (str, bytes)) or not isinstance(table, Sequence):
        raise TypeError(f"table must be {shapes}, not {type(table).__name__}")
    items = list(table)
    if all(isinstance(r, Mapping) for r in items):
        names: dict[str, None] = {}
        for r in items:
            names.update(dict.fromkeys(str(k) for k in r))
        columns = list(names)
        cells = [[r.get(c) for c in columns] for r in ({str(k): v for k, v in r.items()} for r in items)]
        return {"columns": [_cell(c) for c in columns], "rows": [[_cell(v) for v in r] for r in cells]}
    if all(isinstance(r, Sequence) and not isinstance(r, (str, bytes, Mapping)) for r in items):
        return {"columns": None, "rows": [[_cell(v) for v in r] for r in items]}
    raise TypeError(f"table must be {shapes}; its rows mix shapes or are not rows")


def _progress(progress: Any) -> float:
    if isinstance(progress, bool) or not isinstance(progress, (int, float)):
        raise TypeError(f"progress must be a number from 0 to 100, not {type(progress).__name__}")
    value = float(progress)
    if not math.isfinite(value) or not 0.0 <= value <= 100.0:
        raise ValueError(f"progress must be a number from 0 to 100, not {progress!r}")
    return value


def _check_size(data: Any, kind: str) -> None:
    size = len(json.dumps(data, ensure_ascii=False))
    if size > MAX_DATA_CHARS:
        raise ValueError(f"the {kind} artifact's data is {size:,} characters as JSON; at most {MAX_DATA_CHARS:,} "
                         "are kept (store large data as a result and link to it)")


# -- recording ---------------------------------------------------------------------------------------
def _run_link() -> tuple[str | None, str | None]:
    """``(flow_run_id, task_run_id)`` of the code calling (None, None outside any run)."""
    from plait._context import flow_run_var, task_run_var

    task_ctx = task_run_var.get()
    if task_ctx is not None:
        flow_run = task_ctx.flow_run
        flow_run_id = flow_run.id if flow_run is not None else getattr(task_ctx.task_run, "flow_run_id", None)
        return flow_run_id, task_ctx.task_run.id
    flow_ctx = flow_run_var.get()
    if flow_ctx is not None:
        return flow_ctx.flow_run.id, None
    return None, None


def _add(row: dict[str, Any], *, update: bool = False) -> None:
    """Hand ``row`` to the recorder of the current run (else the process's recorder)."""
    from plait._context import flow_run_var, task_run_var

    recorder: Any = None
    task_ctx = task_run_var.get()
    flow_ctx = task_ctx.flow_context if task_ctx is not None else flow_run_var.get()
    if flow_ctx is not None:
        recorder = getattr(flow_ctx, "recorder", None)
    add = getattr(recorder, "add_artifact", None)
    if add is None:  # outside a run, or a stand-in recorder (a process pool's worker)
        from plait._recording import current_recorder

        add = getattr(current_recorder(), "add_artifact", None)
    if add is not None:  # None: history is switched off
        add(row, update=update)


def _create(kind: str, data: Any, key: Any, description: Any) -> str:
    key = check_key(key)
    description = _text(description, "description", optional=True)
    _check_size(data, kind)
    flow_run_id, task_run_id = _run_link()
    now = utcnow()
    artifact_id = str(uuid.uuid4())
    _add({
        "id": artifact_id, "key": key, "type": kind, "description": description, "data": data,
        "flow_run_id": flow_run_id, "task_run_id": task_run_id, "created": now, "updated": now,
    })
    return artifact_id


# -- the public calls ----------------------------------------------------------------------------------
def create_markdown_artifact(markdown: str, key: str | None = None, description: str | None = None) -> str:
    """Keep a markdown text (a report, a summary) with the current run.

    Args:
        markdown: The markdown text.
        key: Makes it a version of this key (lowercase letters, digits, dashes).
        description: A line saying what it is.

    Returns:
        The artifact's id.

    Raises:
        ValueError: The key is not valid, or the text is too large.
        TypeError: ``markdown`` or ``description`` is not a string.
    """
    return _create("markdown", _text(markdown, "markdown"), key, description)


def create_table_artifact(
    table: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]] | Sequence[Sequence[Any]],
    key: str | None = None,
    description: str | None = None,
) -> str:
    """Keep a table with the current run.

    Args:
        table: A list of dicts (one per row; the columns are their keys, in the order they
            first appear), a dict of columns (name -> list of values, all the same length),
            or a list of lists (rows without column names). Cells that are not JSON
            numbers, booleans, null or text are kept as their ``str``.
        key: Makes it a version of this key (lowercase letters, digits, dashes).
        description: A line saying what it is.

    Returns:
        The artifact's id.

    Raises:
        ValueError: The key is not valid, the columns differ in length, or it is too large.
        TypeError: ``table`` is none of the three shapes.
    """
    return _create("table", _table(table), key, description)


def create_link_artifact(
    link: str, link_text: str | None = None, key: str | None = None, description: str | None = None
) -> str:
    """Keep a link (to a dashboard, a file in a bucket, a pull request) with the current run.

    Args:
        link: The URL.
        link_text: The text to show for it (default: the URL).
        key: Makes it a version of this key (lowercase letters, digits, dashes).
        description: A line saying what it is.

    Returns:
        The artifact's id.

    Raises:
        ValueError: The key is not valid, or ``link`` is empty.
        TypeError: ``link`` or ``link_text`` is not a string.
    """
    url = _text(link, "link")
    if not url or not url.strip():
        raise ValueError("link must be a non-empty URL")
    return _create("link", {"link": url, "text": _text(link_text, "link_text", optional=True)}, key, description)


def create_progress_artifact(progress: float, key: str | None = None, description: str | None = None) -> str:
    """Keep a progress figure (0 to 100) with the current run; move it on with
    ``update_progress_artifact(artifact_id, progress)``.

    Returns:
        The artifact's id.

    Raises:
        ValueError: The key is not valid, or ``progress`` is outside 0 to 100.
        TypeError: ``progress`` is not a number.
    """
    return _create("progress", _progress(progress), key, description)


def update_progress_artifact(artifact_id: str, progress: float) -> str:
    """Set the progress of a progress artifact; returns its id.

    The update is a record like the artifact itself (journaled, then written with the
    recorder's next batch); it changes the stored artifact in place, and an update older
    than the stored figure never replaces it. An id that names no progress artifact changes
    nothing.

    Raises:
        ValueError: ``artifact_id`` is not an artifact id, or ``progress`` is outside 0 to 100.
        TypeError: ``progress`` is not a number.
    """
    try:
        artifact_id = str(uuid.UUID(str(artifact_id)))
    except ValueError:
        raise ValueError(f"artifact_id {str(artifact_id)[:40]!r} is not an artifact id: pass the id "
                         "create_progress_artifact returned") from None
    _add({"artifact_id": artifact_id, "data": _progress(progress), "updated": utcnow()}, update=True)
    return artifact_id
