"""The artifacts repository: every SQL statement about ``artifacts``.

Artifacts reach the store as recorder records (``plait._batch.BatchRows.artifacts`` and
``artifact_updates``), written by ``write_artifacts_in`` inside the batch's transaction,
locally or on a server. Both kinds are idempotent, so a batch sent twice or a journal
replayed after its last batch was stored changes nothing:

- a new artifact is inserted unless a row with its id exists;
- a progress update sets ``data`` and ``updated`` of its progress artifact only when it is
  not older than what the row holds (an update replayed late never undoes a newer one).

Rows come back as dicts, times as ISO 8601 text in UTC. Lists are keyset pages, newest
first, ``{"items": [...], "next_cursor": str|null}``; a listing cuts large ``data`` as the
other listings do (``plait._store._paging``), ``get_artifact`` answers it whole.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, exists, or_, select
from sqlalchemy.engine import Connection, Row

from plait._store._paging import check_limit, decode_cursor, encode_cursor, json_columns, json_value
from plait._store.database import Database
from plait._store.models import ARTIFACTS

__all__ = [
    "ARTIFACTS",
    "ARTIFACT_TYPES",
    "write_artifacts_in",
    "list_artifacts",
    "get_artifact",
    "artifact_versions",
]

ARTIFACTS: Table = ARTIFACTS
_A = ARTIFACTS
ARTIFACT_TYPES = ("markdown", "table", "link", "progress")
_LISTING = "artifacts"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# -- writing (inside a recorder batch's transaction) ----------------------------------------------
def write_artifacts_in(conn: Connection, artifacts: list[dict[str, Any]], updates: list[dict[str, Any]]) -> None:
    """Store new artifacts, then apply progress updates, in the caller's transaction.

    Both are idempotent (see the module docstring). An update whose artifact is not stored
    (yet, or at all) changes nothing.

    Raises:
        SQLAlchemyError: A statement failed (the caller rolls back).
    """
    if artifacts:
        rows = [{**row, "updated": row.get("updated") or row["created"]} for row in artifacts]
        dialect = conn.dialect.name
        if dialect in ("postgresql", "sqlite"):
            from sqlalchemy.dialects import postgresql, sqlite

            insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_A)
            conn.execute(insert.on_conflict_do_nothing(index_elements=["id"]), rows)
        else:  # pragma: no cover - plait supports SQLite and PostgreSQL
            stored = {r[0] for r in conn.execute(select(_A.c.id).where(_A.c.id.in_([r["id"] for r in rows])))}
            fresh = [r for r in rows if r["id"] not in stored]
            if fresh:
                conn.execute(_A.insert(), fresh)
    for update in updates:  # few: a progress bar moves a handful of times per run
        conn.execute(
            _A.update()
            .where(_A.c.id == update["artifact_id"], _A.c.type == "progress", _A.c.updated <= update["updated"])
            .values(data=update["data"], updated=update["updated"])
        )


# -- reading --------------------------------------------------------------------------------------
def _newest_of_its_key() -> Any:
    """Rows no newer version of the same key exists for (unkeyed rows always are)."""
    newer = _A.alias("newer")
    return or_(_A.c.key.is_(None), ~exists(
        select(newer.c.id).where(
            newer.c.key == _A.c.key,
            or_(newer.c.created > _A.c.created, and_(newer.c.created == _A.c.created, newer.c.id > _A.c.id)),
        )
    ))


def _item(row: Row[Any], data: Any) -> dict[str, Any]:
    return {
        "id": row.id, "key": row.key, "type": row.type, "description": row.description, "data": data,
        "flow_run_id": row.flow_run_id, "task_run_id": row.task_run_id,
        "created": _iso(row.created), "updated": _iso(row.updated),
    }


def _text(value: Any, what: str, limit: int = 255) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ValueError(f"{what}: a non-empty string of at most {limit} characters, not {str(value)[:40]!r}")
    return value


def list_artifacts(
    db: Database,
    *,
    key: str | None = None,
    flow_run_id: str | None = None,
    task_run_id: str | None = None,
    type: str | None = None,  # noqa: A002 - the field's name
    latest: bool | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """One page of artifacts, newest first: ``{"items": [...], "next_cursor": ...}``.

    Args:
        key: Only this key's versions.
        flow_run_id: Only those made in this flow run (its task runs' included).
        task_run_id: Only those made in this task run.
        type: Only this type (markdown, table, link, progress).
        latest: Only the newest version of each key (unkeyed artifacts are always listed).
            None: True unless a run is named (a run's page lists every artifact it made).
        limit: Items per page (1 to 1000).
        cursor: ``next_cursor`` of the previous page.

    Raises:
        ValueError: A filter, the limit or the cursor is malformed (names it).
        DatabaseError: The database cannot be read.
    """
    from plait._store.pages import _after, _micros, _page  # pages imports runs, which imports this module

    limit = check_limit(limit)
    if latest is None:
        latest = flow_run_id is None and task_run_id is None
    query = select(_A.c.id, _A.c.key, _A.c.type, _A.c.description, _A.c.flow_run_id, _A.c.task_run_id,
                   _A.c.created, _A.c.updated, *json_columns(_A.c.data, "data", db.dialect))
    if key is not None:
        query = query.where(_A.c.key == _text(key, "key"))
    if flow_run_id is not None:
        query = query.where(_A.c.flow_run_id == _text(flow_run_id, "flow_run_id", 36))
    if task_run_id is not None:
        query = query.where(_A.c.task_run_id == _text(task_run_id, "task_run_id", 36))
    if type is not None:
        if type not in ARTIFACT_TYPES:
            raise ValueError(f"type: one of {', '.join(ARTIFACT_TYPES)}, not {str(type)[:40]!r}")
        query = query.where(_A.c.type == type)
    if latest:
        query = query.where(_newest_of_its_key())
    if cursor is not None:
        query = query.where(_after(_A.c.created, _A.c.id, decode_cursor(cursor, _LISTING, (int, str)), True))
    query = query.order_by(_A.c.created.desc(), _A.c.id.desc()).limit(limit + 1)
    with db.connect() as conn:
        rows, next_cursor = _page(
            conn.execute(query).all(), limit, lambda r: encode_cursor(_LISTING, [_micros(r.created), r.id])
        )
    return {"items": [_item(r, json_value(r.data_size, r.data_text)) for r in rows], "next_cursor": next_cursor}


def get_artifact(db: Database, artifact_id: str) -> dict[str, Any] | None:
    """One artifact whole, by id (None: no such artifact).

    Raises:
        DatabaseError: The database cannot be read.
    """
    if not isinstance(artifact_id, str) or not artifact_id or len(artifact_id) > 36:
        return None
    with db.connect() as conn:
        row = conn.execute(select(_A).where(_A.c.id == artifact_id)).first()
    return None if row is None else _item(row, row.data)


def artifact_versions(db: Database, key: str, *, limit: int = 100) -> list[dict[str, Any]]:
    """Every version of ``key``, newest first, whole (at most ``limit``; empty: no such key).

    Raises:
        ValueError: ``key`` or ``limit`` is malformed.
        DatabaseError: The database cannot be read.
    """
    limit = check_limit(limit)
    query = (select(_A).where(_A.c.key == _text(key, "key"))
             .order_by(_A.c.created.desc(), _A.c.id.desc()).limit(limit))
    with db.connect() as conn:
        return [_item(row, row.data) for row in conn.execute(query)]
