"""docs/api.md is what the server's OpenAPI document says (regenerate it when a route changes)."""

from pathlib import Path

from plait.server.reference import openapi_document, render_reference

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_the_api_reference_page_matches_the_routes() -> None:
    doc = openapi_document()
    page = render_reference(doc)
    assert DOC.read_text(encoding="utf-8") == page, "docs/api.md is out of date: run `python -m plait.server.reference`"
    for path, operations in doc["paths"].items():  # every route has its section
        for method in operations:
            assert f"### `{method.upper()} {path}`" in page
    assert "### `GET /api/v1/flow-runs`" in page and "### `POST /api/v1/records`" in page
