"""Artifacts over the API: what runs made for people to read (``plait.artifacts``).

Artifacts are written as recorder records (``POST /records``), so these routes only read;
they need scope ``read``. Content was masked before it was stored (by the recording process,
and again by this server for the secrets it knows).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from plait._store.database import Database
from plait.artifacts import KEY_PATTERN, MAX_KEY_LENGTH
from plait.server._deps import Caller, database, require
from plait.server._errors import ERROR_RESPONSES, ApiProblem
from plait.server._params import CursorQuery, RunIdQuery, from_store, limit_query
from plait.server._wire import ID_PATTERN

__all__ = ["router"]

router = APIRouter(tags=["artifacts"])

Store = Annotated[Database, Depends(database)]
Reader = Annotated[Caller, Depends(require("read"))]
KeyPath = Annotated[str, Path(min_length=1, max_length=MAX_KEY_LENGTH, pattern=KEY_PATTERN,
                              examples=["nightly-report"], description="The artifact key.")]
IdPath = Annotated[str, Path(min_length=1, max_length=36, pattern=ID_PATTERN, description="The artifact's id (uuid).")]
ArtifactType = Literal["markdown", "table", "link", "progress"]


class ArtifactOut(BaseModel):
    """An artifact: one version of its key (or a keyless one)."""

    id: str
    key: str | None = None
    type: ArtifactType
    description: str | None = None
    data: Any = Field(description="markdown: the text; table: {columns, rows}; link: {link, text}; "
                                  "progress: a number from 0 to 100. Cut in lists when large.")
    flow_run_id: str | None = None
    task_run_id: str | None = None
    created: str
    updated: str


class ArtifactsPage(BaseModel):
    items: list[ArtifactOut]
    next_cursor: str | None = None


class ArtifactVersions(BaseModel):
    key: str
    items: list[ArtifactOut] = Field(description="Every version of the key, newest first.")


@router.get("/artifacts", response_model=ArtifactsPage, responses=ERROR_RESPONSES, summary="List artifacts")
def list_artifacts(
    db: Store,
    caller: Reader,
    key: Annotated[str | None, Query(min_length=1, max_length=MAX_KEY_LENGTH, pattern=KEY_PATTERN,
                                     description="only this key's versions")] = None,
    flow_run_id: RunIdQuery = None,
    task_run_id: RunIdQuery = None,
    type: Annotated[ArtifactType | None, Query(description="only this type")] = None,  # noqa: A002
    latest: Annotated[bool | None, Query(description="only each key's newest version; default true unless "
                                                     "flow_run_id or task_run_id is given")] = None,
    limit: int = limit_query(50, 500),
    cursor: CursorQuery = None,
) -> Any:
    """Artifacts, newest first (keyset pages). Without a run filter each key shows only its
    newest version; a run's filter lists every artifact the run made."""
    from plait._store.artifacts import list_artifacts as stored

    return from_store(lambda: stored(db, key=key, flow_run_id=flow_run_id, task_run_id=task_run_id, type=type,
                                     latest=latest, limit=limit, cursor=cursor))


@router.get("/artifacts/key/{key}", response_model=ArtifactVersions, responses=ERROR_RESPONSES,
            summary="Versions of an artifact key")
def artifact_versions(key: KeyPath, db: Store, caller: Reader,
                      limit: int = limit_query(100, 1000)) -> Any:
    """Every version of ``key``, newest first, whole (404 ``artifact_not_found`` when the
    key has none)."""
    from plait._store.artifacts import artifact_versions as stored

    items = from_store(lambda: stored(db, key, limit=limit))
    if not items:
        raise ApiProblem(404, "artifact_not_found", f"no artifact with key {key!r}; `plait artifact ls` lists them",
                         {"resource": "artifact", "id": key})
    return {"key": key, "items": items}


@router.get("/artifacts/{id}", response_model=ArtifactOut, responses=ERROR_RESPONSES, summary="Get an artifact")
def get_artifact(id: IdPath, db: Store, caller: Reader) -> Any:  # noqa: A002
    """One artifact whole, by id (404 ``artifact_not_found``)."""
    from plait._store.artifacts import get_artifact as stored

    found = from_store(lambda: stored(db, id))
    if found is None:
        raise ApiProblem(404, "artifact_not_found", f"no artifact with id {id!r}; `plait artifact ls` lists them",
                         {"resource": "artifact", "id": id})
    return found
