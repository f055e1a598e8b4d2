"""Smoke tests of the dashboard's test fixtures and of what every page must get right: the
store holds the real runs, an API-key login is required, and no page sends a saved secret."""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin, urlparse

import httpx
import pytest


# -- the fixture store (through the API, no browser) ----------------------------------------------
def test_store_holds_the_dbt_build_with_its_lineage(ui_server: Any) -> None:
    print(f"ui_server set-up seconds: {ui_server.timings}")
    run = ui_server.api(f"/flow-runs/{ui_server.runs['dbt']}")
    assert run["flow_name"] == "warehouse-daily" and run["state_type"] == "COMPLETED"
    # dbt's node runs: short names, dbt's unique id kept as a parameter
    dbt_nodes = {t["parameters"]["unique_id"]: t for t in run["task_runs"] if "unique_id" in (t["parameters"] or {})}
    assert "model.shop_warehouse.stg_orders" in dbt_nodes and "model.shop_warehouse.daily_revenue" in dbt_nodes
    assert dbt_nodes["model.shop_warehouse.stg_orders"]["task_name"] == "stg_orders"
    ids = {t["id"]: unique for unique, t in dbt_nodes.items()}
    edges = {(ids.get(up["id"]), unique) for unique, t in dbt_nodes.items() for up in t["upstream"]
             if up["kind"] == "wait_for"}
    # the manifest's lineage: a source test, then stg_orders, then the marts built on it
    assert ("model.shop_warehouse.stg_orders", "model.shop_warehouse.daily_revenue") in edges
    assert ("test.shop_warehouse.source_unique_raw_orders_order_id.2e0765462f",
            "model.shop_warehouse.stg_orders") in edges
    assert all(t["state_type"] == "COMPLETED" for t in dbt_nodes.values())


def test_store_holds_a_failed_and_a_nested_run(ui_server: Any) -> None:
    failed = ui_server.api(f"/flow-runs/{ui_server.runs['failed']}")
    assert failed["flow_name"] == "ui-failed" and failed["state_type"] == "FAILED"
    assert any(t["state_type"] == "FAILED" and "first bad row" in (t["state_message"] or "")
               for t in failed["task_runs"])

    nested = ui_server.api(f"/flow-runs/{ui_server.runs['nested']}")
    assert nested["state_type"] == "COMPLETED"
    assert [s["flow_name"] for s in nested["subflows"]] == ["ui-nested-child"]
    assert len([t for t in nested["task_runs"] if t["task_name"] == "square"]) == 5
    children = ui_server.api("/flow-runs", parent=ui_server.runs["nested"])["items"]
    assert [c["flow_name"] for c in children] == ["ui-nested-child"]


def test_saved_secret_is_masked_by_the_api(ui_server: Any) -> None:
    listed = httpx.get(f"{ui_server.api_url}/v1/blocks/documents", headers=ui_server.headers("admin"), timeout=30)
    listed.raise_for_status()
    assert {"ui-token", "ui-warehouse"} <= {d["name"] for d in listed.json()["items"]}
    for ref in ("secret/ui-token", "database-credentials/ui-warehouse"):
        one = httpx.get(f"{ui_server.api_url}/v1/blocks/documents/{ref}", headers=ui_server.headers("admin"),
                        timeout=30)
        assert one.status_code == 200, one.text
        assert ui_server.secret_value not in one.text
        data = one.json()["data"]
        masked = data["value"] if "value" in data else data["password"]
        assert set(masked) == {"*"}, data
    assert ui_server.secret_value not in listed.text


# -- the capture machinery (needs Chromium, not the pages) -------------------------------------------
@pytest.mark.ui
def test_page_captures_bodies_and_server_sent_events(page: Any, ui_server: Any, captured_text: Any) -> None:
    page.goto("/api/v1/health")
    dbt = ui_server.runs["dbt"]
    answer = page.evaluate("id => fetch('/api/v1/flow-runs/' + id).then(r => r.status)", dbt)
    assert answer == 200  # the login cookie is an API key to the API too
    # the stored events replayed from the start (the runs above left some), named by kind: the
    # wrapped EventSource keeps those the page listens to, CDP every one
    page.evaluate("() => { window.__stream = new EventSource('/api/v1/events/stream?after=0'); "
                  "window.__stream.addEventListener('flow-run.state-changed', () => {}); }")
    page.wait_for_function("(window.__plaitSSE || []).length > 0")
    for _ in range(50):
        if page.captured_sse:
            break
        page.wait_for_timeout(100)
    assert page.captured_sse, "CDP reported no EventSource message"
    text = captured_text(page)
    assert '"kind":"flow-run.state-changed"' in text
    assert dbt in text
    assert any(url.endswith(f"/api/v1/flow-runs/{dbt}") for url, _ in page.captured)


# -- login -----------------------------------------------------------------------------------------
@pytest.mark.ui
def test_login_is_required_and_takes_an_api_key(anon_page: Any, ui_server: Any, shot: Any) -> None:
    page = anon_page
    page.goto("/")
    assert urlparse(page.url).path == "/login"
    key_field = page.locator("input[name=api_key]")
    assert key_field.count() == 1
    shot(page, "login")

    key_field.fill("plait_not-a-key-0000")
    page.locator("form[action='/login'] [type=submit]").click()
    page.wait_for_load_state()
    assert urlparse(page.url).path == "/login"
    assert "unknown" in page.locator("[role=alert], .error").first.inner_text()
    assert ui_server.admin_key not in page.content()

    page.locator("input[name=api_key]").fill(ui_server.read_key)
    page.locator("form[action='/login'] [type=submit]").click()
    page.wait_for_url(ui_server.url + "/")
    assert "Runs" in page.locator("h1").first.inner_text()
    cookie = next(c for c in page.context.cookies() if c["name"] == "plait_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie").find("plait_session") == -1


# -- secrets ---------------------------------------------------------------------------------------
_SKIP_LINKS = ("/logout", "/ui/static/", "/api/")


def _same_site_links(page: Any, base: str) -> set[str]:
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
    links = set()
    for href in hrefs:
        url = urljoin(page.url, href).split("#")[0]
        if url.startswith(base) and not urlparse(url).path.startswith(_SKIP_LINKS):
            links.add(url)
    return links


@pytest.mark.ui
def test_no_page_sends_a_saved_secret(page: Any, ui_server: Any, shot: Any, captured_text: Any) -> None:
    secret = ui_server.secret_value
    main = ["/", f"/flow-runs/{ui_server.runs['dbt']}", "/blocks"]
    refused: dict[str, int] = {}
    links: set[str] = set()
    for path in main:
        answer = page.goto(path)
        if answer is None or answer.status >= 400:
            refused[path] = answer.status if answer else 0
        page.wait_for_timeout(500)  # live updates and htmx fragments arrive
        shot(page, "secret-" + (path.strip("/").replace("/", "-")[:40] or "runs"))
        assert secret not in captured_text(page), f"{path} sent the saved secret"
        links |= _same_site_links(page, ui_server.url)
    for url in sorted(links)[:60]:
        page.goto(url)
        page.wait_for_timeout(200)
        assert secret not in captured_text(page), f"{url} sent the saved secret"
    # each page answered, so the check above saw what they send: the blocks page named the block
    assert not refused, f"pages that did not answer: {refused}"
    assert "ui-token" in captured_text(page)
