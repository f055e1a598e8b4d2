"""The dashboard: server-rendered pages at ``/`` over the same API every client uses.

``install_ui(app)`` mounts the vendored assets at ``/ui/static`` and the routes of every page
module in ``PAGE_MODULES``; each module defines ``router = APIRouter()`` with its full paths.
Pages read and change everything through ``/api/v1`` (``_base.ui_api``), with the browser's
own key from the login cookie.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

__all__ = ["install_ui", "PAGE_MODULES"]

PAGE_MODULES = (
    "plait.server.ui._session",
    "plait.server.ui._runs",
    "plait.server.ui._flow_run",
    "plait.server.ui._orchestration",
    "plait.server.ui._catalog",
)


def install_ui(app: FastAPI) -> None:
    """Serve the dashboard from ``app``: its pages, its assets, its login redirect."""
    from plait.server.app import include_routers
    from plait.server.ui._base import LoginNeeded, render

    app.mount("/ui/static", StaticFiles(directory=Path(__file__).parent / "static"), name="ui-static")
    include_routers(app, PAGE_MODULES, include_in_schema=False)

    async def login_needed(request: Request, exc: Exception) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.headers.get("HX-Request"):  # htmx follows no redirect of a fragment: send the page there
            return Response(status_code=204, headers={"HX-Redirect": f"/login?next={quote(target)}"})
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    async def api_refused(request: Request, exc: Exception) -> Response:
        """A page whose API call was refused shows why (only pages call the API in-process)."""
        from plait.client import ApiError

        assert isinstance(exc, ApiError)
        status = exc.status if exc.status and 400 <= exc.status < 600 else 502
        if request.url.path.startswith("/api/"):  # not a page: never HTML on the API's paths
            return JSONResponse({"code": "upstream", "message": exc.message}, status_code=status)
        return render(request, "error.html", status=status, message=exc.message)

    from plait.client import ApiError

    app.add_exception_handler(LoginNeeded, login_needed)
    app.add_exception_handler(ApiError, api_refused)
