"""Variables over the API: named JSON values (``plait.variables`` talks to these routes when
``PLAIT_API_URL`` is set).

Reading needs scope ``read``; setting and unsetting need ``run`` (flows set variables as
they go, as they save blocks). Values are not secrets: they are answered as stored.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from plait._store.database import Database
from plait._store.variables import VariableExists
from plait.server._deps import Caller, database, require
from plait.server._errors import ERROR_RESPONSES, ApiProblem, ErrorOut
from plait.variables import MAX_NAME_LENGTH, NAME_PATTERN, check_name, check_tags, check_value

__all__ = ["router"]

router = APIRouter(tags=["variables"])

Store = Annotated[Database, Depends(database)]
Reader = Annotated[Caller, Depends(require("read"))]
Runner = Annotated[Caller, Depends(require("run"))]
NamePath = Annotated[str, Path(min_length=1, max_length=MAX_NAME_LENGTH, pattern=NAME_PATTERN,
                               examples=["warehouse_schema"], description="The variable's name.")]


class VariableOut(BaseModel):
    """A variable: a named JSON value (not a secret)."""

    id: str
    name: str
    value: Any = Field(description="Any JSON value.")
    tags: list[str]
    created: str | None = None
    updated: str | None = None


class VariablesPage(BaseModel):
    items: list[VariableOut]
    next_cursor: str | None = Field(default=None, description="Always null: every variable is in one page.")


class VariableIn(BaseModel):
    """The value to store under a name (``plait variable set NAME VALUE``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"value": {"schema": "analytics", "threads": 4}, "tags": ["team-data"], "overwrite": True},
    ]})

    value: Any = Field(description="Any JSON value, at most 5,000 characters as JSON text.")
    tags: list[str] | None = Field(default=None, max_length=50,
                                   description="Its tags; left out: an existing variable keeps its own.")
    overwrite: bool = Field(default=False, description="Replace an existing variable's value (else 409).")


def _missing(name: str) -> ApiProblem:
    return ApiProblem(404, "variable_not_found", f"no variable named {name!r}; `plait variable ls` lists them, "
                      f"`plait variable set {name} VALUE` makes it", {"resource": "variable", "id": name})


def _invalid(message: str) -> ApiProblem:
    return ApiProblem(422, "invalid_variable", message)


@router.get("/variables", response_model=VariablesPage, responses=ERROR_RESPONSES, summary="List variables")
def list_variables(db: Store, caller: Reader) -> Any:
    """Every variable by name, with its value."""
    from plait._store.variables import list_variables as stored

    return {"items": stored(db), "next_cursor": None}


@router.get("/variables/by-name/{name}", response_model=VariableOut, responses=ERROR_RESPONSES,
            summary="Get a variable")
def get_variable(name: NamePath, db: Store, caller: Reader) -> Any:
    """One variable by name (404 ``variable_not_found`` when there is none)."""
    from plait._store.variables import get_variable as stored

    found = stored(db, name)
    if found is None:
        raise _missing(name)
    return found


@router.put("/variables/by-name/{name}", response_model=VariableOut,
            responses={**ERROR_RESPONSES, 409: {"model": ErrorOut, "description": "It exists and overwrite is false"}},
            summary="Set a variable")
def set_variable(name: NamePath, body: VariableIn, db: Store, caller: Runner) -> Any:
    """Store a value under a name (needs scope run). An existing variable is refused (409
    ``variable_exists``) unless ``overwrite`` is true."""
    from plait._store.variables import set_variable as store_set

    try:
        check_name(name)
        check_value(name, body.value)
        tags = check_tags(body.tags)
    except ValueError as exc:
        raise _invalid(str(exc)) from None
    try:
        saved, _outcome = store_set(db, name, body.value, tags=tags, overwrite=body.overwrite)
    except VariableExists as exc:
        raise ApiProblem(409, "variable_exists", str(exc), {"resource": "variable", "id": name}) from None
    return saved


@router.delete("/variables/by-name/{name}", response_model=VariableOut, responses=ERROR_RESPONSES,
               summary="Unset a variable")
def delete_variable(name: NamePath, db: Store, caller: Runner) -> Any:
    """Delete a variable (needs scope run); answers what was deleted, or 404
    ``variable_not_found``."""
    from plait._store.variables import delete_variable as store_delete

    found = store_delete(db, name)
    if found is None:
        raise _missing(name)
    return found
