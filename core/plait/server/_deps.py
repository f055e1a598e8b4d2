"""FastAPI dependencies every route uses: the store, and who is calling with which scope.

    @router.get("/flow-runs")
    def list_runs(db: Database = Depends(database), caller: Caller = Depends(require("read"))): ...

Scopes are ordered ``read < run < admin``. A request without a valid key gets 401, one whose
key lacks the scope 403. The dashboard's login cookie (``SESSION_COOKIE``, holding an API
key) counts as the key too; a request that changes something and brings only the cookie must
also carry the ``X-Plait-CSRF`` header (``csrf_token(key)``), which another site cannot read
or forge. With auth off (``create_app(auth=False)``, or ``auth=None`` while
no API key exists) every caller is ``Caller(name=None, scope="admin")``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from plait._store.database import Database
from plait.server._errors import ApiProblem

__all__ = ["SCOPES", "SESSION_COOKIE", "CSRF_HEADER", "Caller", "database", "require", "auth_enabled", "csrf_token"]

SCOPES = ("read", "run", "admin")
SESSION_COOKIE = "plait_session"
CSRF_HEADER = "X-Plait-CSRF"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
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


def csrf_token(api_key: str | None) -> str:
    """The anti-forgery token of a dashboard session: pages send it back with every change.

    Derived from the session's key (with auth off, from a fixed string): a page of this server
    can embed it, another site never learns it.
    """
    return hmac.new((api_key or "plait: auth off").encode(), b"plait csrf", hashlib.sha256).hexdigest()[:32]


def _cookie_key(request: Request) -> str | None:
    """The API key of the dashboard cookie, once its CSRF header is checked for changes."""
    key = request.cookies.get(SESSION_COOKIE)
    if not key:
        return None
    if request.method not in _SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent, csrf_token(key)):
            raise ApiProblem(
                403, "csrf",
                f"a change sent with the dashboard's cookie needs the {CSRF_HEADER} header of its page; "
                "reload the page, or send `Authorization: Bearer <key>` instead of the cookie",
            )
    return key


def _unauthorized(message: str) -> ApiProblem:
    return ApiProblem(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def _dependency(scope: str) -> Callable[..., Caller]:
    def caller(request: Request, credentials: Bearer) -> Caller:
        if not auth_enabled(request):
            return Caller(name=None, scope="admin")
        secret = credentials.credentials if credentials is not None else _cookie_key(request)
        if secret is None:
            raise _unauthorized(
                "this route needs an API key: send `Authorization: Bearer <key>` (make one with "
                "`plait server api-key create NAME --scope read|run|admin` on the server)"
            )
        from plait._store.api_keys import verify_api_key

        key = verify_api_key(request.app.state.database, secret)
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
