"""Fixtures of the dashboard's browser tests: a real server with real runs, and Chromium.

- ``ui_server`` (session): ``plait server start`` on a SQLite file with auth on, its store filled
  by real flow runs recorded through the API (as a worker's are): ``runs["dbt"]`` the main job
  (examples/warehouse, its dbt build a task run per node with wait_for edges), ``runs["failed"]``
  (tests/ui/flows.py ``ui-failed``), ``runs["nested"]`` (``ui-nested``: a subflow and mapped
  tasks). A saved ``secret`` block ``ui-token`` and a ``database-credentials`` block
  ``ui-warehouse`` both hold ``ui_server.secret_value``, which no page may ever send.
- ``browser`` (per test file): Debian's Chromium at /usr/bin/chromium driven by Playwright (it
  downloads no browser of its own). Missing: the tests skip, or fail with PLAIT_REQUIRE_UI=1.
- ``page``: logged in as admin (the ``plait_session`` cookie that /login sets); ``anon_page``:
  no cookie. On both, ``page.captured`` is every (url, body text) the browser received, and
  ``captured_text(page)`` (a fixture; also ``page.captured_text()``) that plus the headers
  and every Server-Sent Event's data.
- ``shot``: ``shot(page, name)`` saves a full-page screenshot under $PLAIT_UI_ARTIFACTS
  (default tests/ui/artifacts/, git-ignored) and returns its path.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from plait.testing import ServerHandle, running_server

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SESSION_COOKIE = "plait_session"
FLOWS = HERE / "flows.py"
# run name -> flow name whose newest top-level run it is
RUN_FLOWS = {"dbt": "warehouse-daily", "failed": "ui-failed", "nested": "ui-nested"}
_RECORD_TIMEOUT = 240.0
# content types whose bodies are not text (everything else is captured as text)
_BINARY = re.compile(r"^(image/(?!svg)|font/|audio/|video/|application/(octet-stream|font|x-font|zip|gzip|pdf|wasm))")

# Wraps EventSource before any page script runs: every message's data, whatever its event
# name, lands in window.__plaitSSE (the stream's body never ends, so no response has it).
_SSE_CAPTURE = """
(() => {
  if (!window.EventSource || window.EventSource.__plaitWrapped) return;
  window.__plaitSSE = window.__plaitSSE || [];
  const Original = window.EventSource;
  const push = (event) => { window.__plaitSSE.push(String(event.data)); };
  class Captured extends Original {
    constructor(url, init) {
      super(url, init);
      this.__plaitTypes = new Set(["message"]);
      Original.prototype.addEventListener.call(this, "message", push);
    }
    addEventListener(type, listener, options) {
      if (!this.__plaitTypes.has(type) && !["open", "error"].includes(type)) {
        this.__plaitTypes.add(type);
        Original.prototype.addEventListener.call(this, type, push);
      }
      return super.addEventListener(type, listener, options);
    }
  }
  Captured.__plaitWrapped = true;
  window.EventSource = Captured;
})();
"""


@dataclass
class UIServer:
    """The server under test, with the runs and the secret its store holds.

    Attributes:
        runs: name -> flow run id ("dbt", "failed", "nested").
        secret_value: The secret saved in blocks ``secret/ui-token`` and
            ``database-credentials/ui-warehouse``; no page may send it to the browser.
        timings: Seconds each part of the set-up took (reported by the smoke test).
    """

    handle: ServerHandle
    root: Path
    runs: dict[str, str] = field(default_factory=dict)
    secret_value: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.handle.url

    @property
    def api_url(self) -> str:
        return self.handle.api_url

    @property
    def admin_key(self) -> str:
        return self.handle.admin_key

    @property
    def run_key(self) -> str:
        return self.handle.run_key

    @property
    def read_key(self) -> str:
        return self.handle.read_key

    @property
    def env(self) -> dict[str, str]:
        """The server process's environment (its PLAIT_HOME and PLAIT_DATABASE_URL)."""
        return self.handle.env

    def headers(self, scope: str = "admin") -> dict[str, str]:
        return self.handle.headers(scope)

    def api(self, path: str, scope: str = "read", **params: Any) -> Any:
        """GET ``/api/v1{path}`` with the key of ``scope``; the decoded JSON (raises on >= 400)."""
        answer = httpx.get(f"{self.api_url}/v1{path}", params=params, headers=self.headers(scope), timeout=30)
        answer.raise_for_status()
        return answer.json()

    def flow_env(self, name: str = "flow", scope: str = "run") -> dict[str, str]:
        """Environment of a process that records to this server, as a worker does: only
        PLAIT_API_URL, PLAIT_API_KEY and its own PLAIT_HOME (``root/name``)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
        key = {"admin": self.admin_key, "run": self.run_key, "read": self.read_key}[scope]
        env.update(PLAIT_HOME=str(self.root / name), PLAIT_API_URL=self.api_url, PLAIT_API_KEY=key)
        return env

    def start_flow(self, name: str, *args: str, home: str | None = None) -> subprocess.Popen[str]:
        """Start ``tests/ui/flows.py NAME ARGS`` recording to this server (e.g. ``"slow", "20"``
        for a run whose logs tail live); the caller waits for or kills it."""
        return subprocess.Popen([sys.executable, str(FLOWS), name, *args], env=self.flow_env(home or name),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                text=True)

    def newest_run(self, flow_name: str) -> str:
        """Id of the newest top-level flow run of ``flow_name`` (via ``/flow-runs?flow=``)."""
        items = self.api("/flow-runs", flow=flow_name, top_level="true", limit=1)["items"]
        if not items:
            raise LookupError(f"the server has no run of flow {flow_name!r}")
        return str(items[0]["id"])


def _blocks_file(root: Path) -> Path:
    """Blocks as code holding the secret by reference (${env:...}): it is on no command line."""
    path = root / "ui-blocks.toml"
    path.write_text(
        '[[blocks]]\ntype = "secret"\nname = "ui-token"\n[blocks.values]\nvalue = "${env:PLAIT_UI_SECRET}"\n\n'
        '[[blocks]]\ntype = "database-credentials"\nname = "ui-warehouse"\n[blocks.values]\n'
        'driver = "postgresql+psycopg"\nhost = "warehouse.internal"\nport = 5432\ndatabase = "shop"\n'
        'username = "loader"\npassword = "${env:PLAIT_UI_SECRET}"\n'
    )
    return path


def _finish(name: str, process: subprocess.Popen[str], expect_ok: bool, started: float) -> None:
    try:
        out, _ = process.communicate(timeout=max(1.0, _RECORD_TIMEOUT - (time.monotonic() - started)))
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
        raise RuntimeError(f"ui_server: {name} did not finish within {_RECORD_TIMEOUT:g}s:\n{out[-4000:]}") from None
    if (process.returncode == 0) != expect_ok:
        raise RuntimeError(f"ui_server: {name} exited {process.returncode} (expected "
                           f"{'0' if expect_ok else 'non-zero'}):\n{out[-4000:]}")


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UIServer]:
    """A real server on SQLite with auth on, holding real runs and a saved secret."""
    root = tmp_path_factory.mktemp("ui")
    began = time.monotonic()
    with running_server(f"sqlite:///{root}/plait.db", root / "server") as handle:
        server = UIServer(handle=handle, root=root, secret_value=f"plait-ui-secret-{secrets.token_hex(12)}")
        server.timings["server"] = round(time.monotonic() - began, 2)
        started = time.monotonic()
        # the runs are recorded side by side: each is its own process, as a worker's would be
        jobs: list[tuple[str, subprocess.Popen[str], bool]] = [
            ("dbt", subprocess.Popen([sys.executable, str(REPO / "examples" / "warehouse" / "flow.py")],
                                     env=server.flow_env("dbt"), cwd=REPO, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True), True),
            ("failed", server.start_flow("failed"), False),
            ("nested", server.start_flow("nested"), True),
            ("blocks", subprocess.Popen([sys.executable, "-m", "plait.cli", "block", "apply",
                                         str(_blocks_file(root))],
                                        env={**server.flow_env("blocks", "admin"),
                                             "PLAIT_UI_SECRET": server.secret_value},
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, text=True), True),
        ]
        try:
            for name, process, expect_ok in jobs:
                _finish(name, process, expect_ok, started)
            server.timings["recording"] = round(time.monotonic() - started, 2)
        finally:
            for _, process, _ in jobs:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        server.runs = {name: server.newest_run(flow_name) for name, flow_name in RUN_FLOWS.items()}
        server.timings["total"] = round(time.monotonic() - began, 2)
        yield server


# -- the browser ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (skips when absent, unless
    PLAIT_REQUIRE_UI=1: then the tests fail). Per test file: Playwright's sync API keeps an
    event loop running on this thread while it is started, and the next file the worker
    takes (asyncio.run in tests of async flows) must find none."""
    required = os.environ.get("PLAIT_REQUIRE_UI") == "1"
    missing = None
    if not CHROMIUM.exists():
        missing = f"{CHROMIUM} is missing: install Debian's Chromium (`apt-get install -y chromium`)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "playwright is not installed: `pip install -e '.[test]'`"
    if missing:
        if required:
            pytest.fail(f"PLAIT_REQUIRE_UI=1 but {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()


def _capture(page: Any) -> None:
    """Keep every response the page receives: ``page.captured`` (url, body text) and
    ``page.captured_headers`` (url, headers as text)."""
    page.captured = []
    page.captured_headers = []

    def on_response(response: Any) -> None:
        headers = response.headers
        page.captured_headers.append((response.url, "\n".join(f"{k}: {v}" for k, v in headers.items())))
        kind = headers.get("content-type", "").lower()
        if "text/event-stream" in kind or _BINARY.match(kind):
            return  # a stream's body never ends: its events are caught by the init script
        try:
            body = response.body()
        except Exception:  # redirects and aborted requests have no body
            return
        page.captured.append((response.url, body.decode("utf-8", errors="replace")))

    page.on("response", on_response)
    page.captured_text = lambda: _captured_text(page)


def _new_page(browser: Any, server: UIServer, key: str | None) -> Iterator[Any]:
    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    context.add_init_script(_SSE_CAPTURE)
    if key:
        # what POST /login sets: the API key in an HttpOnly, SameSite=Strict cookie
        context.add_cookies([{"name": SESSION_COOKIE, "value": key, "url": server.url,
                              "httpOnly": True, "sameSite": "Strict"}])
    page = context.new_page()
    _capture(page)
    # Chromium also reports each EventSource message over CDP, named events nobody listens to too
    page.captured_sse = []
    cdp = context.new_cdp_session(page)
    cdp.on("Network.eventSourceMessageReceived", lambda event: page.captured_sse.append(str(event.get("data"))))
    cdp.send("Network.enable")
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def page(browser: Any, ui_server: UIServer) -> Iterator[Any]:
    """A page logged in as admin at ``ui_server.url`` (relative URLs work: ``page.goto("/")``)."""
    yield from _new_page(browser, ui_server, ui_server.admin_key)


@pytest.fixture
def anon_page(browser: Any, ui_server: UIServer) -> Iterator[Any]:
    """A page with no login cookie."""
    yield from _new_page(browser, ui_server, None)


def _captured_text(page: Any) -> str:
    """Everything the browser received on ``page`` so far: response bodies and headers, and
    the data of every Server-Sent Event (``window.__plaitSSE`` of the current document)."""
    parts = [f"{url}\n{text}" for url, text in page.captured]
    parts += [f"{url}\n{text}" for url, text in page.captured_headers]
    try:
        events = page.evaluate("window.__plaitSSE || []")
    except Exception:  # the page is closed or mid-navigation
        events = []
    parts += [str(data) for data in events]
    parts += list(page.captured_sse)
    return "\n".join(parts)


@pytest.fixture
def captured_text() -> Any:
    """``captured_text(page)``: every body, header and SSE data the browser received on
    ``page`` as one string (also ``page.captured_text()``). A fixture, as test modules cannot
    import this conftest (pytest runs with --import-mode=importlib)."""
    return _captured_text


def artifacts_dir() -> Path:
    return Path(os.environ.get("PLAIT_UI_ARTIFACTS") or HERE / "artifacts")


@pytest.fixture
def shot() -> Any:
    """``shot(page, name)``: a full-page screenshot ``NAME.png`` in the artifacts folder."""

    def take(page: Any, name: str) -> Path:
        folder = artifacts_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / (re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") + ".png")
        page.screenshot(path=str(path), full_page=True)
        return path

    return take

