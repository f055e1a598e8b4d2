"""The flow-run and task-run pages in Chromium against the real server of conftest.py: the dbt
build's graph with its manifest lineage and its timeline, the failed run's task table, a log
tail and a cancel while a flow runs, the task-run page, the subflow group, 404s, and the
graph of 10,000 task runs."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.ui

def _unique_id(node: dict[str, Any]) -> str:
    """dbt's id of a graph node's task run: plait-dbt names the run by the node's short name
    and keys its task by the unique id (``dbt.<unique_id>``)."""
    key = str(node.get("task_key") or "")
    return key.removeprefix("dbt.") if key.startswith("dbt.") else ""
_WAIT_READY = "window.plaitGraph && window.plaitGraph.ready"


def _open_run(page: Any, run_id: str, tab: str = "") -> None:
    answer = page.goto(f"/flow-runs/{run_id}" + (f"#{tab}" if tab else ""))
    assert answer is not None and answer.status == 200
    page.wait_for_function(_WAIT_READY)


def test_the_dbt_runs_graph_draws_the_manifest_lineage_and_the_timeline(page: Any, ui_server: Any, shot: Any) -> None:
    run_id = ui_server.runs["dbt"]
    graph = ui_server.api(f"/flow-runs/{run_id}/graph")
    dbt = {n["id"]: n for n in graph["nodes"] if _unique_id(n)}
    assert len(dbt) >= 5
    api_edges = {(e["upstream"], e["downstream"], e["kind"]) for e in graph["edges"]
                 if e["upstream"] in dbt and e["downstream"] in dbt}
    assert api_edges

    _open_run(page, run_id)
    counts = page.evaluate("({nodes: plaitGraph.nodes, edges: plaitGraph.edges})")
    assert counts == {"nodes": len(graph["nodes"]), "edges": len(graph["edges"])}
    drawn = {tuple(p) for p in page.evaluate("plaitGraph.edgePairs()")}
    assert {p for p in drawn if p[0] in dbt and p[1] in dbt} == api_edges
    names = {tuple(p[:2]) for p in page.evaluate("plaitGraph.edgeNames()")}
    assert ("stg_orders", "daily_revenue") in names
    stats = page.evaluate("plaitGraph.stats()")
    assert stats["frames"] >= 1 and stats["drawnNodes"] > 0 and stats["drawnEdges"] > 0
    assert "state-completed" in page.locator("[data-run-badge] .badge").get_attribute("class")
    shot(page, "flow-run-dbt-graph")

    # zoom in: the frame draws fewer nodes (only those in view), fit brings them all back
    page.click("[data-graph=zoom-in]")
    for _ in range(6):
        page.click("[data-graph=zoom-in]")
    page.wait_for_timeout(100)
    near = page.evaluate("plaitGraph.stats().drawnNodes")
    page.click("[data-graph=fit]")
    page.wait_for_timeout(100)
    assert near < page.evaluate("plaitGraph.stats().drawnNodes") == len(graph["nodes"])

    # a click on a node opens its task run
    staged = next(i for i, n in dbt.items() if _unique_id(n) == "model.shop_warehouse.stg_orders")
    box = page.locator("#fr-graph").bounding_box()
    spot = page.evaluate("id => { const v = plaitGraph.view, n = v.byId[id]; "
                         "return {x: v.tx + (n.x + 90) * v.k, y: v.ty + (n.y + 15) * v.k}; }", staged)
    with page.expect_navigation():
        page.mouse.click(box["x"] + spot["x"], box["y"] + spot["y"])
    assert page.url.endswith(f"/task-runs/{staged}")
    page.go_back()
    page.wait_for_function(_WAIT_READY)

    page.click("#tab-timeline")
    page.wait_for_function("window.plaitTimeline && window.plaitTimeline.rows > 0")
    assert page.url.endswith("#timeline")
    bars = page.evaluate("plaitTimeline.bars")
    finished = [b for b in bars if b["finished"]]
    assert len(finished) == sum(1 for n in graph["nodes"] if n["end_time"])
    assert finished and all(b["w"] > 0 for b in finished)
    shot(page, "flow-run-dbt-timeline")
    # the tab survives a reload (it is in the URL)
    page.reload()
    page.wait_for_function(_WAIT_READY)
    assert page.locator("#panel-timeline").is_visible() and not page.locator("#panel-graph").is_visible()


def test_the_failed_runs_task_table_shows_the_failure_whole_and_first(page: Any, ui_server: Any, shot: Any) -> None:
    run_id = ui_server.runs["failed"]
    _open_run(page, run_id, "tasks")
    rows = page.locator("[data-task-rows] tr")
    assert rows.count() >= 2
    first = rows.nth(0)
    assert first.locator(".badge").get_attribute("data-state") == "FAILED"
    message = first.locator("[data-message]")
    text = message.inner_text()
    assert "4 rows failed the check\nfirst bad row: 1\nsee the upstream extract" in text
    assert message.evaluate("el => getComputedStyle(el).whiteSpace") == "pre-wrap"
    assert first.locator("a").first.get_attribute("href").startswith("/task-runs/")
    # the filter and the search narrow the rows
    page.select_option("[data-task-filters] select[name=state]", "COMPLETED")
    assert all(b == "COMPLETED" for b in page.locator("[data-task-rows] .badge").evaluate_all(
        "els => els.map(e => e.dataset.state)"))
    page.select_option("[data-task-filters] select[name=state]", "")
    page.fill("[data-task-filters] input[name=q]", "prepare")
    assert page.locator("[data-task-rows] tr").count() == 1
    assert "prepare" in page.locator("[data-task-rows] tr").inner_text()
    # the run ended Failed: it can be retried, not cancelled
    assert page.locator("form[data-action=retry]").count() == 1
    assert page.locator("form[data-action=cancel]").count() == 0
    page.fill("[data-task-filters] input[name=q]", "")
    shot(page, "flow-run-failed-tasks")


def _start_slow(ui_server: Any, seconds: str) -> tuple[Any, str]:
    before = {r["id"] for r in ui_server.api("/flow-runs", flow="ui-slow", limit=50)["items"]}
    process = ui_server.start_flow("slow", seconds, home=f"slow-{uuid.uuid4().hex[:8]}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        items = ui_server.api("/flow-runs", flow="ui-slow", limit=5)["items"]
        fresh = [r for r in items if r["id"] not in before]
        if fresh and fresh[0]["state_type"] == "RUNNING":
            return process, str(fresh[0]["id"])
        if process.poll() is not None:
            break
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"the slow flow did not start: {process.communicate()[0][-2000:]}")


def _stop(process: Any) -> None:
    if process.poll() is None:
        process.kill()
    process.communicate()


def _tick_numbers(page: Any) -> list[int]:
    texts = page.locator("[data-log-box] .fr-msg").all_inner_texts()
    return [int(t.split()[1]) for t in texts if t.startswith("tick ")]


@pytest.mark.slow
def test_logs_tail_live_while_the_flow_runs(page: Any, ui_server: Any, shot: Any) -> None:
    process, run_id = _start_slow(ui_server, "25")
    try:
        _open_run(page, run_id, "logs")
        page.evaluate("window.__sameDocument = true")
        page.wait_for_function("document.querySelectorAll('[data-log-box] .fr-line').length > 0")
        first = max(_tick_numbers(page), default=-1)
        # a line logged after the page opened arrives without a reload
        page.wait_for_function(
            "n => Array.from(document.querySelectorAll('[data-log-box] .fr-msg'))"
            ".some(e => /^tick (\\d+)/.test(e.textContent) && Number(e.textContent.split(' ')[1]) > n + 3)",
            arg=first, timeout=20_000)
        assert page.evaluate("window.__sameDocument") is True
        ticks = _tick_numbers(page)
        assert ticks == sorted(ticks) and len(ticks) == len(set(ticks)), "lines repeated or out of order"
        # the level filter hides the INFO lines, client-side
        page.select_option("[data-log-filters] select[name=level]", "WARNING")
        assert page.locator("[data-log-box] .fr-line").count() == 0
        page.select_option("[data-log-filters] select[name=level]", "INFO")
        # the graph, the table and the header follow the running flow too (no reload)
        opened_with = page.evaluate("plaitGraph.nodes")
        page.wait_for_function("n => plaitGraph.nodes > n + 2", arg=opened_with, timeout=15_000)
        newest = page.evaluate("plaitGraph.view.nodes[plaitGraph.view.nodes.length - 1].id")
        page.wait_for_function("id => plaitGraph.nodeState(id) === 'COMPLETED'", arg=newest, timeout=10_000)
        assert page.locator("[data-run-badge] .badge").get_attribute("data-state") == "RUNNING"
        assert int(page.locator("dd[data-task-count]").inner_text()) > opened_with
        page.click("#tab-tasks")
        page.wait_for_function("document.querySelectorAll('[data-task-rows] tr[data-task-run-id]').length > 3")
        shot(page, "flow-run-live-logs")
    finally:
        httpx.post(f"{ui_server.api_url}/v1/flow-runs/{run_id}/cancel", headers=ui_server.headers("run"), timeout=30)
        _stop(process)


@pytest.mark.slow
def test_cancel_from_the_page_stops_the_running_flow(page: Any, ui_server: Any, shot: Any) -> None:
    process, run_id = _start_slow(ui_server, "60")
    try:
        _open_run(page, run_id)
        assert page.locator("[data-run-badge] .badge").get_attribute("data-state") == "RUNNING"
        assert page.locator("form[data-action=retry]").count() == 0
        with page.expect_navigation():
            page.click("form[data-action=cancel] button")
        assert page.url.split("?")[0].endswith(f"/flow-runs/{run_id}")
        assert "cancel" in page.locator("[role=status].notice").inner_text()
        page.wait_for_function(_WAIT_READY)
        process.wait(timeout=30)  # the process stops at its next task boundary
        state = ui_server.api(f"/flow-runs/{run_id}")["state_type"]
        assert state == "CANCELLED"
        # the page learns it from the stream, without a reload
        page.wait_for_function("document.querySelector('[data-run-badge] .badge').dataset.state === 'CANCELLED'",
                               timeout=10_000)
        shot(page, "flow-run-cancelled")
        # cancelling again: the API's refusal is shown on the page
        page.goto(f"/flow-runs/{run_id}")
        assert page.locator("form[data-action=cancel]").count() == 0
        csrf = page.locator("meta[name=csrf-token]").get_attribute("content")
        answer = page.request.post(f"/flow-runs/{run_id}/cancel", form={"csrf": csrf})
        assert answer.status == 409
        assert "data-action-error" in answer.text() and "cancel" in answer.text().lower()
        refused = page.request.post(f"/flow-runs/{run_id}/cancel", form={"csrf": "wrong"})
        assert refused.status == 403
    finally:
        _stop(process)


def test_the_task_run_page_shows_states_attempts_and_its_neighbours(page: Any, ui_server: Any, shot: Any) -> None:
    graph = ui_server.api(f"/flow-runs/{ui_server.runs['dbt']}/graph")
    by_id = {_unique_id(n): n for n in graph["nodes"]}
    revenue, staged = by_id["model.shop_warehouse.daily_revenue"], by_id["model.shop_warehouse.stg_orders"]
    answer = page.goto(f"/task-runs/{revenue['id']}")
    assert answer is not None and answer.status == 200
    assert "daily_revenue" in page.locator("h1").inner_text()
    states = page.locator("[data-states] .badge").evaluate_all("els => els.map(e => e.dataset.state)")
    assert states[-1] == "COMPLETED" and "RUNNING" in states
    assert page.locator(f"[data-upstream] a[href='/task-runs/{staged['id']}']").count() == 1
    assert page.locator(f"a[href='/flow-runs/{ui_server.runs['dbt']}']").count() >= 1
    shot(page, "task-run-dbt")
    page.goto(f"/task-runs/{staged['id']}")
    assert page.locator(f"[data-downstream] a[href='/task-runs/{revenue['id']}']").count() == 1

    # the failed task: two attempts (retries=1), each with its error whole
    failed = next(n for n in ui_server.api(f"/flow-runs/{ui_server.runs['failed']}/graph")["nodes"]
                  if n["state_type"] == "FAILED")
    page.goto(f"/task-runs/{failed['id']}")
    assert page.locator("[data-attempt]").count() == 2
    assert "first bad row: 1\nsee the upstream extract" in page.locator("[data-task-message]").inner_text()
    assert page.locator("[data-upstream] a").count() == 1
    shot(page, "task-run-failed")


def test_a_subflow_is_a_group_that_expands(page: Any, ui_server: Any, shot: Any) -> None:
    run_id = ui_server.runs["nested"]
    graph = ui_server.api(f"/flow-runs/{run_id}/graph")
    (group,) = graph["groups"]
    child = ui_server.api(f"/flow-runs/{group['id']}/graph")
    _open_run(page, run_id)
    before = page.evaluate("plaitGraph.nodes")
    page.evaluate("id => plaitGraph.view.toggle(id)", group["id"])
    page.wait_for_function("n => plaitGraph.view.nodes.length > n", arg=before)
    assert page.evaluate("plaitGraph.view.nodes.length") == before + len(child["nodes"])
    assert page.evaluate("plaitGraph.view.groups.length") == 1
    shot(page, "flow-run-nested-expanded")
    page.evaluate("id => plaitGraph.view.toggle(id)", group["id"])
    page.wait_for_function("n => plaitGraph.view.nodes.length === n", arg=before)
    # the child run's page links back to its parent
    _open_run(page, group["id"])
    assert page.locator(f"[data-parent-link][href='/flow-runs/{run_id}']").count() == 1


def test_unknown_runs_are_a_404_page_saying_what_to_do(page: Any) -> None:
    missing = str(uuid.uuid4())
    for path, what in ((f"/flow-runs/{missing}", "flow run"), (f"/task-runs/{missing}", "task run")):
        answer = page.goto(path)
        assert answer is not None and answer.status == 404
        assert f"No such {what}" in page.locator("h1").inner_text()
        assert missing in page.content()
        assert page.locator("a[href='/']").count() >= 1


@pytest.mark.slow
def test_a_graph_of_ten_thousand_task_runs_lays_out_off_the_main_thread(page: Any, ui_server: Any,
                                                                         shot: Any) -> None:
    from plait.testing._server import sample_batch

    run_id, rows = sample_batch(tasks=10_000, logs=0, flow_name="ui-big")
    ids = [t["id"] for t in rows["new_tasks"]]  # type: ignore[index]
    rows["edges"] = [{"upstream_id": ids[(i - 1) // 2], "downstream_id": ids[i], "kind": "data",
                      "parameter": "x"} for i in range(1, len(ids))]
    posted = httpx.post(f"{ui_server.api_url}/v1/records", json={"batch_id": str(uuid.uuid4()), "rows": rows},
                        headers=ui_server.headers("run"), timeout=300)
    assert posted.status_code < 300, posted.text
    page.add_init_script("window.__longTasks = []; new PerformanceObserver(l => l.getEntries().forEach("
                         "e => window.__longTasks.push(e.duration))).observe({entryTypes: ['longtask']});")
    began = time.monotonic()
    page.goto(f"/flow-runs/{run_id}")
    page.wait_for_function(_WAIT_READY, timeout=60_000)
    ready = time.monotonic() - began
    figures = page.evaluate("({layoutMs: plaitGraph.layoutMs, worker: plaitGraph.layoutInWorker, "
                            "fetchMs: plaitGraph.fetchMs, fetches: plaitGraph.fetches, frame: plaitGraph.stats().lastFrameMs, "
                            "nodes: plaitGraph.nodes, longest: Math.max(0, ...window.__longTasks)})")
    print(f"10,000-node graph in Chromium: {figures}, page ready in {ready:.1f} s")
    assert figures["nodes"] == 10_000 and figures["worker"] is True
    # pan and zoom: each frame draws only what is in view, thinner when far away
    page.wait_for_timeout(300)
    page.evaluate("window.__longTasks = []")
    box = page.locator("#fr-graph").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    for step in range(1, 21):
        page.mouse.move(cx + 10 * step, cy + 5 * step)
        page.wait_for_timeout(16)
    page.mouse.up()
    for delta in (-240,) * 6 + (240,) * 6:
        page.mouse.wheel(0, delta)
        page.wait_for_timeout(50)
    page.wait_for_timeout(300)
    moving = page.evaluate("({long: window.__longTasks, frame: plaitGraph.stats().lastFrameMs, "
                           "frames: plaitGraph.stats().frames, fetches: plaitGraph.fetches})")
    print(f"pan + zoom over 10,000 nodes: long tasks {moving['long']} ms, last frame {moving['frame']} ms, "
          f"{moving['frames']} frames, {moving['fetches']} graph fetches")
    assert moving["frame"] < 200
    shot(page, "flow-run-10k")


_PAUSING_FLOW = '''
import sys
from pydantic import BaseModel
from plait import flow, get_run_logger, pause_flow_run


class Approval(BaseModel):
    approved: bool
    note: str
    reviewers: int = 1


@flow(name="ui-pausing")
def pausing() -> str:
    answer = pause_flow_run(timeout=120, wait_for_input=Approval, poll_interval=0.2)
    get_run_logger().info("resumed with note %s by %d", answer.note, answer.reviewers)
    return answer.note


state = pausing(return_state=True)
sys.exit(0 if state.is_completed() else 1)
'''


@pytest.mark.slow
def test_a_paused_run_is_resumed_from_a_form_of_its_input_schema(page: Any, ui_server: Any, shot: Any,
                                                                  tmp_path: Any) -> None:
    import subprocess
    import sys

    script = tmp_path / "pausing.py"
    script.write_text(_PAUSING_FLOW)
    process = subprocess.Popen([sys.executable, str(script)], env=ui_server.flow_env("pausing"), text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        run_id = None
        while time.monotonic() < deadline and run_id is None:
            items = ui_server.api("/flow-runs", flow="ui-pausing", limit=1)["items"]
            if items and items[0]["state_type"] == "PAUSED" and ui_server.api(f"/flow-runs/{items[0]['id']}").get(
                    "pause_schema"):
                run_id = items[0]["id"]
            elif process.poll() is not None:
                raise AssertionError(process.communicate()[0][-2000:])
            time.sleep(0.2)
        assert run_id, "the flow did not pause"
        _open_run(page, run_id)
        form = page.locator("form[data-action=resume]")
        assert form.locator("[data-field]").evaluate_all("els => els.map(e => e.dataset.field)") == [
            "approved", "note", "reviewers"]
        assert page.locator("form[data-action=cancel]").count() == 1  # a paused run can be cancelled too
        shot(page, "flow-run-paused")
        # a required field left empty: the page says so and nothing is sent
        with page.expect_navigation():
            form.locator("button[type=submit]").evaluate("b => { b.form.noValidate = true; b.click(); }")
        assert page.locator("[data-error-for=note]").inner_text() == "required"
        assert ui_server.api(f"/flow-runs/{run_id}")["state_type"] == "PAUSED"
        form = page.locator("form[data-action=resume]")
        form.locator("input[name='f.approved']").check()
        form.locator("input[name='f.note']").fill("ship it")
        form.locator("input[name='f.reviewers']").fill("2")
        with page.expect_navigation():
            form.locator("button[type=submit]").click()
        assert "resumed" in page.locator("[role=status].notice").inner_text()
        assert process.wait(timeout=30) == 0
        assert ui_server.api(f"/flow-runs/{run_id}")["state_type"] == "COMPLETED"
        lines = [line["message"] for line in ui_server.api(f"/flow-runs/{run_id}/logs")["items"]]
        assert "resumed with note ship it by 2" in lines
    finally:
        _stop(process)
