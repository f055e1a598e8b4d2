"""Logging in to the dashboard with an API key, and out.

The key is checked by asking the API with it; once accepted it lives in an HttpOnly,
SameSite=Strict cookie (``Secure`` over https), so page scripts never see it and no other site
can send it. Changes also need the page's CSRF token (``plait.server._deps.csrf_token``).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from plait.server._deps import SESSION_COOKIE, auth_enabled
from plait.server.ui._base import check_csrf, form_data, render

router = APIRouter()

_WEEK = 7 * 24 * 3600


def _safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this server only (never ``//other.site``)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


@router.get("/login")
async def login_page(request: Request, next: str | None = None) -> Response:  # noqa: A002 - the query's name
    """The login form (straight to the runs page when this server needs no key)."""
    if not auth_enabled(request):
        return RedirectResponse(_safe_next(next), status_code=303)
    return render(request, "login.html", next=_safe_next(next), error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the key against the API; on success set the cookie and go where the user was."""
    import httpx

    form = await form_data(request)
    target = _safe_next(form.get("next"))
    origin = request.headers.get("origin")
    if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
        return render(request, "login.html", status=403, next=target,
                      error="this login form came from another site; open the dashboard's own /login page")
    key = form.get("api_key", "").strip()
    if not key:
        return render(request, "login.html", status=400, next=target, error="enter an API key")
    transport = httpx.ASGITransport(app=request.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://plait-dashboard") as client:
        answer = await client.get("/api/v1/flow-runs", params={"limit": 1},
                                  headers={"Authorization": f"Bearer {key}"})
    if answer.status_code in (401, 403):
        return render(request, "login.html", status=401, next=target,
                      error="that API key is unknown, revoked or expired; make one with "
                            "`plait server api-key create NAME --scope read|run|admin`")
    if answer.status_code != 200:
        return render(request, "login.html", status=503, next=target,
                      error=f"the server could not check the key just now (status {answer.status_code}); try again")
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, key, max_age=_WEEK, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
    return response


@router.post("/logout", dependencies=[Depends(check_csrf)])
async def logout(request: Request) -> Response:
    """Forget the key: the cookie is cleared."""
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response

