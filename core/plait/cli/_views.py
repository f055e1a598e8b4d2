"""How each command's data looks on screen (tables and fields), for both rich and plain mode.

Each ``show_*`` takes exactly what the matching function in ``plait.cli.commands`` returns.
"""

from __future__ import annotations

from typing import Any

import click

from plait.cli._output import (
    EMPTY,
    Cell,
    Column,
    first_line,
    fmt_duration,
    fmt_time,
    fmt_value,
    level_cell,
    print_block,
    print_fields,
    print_heading,
    print_lines,
    print_message,
    print_table,
    state_cell,
    use_rich,
)
from plait.cli.commands import FAILED_TYPES

__all__ = ["show_version", "show_config", "show_flow_runs", "show_flow_run", "show_logs"]

CACHE_KEY_CHARS = 12
SHORT_ID = 8  # id prefix shown by `flow-run ls` on a terminal


def show_version(info: dict[str, Any]) -> None:
    print_fields(
        [
            ("plait", info["plait"]),
            ("Python", f"{info['python']} ({info['python_implementation']}, {info['python_executable']})"),
            ("Platform", info["platform"]),
            ("Database", info["database_url"]),
            ("Home", info["home"]),
        ]
    )


def show_config(rows: list[dict[str, Any]]) -> None:
    columns = [Column("Name", no_wrap=True), Column("Value"), Column("Source"), Column("Env var", no_wrap=True)]
    print_table(
        columns,
        [
            [
                row["name"],
                Cell(fmt_value(row["value"]), "" if row["source"] == "default" else "bold"),
                Cell(row["source"], "bright_black" if row["source"] == "default" else "green"),
                row["env"],
            ]
            for row in rows
        ],
    )


def show_flow_runs(rows: list[dict[str, Any]], *, wide: bool = False) -> None:
    """The runs' table (the run names with ``wide`` only), then, unless ``wide``, the first
    line of each failed or crashed run's message whole (the table may have cut it)."""
    if not rows:
        print_message("No flow runs found.")
        return
    rich = use_rich()
    columns = [
        Column("ID", no_wrap=True, fit_as=SHORT_ID),
        Column("Flow", no_wrap=True, overflow="ellipsis", flex=True, min_width=8),
        Column("State", no_wrap=True),
        Column("Started", no_wrap=True),
        Column("Duration", justify="right", no_wrap=True),
        Column("Tasks", justify="right", no_wrap=True),
        Column("Message", overflow="ellipsis", flex=True, min_width=12),
    ]
    if wide:
        columns[2:2] = [Column("Name", no_wrap=True)]
    table = []
    for row in rows:
        cells: list[Cell | str | None] = [
            # On a terminal a prefix keeps the table narrow; inspect/logs accept it.
            row["id"][:SHORT_ID] if rich else row["id"],
            row["flow_name"],
            state_cell(row["state_type"], row["state_name"]),
            fmt_time(row["start_time"]) if row["start_time"] or not row.get("expected_start_time")
            else f"due {fmt_time(row['expected_start_time'])}",
            fmt_duration(row["duration_seconds"]),
            str(row["task_run_count"]),
            first_line(row["state_message"]),
        ]
        if wide:
            cells[2:2] = [row["name"]]
        table.append(cells)
    print_table(columns, table, fit=True, wide=wide)
    failed = [r for r in rows if r.get("state_type") in FAILED_TYPES and r.get("state_message")]
    if failed and not wide:
        print_heading("Why they failed")
        for row in failed:
            print_block(
                f"{row['id'][:SHORT_ID]}  {row['flow_name']}",
                [("Message", first_line(row["state_message"]))],
            )


def _upstream_names(task_run: dict[str, Any], names: dict[str, str]) -> str:
    seen: list[str] = []
    for up in task_run.get("upstream") or []:
        label = names.get(up["id"]) or up.get("name") or up.get("task_name") or up["id"][:8]
        if up.get("kind") == "wait_for":
            label += " (wait_for)"
        if label not in seen:
            seen.append(label)
    return ", ".join(seen) or EMPTY


def _short(text: str | None, chars: int) -> str:
    if not text:
        return EMPTY
    return text if len(text) <= chars else text[:chars] + "..."


def _failed_first(task_runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Failed and crashed task runs first, each group in the order the runs were created."""
    return sorted(task_runs, key=lambda t: t.get("state_type") not in FAILED_TYPES)


def _attempts(t: dict[str, Any]) -> str:
    runs, retries = t.get("run_count"), t.get("retries")
    if runs is None:
        return EMPTY
    return f"{runs} ({retries} {'retry' if retries == 1 else 'retries'})" if retries is not None else str(runs)


def _task_filter_note(run: dict[str, Any], shown: int) -> str:
    total = run.get("task_run_count", shown)
    return f"Task runs ({shown})" if shown == total else f"Task runs ({shown} of {total} shown)"


def show_flow_run(run: dict[str, Any], *, wide: bool = False) -> None:
    fields: list[tuple[str, Cell | str | None]] = [
        ("Flow run", run["name"]),
        ("Flow", run["flow_name"]),
        ("ID", run["id"]),
        ("State", state_cell(run["state_type"], run["state_name"])),
    ]
    if run.get("state_message"):
        fields.append(("Message", run["state_message"]))
    if run.get("late_reason"):
        fields.append(("Not started", run["late_reason"]))
    fields += [
        ("Started", fmt_time(run.get("start_time"))),
        ("Ended", fmt_time(run.get("end_time"))),
        ("Duration", fmt_duration(run.get("duration_seconds"))),
    ]
    if run.get("parent_flow_run_id"):
        fields.append(("Parent run", run["parent_flow_run_id"]))
    if run.get("tags"):
        fields.append(("Tags", ", ".join(map(str, run["tags"]))))
    print_fields(fields, wrap=not wide)

    print_heading("Parameters")
    parameters = run.get("parameters") or {}
    if parameters:
        print_fields([(name, fmt_value(value)) for name, value in parameters.items()], wrap=not wide)
    else:
        print_message("(none)")

    task_runs = _failed_first(list(run.get("task_runs") or []))
    names = {t["id"]: t["name"] for t in task_runs}
    print_heading(_task_filter_note(run, len(task_runs)))
    if task_runs:
        _task_table(task_runs, names, wide)
    else:
        print_message("(none)" if not run.get("task_run_count") else "(none matches)")
    failed = [t for t in task_runs if t.get("state_type") in FAILED_TYPES]
    if failed:
        _failure_details(failed, names)

    print_heading("State history")
    print_table(
        [
            Column("Time", no_wrap=True),
            Column("State", no_wrap=True),
            Column("Message", overflow="ellipsis", flex=True),
        ],
        [
            [fmt_time(s["timestamp"], millis=True), state_cell(s["type"], s["name"]), first_line(s.get("message"))]
            for s in run.get("states") or []
        ],
        fit=True, wide=wide,
    )

    subflows = run.get("subflow_runs", run.get("subflows")) or []
    if subflows:
        print_heading(f"Subflow runs ({len(subflows)})")
        print_table(
            [Column("ID", no_wrap=True, fit_as=SHORT_ID), Column("Flow", flex=True), Column("Name", flex=True),
             Column("State", no_wrap=True)],
            [
                [s["id"], s.get("flow_name") or EMPTY, s.get("name") or EMPTY,
                 state_cell(s.get("state_type"), s.get("state_name"))]
                for s in subflows
            ],
            fit=True, wide=wide,
        )


def _task_table(task_runs: list[dict[str, Any]], names: dict[str, str], wide: bool) -> None:
    """Every column with ``wide``; else the ones that say what happened, cut to the width
    (the failure details below have every message whole)."""
    columns = [
        Column("Name", no_wrap=True, overflow="ellipsis", flex=True, min_width=12),
        Column("State", no_wrap=True),
        Column("Duration", justify="right", no_wrap=True),
        Column("Attempts", justify="right", no_wrap=True),
        Column("Upstream", flex=True, min_width=10),
        Column("Message", overflow="ellipsis", flex=True, min_width=12),
    ]
    if wide:
        columns[4:4] = [Column("Retries", justify="right", no_wrap=True)]
        columns[6:6] = [Column("Cache key", no_wrap=True), Column("Result")]
    rows = []
    for t in task_runs:
        cells: list[Cell | str | None] = [
            t["name"],
            state_cell(t["state_type"], t["state_name"]),
            fmt_duration(t.get("duration_seconds")),
            str(t.get("run_count", EMPTY)),
            _upstream_names(t, names),
            first_line(t.get("state_message")),
        ]
        if wide:
            cells[4:4] = [str(t.get("retries", EMPTY))]
            cells[6:6] = [_short(t.get("cache_key"), CACHE_KEY_CHARS), t.get("result_ref") or EMPTY]
        rows.append(cells)
    print_table(columns, rows, fit=True, wide=wide)


def _failure_details(failed: list[dict[str, Any]], names: dict[str, str]) -> None:
    """Why each failed or crashed task run failed: its whole message, wrapped to the width."""
    print_heading(f"Failed task runs ({len(failed)})")
    for n, t in enumerate(failed):
        if n:
            click.echo("")
        print_block(
            Cell(t["name"], "bold"),
            [
                ("State", state_cell(t["state_type"], t["state_name"])),
                ("Attempts", _attempts(t)),
                ("Upstream", _upstream_names(t, names)),
                ("Message", t.get("state_message") or EMPTY),
            ],
        )


def show_logs(rows: list[dict[str, Any]], flow_run_id: str, *, filtered: bool = False) -> None:
    if not rows:
        print_message(f"No logs for flow run {flow_run_id}" + (" match the filters." if filtered else "."))
        return
    print_lines(
        [
            [
                Cell(fmt_time(r["timestamp"], millis=True), "bright_black"),
                level_cell(str(r["level"])),
                Cell(r["source"], "cyan"),
            ]
            for r in rows
        ],
        [r.get("message") or "" for r in rows],
        fit=True,
    )
