"""FastAPI dependencies every route uses: the store, and who is calling with which scope.

    @router.get("/flow-runs")
    def list_runs(db: Database = Depends(database), caller: Caller = Depends(require("read"))): ...

Scopes are ordered ``read < run < admin``. A request without a valid key gets 401, one whose
key lacks the scope 403. With auth off (``create_app(auth=False)``, or ``auth=None`` while
no API key exists) every caller is ``Caller(name=None, scope="admin")``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from plait._store.database import Database
from plait.server._errors import ApiProblem

__all__ = ["SCOPES", "Caller", "database", "require", "auth_enabled"]

SCOPES = ("read", "run", "admin")
# auth=None: how long "no API key exists" is believed before asking the store again
_OPEN_RECHECK_SECONDS = 2.0

_bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="plait API key",
    description="An API key made by `plait server api-key create NAME --scope read|run|admin`.",
)


Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


@dataclass(frozen=True)
class Caller:
    """Who sent a request: the API key's name (None when auth is off) and its scope."""

    name: str | None
    scope: str

    def allows(self, scope: str) -> bool:
        """Whether this caller's scope includes ``scope`` (``admin`` includes ``run``...).

        Raises:
            ValueError: ``scope`` is not one of read, run, admin.
        """
        return _rank(self.scope) >= _rank(scope)


def _rank(scope: str) -> int:
    try:
        return SCOPES.index(scope)
    except ValueError:
        raise ValueError(f"unknown scope {scope!r}; use one of: {', '.join(SCOPES)}") from None


def database(request: Request) -> Database:
    """The store this app serves (``create_app(database)``)."""
    db: Database = request.app.state.database
    return db


def auth_enabled(request: Request) -> bool:
    """Whether requests to this app need an API key.

    ``create_app(auth=None)`` turns auth on as soon as an API key exists in the store (and
    keeps it on): a server started open on loopback closes once someone makes a key.

    Raises:
        DatabaseError: The store cannot be read.
    """
    state = request.app.state
    if state.auth is not None:
        return bool(state.auth)
    now = time.monotonic()
    if now < state.open_until:
        return False
    from plait._store.api_keys import api_keys_exist

    if api_keys_exist(state.database):
        state.auth = True
        return True
    state.open_until = now + _OPEN_RECHECK_SECONDS
    return False


def _unauthorized(message: str) -> ApiProblem:
    return ApiProblem(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def _dependency(scope: str) -> Callable[..., Caller]:
    def caller(request: Request, credentials: Bearer) -> Caller:
        if not auth_enabled(request):
            return Caller(name=None, scope="admin")
        if credentials is None:
            raise _unauthorized(
                "this route needs an API key: send `Authorization: Bearer <key>` (make one with "
                "`plait server api-key create NAME --scope read|run|admin` on the server)"
            )
        from plait._store.api_keys import verify_api_key

        key = verify_api_key(request.app.state.database, credentials.credentials)
        if key is None:
            raise _unauthorized("the API key is unknown, revoked or expired; ask for a new one")
        found = Caller(name=str(key["name"]), scope=str(key["scope"]))
        if not found.allows(scope):
            raise ApiProblem(
                403, "forbidden",
                f"this route needs an API key with scope {scope!r}; the key {found.name!r} has scope {found.scope!r}",
                {"needs": scope, "has": found.scope},
            )
        request.state.caller = found
        return found

    caller.__name__ = f"require_{scope}"
    return caller


_REQUIRES = {scope: _dependency(scope) for scope in SCOPES}


def require(scope: str) -> Callable[..., Caller]:
    """A dependency that lets only callers with ``scope`` (or a higher one) through.

    Use as ``caller: Caller = Depends(require("read"))``; the same function is returned for
    the same scope, so FastAPI resolves it once per request.

    Raises:
        ValueError: ``scope`` is not one of read, run, admin (at import time of the route).
    """
    _rank(scope)
    return _REQUIRES[scope]
