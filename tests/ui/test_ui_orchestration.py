"""The dashboard's deployments, work pools, late runs, events and automations pages in
Chromium, against the real server of ``ui_server``: each test makes its own deployment, pool
or automation through the API (as ``plait deploy`` and a worker would) and drives the page."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.ui

SCHEMA = {
    "type": "object", "title": "Parameters", "required": ["day"],
    "properties": {
        "day": {"type": "string", "title": "Day", "description": "The day to load (YYYY-MM-DD)."},
        "limit": {"type": "integer", "title": "Limit", "default": 10},
        "full": {"type": "boolean", "title": "Full refresh", "default": False},
        "mode": {"enum": ["fast", "slow"], "type": "string", "default": "fast"},
        "tables": {"type": "array", "items": {"type": "string"}, "default": ["orders"]},
        "options": {"type": "object", "title": "Options", "default": {}},
    },
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g}s")
        time.sleep(0.2)


@pytest.fixture
def api(ui_server: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ui_server.api_url + "/v1", headers=ui_server.headers("admin"), timeout=30) as client:
        yield client


def ok(response: httpx.Response) -> Any:
    assert response.status_code < 300, response.text
    return response.json()


def make_deployment(api: httpx.Client, pool: str | None = None, **extra: Any) -> dict[str, Any]:
    pool = pool or unique("pool")
    if api.get(f"/work-pools/{pool}").status_code == 404:
        ok(api.post("/work-pools", json={"name": pool, "type": "process"}))
    spec = {"flow_name": unique("ui-etl"), "name": "nightly", "entrypoint": "/srv/flows/etl.py:etl",
            "work_pool_name": pool, "work_queue_name": "default", "parameters": {"day": "2024-06-01"},
            "parameter_schema": SCHEMA, **extra}
    return dict(ok(api.post("/deployments", json=spec))["deployment"])


def test_deployments_list_shows_a_deployment_with_its_schedule_pool_and_next_runs(
        page: Any, api: httpx.Client, shot: Any) -> None:
    deployment = make_deployment(api, schedules=[{"kind": "interval", "interval_seconds": 3600}])
    ref = f"{deployment['flow_name']}/nightly"
    # the scheduler plans its next runs within a pass
    wait_for(lambda: [r for r in ok(api.get("/flow-runs", params={"flow": deployment["flow_name"],
                                                                    "upcoming": "true"}))["items"]],
             30, "the scheduler planning runs")
    page.goto(f"/deployments?flow={deployment['flow_name']}")
    row = page.locator(f'tr[data-deployment="{ref}"]')
    assert row.count() == 1
    text = row.inner_text()
    assert "every 1 h" in text and deployment["work_pool_name"] in text and "Active" in text
    assert row.locator("time").count() >= 1  # next runs, as <time> the browser localises
    assert row.locator("time").first.get_attribute("data-local") == "1"
    page.goto("/deployments")
    shot(page, "deployments")
    # a filter that matches nothing says so
    page.goto("/deployments?flow=no-such-flow-here")
    assert "no deployments match" in page.inner_text("main")


def test_run_now_shows_errors_by_the_field_then_lands_on_the_new_flow_run(
        page: Any, api: httpx.Client, shot: Any) -> None:
    deployment = make_deployment(api)
    ref = f"{deployment['flow_name']}/nightly"
    page.goto(f"/deployments/{ref}")
    form = page.locator("form.schema-form")
    # the form comes from the schema, filled with the deployment's parameters and the defaults
    assert form.locator('input[name="f.day"]').input_value() == "2024-06-01"
    assert form.locator('input[name="f.limit"]').input_value() == "10"
    assert form.locator('select[name="f.mode"]').count() == 1
    assert form.locator('input[type="checkbox"][name="f.full"]').count() == 1
    assert form.locator('textarea[name="f.tables"]').input_value() == "orders"

    # a value only the API can refuse (an object parameter given a list): shown by its field
    form.locator('textarea[name="f.options"]').fill("[1, 2]")
    with page.expect_navigation():
        form.locator('button[type="submit"]').click()
    error = page.locator('[data-field="options"] [data-error-for="options"]')
    assert error.count() == 1 and "options" in error.inner_text(), page.inner_text("main")
    shot(page, "deployment-run-now-error")
    # a required field left empty is refused before the API is asked
    form = page.locator("form.schema-form")
    form.locator('input[name="f.day"]').fill("")
    form.locator('textarea[name="f.options"]').fill('{"full": true}')
    with page.expect_navigation():
        form.locator('button[type="submit"]').click()
    assert page.locator('[data-error-for="day"]').inner_text() == "required"

    form = page.locator("form.schema-form")
    form.locator('input[name="f.day"]').fill("2024-07-02")
    form.locator('input[name="f.limit"]').fill("5")
    form.locator('select[name="f.mode"]').select_option(label="slow")
    form.locator('input[name="f.full"]').check()
    form.locator('textarea[name="f.tables"]').fill("orders\ncustomers")
    form.locator('textarea[name="f.options"]').fill('{"region": "eu"}')
    form.locator('button[type="submit"]').click()
    page.wait_for_url("**/flow-runs/*")
    run_id = page.url.rstrip("/").split("/")[-1]
    run = ok(api.get(f"/flow-runs/{run_id}"))
    assert run["flow_name"] == deployment["flow_name"]
    assert run["parameters"] == {"day": "2024-07-02", "limit": 5, "full": True, "mode": "slow",
                                 "tables": ["orders", "customers"], "options": {"region": "eu"}}


def test_pause_and_resume_a_deployment_from_the_list(page: Any, api: httpx.Client) -> None:
    deployment = make_deployment(api)
    ref = f"{deployment['flow_name']}/nightly"
    page.goto(f"/deployments?flow={deployment['flow_name']}")
    row = page.locator(f'tr[data-deployment="{ref}"]')
    with page.expect_navigation():
        row.locator('button[data-action="pause"]').click()
    assert page.url.endswith(f"/deployments?flow={deployment['flow_name']}")  # back where it was
    assert ok(api.get(f"/deployments/{ref}"))["paused"] is True
    row = page.locator(f'tr[data-deployment="{ref}"]')
    assert "Paused" in row.inner_text()
    row.locator('button[data-action="resume"]').focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")  # keyboard works as well as the mouse
    assert ok(api.get(f"/deployments/{ref}"))["paused"] is False
    assert "Active" in page.locator(f'tr[data-deployment="{ref}"]').inner_text()


def test_a_change_without_the_page_token_is_refused(ui_server: Any, api: httpx.Client) -> None:
    deployment = make_deployment(api)
    ref = f"{deployment['flow_name']}/nightly"
    answer = httpx.post(f"{ui_server.url}/deployments/{ref}/pause", cookies={"plait_session": ui_server.admin_key},
                        data={"next": "/deployments"})
    assert answer.status_code == 403
    assert ok(api.get(f"/deployments/{ref}"))["paused"] is False


def test_work_pools_show_workers_health_and_pause(page: Any, api: httpx.Client, shot: Any) -> None:
    pool, idle = unique("pool"), unique("idle")
    for name in (pool, idle):
        ok(api.post("/work-pools", json={"name": name, "type": "process"}))
    ok(api.post(f"/work-pools/{pool}/workers/heartbeat", json={"name": "alive", "hostname": "box-1",
                                                               "heartbeat_interval": 60}))
    ok(api.post(f"/work-pools/{pool}/workers/heartbeat", json={"name": "gone", "hostname": "box-2",
                                                               "heartbeat_interval": 0.1}))
    time.sleep(0.5)  # "gone" misses two of its 0.1 s beats: offline
    page.goto("/work-pools")
    row = page.locator(f'tr[data-pool="{pool}"]')
    assert "1 of 2 online" in row.inner_text()
    assert "plait worker start --pool" in page.locator(f'tr[data-pool="{idle}"]').inner_text()
    shot(page, "work-pools")
    row.locator("a", has_text=pool).click()
    page.wait_for_url(f"**/work-pools/{pool}")
    assert page.locator('tr[data-worker="alive"] [data-health]').get_attribute("data-health") == "online"
    assert page.locator('tr[data-worker="gone"] [data-health]').get_attribute("data-health") == "offline"
    shot(page, "work-pool")
    with page.expect_navigation():
        page.locator('button[data-action="pause"]').click()
    assert ok(api.get(f"/work-pools/{pool}"))["paused"] is True
    with page.expect_navigation():
        page.locator('button[data-action="resume"]').click()
    assert ok(api.get(f"/work-pools/{pool}"))["paused"] is False


def test_late_runs_say_why_they_wait(page: Any, api: httpx.Client, shot: Any) -> None:
    deployment = make_deployment(api)
    ref = f"{deployment['flow_name']}/nightly"
    past = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    run = ok(api.post(f"/deployments/{ref}/runs", json={"expected_start_time": past}))
    # the late-runs service renames it Late (grace 15 s; it was due 5 minutes ago)
    wait_for(lambda: ok(api.get(f"/flow-runs/{run['id']}"))["state_name"] == "Late", 30, "the run becoming Late")
    page.goto(f"/late-runs?flow={deployment['flow_name']}")
    row = page.locator(f'tr[data-run="{run["id"]}"]')
    assert "Late" in row.inner_text()
    assert deployment["work_pool_name"] in row.locator(".late-reason").inner_text()
    shot(page, "late-runs")


def test_events_are_newest_first_filtered_paged_and_live(page: Any, ui_server: Any, api: httpx.Client,
                                                         shot: Any) -> None:
    kind = f"test.ui-orch-{uuid.uuid4().hex[:6]}"
    for i in range(3):
        ok(api.post("/events", json={"event": f"{kind}.made", "resource": {"id": f"thing-{i}"}, "payload": {"i": i}}))
    page.goto("/events")
    seqs = [int(s) for s in page.locator("#events tbody tr").evaluate_all("rows => rows.map(r => r.dataset.seq)")]
    assert seqs == sorted(seqs, reverse=True) and len(seqs) == 50  # the store holds many more
    shot(page, "events")
    with page.expect_navigation():
        page.locator("a[rel=next]", has_text="Older").click()
    older = [int(s) for s in page.locator("#events tbody tr").evaluate_all("rows => rows.map(r => r.dataset.seq)")]
    assert older and max(older) < min(seqs) and older == sorted(older, reverse=True)

    page.goto(f"/events?kind={kind}.made")
    rows = page.locator("#events tbody tr")
    assert rows.count() == 3 and "thing-2" in rows.first.inner_text()
    page.wait_for_selector("[data-live][data-on='1']")
    ok(api.post("/events", json={"event": f"{kind}.made", "resource": {"id": "thing-live"}, "payload": {"i": 9}}))
    page.wait_for_function("document.querySelector('#events tbody tr').innerText.includes('thing-live')",
                           timeout=5000)
    assert page.locator("#events tbody tr").count() == 4
    ok(api.post("/events", json={"event": f"{kind}.other", "resource": {"id": "not-shown"}}))
    time.sleep(1.0)
    assert "not-shown" not in page.inner_text("#events")  # the filter holds for live events too


def test_automations_list_toggle_and_detail(page: Any, api: httpx.Client, shot: Any) -> None:
    name = unique("ui-auto")
    target = make_deployment(api)
    ok(api.post("/automations", json={
        "name": name, "description": "Run the nightly load when a raw load fails.",
        "trigger": {"type": "event", "posture": "reactive", "expect": ["flow-run.failed"]},
        "actions": [{"type": "run-deployment", "deployment": f"{target['flow_name']}/nightly"}],
    }))
    page.goto("/automations")
    row = page.locator(f'tr[data-automation="{name}"]')
    assert "Enabled" in row.inner_text() and "flow-run.failed" in row.inner_text()
    assert "run-deployment" in row.inner_text()
    shot(page, "automations")
    with page.expect_navigation():
        row.locator('button[data-action="disable"]').click()
    assert ok(api.get(f"/automations/{name}"))["enabled"] is False
    assert "Disabled" in page.locator(f'tr[data-automation="{name}"]').inner_text()
    page.locator(f'tr[data-automation="{name}"] a', has_text=name).click()
    page.wait_for_url(f"**/automations/{name}")
    assert "Run the nightly load" in page.inner_text("main")
    assert "taken no action" in page.inner_text("main")
    with page.expect_navigation():
        page.locator('button[data-action="enable"]').click()
    assert ok(api.get(f"/automations/{name}"))["enabled"] is True
    shot(page, "automation")


def test_pages_say_what_is_missing(page: Any) -> None:
    for path, what in (("/deployments/no-such/flow", "deployment"), ("/work-pools/no-such-pool", "work pool"),
                       ("/automations/no-such-automation", "automation")):
        answer = page.goto(path)
        assert answer is not None and answer.status == 404
        assert f"No such {what}" in page.inner_text("main")


def test_pages_read_on_a_phone(page: Any, api: httpx.Client, shot: Any) -> None:
    make_deployment(api)
    page.set_viewport_size({"width": 390, "height": 844})
    for path in ("/deployments", "/work-pools", "/events", "/automations"):
        page.goto(path)
        # nothing but the tables' own scroll boxes is wider than the screen
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= 400, (path, wide)
    shot(page, "deployments-phone")
