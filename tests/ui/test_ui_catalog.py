"""The dashboard's blocks and collections pages in Chromium, against ``ui_server``: saved blocks
show their secrets as ``********`` and no page ever sends one; a block made from the
schema-generated form is saved; the collections registry lists how to install each collection."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.ui

REGISTRY = Path(__file__).resolve().parents[2] / "registry.json"


@pytest.fixture
def api(ui_server: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ui_server.api_url + "/v1", headers=ui_server.headers("admin"), timeout=30) as client:
        yield client


def test_blocks_pages_show_secrets_masked_and_never_send_them(page: Any, ui_server: Any, captured_text: Any,
                                                               shot: Any) -> None:
    page.goto("/blocks")
    saved = page.locator("table").first
    assert "ui-token" in saved.inner_text() and "ui-warehouse" in saved.inner_text()
    shot(page, "blocks")
    page.locator("a", has_text="ui-warehouse").first.click()
    page.wait_for_url("**/blocks/database-credentials/ui-warehouse")
    assert "********" in page.inner_text("main")
    shot(page, "block-document")
    page.goto("/blocks/secret/ui-token")
    assert page.locator(".secret").first.inner_text() == "********"
    page.goto("/blocks/database-credentials")
    shot(page, "block-type")
    for path in ("/blocks/secret/ui-token/edit", "/blocks/database-credentials/ui-warehouse/edit"):
        page.goto(path)
        secret_inputs = page.locator('input[type="password"]')
        assert secret_inputs.count() >= 1
        assert all(secret_inputs.nth(i).input_value() == "" for i in range(secret_inputs.count()))
    shot(page, "block-edit")
    page.goto("/blocks/database-credentials/new")
    text = captured_text(page)
    assert "ui-warehouse" in text  # what was captured is the pages above
    assert ui_server.secret_value not in text


def test_a_block_made_from_the_form_is_saved_then_edited_and_deleted(page: Any, ui_server: Any, api: httpx.Client,
                                                                      captured_text: Any, shot: Any) -> None:
    name, secret = f"ui-form-{uuid.uuid4().hex[:6]}", f"typed-secret-{uuid.uuid4().hex}"
    page.goto("/blocks")
    page.locator('a[href="/blocks/secret/new"]').click()
    page.wait_for_url("**/blocks/secret/new")
    # a save without the required secret says so by the field, and saves nothing
    page.fill("#block-name", name)
    with page.expect_navigation():
        page.click("form.schema-form button[type=submit]")
    assert page.locator("[data-error-for]").count() >= 1
    assert api.get(f"/blocks/documents/secret/{name}").status_code == 404
    page.fill("#block-name", name)
    page.locator('input[type="password"]').first.fill(secret)
    shot(page, "block-form")
    with page.expect_navigation():
        page.click("form.schema-form button[type=submit]")
    assert page.url.endswith(f"/blocks/secret/{name}")
    assert "********" in page.inner_text("main")
    stored = api.get(f"/blocks/documents/secret/{name}", params={"include_secrets": "true"}).json()
    assert stored["data"]["value"] == secret

    # editing: a secret left blank keeps its stored value; one typed replaces it
    page.goto(f"/blocks/secret/{name}/edit")
    field = page.locator('input[type="password"]').first
    assert field.input_value() == "" and "unchanged" in (field.get_attribute("placeholder") or "")
    with page.expect_navigation():
        page.click("form.schema-form button[type=submit]")
    assert page.url.endswith(f"/blocks/secret/{name}")
    stored = api.get(f"/blocks/documents/secret/{name}", params={"include_secrets": "true"}).json()
    assert stored["data"]["value"] == secret
    page.goto(f"/blocks/secret/{name}/edit")
    page.locator('input[type="password"]').first.fill(secret + "-2")
    with page.expect_navigation():
        page.click("form.schema-form button[type=submit]")
    stored = api.get(f"/blocks/documents/secret/{name}", params={"include_secrets": "true"}).json()
    assert stored["data"]["value"] == secret + "-2"
    assert secret not in captured_text(page)  # typed in the page, never sent back by the server

    page.on("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        page.click("button.danger")
    assert api.get(f"/blocks/documents/secret/{name}").status_code == 404


def test_collections_page_lists_the_registry_with_install_commands(page: Any, shot: Any) -> None:
    registry = json.loads(REGISTRY.read_text())
    names = sorted(registry["collections"])
    page.goto("/collections")
    rows = page.locator("tr[data-collection]")
    assert sorted(rows.evaluate_all("rows => rows.map(r => r.dataset.collection)")) == names
    for name in names:
        row = page.locator(f'tr[data-collection="{name}"]')
        assert f"pip install {name}" in row.inner_text()
        assert registry["collections"][name]["plait_range"] in row.inner_text()
    shot(page, "collections")

    name = names[0]
    collection = registry["collections"][name]
    page.locator(f'tr[data-collection="{name}"] a', has_text=name).click()
    page.wait_for_url(f"**/collections/{name}")
    text = page.inner_text("main")
    assert f"pip install {name}" in text and collection["version"] in text
    task = collection["tasks"][0]
    assert task["signature"] in page.inner_text(f'[id="task-{task["name"]}"]')
    assert task["description"] in text
    assert all(block["name"] in text for block in collection["blocks"])
    shot(page, "collection")
    # a block type from a collection says which one
    if collection["blocks"]:
        page.goto(f"/blocks/{collection['blocks'][0]['slug']}")
        if page.locator("h1").count():
            assert name in page.inner_text("main") or "No such block type" in page.inner_text("main")
