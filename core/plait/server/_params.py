"""Query and path parameters the routes share, and turning store errors into API errors."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import Path, Query
from pydantic import Field

from plait.server._errors import ApiProblem
from plait.server._wire import ID_PATTERN
from plait.states import StateType

__all__ = [
    "RunIdPath",
    "HeldRunId",
    "RunIdQuery",
    "CursorQuery",
    "limit_query",
    "state_types",
    "min_level",
    "utc",
    "from_store",
    "not_found",
]

T = TypeVar("T")

_STATE_NAMES = ", ".join(t.value for t in StateType)

RunIdPath = Annotated[
    str, Path(min_length=1, max_length=36, pattern=ID_PATTERN, description="a run's id (uuid)")
]
# A run id inside a request body (a list of them, as a claim's ``holding``).
HeldRunId = Annotated[str, Field(min_length=1, max_length=36, pattern=ID_PATTERN)]
RunIdQuery = Annotated[
    str | None, Query(min_length=1, max_length=36, pattern=ID_PATTERN, description="a run's id (uuid)")
]
CursorQuery = Annotated[
    str | None,
    Query(min_length=1, max_length=500, description="`next_cursor` of the previous page (opaque)"),
]


def limit_query(default: int, maximum: int) -> Any:
    return Query(default, ge=1, le=maximum, description=f"items per page (1 to {maximum})")


def state_types(values: Sequence[str] | None) -> list[str] | None:
    """State filter values (any case) as state types.

    Raises:
        ApiProblem: 422 naming the unknown value.
    """
    if not values:
        return None
    out = []
    for value in values:
        name = value.strip().upper()
        if name not in StateType.__members__:
            raise ApiProblem(
                422, "validation_error", f"query parameter 'state': unknown state {value!r}; use one of {_STATE_NAMES}",
                [{"in": "query", "field": "state", "message": f"unknown state {value!r}", "type": "enum"}],
            )
        out.append(name)
    return out


def min_level(value: str | None) -> int | None:
    """A log level filter: a name (``info``, ``WARNING``) or a number (``30``).

    Raises:
        ApiProblem: 422 naming the unknown level.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return min(int(text), 1000)
    number = logging.getLevelNamesMapping().get(text.upper())
    if number is None:
        raise ApiProblem(
            422, "validation_error",
            f"query parameter 'level': unknown level {value!r}; use DEBUG, INFO, WARNING, ERROR, CRITICAL or a number",
            [{"in": "query", "field": "level", "message": f"unknown level {value!r}", "type": "enum"}],
        )
    return number


def utc(value: datetime | None) -> datetime | None:
    """A time filter in UTC (a time without an offset is taken to be UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def not_found(what: str, ident: str) -> ApiProblem:
    return ApiProblem(404, "not_found", f"no {what} with id {ident!r}", {"resource": what, "id": ident})


def from_store(call: Callable[[], T], what: str = "item", ident: str | None = None) -> T:
    """``call()``, with the store's refusals as API errors: a bad cursor (400), another bad
    value (400), an unknown id (404).

    Raises:
        ApiProblem: As above.
        DatabaseError: The store failed (503 for the client).
    """
    try:
        return call()
    except (KeyError, IndexError):
        raise  # a bug, not an unknown id: a 500 with the traceback in the log
    except LookupError as exc:
        if ident is not None:
            raise ApiProblem(404, "not_found", str(exc) or f"no {what} with id {ident!r}",
                             {"resource": what, "id": ident}) from None
        raise ApiProblem(404, "not_found", str(exc) or f"no such {what}") from None
    except ValueError as exc:
        text = str(exc)
        if "cursor" in text.lower():
            raise ApiProblem(400, "bad_cursor", f"{text}; pass the next_cursor of a page of this same list, "
                             "or leave cursor out for the first page") from None
        raise ApiProblem(400, "bad_request", text) from None
