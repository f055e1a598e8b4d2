"""``plait deploy``, ``plait deployment ...``, ``plait work-pool ...``, ``plait flow-run
cancel | resume | retry`` and ``plait run``, through click's CliRunner against a real store
(SQLite and PostgreSQL via ``plait_env``), real subprocesses for ``plait run``'s cache test
and ``retry``, and one real server for the remote path.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from plait.cli import cli
from plait.cli.deployments import late_reason_of, parse_time
from plait.cli.run import parse_params

PLAIT = Path(sys.executable).with_name("plait")
# `plait` in a subprocess, with this module's commands on it whether or not plait.cli._app
# registers them yet (test_the_commands_are_registered_in_the_plait_script checks that).
PLAIT_RUN = [sys.executable, "-c", (
    "import sys; from plait.cli import cli; from plait.cli.run import run_cmd; "
    "'run' in cli.commands or cli.add_command(run_cmd); cli.main(sys.argv[1:], prog_name='plait')"
)]

FLOW_FILE = """\
from plait import flow, task


@task
def shout(label: str) -> str:
    return label.upper()


@flow(name="cli-deploy-etl")
def etl(days: int = 1, label: str = "daily") -> str:
    return f"{shout(label)}:{days}"
"""

YAML = """\
deployments:
  - name: nightly
    entrypoint: flows/etl.py:etl
    work_pool: local
    parameters: {days: 2}
    schedules:
      - interval: 3600
        anchor: 2024-01-01T00:00:00Z
"""


@pytest.fixture(autouse=True, scope="module")
def _commands() -> None:
    """The commands on the ``plait`` group, as plait.cli._app registers them (done here too,
    so these tests run whatever the order of registration; the console-script test below
    checks the real registration)."""
    from plait.cli._app import flow_run_group
    from plait.cli.deployments import FLOW_RUN_COMMANDS, deploy_cmd, deployment_group, work_pool_group
    from plait.cli.run import run_cmd

    for command in (deploy_cmd, deployment_group, work_pool_group, run_cmd):
        if command.name not in cli.commands:
            cli.add_command(command)
    for command in FLOW_RUN_COMMANDS:
        if command.name not in flow_run_group.commands:
            flow_run_group.add_command(command)


def invoke(*args: str, ok: bool = True, input: str | None = None) -> Result:
    result = CliRunner().invoke(cli, list(args), input=input)
    assert "Traceback" not in result.output
    if ok:
        assert result.exit_code == 0, f"plait {' '.join(args)} exited {result.exit_code}:\n{result.output}"
    return result


def table(text: str, first_header: str) -> list[dict[str, str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first_header))
    header = lines[start]
    starts = [m.start() for m in re.finditer(r"(?:(?<=\s{2})|^)\S", header)]
    names = [header[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=False)]
    rows = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        rows.append({n: (line[a:b] if b else line[a:]).strip()
                     for n, a, b in zip(names, starts, [*starts[1:], None], strict=False)})
    return rows


@pytest.fixture
def project(plait_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    (root / "flows").mkdir(parents=True)
    (root / "flows" / "etl.py").write_text(FLOW_FILE)
    (root / "plait.yaml").write_text(YAML)
    monkeypatch.chdir(root)
    invoke("work-pool", "create", "local", "--type", "process")
    return root


# -- plain helpers ---------------------------------------------------------------------------------
def test_param_values_are_json_when_they_parse_as_json() -> None:
    assert parse_params(["n=3", "ok=true", "none=null", 'tags=["a", 1]', "name=ann", "code=007", "eq=a=b", "e="]) == {
        "n": 3, "ok": True, "none": None, "tags": ["a", 1], "name": "ann", "code": "007", "eq": "a=b", "e": "",
    }
    assert parse_params(["n=4"], '{"n": 1, "m": 2}') == {"n": 4, "m": 2}
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_params(["oops"])
    with pytest.raises(ValueError, match="JSON object"):
        parse_params([], "[1]")


def test_times_are_iso_now_or_relative() -> None:
    now = datetime(2024, 6, 1, 12, tzinfo=UTC)
    assert parse_time("now", now=now) == now
    assert parse_time("+10m", now=now) == now + timedelta(minutes=10)
    assert parse_time("-2h", now=now) == now - timedelta(hours=2)
    assert parse_time("-7d", now=now) == now - timedelta(days=7)
    assert parse_time("2024-06-01T03:00:00Z") == datetime(2024, 6, 1, 3, tzinfo=UTC)
    assert parse_time("2024-06-01T03:00:00+02:00") == datetime(2024, 6, 1, 1, tzinfo=UTC)
    assert parse_time("2024-06-01T03:00") == datetime(2024, 6, 1, 3).astimezone(UTC)  # local time
    with pytest.raises(ValueError, match=r"ISO 8601.*\+10m"):
        parse_time("tomorrow")


# -- plait deploy, plait deployment ... --------------------------------------------------------------
def test_deploy_prints_created_updated_unchanged(project: Path) -> None:
    first = invoke("deploy")
    assert table(first.stdout, "DEPLOYMENT") == [{"DEPLOYMENT": "cli-deploy-etl/nightly", "OUTCOME": "created"}]
    assert json.loads(invoke("deploy", "--file", "plait.yaml", "--json").stdout) == [
        {"name": "cli-deploy-etl/nightly", "outcome": "unchanged"}]
    (project / "plait.yaml").write_text(YAML.replace("{days: 2}", "{days: 5}"))
    assert "updated" in invoke("deploy").stdout
    (project / "plait.yaml").write_text(YAML.replace("    schedules:\n", "    schedules: []\n").split("      - ")[0])
    assert "updated" in invoke("deploy").stdout
    assert json.loads(invoke("deployment", "inspect", "cli-deploy-etl/nightly", "--json").stdout)["schedules"] == []


def test_deploy_errors_name_the_file_and_the_problem(project: Path) -> None:
    (project / "plait.yaml").write_text(YAML.replace("days: 2", "dayz: 2"))
    bad = invoke("deploy", ok=False)
    assert bad.exit_code == 1
    assert "unknown parameter 'dayz' (did you mean 'days'?)" in bad.stderr and "plait.yaml" in bad.stderr
    missing = invoke("deploy", "--file", "nothing.yaml", ok=False)
    assert missing.exit_code == 1 and "nothing.yaml does not exist" in missing.stderr


def test_deployment_ls_inspect_pause_resume_delete(project: Path) -> None:
    invoke("deploy")
    rows = table(invoke("deployment", "ls").stdout, "DEPLOYMENT")
    assert rows == [{"DEPLOYMENT": "cli-deploy-etl/nightly", "WORK POOL": "local",
                     "SCHEDULES": "every 1h from 2024-01-01T00:00:00+00:00", "PAUSED": "no",
                     "UPDATED": rows[0]["UPDATED"]}]
    assert json.loads(invoke("deployment", "ls", "--pool", "elsewhere", "--json").stdout) == []
    shown = invoke("deployment", "inspect", "cli-deploy-etl/nightly").stdout
    assert re.search(r"^Entrypoint\s+flows/etl.py:etl$", shown, re.M)
    assert re.search(rf"^Code\s+{re.escape(str(project.resolve()))}$", shown, re.M)
    assert re.search(r"^days\s+2$", shown, re.M)

    assert invoke("deployment", "pause", "cli-deploy-etl/nightly").stdout.strip() == \
        "Paused deployment cli-deploy-etl/nightly."
    assert json.loads(invoke("deployment", "inspect", "cli-deploy-etl/nightly", "--json").stdout)["paused"] is True
    invoke("deployment", "resume", "cli-deploy-etl/nightly")
    assert table(invoke("deployment", "ls").stdout, "DEPLOYMENT")[0]["PAUSED"] == "no"

    invoke("deployment", "delete", "cli-deploy-etl/nightly", "--yes")
    assert invoke("deployment", "ls").stdout.strip().startswith("No deployments.")
    gone = invoke("deployment", "inspect", "cli-deploy-etl/nightly", ok=False)
    assert gone.exit_code == 1 and "no deployment 'cli-deploy-etl/nightly'" in gone.stderr


def test_deployment_run_makes_a_scheduled_run_with_checked_parameters(project: Path) -> None:
    invoke("deploy")
    before = datetime.now(UTC)
    run = json.loads(invoke("deployment", "run", "cli-deploy-etl/nightly", "--param", "label=weekly",
                            "--at", "+1h", "--json").stdout)
    assert run["state_type"] == "SCHEDULED" and run["parameters"] == {"days": 2, "label": "weekly"}
    expected = datetime.fromisoformat(run["expected_start_time"])
    assert before + timedelta(minutes=59) < expected < datetime.now(UTC) + timedelta(minutes=61)
    plain = invoke("deployment", "run", "cli-deploy-etl/nightly").stdout
    assert re.search(r"^State\s+Scheduled$", plain, re.M) and "plait flow-run inspect" in plain

    bad = invoke("deployment", "run", "cli-deploy-etl/nightly", "--param", "days=many", "--param", "dayz=1",
                 ok=False)
    assert bad.exit_code == 1
    assert "parameter 'days': must be an integer, got a string" in bad.stderr
    assert "unknown parameter 'dayz'" in bad.stderr
    bad_time = invoke("deployment", "run", "cli-deploy-etl/nightly", "--at", "soon", ok=False)
    assert bad_time.exit_code == 2 and "--at" in bad_time.stderr


def test_flow_run_ls_keeps_runs_due_later_apart(project: Path) -> None:
    invoke("deploy")
    now_run = json.loads(invoke("deployment", "run", "cli-deploy-etl/nightly", "--json").stdout)
    later = [json.loads(invoke("deployment", "run", "cli-deploy-etl/nightly", "--at", at, "--json").stdout)["id"]
             for at in ("+2h", "+1h")]
    listed = [r["id"] for r in json.loads(invoke("flow-run", "ls", "--json").stdout)]
    assert listed == [now_run["id"]]
    upcoming = json.loads(invoke("flow-run", "ls", "--upcoming", "--json").stdout)
    assert [r["id"] for r in upcoming] == later[::-1]  # soonest first
    assert all(r["expected_start_time"] for r in upcoming)
    shown = invoke("flow-run", "ls", "--upcoming").stdout
    assert shown.count(" due ") == 2, shown


def test_a_scheduled_run_says_why_it_has_not_started(project: Path) -> None:
    invoke("deploy")
    run = json.loads(invoke("deployment", "run", "cli-deploy-etl/nightly", "--json").stdout)
    reason = late_reason_of(run)
    assert reason is not None and "local" in reason
    assert late_reason_of({**run, "state_type": "COMPLETED"}) is None


def test_flow_run_inspect_says_why_a_scheduled_run_waits(project: Path) -> None:
    invoke("deploy")
    run = json.loads(invoke("deployment", "run", "cli-deploy-etl/nightly", "--json").stdout)
    shown = invoke("flow-run", "inspect", run["id"]).stdout
    # the reason is wrapped to the width (80 columns when piped): read it as one line
    assert ("Not started no worker has ever polled pool 'local' (start one with `plait worker start "
            "--pool local`)") in " ".join(shown.split()), shown
    assert json.loads(invoke("flow-run", "inspect", run["id"], "--json").stdout)["late_reason"].startswith(
        "no worker has ever polled pool 'local'")


def test_backfill_creates_missed_slots_once(project: Path) -> None:
    invoke("deploy")
    args = ("deployment", "backfill", "cli-deploy-etl/nightly", "--start", "2024-01-01T00:00:00Z",
            "--end", "2024-01-01T03:00:00Z")
    assert invoke(*args).stdout.strip() == (
        "Backfilled cli-deploy-etl/nightly: 4 slot(s), 4 run(s) created, 0 already had one.")
    again = json.loads(invoke(*args, "--json").stdout)
    assert (again["slots"], again["created"], again["existing"]) == (4, 0, 4)
    assert [r["expected_start_time"] for r in again["runs"]] == [
        f"2024-01-01T0{h}:00:00+00:00" for h in range(4)]


# -- plait work-pool ... ----------------------------------------------------------------------------
def test_work_pool_commands(project: Path) -> None:
    invoke("work-pool", "create", "big", "--type", "process", "--concurrency-limit", "4",
           "--description", "the big one", "--job-variables", '{"env": {"STAGE": "prod"}}')
    rows = table(invoke("work-pool", "ls").stdout, "WORK POOL")
    assert [(r["WORK POOL"], r["TYPE"], r["PAUSED"], r["CONCURRENCY"]) for r in rows] == [
        ("big", "process", "no", "4"), ("local", "process", "no", "no limit")]
    invoke("work-pool", "queue", "big", "urgent", "--priority", "1")
    shown = invoke("work-pool", "inspect", "big").stdout
    assert re.search(r"^Description\s+the big one$", shown, re.M)
    assert "default" in shown and "urgent" in shown and "plait worker start --pool big" in shown
    assert invoke("work-pool", "pause", "big").stdout.strip() == "Paused work pool big."
    assert json.loads(invoke("work-pool", "inspect", "big", "--json").stdout)["paused"] is True
    invoke("work-pool", "resume", "big")
    assert json.loads(invoke("work-pool", "ls", "--json").stdout)[0]["paused"] is False

    unknown = invoke("work-pool", "create", "odd", "--type", "kubernetes", ok=False)
    assert unknown.exit_code == 1 and "no installed plugin provides infrastructure 'kubernetes'" in unknown.stderr
    assert "process" in unknown.stderr
    taken = invoke("work-pool", "create", "big", ok=False)
    assert taken.exit_code == 1 and "big" in taken.stderr
    missing = invoke("work-pool", "inspect", "nothing", ok=False)
    assert missing.exit_code == 1 and "no work pool 'nothing'" in missing.stderr


# -- plait flow-run cancel | retry --------------------------------------------------------------------
def test_cancel_a_scheduled_run(project: Path) -> None:
    invoke("deploy")
    run = json.loads(invoke("deployment", "run", "cli-deploy-etl/nightly", "--at", "+1h", "--json").stdout)
    assert invoke("flow-run", "cancel", run["id"][:8]).stdout.strip() == f"Flow run {run['id']} is Cancelled."
    again = invoke("flow-run", "cancel", run["id"], ok=False)
    assert again.exit_code == 1 and "nothing to cancel" in again.stderr


PAUSING_FILE = """\
from pydantic import BaseModel

from plait import flow, task

try:
    from plait import pause_flow_run
except ImportError:  # not exported yet
    from plait._pause import pause_flow_run


class Approval(BaseModel):
    approved: bool
    note: str = ""


@task
def tick(i: int) -> int:
    import time

    time.sleep(0.2)
    return i


@flow(name="cli-approval")
def approval() -> str:
    answer = pause_flow_run(timeout=120, wait_for_input=Approval, poll_interval=0.2)
    return f"{answer.approved}:{answer.note}"


@flow(name="cli-long")
def long_running() -> int:
    return sum(tick(i) for i in range(300))


if __name__ == "__main__":
    import sys

    print(approval() if sys.argv[1] == "approval" else long_running())
"""


def _start(project: Path, which: str) -> tuple[subprocess.Popen[str], str]:
    """``python pausing.py WHICH`` as a child, its flow run id chosen here."""
    import uuid

    (project / "pausing.py").write_text(PAUSING_FILE)
    run_id = str(uuid.uuid4())
    child = subprocess.Popen([sys.executable, "pausing.py", which], cwd=project, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={**os.environ, "PLAIT_FLOW_RUN_ID": run_id})
    return child, run_id


def _wait_for_state(run_id: str, state: str, seconds: float = 60) -> None:
    import time

    from plait.cli import commands

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if commands.flow_run_inspect(run_id)["state_type"] == state:
                return
        except LookupError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"flow run {run_id} did not reach {state} within {seconds} s")


def test_resume_a_paused_run_with_checked_input(project: Path) -> None:
    child, run_id = _start(project, "approval")
    try:
        _wait_for_state(run_id, "PAUSED")
        bad = invoke("flow-run", "resume", run_id, "--input", '{"approved": "perhaps"}', ok=False)
        assert bad.exit_code == 1 and "approved" in bad.stderr
        not_json = invoke("flow-run", "resume", run_id, "--input", "{oops", ok=False)
        assert not_json.exit_code == 1 and "--input is not valid JSON" in not_json.stderr
        resumed = invoke("flow-run", "resume", run_id[:8], "--input", '{"approved": true, "note": "ship it"}')
        assert resumed.stdout.strip() == f"Resumed flow run {run_id}."
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        assert out.strip().splitlines()[-1] == "True:ship it"
    finally:
        child.kill()


def test_cancel_a_running_run_from_the_command_line(project: Path) -> None:
    import time

    child, run_id = _start(project, "long")
    try:
        _wait_for_state(run_id, "RUNNING")
        asked = time.monotonic()
        assert invoke("flow-run", "cancel", run_id).stdout.strip() == \
            f"Flow run {run_id} is Cancelling (its runner stops it)."
        child.communicate(timeout=30)
        _wait_for_state(run_id, "CANCELLED", seconds=10)
        assert time.monotonic() - asked < 10
    finally:
        child.kill()


FLAKY_FILE = """\
from pathlib import Path

from plait import flow, task

MARK = Path(__file__).with_name("attempts.txt")


@task
def step(i: int) -> int:
    with MARK.open("a") as out:
        out.write(f"{i}\\n")
    if i == 2 and MARK.read_text().count("2\\n") == 1:
        raise RuntimeError("first attempt fails at step 2")
    return i


@flow(name="cli-flaky")
def flaky(n: int = 3) -> int:
    return sum(step(i) for i in range(n))
"""


def test_plait_run_then_retry_a_failed_run_here(project: Path) -> None:
    (project / "flaky.py").write_text(FLAKY_FILE)
    failed = invoke("run", "flaky.py:flaky", "--param", "n=4", "--json", ok=False)
    assert failed.exit_code == 1
    outcome = json.loads(failed.stdout)
    assert outcome["state_type"] == "FAILED" and "first attempt fails" in outcome["message"]
    retried = invoke("flow-run", "retry", outcome["flow_run_id"])
    assert retried.stdout.strip().endswith(f"Flow run {outcome['flow_run_id']} ran again here: Completed.")
    # steps 0 and 1 completed in the first attempt and are not run again
    assert (project / "attempts.txt").read_text().split() == ["0", "1", "2", "2", "3"]


# -- plait run ------------------------------------------------------------------------------------------
def test_plait_run_runs_once_recorded_with_checked_parameters(project: Path) -> None:
    done = invoke("run", "flows/etl.py:etl", "--param", "days=3", "-p", "label=weekly")
    assert re.search(r"^State\s+Completed$", done.stdout, re.M)
    assert re.search(r"^Result\s+'WEEKLY:3'$", done.stdout, re.M)
    run_id = re.search(r"^Flow run\s+(\S+)$", done.stdout, re.M).group(1)  # type: ignore[union-attr]
    recorded = json.loads(invoke("flow-run", "inspect", run_id, "--json").stdout)
    assert recorded["parameters"] == {"days": 3, "label": "weekly"} and recorded["state_type"] == "COMPLETED"

    bad = invoke("run", "flows/etl.py:etl", "--param", "days=lots", ok=False)
    assert bad.exit_code == 1 and "flow 'cli-deploy-etl': parameter 'days'" in bad.stderr
    nowhere = invoke("run", "flows/none.py:etl", ok=False)
    assert nowhere.exit_code == 1 and "does not exist" in nowhere.stderr


CACHED_FILE = """\
from pathlib import Path

from plait import INPUTS, flow, task

COUNT = Path(__file__).with_name("bodies.txt")


@task(cache_policy=INPUTS, persist_result=True)
def slow_square(x: int) -> int:
    with COUNT.open("a") as out:
        out.write("body\\n")
    return x * x


@flow
def cached(x: int = 3) -> int:
    return slow_square(x)


if __name__ == "__main__":
    cached()
"""


def test_a_task_caches_under_one_key_however_its_module_was_loaded(plait_env: str, tmp_path: Path) -> None:
    (tmp_path / "cachedflow.py").write_text(CACHED_FILE)
    env = {**os.environ, "PLAIT_HOME": os.environ["PLAIT_HOME"], "PLAIT_DATABASE_URL": plait_env}
    subprocess.run([sys.executable, "cachedflow.py"], cwd=tmp_path, env=env, check=True, timeout=120)
    subprocess.run([*PLAIT_RUN, "run", "cachedflow.py:cached"], cwd=tmp_path, env=env, check=True, timeout=120,
                   capture_output=True)
    assert (tmp_path / "bodies.txt").read_text().count("body") == 1


def test_the_commands_are_registered_in_the_plait_script(tmp_path: Path) -> None:
    env = {**os.environ, "PLAIT_HOME": str(tmp_path), "PLAIT_DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}"}
    for args in (["deploy"], ["deployment", "backfill"], ["work-pool", "create"], ["flow-run", "retry"], ["run"]):
        done = subprocess.run([str(PLAIT), *args, "--help"], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"plait {' '.join(args)}: {done.stderr}"


# -- against a server ---------------------------------------------------------------------------------
@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    from plait.testing import reset_state, running_server

    with running_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "server") as server:
        unused = tmp_path / "never-created.db"
        reset_state()
        monkeypatch.setenv("PLAIT_HOME", str(tmp_path / "client-home"))
        monkeypatch.setenv("PLAIT_DATABASE_URL", f"sqlite:///{unused}")
        monkeypatch.setenv("PLAIT_API_URL", server.api_url)
        monkeypatch.setenv("PLAIT_API_KEY", server.admin_key)
        root = tmp_path / "project"
        (root / "flows").mkdir(parents=True)
        (root / "flows" / "etl.py").write_text(FLOW_FILE)
        (root / "plait.yaml").write_text(YAML)
        monkeypatch.chdir(root)
        yield unused
        reset_state()
    assert not unused.exists(), "a command opened a local database instead of asking the server"


@pytest.mark.slow
def test_deploy_ls_and_run_through_a_server(remote: Path) -> None:
    invoke("work-pool", "create", "local", "--type", "process")
    assert json.loads(invoke("deploy", "--json").stdout) == [{"name": "cli-deploy-etl/nightly", "outcome": "created"}]
    assert json.loads(invoke("deploy", "--json").stdout)[0]["outcome"] == "unchanged"
    rows = table(invoke("deployment", "ls").stdout, "DEPLOYMENT")
    assert [(r["DEPLOYMENT"], r["WORK POOL"]) for r in rows] == [("cli-deploy-etl/nightly", "local")]
    run = json.loads(invoke("deployment", "run", "cli-deploy-etl/nightly", "-p", "days=9", "--json").stdout)
    assert run["state_type"] == "SCHEDULED" and run["parameters"] == {"days": 9}
    bad = invoke("deployment", "run", "cli-deploy-etl/nightly", "-p", "dayz=9", ok=False)
    assert bad.exit_code == 1 and "unknown parameter 'dayz'" in bad.stderr
    backfilled = json.loads(invoke("deployment", "backfill", "cli-deploy-etl/nightly", "--start",
                                   "2024-01-01T00:00Z", "--end", "2024-01-01T01:00Z", "--json").stdout)
    assert (backfilled["created"], backfilled["existing"]) == (2, 0)
