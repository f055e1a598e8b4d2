"""How each command's data looks on screen (tables and fields), for both rich and plain mode.

Each ``show_*`` takes exactly what the matching function in ``plait.cli.commands`` returns.
"""

from __future__ import annotations

from typing import Any

from plait.cli._output import (
    EMPTY,
    Cell,
    Column,
    first_line,
    fmt_duration,
    fmt_time,
    fmt_value,
    level_cell,
    print_fields,
    print_heading,
    print_lines,
    print_message,
    print_table,
    state_cell,
    use_rich,
)

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


def show_flow_runs(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print_message("No flow runs found.")
        return
    rich = use_rich()
    columns = [
        Column("ID", no_wrap=True),
        Column("Flow", no_wrap=True, overflow="ellipsis"),
        Column("Name", no_wrap=True, overflow="ellipsis"),
        Column("State", no_wrap=True),
        Column("Started", no_wrap=True),
        Column("Duration", justify="right", no_wrap=True),
        Column("Tasks", justify="right", no_wrap=True),
        Column("Message", max_width=40, overflow="ellipsis"),
    ]
    print_table(
        columns,
        [
            [
                # On a terminal a prefix keeps the table narrow; inspect/logs accept it.
                row["id"][:SHORT_ID] if rich else row["id"],
                row["flow_name"],
                row["name"],
                state_cell(row["state_type"], row["state_name"]),
                fmt_time(row["start_time"]) if row["start_time"] or not row.get("expected_start_time")
                else f"due {fmt_time(row['expected_start_time'])}",
                fmt_duration(row["duration_seconds"]),
                str(row["task_run_count"]),
                first_line(row["state_message"]),
            ]
            for row in rows
        ],
    )


def _upstream_names(task_run: dict[str, Any], names: dict[str, str]) -> str:
    seen: list[str] = []
    for up in task_run.get("upstream") or []:
        label = names.get(up["id"]) or up.get("task_name") or up["id"][:8]
        if up.get("kind") == "wait_for":
            label += " (wait_for)"
        if label not in seen:
            seen.append(label)
    return ", ".join(seen) or EMPTY


def _short(text: str | None, chars: int) -> str:
    if not text:
        return EMPTY
    return text if len(text) <= chars else text[:chars] + "..."


def show_flow_run(run: dict[str, Any]) -> None:
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
    print_fields(fields)

    print_heading("Parameters")
    parameters = run.get("parameters") or {}
    if parameters:
        print_fields([(name, fmt_value(value)) for name, value in parameters.items()])
    else:
        print_message("(none)")

    task_runs = run.get("task_runs") or []
    print_heading(f"Task runs ({len(task_runs)})")
    if task_runs:
        names = {t["id"]: t["name"] for t in task_runs}
        columns = [
            Column("Name", no_wrap=True),
            Column("State", no_wrap=True),
            Column("Duration", justify="right", no_wrap=True),
            Column("Attempts", justify="right"),
            Column("Retries", justify="right"),
            Column("Upstream", max_width=40),
            Column("Cache key", no_wrap=True),
            Column("Result", max_width=40),
            Column("Message", max_width=50, overflow="ellipsis"),
        ]
        print_table(
            columns,
            [
                [
                    t["name"],
                    state_cell(t["state_type"], t["state_name"]),
                    fmt_duration(t.get("duration_seconds")),
                    str(t.get("run_count", EMPTY)),
                    str(t.get("retries", EMPTY)),
                    _upstream_names(t, names),
                    _short(t.get("cache_key"), CACHE_KEY_CHARS),
                    t.get("result_ref") or EMPTY,
                    first_line(t.get("state_message")),
                ]
                for t in task_runs
            ],
        )
    else:
        print_message("(none)")

    print_heading("State history")
    print_table(
        [
            Column("Time", no_wrap=True),
            Column("State", no_wrap=True),
            Column("Message", max_width=80, overflow="ellipsis"),
        ],
        [
            [fmt_time(s["timestamp"], millis=True), state_cell(s["type"], s["name"]), first_line(s.get("message"))]
            for s in run.get("states") or []
        ],
    )

    subflows = run.get("subflow_runs", run.get("subflows")) or []
    if subflows:
        print_heading(f"Subflow runs ({len(subflows)})")
        print_table(
            [Column("ID", no_wrap=True), Column("Flow"), Column("Name"), Column("State", no_wrap=True)],
            [
                [s["id"], s.get("flow_name") or EMPTY, s.get("name") or EMPTY,
                 state_cell(s.get("state_type"), s.get("state_name"))]
                for s in subflows
            ],
        )


def show_logs(rows: list[dict[str, Any]], flow_run_id: str) -> None:
    if not rows:
        print_message(f"No logs for flow run {flow_run_id}.")
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
    )
