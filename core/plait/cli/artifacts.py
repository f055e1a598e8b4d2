"""``plait artifact ls | inspect``: what runs made for people to read (``plait.artifacts``).

Each command wraps a plain function of this module that returns JSON-friendly data
(``artifact_ls``, ``artifact_inspect``); tests and scripts call those directly. They read
the local store, or the plait server ``PLAIT_API_URL`` names (``plait.client``), with the
same answers. ``artifacts_of_flow_run`` and ``show_flow_run_artifacts`` are what
``plait flow-run inspect`` uses to list a run's artifacts.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import click

from plait.cli._app import CliError, PlaitGroup, json_option

__all__ = [
    "artifact_ls",
    "artifact_inspect",
    "artifacts_of_flow_run",
    "show_flow_run_artifacts",
    "show_artifacts",
    "show_artifact_versions",
    "artifact_group",
]

_RUN_PAGE = 500  # the most a server's list route gives at once


def _remote() -> bool:
    from plait.cli._source import remote

    return remote()


def _db() -> Any:
    from plait._store.database import get_database

    return get_database()


def _is_id(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text.lower()
    except ValueError:
        return False


def _missing(ref: str) -> CliError:
    return CliError(f"no artifact with key or id {ref!r}; `plait artifact ls` lists them")


def _refused(exc: ValueError) -> CliError:
    return CliError(str(exc))


# -- the functions ----------------------------------------------------------------------------------
def artifact_ls(*, key: str | None = None, flow_run: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Artifacts newest first: each key's latest version (and keyless ones), or with
    ``flow_run`` every artifact that run made; ``key`` narrows to that key's versions.

    Raises:
        CliError: A filter or the limit is malformed.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise CliError(f"--limit must be a whole number from 1 to 1000, not {limit!r}")
    if key is not None:
        from plait.artifacts import check_key

        try:
            check_key(key)
        except ValueError as exc:
            raise _refused(exc) from None
    if _remote():
        from plait.cli._source import _client

        with _client() as client:
            items: list[dict[str, Any]] = []
            for item in client.iter_artifacts(key=key, flow_run=flow_run, page_size=min(limit, _RUN_PAGE)):
                items.append(item)
                if len(items) >= limit:
                    break
            return items
    from plait._store.artifacts import list_artifacts

    try:
        return list(list_artifacts(_db(), key=key, flow_run_id=flow_run, limit=limit)["items"])
    except ValueError as exc:
        raise _refused(exc) from None


def artifact_inspect(key_or_id: str) -> list[dict[str, Any]]:
    """An artifact whole: every version of a key, newest first, or (given an id) that one
    artifact as a list of one.

    Raises:
        CliError: No artifact has that key or id.
    """
    ref = key_or_id.strip()
    if _remote():
        from plait.cli._source import _client
        from plait.client import ApiNotFound

        with _client() as client:
            try:
                return [client.artifact(ref)] if _is_id(ref) else client.artifact_versions(ref)
            except ApiNotFound:
                raise _missing(ref) from None
    from plait._store.artifacts import artifact_versions, get_artifact

    if _is_id(ref):
        found = get_artifact(_db(), ref.lower())
        if found is None:
            raise _missing(ref)
        return [found]
    from plait.artifacts import check_key

    try:
        check_key(ref)
    except ValueError as exc:
        raise CliError(f"{exc}; or pass an artifact's id") from None
    versions = artifact_versions(_db(), ref)
    if not versions:
        raise _missing(ref)
    return versions


def artifacts_of_flow_run(flow_run_id: str) -> list[dict[str, Any]]:
    """Every artifact a flow run (and its task runs) made, newest first (data whole on a
    local store; cut when large from a server's list)."""
    if _remote():
        from plait.cli._source import _client

        with _client() as client:
            return list(client.iter_artifacts(flow_run=flow_run_id, page_size=_RUN_PAGE))
    from plait._store.artifacts import get_artifact, list_artifacts

    db = _db()
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = list_artifacts(db, flow_run_id=flow_run_id, limit=1000, cursor=cursor)
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # a listing cuts large data; a run's page shows it whole
    return [(get_artifact(db, i["id"]) or i) if _is_cut(i.get("data")) else i for i in items]


def _is_cut(data: Any) -> bool:
    return isinstance(data, dict) and data.get("truncated") is True and "preview" in data


# -- rendering ----------------------------------------------------------------------------------------
def summary(row: dict[str, Any]) -> str:
    """One line saying what an artifact holds."""
    from plait.cli._output import first_line

    data, kind = row.get("data"), row.get("type")
    if isinstance(data, dict) and _is_cut(data):
        return f"({data.get('size')} bytes; `plait artifact inspect {row.get('key') or row['id']}` shows it)"
    if kind == "markdown" and isinstance(data, str):
        return first_line(data, 60)
    if kind == "table" and isinstance(data, dict):
        rows, columns = data.get("rows") or [], data.get("columns")
        width = len(columns) if columns is not None else max((len(r) for r in rows), default=0)
        return f"{len(rows)} row(s) × {width} column(s)"
    if kind == "link" and isinstance(data, dict):
        text, link = data.get("text"), data.get("link")
        return f"{text} ({link})" if text else str(link)
    if kind == "progress" and isinstance(data, (int, float)):
        return f"{float(data):g}%"
    return first_line(json.dumps(data, ensure_ascii=False), 60)


def show_artifacts(rows: list[dict[str, Any]], *, empty: str | None = None) -> None:
    """A table of artifacts: key, type, what it holds, its run, when."""
    from plait.cli._output import EMPTY, Column, fmt_time, print_message, print_table

    if not rows:
        print_message(empty or "No artifacts. Make one in a flow with plait.artifacts.create_markdown_artifact(...).")
        return
    print_table(
        [Column("Key", no_wrap=True), Column("Type", no_wrap=True), Column("Content", max_width=60),
         Column("Flow run", no_wrap=True), Column("Id", no_wrap=True), Column("Updated", no_wrap=True)],
        [[r.get("key") or EMPTY, r.get("type") or EMPTY, summary(r), (r.get("flow_run_id") or EMPTY)[:8],
          r["id"][:8], fmt_time(r.get("updated"))] for r in rows],
    )


def _show_content(row: dict[str, Any]) -> None:
    from plait.cli._output import EMPTY, Column, print_table

    data, kind = row.get("data"), row.get("type")
    if kind == "markdown" and isinstance(data, str):
        click.echo(data)
    elif kind == "table" and isinstance(data, dict) and isinstance(data.get("rows"), list):
        rows = data["rows"]
        columns = data.get("columns")
        if columns is None:
            columns = [str(i) for i in range(max((len(r) for r in rows), default=0))]
        cells = [[EMPTY if v is None else (v if isinstance(v, str) else json.dumps(v)) for v in r] for r in rows]
        if cells and columns:
            print_table([Column(str(c)) for c in columns], [r + [EMPTY] * (len(columns) - len(r)) for r in cells])
        else:
            click.echo("(an empty table)")
    elif kind == "link" and isinstance(data, dict):
        click.echo(f"{data.get('text')}: {data.get('link')}" if data.get("text") else str(data.get("link")))
    elif kind == "progress" and isinstance(data, (int, float)):
        click.echo(f"{float(data):g}%")
    else:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def show_artifact_versions(versions: list[dict[str, Any]]) -> None:
    """Each artifact whole: its fields, then its content (markdown as text, a table as a table)."""
    from plait.cli._output import EMPTY, fmt_time, print_fields, print_heading

    for index, row in enumerate(versions):
        if index:
            click.echo()
        latest = " (latest)" if index == 0 and row.get("key") and len(versions) > 1 else ""
        print_fields([
            ("Key", (row.get("key") or EMPTY) + latest), ("Id", row["id"]), ("Type", row.get("type")),
            ("Description", row.get("description") or EMPTY), ("Flow run", row.get("flow_run_id") or EMPTY),
            ("Task run", row.get("task_run_id") or EMPTY), ("Created", fmt_time(row.get("created"))),
            ("Updated", fmt_time(row.get("updated"))),
        ])
        print_heading("Content")
        _show_content(row)


def show_flow_run_artifacts(rows: list[dict[str, Any]]) -> None:
    """The Artifacts section of ``plait flow-run inspect``: a heading and a table (nothing
    when the run made none)."""
    if not rows:
        return
    from plait.cli._output import print_heading

    print_heading(f"Artifacts ({len(rows)})")
    show_artifacts(rows)


def _emit(data: Any, as_json: bool, show: Any) -> None:
    from plait.cli._output import echo_json

    if as_json:
        echo_json(data)
    else:
        show(data)


# -- commands -----------------------------------------------------------------------------------------
@click.group("artifact", cls=PlaitGroup)
def artifact_group() -> None:
    """Artifacts: markdown, tables, links and progress that runs made (plait.artifacts)."""


@artifact_group.command("ls")
@click.option("--key", metavar="KEY", help="Only this key (its latest version; `inspect KEY` shows every version).")
@click.option("--flow-run", "flow_run", metavar="ID", help="Every artifact this flow run made.")
@click.option("--limit", type=int, default=50, show_default=True, help="At most this many (1 to 1000).")
@json_option
def artifact_ls_cmd(key: str | None, flow_run: str | None, limit: int, as_json: bool) -> None:
    """List artifacts, newest first: each key's latest version and keyless ones."""
    _emit(artifact_ls(key=key, flow_run=flow_run, limit=limit), as_json, show_artifacts)


@artifact_group.command("inspect")
@click.argument("key_or_id", metavar="KEY_OR_ID")
@json_option
def artifact_inspect_cmd(key_or_id: str, as_json: bool) -> None:
    """Show an artifact whole: every version of KEY newest first, or the artifact with id ID."""
    _emit(artifact_inspect(key_or_id), as_json, show_artifact_versions)
