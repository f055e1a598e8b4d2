"""The runs page in Chromium: the recorded runs listed, filtered (in the URL), summarised,
charted and updated live, on the real server of conftest.py."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

pytestmark = [pytest.mark.ui, pytest.mark.slow]


def _rows(page: Any) -> list[dict[str, str]]:
    return list(page.eval_on_selector_all("table.runs tbody tr", """rows => rows.map(r => ({
        id: r.dataset.runId, state: r.querySelector('[data-state]').dataset.state,
        name: r.cells[1].innerText.trim(), flow: r.cells[2].innerText.trim()}))"""))


def _settled(page: Any, action: Any) -> list[str]:
    """Run ``action`` (a user's input), wait until htmx has swapped what it asked for, and
    return the URLs the page requested meanwhile."""
    asked: list[str] = []

    def note(request: Any) -> None:
        asked.append(request.url)

    page.on("request", note)
    page.evaluate("() => { window.__settled = 0; document.body.addEventListener('htmx:afterSettle', "
                  "() => { window.__settled += 1; }); }")
    action()
    page.wait_for_function("window.__settled >= 2")  # the table, then its summary fragment
    page.wait_for_timeout(200)  # nothing else follows
    page.remove_listener("request", note)
    return asked


def test_the_runs_are_listed_with_state_flow_and_a_link_to_each(page: Any, ui_server: Any, shot: Any) -> None:
    page.goto("/")
    page.wait_for_selector("#runs-summary .summary")
    rows = {row["id"]: row for row in _rows(page)}
    for name, flow in (("dbt", "warehouse-daily"), ("failed", "ui-failed"), ("nested", "ui-nested")):
        run = rows[ui_server.runs[name]]
        assert run["flow"] == flow
    assert rows[ui_server.runs["failed"]]["state"] == "FAILED"
    assert rows[ui_server.runs["dbt"]]["state"] == "COMPLETED"
    # the badge says the state in words beside its colour
    badge = page.locator(f"tr[data-run-id='{ui_server.runs['failed']}'] .badge")
    assert "Failed" in badge.inner_text() and "state-failed" in (badge.get_attribute("class") or "")
    link = page.locator(f"tr[data-run-id='{ui_server.runs['dbt']}'] td:nth-child(2) a")
    assert link.get_attribute("href") == f"/flow-runs/{ui_server.runs['dbt']}"
    # times in the browser's zone, UTC on hover
    started = page.locator(f"tr[data-run-id='{ui_server.runs['dbt']}'] time").first
    assert started.get_attribute("title", timeout=2000).endswith("UTC") and "UTC" not in started.inner_text()
    # the subflow run names its parent
    child = next(r for r in rows.values() if r["flow"] == "ui-nested-child")
    parent = page.locator(f"tr[data-run-id='{child['id']}'] td:last-child a")
    assert parent.get_attribute("href") == f"/flow-runs/{ui_server.runs['nested']}"
    shot(page, "runs")


def test_a_state_filter_narrows_the_table_and_lands_in_the_url(page: Any, ui_server: Any, shot: Any) -> None:
    page.goto("/")
    page.wait_for_selector("#runs-summary .summary")
    asked = _settled(page, lambda: page.select_option("select[name=state]", "FAILED"))
    rows = _rows(page)
    assert rows and {r["state"] for r in rows} == {"FAILED"}
    assert ui_server.runs["failed"] in {r["id"] for r in rows}
    assert parse_qs(urlparse(page.url).query)["state"] == ["FAILED"]
    same_site = [u for u in asked if u.startswith(ui_server.url)]
    assert 1 <= len(same_site) <= 5, same_site  # the table, its summary: nothing else
    summary = page.locator("#runs-summary .summary").inner_text()
    assert "Failed" in summary and "Completed" not in summary
    shot(page, "runs-failed")
    # the URL can be shared: opened afresh it shows the same
    page.goto(page.url)
    assert {r["state"] for r in _rows(page)} == {"FAILED"}
    assert page.locator("select[name=state]").input_value() == "FAILED"


def test_flow_top_level_and_range_filters(page: Any, ui_server: Any) -> None:
    page.goto("/?flow=ui-nested-child&range=24h")
    assert {r["flow"] for r in _rows(page)} == {"ui-nested-child"}
    page.goto("/")
    everything = {r["flow"] for r in _rows(page)}
    assert "ui-nested-child" in everything
    _settled(page, lambda: page.check("input[name=top]"))
    assert "ui-nested-child" not in {r["flow"] for r in _rows(page)}
    assert parse_qs(urlparse(page.url).query)["top"] == ["1"]
    # a flow typed by hand, then Enter
    page.fill("input[name=flow]", "ui-failed")
    _settled(page, lambda: page.press("input[name=flow]", "Enter"))
    assert {r["flow"] for r in _rows(page)} == {"ui-failed"}


def test_the_summary_counts_and_charts_runs_by_state(page: Any, ui_server: Any) -> None:
    expected = ui_server.api("/flow-runs/summary", since="2000-01-01T00:00:00Z")["counts"]
    page.goto("/?range=all")
    page.wait_for_selector("#runs-summary .summary")
    shown = dict(page.eval_on_selector_all("#runs-summary .count", """links => links.map(a => [
        a.querySelector('[data-state]').dataset.state, Number(a.querySelector('strong').innerText.replace(/,/g, ''))])"""))
    assert shown == expected and shown["FAILED"] >= 1 and shown["COMPLETED"] >= 2
    bars = page.locator(".chart .bar span.state-failed")
    assert bars.count() >= 1
    assert "Failed" in (page.locator(".chart .bar").filter(has=page.locator("span.state-failed")).first
                        .get_attribute("title") or "")


def test_a_new_run_appears_without_a_reload(page: Any, ui_server: Any) -> None:
    page.goto("/")
    page.wait_for_selector("[data-live][data-on='1']")
    before = {r["id"] for r in _rows(page)}
    page.evaluate("() => { window.__reloaded = false; }")
    process = ui_server.start_flow("failed")
    try:
        process.wait(timeout=120)
        began = time.monotonic()
        page.wait_for_function("(ids) => [...document.querySelectorAll('table.runs tbody tr')]"
                               ".some(r => !ids.includes(r.dataset.runId))", arg=sorted(before), timeout=10_000)
        print(f"new run shown {time.monotonic() - began:.2f} s after its process ended")
    finally:
        if process.poll() is None:
            process.kill()
    assert page.evaluate("window.__reloaded") is False  # the same document: no reload
    # the session server is shared: a schedule of another test's deployment may add a run too
    new = [r for r in _rows(page) if r["id"] not in before and r["flow"] == "ui-failed"]
    assert new and new[0]["state"] == "FAILED"


def test_no_match_says_what_to_do(page: Any) -> None:
    page.goto("/?flow=no-such-flow")
    empty = page.locator(".empty")
    assert "No runs match" in empty.inner_text()
    assert page.locator("a", has_text="Clear filters").count() == 1


def test_keyboard_reaches_the_content_and_the_filters(page: Any) -> None:
    page.goto("/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"  # the first stop skips the nav
    page.keyboard.press("Enter")
    page.wait_for_function("location.hash === '#main'")
    for _ in range(8):  # from the content on, Tab reaches the state filter
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.name") == "state":
            break
    assert page.evaluate("document.activeElement.name") == "state"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # focus is visible


def test_dark_mode_switches_and_is_kept(page: Any, shot: Any) -> None:
    page.goto("/")
    light = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.click("[data-theme-toggle]")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert dark != light
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    page.wait_for_selector("#runs-summary .summary")
    shot(page, "runs-dark")
    page.click("[data-theme-toggle]")
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
