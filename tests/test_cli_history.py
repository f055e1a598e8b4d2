"""Run history you can read: `plait flow-run inspect/ls/logs` never hide why something failed,
fit the width (a terminal's, or COLUMNS or 80 when piped), and filter.

Real flows record into a real database (SQLite, and PostgreSQL when reachable, through the
``plait_env`` fixture); the CLI reads it back through click's CliRunner, with COLUMNS set
as a terminal would set it. A remote test does the same through a real server.

Ids: a full flow run id (36 characters) is never cut. Piped output keeps it whole and the
table counts it as 8 characters when fitting, so a line may be longer than the width by
the 28 characters each full id needs beyond 8 (``_fits`` allows exactly that).
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from plait import flow, get_run_logger, task
from plait.cli import cli, commands

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"

# A dbt-like failure: several lines, some longer than 80 columns, none with a word longer
# than the room the details leave (so word-by-word comparison holds after wrapping).
DBT_ERROR = (
    "dbt build failed: 1 of 6 models errored\n"
    "  Database Error in model stg_orders (models/staging/stg_orders.sql)\n"
    "    column \"order_total\" does not exist in relation raw.orders; did you mean \"order_amount\"?\n"
    "    LINE 12: select order_id, order_total, customer_id from raw.orders where status = 'shipped'\n"
    "  Done. PASS=3 WARN=0 ERROR=1 SKIP=2 TOTAL=6 (cli-history-tail-canary)"
)


@task
def extract():
    get_run_logger().info("extracted 3 rows")
    return [1, 2, 3]


@task
def double(x):
    get_run_logger().debug("doubling %s", x)
    return x * 2


@task
def dbt_build(rows):
    get_run_logger().warning("running dbt on %d rows", len(rows))
    raise RuntimeError(DBT_ERROR)


@flow(name="hist-warehouse-nightly-build", tags=["nightly", "dbt"])
def nightly():
    rows = extract.submit()
    doubled = double.map(rows.result())
    dbt_build.submit(rows, wait_for=doubled).result()


@flow(name="hist-child", tags=["nightly"])
def child(k: int):
    return double(k)


@flow(name="hist-parent")
def parent():
    return child(2)


def _reset_store() -> None:
    from plait._recorder import reset_recorder
    from plait._store.database import Database

    reset_recorder()
    Database.dispose_all()


@pytest.fixture
def history(plait_env: str) -> dict[str, object]:
    """hist-parent (with subflow hist-child), then, later, hist-warehouse-nightly-build (fails)."""
    assert parent() == 4
    _reset_store()
    between = datetime.now(UTC)
    time.sleep(0.05)
    with pytest.raises(RuntimeError, match="dbt build failed"):
        nightly()
    _reset_store()
    ids = {row["flow_name"]: row["id"] for row in commands.flow_run_ls(limit=10)}
    return {"ids": ids, "between": between}


def run_cli(*args: str, columns: int | None = 80, monkeypatch: pytest.MonkeyPatch | None = None) -> str:
    env = {"COLUMNS": str(columns)} if columns else {}
    result = CliRunner(env=env).invoke(cli, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def _fits(line: str, width: int) -> bool:
    """Within ``width``, counting each full id as 8 characters (ids are never cut)."""
    return len(line) - 28 * len(UUID.findall(line)) <= width


def _words(text: str) -> str:
    return " ".join(text.split())


def _details(out: str) -> str:
    """The "Failed task runs" section of `inspect`'s output."""
    assert "Failed task runs (1)" in out, out
    return out.split("Failed task runs (1)", 1)[1].split("\nState history", 1)[0]


# -- inspect never hides why something failed -------------------------------------------------------
@pytest.mark.parametrize("width", [80, 120])
def test_inspect_shows_the_whole_failure_at_80_and_120_columns(history, width):
    run_id = history["ids"]["hist-warehouse-nightly-build"]
    out = run_cli("flow-run", "inspect", run_id, columns=width)
    # every line fits, ids aside
    too_long = [line for line in out.splitlines() if not _fits(line, width)]
    assert not too_long, too_long
    # the task table is there with the columns that say what happened, failed run first
    header = next(line for line in out.splitlines() if line.startswith("NAME"))
    assert header.split() == ["NAME", "STATE", "DURATION", "ATTEMPTS", "UPSTREAM", "MESSAGE"]
    rows = out.split(header, 1)[1].strip().splitlines()
    assert rows[0].startswith("dbt_build-0") and " Failed " in rows[0]
    # the details: state, attempts, upstream by name, and every word of every line of the message
    details = _details(out)
    assert re.search(r"^dbt_build-0$", details, re.M)
    assert re.search(r"^  State\s+Failed$", details, re.M)
    assert re.search(r"^  Attempts\s+1 \(0 retries\)$", details, re.M)
    assert _words("extract-0, double-0 (wait_for), double-1 (wait_for), double-2 (wait_for)") in _words(details)
    assert _words(DBT_ERROR) in _words(details)
    # message lines keep their own lines (and indentation) under the value column
    assert re.search(r"^\s+Done\. PASS=3", details, re.M)
    assert re.search(r"^  Message\s+RuntimeError: dbt build failed: 1 of 6 models errored$", details, re.M)
    # the flow run's own message, whole, in the header
    header_part = out.split("\nParameters", 1)[0]
    assert "cli-history-tail-canary" in header_part


def test_inspect_on_a_terminal_fits_and_shows_the_failure(history, monkeypatch):
    from plait.cli import _output

    monkeypatch.setattr(_output, "use_rich", lambda: True)
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("NO_COLOR", raising=False)
    raw = run_cli("flow-run", "inspect", history["ids"]["hist-warehouse-nightly-build"], columns=80)
    out = ANSI.sub("", raw)
    assert all(len(line) <= 80 for line in out.splitlines()), [line for line in out.splitlines() if len(line) > 80]
    header = next(line for line in out.splitlines() if line.startswith("Name"))
    assert header.split() == ["Name", "State", "Duration", "Attempts", "Upstream", "Message"]
    assert _words(DBT_ERROR) in _words(_details(out))


def test_wide_shows_every_column_whole(history):
    run_id = history["ids"]["hist-warehouse-nightly-build"]
    out = run_cli("flow-run", "inspect", run_id, "--wide", columns=80)
    header = next(line for line in out.splitlines() if line.startswith("NAME"))
    assert [h for h in re.split(r"\s{2,}", header)] == [
        "NAME", "STATE", "DURATION", "ATTEMPTS", "RETRIES", "UPSTREAM", "CACHE KEY", "RESULT", "MESSAGE",
    ]
    assert "extract-0, double-0 (wait_for), double-1 (wait_for), double-2 (wait_for)" in out
    assert any(len(line) > 80 for line in out.splitlines())  # nothing was fitted
    assert _words(DBT_ERROR) in _words(_details(out))  # the table has first lines only: details stay


# -- inspect filters ------------------------------------------------------------------------------
def test_inspect_filters_by_state_task_and_limit(history):
    run_id = history["ids"]["hist-warehouse-nightly-build"]

    def names(*args: str) -> list[str]:
        out = run_cli("flow-run", "inspect", run_id, *args)
        section = out.split("\nTask runs (", 1)[1].split("\n\n", 1)[0]
        return [line.split()[0] for line in section.splitlines()[2:]]

    assert names() == ["dbt_build-0", "extract-0", "double-0", "double-1", "double-2"]
    assert names("--state", "failed") == ["dbt_build-0"]
    assert names("--state", "COMPLETED", "--state", "crashed") == ["extract-0", "double-0", "double-1", "double-2"]
    assert names("--task", "double-[02]") == ["double-0", "double-2"]  # a glob: whole names
    assert names("--task", "doub*") == ["double-0", "double-1", "double-2"]  # the task name matches
    assert names("--task", "oubl") == ["double-0", "double-1", "double-2"]  # no glob: a substring
    assert names("--task", "Double") == []  # case matters
    assert names("--limit", "2") == ["dbt_build-0", "extract-0"]  # failed ones kept first
    out = run_cli("flow-run", "inspect", run_id, "--task", "double", "--limit", "1")
    assert "Task runs (1 of 5 shown)" in out and "Failed task runs" not in out
    # the details of a filtered run still name upstream runs the filter left out
    only_failed = run_cli("flow-run", "inspect", run_id, "--state", "failed")
    assert "double-1 (wait_for)" in _words(_details(only_failed))

    detail = json.loads(run_cli("flow-run", "inspect", run_id, "--json", "--task", "double-*"))
    assert [t["name"] for t in detail["task_runs"]] == ["double-0", "double-1", "double-2"]
    assert detail["task_run_count"] == 5
    bad = CliRunner().invoke(cli, ["flow-run", "inspect", run_id, "--state", "bogus"])
    assert bad.exit_code == 2 and "bogus" in bad.stderr


def test_inspect_json_stays_complete(history):
    run_id = history["ids"]["hist-warehouse-nightly-build"]
    detail = json.loads(run_cli("flow-run", "inspect", run_id, "--json", columns=40))
    assert set(detail) >= {
        "id", "flow_name", "name", "parameters", "tags", "state_type", "state_name", "state_message",
        "parent_flow_run_id", "parent_task_run_id", "run_count", "created", "start_time", "end_time",
        "duration_seconds", "pid", "hostname", "heartbeat_at", "states", "subflows", "task_runs", "late_reason",
    }
    assert detail["task_run_count"] == len(detail["task_runs"]) == 5
    assert [t["name"] for t in detail["task_runs"]][:2] == ["extract-0", "double-0"]  # created order, as before
    failed = next(t for t in detail["task_runs"] if t["state_type"] == "FAILED")
    assert failed["state_message"].startswith("RuntimeError: " + DBT_ERROR)  # whole, not cut to any width
    assert {u["name"] for u in failed["upstream"]} == {"extract-0", "double-0", "double-1", "double-2"}
    assert sorted(detail["tags"]) == ["dbt", "nightly"]


# -- ls ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("width", [80, 120])
def test_ls_fits_and_says_why_runs_failed(history, width):
    out = run_cli("flow-run", "ls", columns=width)
    lines = out.splitlines()
    table, rest = out.split("\n\n", 1)
    # the table's ID column is 36 wide (its header too): 28 more than it counts as
    assert all(len(line) <= width + 28 for line in table.splitlines()), table
    assert all(len(line) <= width for line in rest.splitlines()), rest
    assert lines[0].split() == ["ID", "FLOW", "STATE", "STARTED", "DURATION", "TASKS", "MESSAGE"]
    why = out.split("Why they failed", 1)[1]
    run_id = history["ids"]["hist-warehouse-nightly-build"]
    assert f"{run_id[:8]}  hist-warehouse-nightly-build" in why
    assert "RuntimeError: dbt build failed: 1 of 6 models errored" in _words(why)
    assert run_id in out  # piped: full ids


def test_ls_filters_by_top_level_tag_and_since(history):
    ids = history["ids"]

    def listed(*args: str) -> list[str]:
        return [r["flow_name"] for r in json.loads(run_cli("flow-run", "ls", "--json", *args))]

    assert listed() == ["hist-warehouse-nightly-build", "hist-child", "hist-parent"]
    assert listed("--top-level") == ["hist-warehouse-nightly-build", "hist-parent"]
    assert listed("--tag", "nightly") == ["hist-warehouse-nightly-build", "hist-child"]
    assert listed("--tag", "nightly", "--tag", "dbt") == ["hist-warehouse-nightly-build"]
    assert listed("--tag", "nightly", "--top-level") == ["hist-warehouse-nightly-build"]
    assert listed("--tag", "nope") == []
    assert listed("--since", "1h") == listed()
    assert listed("--since", history["between"].isoformat()) == ["hist-warehouse-nightly-build"]
    local_date = (datetime.now() - timedelta(days=1)).date().isoformat()  # naive: local time
    assert listed("--since", local_date, "--state", "failed") == ["hist-warehouse-nightly-build"]
    assert listed("--since", (datetime.now(UTC) + timedelta(hours=1)).isoformat()) == []
    table = run_cli("flow-run", "ls", "--top-level", "--tag", "nightly")
    assert ids["hist-warehouse-nightly-build"] in table and ids["hist-parent"] not in table
    # the functions take the same filters
    rows = commands.flow_run_ls(top_level=True, tags=["dbt"], since="2d")
    assert [r["id"] for r in rows] == [ids["hist-warehouse-nightly-build"]]


def test_ls_since_rejects_what_it_cannot_read():
    for bad in ("yesterday", "5 parsecs", "2026-13-45", "-2d"):
        result = CliRunner().invoke(cli, ["flow-run", "ls", "--since", bad])
        assert result.exit_code == 2, (bad, result.output)
        assert "--since" in result.stderr and "30m, 1h, 2d, 1w" in result.stderr and "2026-11-21" in result.stderr
        assert "Traceback" not in result.output
    with pytest.raises(ValueError, match="time ago"):
        commands.flow_run_ls(since="soon")


def test_parse_since_reads_relative_times_and_iso():
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    assert commands.parse_since("90m", now=now) == now - timedelta(minutes=90)
    assert commands.parse_since("2d", now=now) == now - timedelta(days=2)
    assert commands.parse_since("1W", now=now) == now - timedelta(weeks=1)
    assert commands.parse_since("2026-11-21T10:00:00+00:00") == datetime(2026, 11, 21, 10, tzinfo=UTC)
    naive = commands.parse_since("2026-11-21T10:00")
    assert naive == datetime(2026, 11, 21, 10).astimezone().astimezone(UTC)


# -- logs -------------------------------------------------------------------------------------------
def test_logs_filter_by_task_and_minimum_level(history):
    run_id = history["ids"]["hist-warehouse-nightly-build"]

    def rows(*args: str) -> list[dict[str, object]]:
        return json.loads(run_cli("flow-run", "logs", run_id, "--json", *args))

    everything = rows()
    assert {r["level"] for r in everything} >= {"INFO", "WARNING", "ERROR"}
    warnings = rows("--level", "warning")
    assert warnings and {r["level"] for r in warnings} <= {"WARNING", "ERROR", "CRITICAL"}
    assert any(r["message"] == "running dbt on 3 rows" for r in warnings)
    assert not any(r["message"] == "extracted 3 rows" for r in warnings)
    assert [r["level"] for r in rows("--level", "ERROR")] == [r["level"] for r in everything if r["level"] == "ERROR"]
    dbt = rows("--task", "dbt")
    assert dbt and {r["source"] for r in dbt} == {"dbt_build-0"}
    assert {r["source"] for r in rows("--task", "double-?")} <= {"double-0", "double-1", "double-2"}
    assert [r["message"] for r in rows("--task", "dbt_build-0", "--level", "warning")][0] == "running dbt on 3 rows"
    plain = run_cli("flow-run", "logs", run_id, "--task", "extract")
    assert "extracted 3 rows" in plain and "dbt" not in plain
    none = run_cli("flow-run", "logs", run_id, "--task", "nothing-like-this")
    assert none.strip() == f"No logs for flow run {run_id} match the filters."
    bad = CliRunner().invoke(cli, ["flow-run", "logs", run_id, "--level", "loud"])
    assert bad.exit_code == 2 and "loud" in bad.stderr


@pytest.mark.parametrize("width", [80, 120])
def test_logs_wrap_to_the_width(history, width):
    run_id = history["ids"]["hist-warehouse-nightly-build"]
    out = run_cli("flow-run", "logs", run_id, "--level", "error", columns=width)
    lines = out.splitlines()
    assert all(len(line) <= width for line in lines), [line for line in lines if len(line) > width]
    assert all(re.match(r"^(\d{4}-|\s)", line) for line in lines if line)  # further lines indented
    assert "cli-history-tail-canary" in out and _words(DBT_ERROR) in _words(out)


# -- through a server (PLAIT_API_URL) ----------------------------------------------------------------
@pytest.mark.slow
def test_filters_work_through_a_server(tmp_path, monkeypatch):
    from plait.testing import reset_state
    from plait.testing._server import running_server

    with running_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "server") as server:
        reset_state()
        monkeypatch.setenv("PLAIT_HOME", str(tmp_path / "client-home"))
        monkeypatch.setenv("PLAIT_DATABASE_URL", f"sqlite:///{tmp_path / 'never-created.db'}")
        monkeypatch.setenv("PLAIT_API_URL", server.api_url)
        monkeypatch.setenv("PLAIT_API_KEY", server.admin_key)
        try:
            assert parent() == 4
            with pytest.raises(RuntimeError):
                nightly()
            reset_state()  # delivers what the recorder holds

            def listed(*args: str) -> list[str]:
                return [r["flow_name"] for r in json.loads(run_cli("flow-run", "ls", "--json", *args))]

            assert listed("--top-level") == ["hist-warehouse-nightly-build", "hist-parent"]
            assert listed("--tag", "nightly", "--tag", "dbt") == ["hist-warehouse-nightly-build"]
            assert listed("--since", "1h", "--tag", "nightly") == ["hist-warehouse-nightly-build", "hist-child"]
            run_id = json.loads(run_cli("flow-run", "ls", "--json", "--state", "failed"))[0]["id"]
            out = run_cli("flow-run", "inspect", run_id, "--state", "failed")
            assert _words(DBT_ERROR) in _words(_details(out))
            warnings = json.loads(run_cli("flow-run", "logs", run_id, "--json", "--level", "warning", "--task", "dbt"))
            assert [r["message"] for r in warnings][0] == "running dbt on 3 rows"
        finally:
            reset_state()
    assert not (tmp_path / "never-created.db").exists()


# -- docs/cli.md is generated from the commands ---------------------------------------------------
def test_docs_cli_md_is_generated_from_the_commands():
    from plait.cli import docs

    assert DOC.read_text(encoding="utf-8") == docs.render(), (
        "docs/cli.md differs from what the CLI generates; run `python -m plait.cli.docs > docs/cli.md` "
        "(and edit core/plait/cli/cli_docs_template.md or the commands' help, never docs/cli.md)"
    )
    assert docs.main(["--check", str(DOC)]) == 0


def test_docs_have_a_section_for_every_command_and_group():
    from plait.cli import docs

    text = docs.render()
    for path, command in docs.commands():
        if path == "plait":
            continue
        assert f"\n## `{path}`\n" in text, f"no section for {path}"
        section = text.split(f"\n## `{path}`\n", 1)[1].split("\n## ", 1)[0]
        first_help_line = (command.help or "").strip().splitlines()[0].strip()
        assert first_help_line in section, f"{path}: its help is missing"
        for param in command.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--") and opt != "--help":
                    assert f"`{opt}" in section, f"{path}: {opt} is not documented"


def test_docs_template_naming_a_missing_command_is_an_error():
    from plait.cli import docs

    with pytest.raises(ValueError, match="plait flow-run nonsense"):
        docs.render("# x\n<!-- command: plait flow-run nonsense -->\n")
