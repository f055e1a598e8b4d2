"""The ``plait`` command line, against history written by real flow runs.

Each test runs real flows (a failing task, a retried task, a mapped task, a subflow) into a
real database (SQLite, and PostgreSQL when reachable, via the ``plait_env`` fixture), then
reads it back through click's CliRunner, through the plain functions in
``plait.cli.commands`` and through the installed ``plait`` console script.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from plait import INPUTS, flow, get_run_logger, task
from plait.cli import cli, commands

PLAIT = Path(sys.executable).with_name("plait")
CANARY = "s3cr3t-canary"
CANARY_URL = f"postgresql+psycopg://u:{CANARY}@127.0.0.1:5432/x"
UNREACHABLE_URL = f"postgresql+psycopg://u:{CANARY}@127.0.0.1:1/x"
MASKED_UNREACHABLE = "postgresql+psycopg://u:***@127.0.0.1:1/x"
BOX_CHARS = set("─━│┃┌┐└┘├┤┬┴┼╭╮╰╯═║")
LOG_CANARY = "extracted 3 rows (cli-log-canary)"

# -- the flows whose history the CLI reads ------------------------------------------------
_attempts = {"flaky": 0}


@task
def extract():
    get_run_logger().info(LOG_CANARY)
    return [1, 2, 3]


@task(retries=2, retry_delay_seconds=0)
def flaky(rows):
    _attempts["flaky"] += 1
    if _attempts["flaky"] == 1:
        raise RuntimeError("transient glitch")
    return sum(rows)


@task
def double(x):
    return x * 2


@task
def explode(total):
    raise ValueError(f"kaboom after {total}")


@flow(name="cli-etl")
def cli_etl(n: int = 3):
    rows = extract.submit()
    total = flaky.submit(rows)
    doubled = double.map(rows.result())
    explode.submit(total, wait_for=doubled).result()


@task(cache_policy=INPUTS)
def square(x):
    return x * x


@flow(name="cli-child")
def cli_child(k: int):
    return double(k)


@flow(name="cli-ok")
def cli_ok():
    get_run_logger().info("hello from cli-ok")
    assert square(3) == square(3) == 9  # the second call is answered from the cache
    return cli_child(2)


def _reset_store() -> None:
    from plait._recorder import reset_recorder
    from plait._store.database import Database

    reset_recorder()
    Database.dispose_all()


@pytest.fixture
def history(plait_env: str) -> dict[str, str]:
    """Runs cli-ok (with subflow cli-child) then cli-etl (fails); returns name -> flow run id."""
    _attempts["flaky"] = 0
    assert cli_ok() == 4
    with pytest.raises(ValueError, match="kaboom"):
        cli_etl()
    _reset_store()  # flush everything the recorder buffered
    rows = commands.flow_run_ls(limit=10)
    return {row["flow_name"]: row["id"] for row in rows}


def invoke(*args: str) -> object:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def table(text: str, first_header: str) -> list[dict[str, str]]:
    """Parse a plain table (headers upper-case) starting at the line beginning ``first_header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first_header))
    header = lines[start]
    # multi-word headers ("CACHE KEY") are joined with one space; columns with two or more
    starts = [m.start() for m in re.finditer(r"(?:(?<=\s{2})|^)\S", header)]
    names = [header[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=False)]
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        cells = [line[a:b].strip() if b else line[a:].strip() for a, b in zip(starts, [*starts[1:], None], strict=False)]
        rows.append(dict(zip(names, cells, strict=False)))
    return rows


def assert_plain(text: str) -> None:
    assert "\x1b[" not in text, "colour codes in plain output"
    assert not BOX_CHARS & set(text), "box-drawing characters in plain output"


# -- flow-run ls ------------------------------------------------------------------------------
def test_ls_lists_runs_newest_first_in_plain_text(history):
    result = invoke("flow-run", "ls", "--wide")  # every cell whole (tests/test_cli_history.py: fitted)
    assert result.exit_code == 0, result.output
    assert_plain(result.stdout)
    rows = table(result.stdout, "ID")
    assert [r["FLOW"] for r in rows] == ["cli-etl", "cli-child", "cli-ok"]
    etl = rows[0]
    assert etl["ID"] == history["cli-etl"]
    assert etl["STATE"] == "Failed"
    assert etl["TASKS"] == "6"
    assert "kaboom after 6" in etl["MESSAGE"]
    assert {r["STATE"] for r in rows[1:]} == {"Completed"}


def test_ls_filters_by_state_flow_and_limit(history):
    failed = table(invoke("flow-run", "ls", "--state", "failed").stdout, "ID")
    assert [r["ID"] for r in failed] == [history["cli-etl"]]
    completed = table(invoke("flow-run", "ls", "--state", "COMPLETED").stdout, "ID")
    assert {r["FLOW"] for r in completed} == {"cli-ok", "cli-child"}
    by_flow = table(invoke("flow-run", "ls", "--flow", "cli-ok").stdout, "ID")
    assert [r["ID"] for r in by_flow] == [history["cli-ok"]]
    limited = table(invoke("flow-run", "ls", "--limit", "1").stdout, "ID")
    assert [r["ID"] for r in limited] == [history["cli-etl"]]
    none = invoke("flow-run", "ls", "--state", "crashed", "--flow", "cli-ok")
    assert none.exit_code == 0 and none.stdout.strip() == "No flow runs found."


def test_ls_json_is_valid_and_complete(history):
    result = invoke("flow-run", "ls", "--json", "--state", "Failed")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert len(rows) == 1
    row = rows[0]
    assert set(row) >= {
        "id", "flow_name", "name", "state_type", "state_name", "state_message", "start_time",
        "end_time", "duration_seconds", "task_run_count", "parent_flow_run_id", "tags",
    }
    assert (row["id"], row["state_type"], row["task_run_count"]) == (history["cli-etl"], "FAILED", 6)
    child = json.loads(invoke("flow-run", "ls", "--json", "--flow", "cli-child").stdout)[0]
    assert child["parent_flow_run_id"] == history["cli-ok"]
    assert json.loads(invoke("flow-run", "ls", "--json", "--flow", "nothing").stdout) == []


def test_ls_rejects_bad_state_and_limit_as_usage_errors():
    bad_state = CliRunner().invoke(cli, ["flow-run", "ls", "--state", "bogus"])
    assert bad_state.exit_code == 2
    assert "Error:" in bad_state.stderr and "bogus" in bad_state.stderr
    for name in ("scheduled", "running", "completed", "failed", "crashed", "cancelled"):
        assert name in bad_state.stderr.lower()
    bad_limit = CliRunner().invoke(cli, ["flow-run", "ls", "--limit", "0"])
    assert bad_limit.exit_code == 2 and "--limit" in bad_limit.stderr
    assert bad_state.stdout == bad_limit.stdout == ""


# -- flow-run inspect ---------------------------------------------------------------------------
def test_inspect_shows_header_task_runs_and_history(history):
    run_id = history["cli-etl"]
    result = invoke("flow-run", "inspect", run_id[:8], "--wide")  # a prefix is enough; every column
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert_plain(out)
    assert re.search(rf"^ID\s+{run_id}$", out, re.M)
    assert re.search(r"^Flow run\s+[a-z]+-[a-z]+$", out, re.M)
    assert re.search(r"^Flow\s+cli-etl$", out, re.M)
    assert re.search(r"^State\s+Failed$", out, re.M)
    assert re.search(r"^Message\s+ValueError: kaboom after 6$", out, re.M)
    assert re.search(r"^n\s+3$", out, re.M)  # parameters

    tasks = {r["NAME"]: r for r in table(out, "NAME")}
    assert set(tasks) == {"extract-0", "flaky-0", "double-0", "double-1", "double-2", "explode-0"}
    assert tasks["extract-0"]["STATE"] == "Completed"
    assert (tasks["flaky-0"]["STATE"], tasks["flaky-0"]["ATTEMPTS"], tasks["flaky-0"]["RETRIES"]) == (
        "Completed", "2", "1",
    )
    assert tasks["flaky-0"]["UPSTREAM"] == "extract-0"
    assert tasks["explode-0"]["STATE"] == "Failed"
    assert tasks["explode-0"]["UPSTREAM"].split(", ") == [
        "flaky-0", "double-0 (wait_for)", "double-1 (wait_for)", "double-2 (wait_for)",
    ]
    assert "kaboom after 6" in tasks["explode-0"]["MESSAGE"]

    history_rows = table(out, "TIME")
    assert [r["STATE"] for r in history_rows] == ["Pending", "Running", "Failed"]


def test_inspect_shows_cache_keys_results_and_subflow_runs(history):
    out = invoke("flow-run", "inspect", history["cli-ok"], "--wide").stdout
    first, second = table(out, "NAME")
    assert (first["NAME"], first["STATE"], second["NAME"], second["STATE"]) == (
        "square-0", "Completed", "square-1", "Cached",
    )
    detail = commands.flow_run_inspect(history["cli-ok"])
    key = detail["task_runs"][0]["cache_key"]
    assert key and first["CACHE KEY"] == second["CACHE KEY"] == key[:12] + "..."
    assert first["RESULT"] == detail["task_runs"][0]["result_ref"] and first["RESULT"] != "-"
    assert "Subflow runs (1)" in out
    (sub,) = table(out.split("Subflow runs (1)")[1], "ID")
    assert (sub["ID"], sub["FLOW"], sub["STATE"]) == (history["cli-child"], "cli-child", "Completed")


def test_inspect_json_has_states_retries_and_upstream(history):
    result = invoke("flow-run", "inspect", history["cli-etl"], "--json")
    detail = json.loads(result.stdout)
    assert detail["id"] == history["cli-etl"] and detail["parameters"] == {"n": 3}
    tasks = {t["name"]: t for t in detail["task_runs"]}
    flaky_states = [s["type"] for s in tasks["flaky-0"]["states"]]
    assert flaky_states == ["PENDING", "RUNNING", "RETRYING", "RUNNING", "COMPLETED"]
    assert tasks["flaky-0"]["run_count"] == 2 and tasks["flaky-0"]["retries"] == 1
    assert [(u["id"], u["kind"]) for u in tasks["flaky-0"]["upstream"]] == [(tasks["extract-0"]["id"], "data")]
    assert tasks["explode-0"]["state_type"] == "FAILED"


def test_unknown_and_ambiguous_ids_are_one_line_errors(history):
    for command in ("inspect", "logs"):
        result = CliRunner().invoke(cli, ["flow-run", command, "no-such-run"])
        assert result.exit_code == 1
        assert result.stdout == ""
        assert result.stderr.startswith("Error: no flow run matches 'no-such-run'")
        assert "plait flow-run ls" in result.stderr
        assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1
    result = CliRunner().invoke(cli, ["flow-run", "inspect", ""])
    assert result.exit_code == 1 and "give a flow run id" in result.stderr


# -- flow-run logs --------------------------------------------------------------------------
def test_logs_show_time_level_task_run_and_message(history, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # one line per message (at 80 they wrap: tests/test_cli_history.py)
    result = invoke("flow-run", "logs", history["cli-etl"][:10])
    assert result.exit_code == 0
    out = result.stdout
    assert_plain(out)
    line = next(line for line in out.splitlines() if LOG_CANARY in line)
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\s+INFO\s+extract-0\s+" + re.escape(LOG_CANARY) + "$", line)
    assert re.search(r"\sWARNING\s+flaky-0\s+.*transient glitch", out)
    assert re.search(r"\sERROR\s+explode-0\s+.*kaboom after 6", out)
    assert re.search(r"\sINFO\s+flow\s+Beginning flow run", out)
    # a traceback in a message stays under the message column, not at the line start
    assert all(re.match(r"^(\d{4}-|\s)", line) for line in out.splitlines() if line)


def test_logs_include_subflows_and_json(history):
    out = invoke("flow-run", "logs", history["cli-ok"]).stdout
    assert re.search(r"\sINFO\s+flow\s+hello from cli-ok$", out, re.M)
    assert re.search(r"\sINFO\s+subflow " + history["cli-child"][:8] + r"\s+Beginning flow run", out)
    rows = json.loads(invoke("flow-run", "logs", history["cli-etl"], "--json").stdout)
    canary = next(r for r in rows if r["message"] == LOG_CANARY)
    assert set(canary) >= {"timestamp", "level", "logger", "task_run_id", "task_name", "message"}
    assert (canary["level"], canary["task_name"], canary["task_run_name"], canary["source"]) == (
        "INFO", "extract", "extract-0", "extract-0",
    )


# -- the plain functions behind the commands ---------------------------------------------------
def test_command_functions_return_data(history):
    runs = commands.flow_run_ls(state="failed")
    assert [r["id"] for r in runs] == [history["cli-etl"]]
    assert len(commands.flow_run_ls(limit=2)) == 2
    assert commands.flow_run_ls(flow_name="cli-ok")[0]["id"] == history["cli-ok"]
    detail = commands.flow_run_inspect(history["cli-etl"][:6])
    assert len(detail["task_runs"]) == 6
    logs = commands.flow_run_logs(history["cli-etl"])
    assert any(r["message"] == LOG_CANARY and r["source"] == "extract-0" for r in logs)
    with pytest.raises(ValueError, match="FAILED"):
        commands.flow_run_ls(state="bogus")
    with pytest.raises(ValueError, match=">= 1"):
        commands.flow_run_ls(limit=0)
    with pytest.raises(LookupError, match="no flow run matches"):
        commands.flow_run_inspect("zzzz")


def test_unexpected_errors_are_one_line_without_the_password(monkeypatch):
    def broken(**_: object) -> None:
        raise RuntimeError(f"wires crossed\nwhile talking to {CANARY_URL}")

    monkeypatch.setenv("PLAIT_DATABASE_URL", CANARY_URL)
    monkeypatch.setattr(commands, "flow_run_ls", broken)
    result = CliRunner().invoke(cli, ["flow-run", "ls"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: unexpected RuntimeError: wires crossed while talking to postgresql")
    assert CANARY not in result.output and "u:***@" in result.stderr
    assert "Traceback" not in result.output and len(result.stderr.splitlines()) == 1


def test_rich_mode_on_a_terminal_colours_states(history, monkeypatch):
    from plait.cli import _output

    monkeypatch.setattr(_output, "use_rich", lambda: True)
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = invoke("flow-run", "ls").stdout
    assert "\x1b[31mFailed" in out  # red
    assert "\x1b[32mCompleted" in out  # green
    assert BOX_CHARS & set(out)
    inspect = invoke("flow-run", "inspect", history["cli-etl"]).stdout
    assert "flaky-0" in inspect and "\x1b[" in inspect


# -- config show and version --------------------------------------------------------------------
@pytest.fixture
def home(tmp_path, monkeypatch):
    _reset_store()
    for name in list(os.environ):
        if name.startswith("PLAIT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PLAIT_HOME", str(tmp_path / "home"))
    yield tmp_path / "home"
    _reset_store()


def test_config_show_marks_sources_and_masks_the_password(home, monkeypatch):
    home.mkdir()
    (home / "config.toml").write_text("persist_results = true\n")
    monkeypatch.setenv("PLAIT_LOGGING_LEVEL", "DEBUG")
    monkeypatch.setenv("PLAIT_DATABASE_URL", CANARY_URL)
    result = invoke("config", "show")
    assert result.exit_code == 0
    assert CANARY not in result.output
    assert_plain(result.stdout)
    rows = {r["NAME"]: r for r in table(result.stdout, "NAME")}
    assert (rows["logging_level"]["VALUE"], rows["logging_level"]["SOURCE"]) == ("DEBUG", "env")
    assert rows["logging_level"]["ENV VAR"] == "PLAIT_LOGGING_LEVEL"
    assert rows["database_url"]["VALUE"] == "postgresql+psycopg://u:***@127.0.0.1:5432/x"
    assert rows["persist_results"]["SOURCE"] == f"file {home / 'config.toml'}"
    assert rows["persist_results"]["VALUE"] == "true"
    assert rows["crash_after"]["SOURCE"] == "default"

    as_json = invoke("config", "show", "--json")
    assert CANARY not in as_json.output
    by_name = {r["name"]: r for r in json.loads(as_json.stdout)}
    assert by_name["logging_level"]["source"] == "env" and by_name["persist_results"]["value"] is True

    revealed = invoke("config", "show", "--json", "--show-secrets")
    assert {r["name"]: r for r in json.loads(revealed.stdout)}["database_url"]["value"] == CANARY_URL


def test_invalid_setting_is_a_one_line_error(home, monkeypatch):
    monkeypatch.setenv("PLAIT_LOGGING_LEVEL", "chatty")
    result = CliRunner().invoke(cli, ["config", "show"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: invalid setting PLAIT_LOGGING_LEVEL: unknown logging level 'CHATTY'")
    assert "Traceback" not in result.output


def test_version(home, monkeypatch):
    import plait

    monkeypatch.setenv("PLAIT_DATABASE_URL", CANARY_URL)
    result = invoke("version")
    assert result.exit_code == 0 and CANARY not in result.output
    assert re.search(rf"^plait\s+{re.escape(plait.__version__)}$", result.stdout, re.M)
    assert re.search(rf"^Python\s+{re.escape('.'.join(map(str, sys.version_info[:3])))} ", result.stdout, re.M)
    assert re.search(r"^Database\s+postgresql\+psycopg://u:\*\*\*@127\.0\.0\.1:5432/x$", result.stdout, re.M)
    assert re.search(rf"^Home\s+{re.escape(str(home))}$", result.stdout, re.M)
    info = json.loads(invoke("version", "--json").stdout)
    assert info["plait"] == plait.__version__ and info["home"] == str(home)
    assert invoke("--version").stdout.strip() == f"plait {plait.__version__}"


def test_unreachable_database_is_a_masked_one_line_error(home, monkeypatch):
    monkeypatch.setenv("PLAIT_DATABASE_URL", UNREACHABLE_URL)
    for args in (["flow-run", "ls"], ["flow-run", "ls", "--json"], ["flow-run", "inspect", "abc"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1, result.output
        assert result.stdout == ""
        assert result.stderr.startswith(f"Error: Cannot open the plait database at {MASKED_UNREACHABLE}")
        assert CANARY not in result.output and "Traceback" not in result.output


# -- the installed console script ---------------------------------------------------------------
def run_plait(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert PLAIT.exists(), f"console script not installed at {PLAIT}"
    return subprocess.run(
        [str(PLAIT), *args], capture_output=True, text=True, timeout=120, env=env or dict(os.environ)
    )


def test_console_script_reads_history(history):
    listed = run_plait("flow-run", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["flow_name"] for r in json.loads(listed.stdout)] == ["cli-etl", "cli-child", "cli-ok"]
    plain = run_plait("flow-run", "inspect", history["cli-etl"])
    assert plain.returncode == 0, plain.stderr
    assert_plain(plain.stdout)
    assert {r["NAME"]: r["STATE"] for r in table(plain.stdout, "NAME")}["explode-0"] == "Failed"
    logs = run_plait("flow-run", "logs", history["cli-etl"])
    assert LOG_CANARY in logs.stdout
    missing = run_plait("flow-run", "inspect", "nope")
    assert missing.returncode == 1 and missing.stderr.startswith("Error: no flow run matches 'nope'")


def test_console_script_unreachable_database(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env.update(PLAIT_HOME=str(tmp_path / "home"), PLAIT_DATABASE_URL=UNREACHABLE_URL)
    result = run_plait("flow-run", "ls", env=env)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == result.stderr.strip().splitlines()[0]  # one line
    assert result.stderr.startswith(f"Error: Cannot open the plait database at {MASKED_UNREACHABLE}")
    assert CANARY not in result.stderr and "Traceback" not in result.stderr
    config = run_plait("config", "show", env=env)
    assert config.returncode == 0 and CANARY not in config.stdout and "***" in config.stdout
    usage = run_plait("flow-run", "ls", "--state", "nope", env=env)
    assert usage.returncode == 2 and "failed" in usage.stderr


def test_help_does_not_import_sqlalchemy_or_rich(tmp_path):
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from plait.cli import cli\n"
        "for args in (['--help'], ['flow-run', '--help'], ['flow-run', 'ls', '--help']):\n"
        "    assert CliRunner().invoke(cli, args).exit_code == 0\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'rich', 'alembic'}))\n"
    )
    env = dict(os.environ, PLAIT_HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    helped = run_plait("--help", env=env)
    assert helped.returncode == 0
    for command in ("version", "config", "flow-run"):
        assert command in helped.stdout


# -- docs/cli.md stays accurate -------------------------------------------------------------------
DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def _commands(group, path=("plait",)):
    import click

    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def test_docs_cover_every_command_and_option():
    text = DOC.read_text(encoding="utf-8")
    sections = {s.split("`", 1)[0]: s for s in text.split("\n## `")[1:]}
    for path, command in _commands(cli):
        name = " ".join(path)
        section = next((body for title, body in sections.items() if title.split(" ID")[0] == name), None)
        assert section is not None, f"docs/cli.md has no section for `{name}`"
        for param in command.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--") and opt != "--help":
                    assert f"`{opt}" in section, f"docs/cli.md: `{name}` section does not document {opt}"


def test_docs_python_blocks_run(tmp_path):
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), flags=re.M | re.S)
    assert len(blocks) >= 2
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env.update(PLAIT_HOME=str(tmp_path / "home"), PLAIT_LOG_TO_CONSOLE="false")
    for i, code in enumerate(blocks):
        script = tmp_path / f"block{i}.py"
        script.write_text(code, encoding="utf-8")
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
    listed = run_plait("flow-run", "ls", "--json", env=env)
    assert [(r["flow_name"], r["state_type"]) for r in json.loads(listed.stdout)] == [
        ("etl", "FAILED"), ("publish", "COMPLETED"), ("report", "COMPLETED"),
    ]
