"""The API reference page (docs/api.md), generated from the server's own OpenAPI document.

    python -m plait.server.reference          # rewrite docs/api.md
    python -m plait.server.reference --check  # exit 1 when docs/api.md is out of date

The page lists every route with its summary, parameters and answers, so the reference can
never drift from the code (a test runs ``--check``'s comparison).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["render_reference", "openapi_document"]

_HEADER = """# API reference

Generated from the server's OpenAPI document by `python -m plait.server.reference`; do not
edit by hand. A running server serves the same document at `/api/v1/openapi.json` and an
interactive version at `/api/v1/docs`. Every route but `/health` needs
`Authorization: Bearer <key>` (see [the server](server.md)); errors are
`{"error": {"code", "message", "detail"}}`.
"""


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of an app over a throwaway store (no server is started)."""
    from plait._store.database import Database
    from plait.server import create_app

    with tempfile.TemporaryDirectory(prefix="plait-reference-") as home:
        db = Database.open(f"sqlite:///{home}/plait.db")
        try:
            return create_app(db, services=False).openapi()
        finally:
            db.dispose()


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def render_reference(doc: dict[str, Any]) -> str:
    """``doc`` (an OpenAPI document) as the Markdown of docs/api.md."""
    lines = [_HEADER]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, operations in doc.get("paths", {}).items():
        for method, op in operations.items():
            tag = (op.get("tags") or ["other"])[0]
            by_tag.setdefault(tag, []).append((method.upper(), path, op))
    for tag in sorted(by_tag):
        lines.append(f"## {tag[:1].upper()}{tag[1:]}\n")
        for method, path, op in by_tag[tag]:
            lines.append(f"### `{method} {path}`\n")
            lines.append(f"{_one_line(op.get('summary'))}. {_one_line(op.get('description'))}\n")
            params = op.get("parameters") or []
            if params:
                lines.append("| Parameter | In | Description |\n| --- | --- | --- |")
                for p in params:
                    required = " (required)" if p.get("required") else ""
                    lines.append(f"| `{p['name']}` | {p.get('in', '')}{required} | {_one_line(p.get('description'))} |")
                lines.append("")
            if "requestBody" in op:
                lines.append("Takes a JSON body (schema in the OpenAPI document).\n")
            codes = ", ".join(sorted(op.get("responses", {})))
            lines.append(f"Answers: {codes}.\n")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("docs/api.md"), help="the page to write or check")
    parser.add_argument("--check", action="store_true", help="exit 1 when the page differs from the code")
    opts = parser.parse_args(argv)
    page = render_reference(openapi_document())
    if opts.check:
        current = opts.output.read_text(encoding="utf-8") if opts.output.is_file() else ""
        if current != page:
            print(f"{opts.output} is out of date; run `python -m plait.server.reference`", file=sys.stderr)
            return 1
        print(f"{opts.output} is up to date")
        return 0
    opts.output.write_text(page, encoding="utf-8")
    print(f"wrote {opts.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
