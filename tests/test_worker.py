"""Workers: real worker processes claim deployment runs and run them through the Process block.

Every end-to-end test starts real processes (``plait worker start`` and the flows' own
subprocesses) against a real store: SQLite, and PostgreSQL for the exactly-once test with
four workers and 200 runs. Times are real: heartbeats of 0.5-1 s, no mocked clock.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from plait.worker import Worker, WorkerError, merge_job_variables
from plait.worker._launch import build_block, infrastructure_class, resolve_entrypoint

FLOWS = textwrap.dedent('''
    import os
    import pathlib
    import time

    from plait import flow, runtime, task


    @task
    def double(x: int) -> int:
        return 2 * x


    @flow(log_prints=True)
    def hello(name: str = "world") -> int:
        print(f"hello {name}: LAYER={os.environ.get('LAYER')} POOL_ONLY={os.environ.get('POOL_ONLY')} "
              f"CWD={os.getcwd()}")
        return sum(double(i) for i in range(3))


    @flow
    def count(i: int, out: str) -> int:
        with open(pathlib.Path(out) / f"{i}.txt", "a") as f:
            f.write(f"{runtime.flow_run.id}\\n")
        return i


    @flow
    def sleepy(marker: str, seconds: float = 60.0) -> str:
        path = pathlib.Path(marker)
        if path.exists():  # a later attempt finishes at once
            return "again"
        path.write_text(str(os.getpid()))
        time.sleep(seconds)
        return "slept"


    @task
    def tick(i: int) -> int:
        time.sleep(0.1)
        return i


    @task
    def die(signal_number: int) -> None:
        os.kill(os.getpid(), signal_number)
        time.sleep(30)


    @flow
    def doomed() -> int:
        """Completes a task, then its process is killed inside the next one."""
        double(1)
        die(9)
        return 0


    @flow
    def ticking(marker: str, n: int = 600) -> int:
        pathlib.Path(marker).write_text(str(os.getpid()))
        return sum(tick(i) for i in range(n))
''')


# -- helpers ------------------------------------------------------------------------------------
def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def worker_command(*args: str) -> list[str]:
    """``plait worker start ARGS`` in a fresh interpreter."""
    return [sys.executable, "-m", "plait.cli", "worker", "start", *args]


@contextlib.contextmanager
def worker_process(log: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A worker process (output to ``log``), stopped with SIGTERM at the end."""
    with log.open("ab") as out:
        proc = subprocess.Popen(worker_command(*args), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def kill_group(pid_file: Path) -> None:
    """Kill a flow's process group (an orphan of a killed worker) by the pid it wrote."""
    with contextlib.suppress(OSError, ValueError):
        os.killpg(int(pid_file.read_text()), signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def list_runs(flow_name: str, limit: int = 100) -> list[dict[str, Any]]:
    """The flow's runs as stored. Not through ``plait flow-run ls``: its crash detection
    would judge runs a worker claimed but has not started yet."""
    from plait._store.database import get_database
    from plait._store.history import list_flow_runs

    return list_flow_runs(get_database(), flow_name=flow_name, limit=limit)


class Setup:
    """A project directory with FLOWS, a process work pool and the control plane."""

    def __init__(self, root: Path, pool: str = "local", **pool_options: Any) -> None:
        from plait.deployments._control import control_plane

        self.root = root
        self.project = root / "project"
        self.project.mkdir(parents=True, exist_ok=True)
        (self.project / "flows.py").write_text(FLOWS)
        self.control = control_plane()
        self.pool = pool
        self.control.create_work_pool(pool, "process", **pool_options)

    def deploy(self, flow: str, name: str = "dep", **options: Any) -> dict[str, Any]:
        from plait.deployments import Deployment

        options.setdefault("path", str(self.project))
        options.setdefault("entrypoint", f"flows.py:{flow}")
        row, _outcome = Deployment(name=name, flow_name=flow, work_pool=self.pool, **options).apply()
        return row

    def run(self, deployment: str, parameters: dict[str, Any] | None = None, **options: Any) -> str:
        return str(self.control.create_flow_run(deployment, parameters or {}, **options)["id"])

    def state(self, flow_run_id: str) -> str:
        row = self.control.get_flow_run(flow_run_id)
        return str(row["state_type"]) if row else "MISSING"

    def wait_final(self, flow_run_id: str, timeout: float = 60.0) -> dict[str, Any]:
        final = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED", "CACHED"}
        return dict(wait_for(lambda: (row := self.control.get_flow_run(flow_run_id)) and
                             row["state_type"] in final and row, timeout, f"flow run {flow_run_id} to end"))


def _reset_store() -> None:
    from plait._recorder import reset_recorder
    from plait._store.database import Database

    reset_recorder()
    Database.dispose_all()


@pytest.fixture
def sqlite_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """PLAIT_HOME and PLAIT_DATABASE_URL of this test (a SQLite file), inherited by every
    process the test starts."""
    _reset_store()
    url = f"sqlite:///{tmp_path}/plait.db"
    monkeypatch.setenv("PLAIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PLAIT_DATABASE_URL", url)
    monkeypatch.delenv("PLAIT_API_URL", raising=False)
    monkeypatch.setenv("PLAIT_LOG_TO_CONSOLE", "true")
    yield url
    _reset_store()


@pytest.fixture
def setup(sqlite_store: str, tmp_path: Path) -> Setup:
    return Setup(tmp_path, base_job_variables={"env": {"LAYER": "pool", "POOL_ONLY": "yes"}})


# -- the pieces, without processes --------------------------------------------------------------
def test_job_variables_merge_pool_then_deployment_then_run() -> None:
    merged = merge_job_variables(
        {"env": {"LAYER": "pool", "POOL_ONLY": "1"}, "working_dir": "/pool", "timeout_seconds": 10},
        {"env": {"LAYER": "deployment"}, "working_dir": "/deployment"},
        None,
        {"env": {"LAYER": "run", "RUN_ONLY": "1"}},
    )
    assert merged == {
        "env": {"LAYER": "run", "POOL_ONLY": "1", "RUN_ONLY": "1"},
        "working_dir": "/deployment",
        "timeout_seconds": 10,
    }


def test_relative_entrypoints_are_taken_from_the_code_directory(tmp_path: Path) -> None:
    assert resolve_entrypoint("flows/etl.py:nightly", tmp_path) == f"{tmp_path / 'flows/etl.py'}:nightly"
    assert resolve_entrypoint("/abs/etl.py:nightly", tmp_path) == "/abs/etl.py:nightly"
    assert resolve_entrypoint("package.module:nightly", tmp_path) == "package.module:nightly"
    assert resolve_entrypoint("flows/etl.py:nightly", None) == "flows/etl.py:nightly"


def test_job_variables_configure_the_process_block(tmp_path: Path) -> None:
    cls = infrastructure_class("process")
    block, ignored = build_block(cls, {"env": {"A": "1"}, "timeout_seconds": 30, "image": "python:3.12"}, tmp_path)
    assert ignored == ["image"]
    assert block.timeout_seconds == 30  # type: ignore[attr-defined]
    assert block.working_dir == str(tmp_path)  # type: ignore[attr-defined]
    assert block.env["A"] == "1"  # type: ignore[attr-defined]
    assert block.env["PYTHONPATH"].split(os.pathsep)[0] == str(tmp_path)  # type: ignore[attr-defined]
    sub, _ = build_block(cls, {"working_dir": "jobs"}, tmp_path)
    assert sub.working_dir == str(tmp_path / "jobs")  # type: ignore[attr-defined]


def test_a_bad_job_variable_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(WorkerError, match="timeout_seconds"):
        build_block(infrastructure_class("process"), {"timeout_seconds": -1}, tmp_path)
    with pytest.raises(WorkerError, match="PLAIT_FLOW_RUN_ID"):
        build_block(infrastructure_class("process"), {"env": {"PLAIT_FLOW_RUN_ID": "x"}}, tmp_path)


def test_an_unknown_pool_type_is_a_clear_error() -> None:
    with pytest.raises(WorkerError, match=r"no installed plugin provides infrastructure 'kubernetes'.*process"):
        infrastructure_class("kubernetes")


def test_a_worker_of_a_missing_pool_says_how_to_create_it(sqlite_store: str) -> None:
    with pytest.raises(WorkerError, match=r"work pool 'nope' does not exist.*plait work-pool create nope"):
        Worker("nope").run(once=True)


def test_worker_options_are_checked() -> None:
    with pytest.raises(ValueError, match="poll_interval"):
        Worker("p", poll_interval=0)
    with pytest.raises(ValueError, match="limit"):
        Worker("p", limit=0)


# -- end to end ---------------------------------------------------------------------------------
def test_a_worker_process_runs_a_deployment_run_end_to_end(setup: Setup, tmp_path: Path) -> None:
    setup.deploy("hello", job_variables={"env": {"LAYER": "deployment"}})
    run_id = setup.run("hello/dep", {"name": "plait"}, job_variables={"env": {"LAYER": "run"}})
    log = tmp_path / "worker.log"
    with worker_process(log, "--pool", "local", "--name", "w1", "--poll-interval", "0.2",
                        "--heartbeat-interval", "0.5") as worker:
        row = setup.wait_final(run_id)
        assert row["state_type"] == "COMPLETED", row
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    output = log.read_text()
    assert "worker 'w1' of pool 'local' stopped: 1 Completed" in output, output
    assert f"hello plait: LAYER=run POOL_ONLY=yes CWD={setup.project}" in output  # streamed
    from plait.cli import commands

    messages = [line["message"] for line in commands.flow_run_logs(run_id)]
    assert any("hello plait: LAYER=run POOL_ONLY=yes" in m for m in messages), messages  # stored
    assert any("worker 'w1' of pool 'local' runs" in m for m in messages), messages
    assert [t["state_type"] for t in row["task_runs"]] == ["COMPLETED"] * 3
    pool = setup.control.get_work_pool("local")
    assert [w["name"] for w in pool["workers"]] == ["w1"]


def test_listing_runs_never_crashes_a_claimed_run_before_its_process_starts(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Crash detection (``plait flow-run ls``, the server's crash detector) judges a run by
    its process; a run a worker claimed has none yet: the worker reaper judges it."""
    monkeypatch.setenv("PLAIT_HEARTBEAT_INTERVAL", "0.5")  # silence of 1 s counts as a crash
    setup.deploy("hello")
    run_id = setup.run("hello/dep")
    time.sleep(1.5)  # the run was made (planned) well before a worker claims it
    from plait.cli import commands

    with worker_process(tmp_path / "worker.log", "--pool", "local", "--poll-interval", "0.2",
                        "--heartbeat-interval", "0.5"):
        wait_for(lambda: setup.state(run_id) != "SCHEDULED", 30, "the claim")
        while setup.state(run_id) in ("PENDING", "RUNNING"):
            commands.flow_run_ls(limit=5)  # runs crash detection, as any listing does
            time.sleep(0.05)
    row = setup.control.get_flow_run(run_id)
    assert row["state_type"] == "COMPLETED", row["state_message"]


def test_a_failing_entrypoint_fails_the_run_with_the_reason(setup: Setup) -> None:
    setup.deploy("hello", name="broken", entrypoint="flows.py:nope")
    run_id = setup.run("hello/broken")
    assert Worker("local", poll_interval=0.2, heartbeat_interval=0.5).run(once=True) == {"FAILED": 1}
    row = setup.control.get_flow_run(run_id)
    assert row["state_type"] == "FAILED"
    assert "has no flow 'nope'" in row["state_message"] and "hello" in row["state_message"]


def test_a_run_whose_process_is_killed_keeps_what_it_completed(setup: Setup) -> None:
    """The process dies by kill -9 inside its second task: the first task's record, in the
    dead process's journal, is stored before the run is ended Crashed."""
    setup.deploy("doomed")
    run_id = setup.run("doomed/dep")
    assert Worker("local", poll_interval=0.2, heartbeat_interval=0.5).run(once=True) == {"CRASHED": 1}
    row = setup.control.get_flow_run(run_id)
    assert "signal 9" in row["state_message"] or "SIGKILL" in row["state_message"], row["state_message"]
    assert {t["task_name"]: t["state_type"] for t in row["task_runs"]} == {"double": "COMPLETED"}


def test_a_bundle_in_local_file_system_is_downloaded_and_run(setup: Setup, tmp_path: Path) -> None:
    from plait.blocks import get_block_class

    get_block_class("local-file-system")(basepath=str(tmp_path / "code-store")).save("code")  # type: ignore[call-arg]
    setup.deploy("hello", name="bundled", storage_block="local-file-system/code")
    saved = setup.control.get_deployment("hello/bundled")
    assert saved["path"] is None and saved["bundle_key"].endswith(".zip") and saved["entrypoint"] == "flows.py:hello"
    (setup.project / "flows.py").rename(setup.project / "moved.py")  # the worker must use the bundle
    run_id = setup.run("hello/bundled")
    assert Worker("local", poll_interval=0.2, heartbeat_interval=0.5).run(once=True) == {"COMPLETED": 1}
    from plait.cli import commands

    said = [m["message"] for m in commands.flow_run_logs(run_id) if "hello world" in m["message"]]
    assert said and "plait-bundle-" in said[0], said  # ran in the unpacked bundle
    bundle_dir = said[0].split("CWD=")[1].strip()
    assert not Path(bundle_dir).exists()  # cleaned up afterwards


def test_a_bundle_in_s3_is_downloaded_and_run(setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("moto.server")
    plait_aws = pytest.importorskip("plait_aws")
    from moto.server import ThreadedMotoServer

    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        credentials = plait_aws.AwsCredentials(
            aws_access_key_id="AKIAPLAITTESTKEY0001", aws_secret_access_key="plait-test-secret-key",
            region_name="us-east-1", endpoint_url=f"http://{host}:{port}",
        )
        credentials.get_client("s3").create_bucket(Bucket="plait-code")
        plait_aws.S3Bucket(bucket_name="plait-code", bucket_folder="bundles", credentials=credentials).save("code")
        setup.deploy("hello", name="s3", storage_block="s3-bucket/code")
        key = setup.control.get_deployment("hello/s3")["bundle_key"]
        listed = credentials.get_client("s3").list_objects_v2(Bucket="plait-code")["Contents"]
        assert [o["Key"] for o in listed] == [f"bundles/{key}"]
        (setup.project / "flows.py").unlink()
        run_id = setup.run("hello/s3", {"name": "from s3"})
        assert Worker("local", poll_interval=0.2, heartbeat_interval=0.5).run(once=True) == {"COMPLETED": 1}
        assert setup.state(run_id) == "COMPLETED"
    finally:
        server.stop()


@pytest.mark.parametrize("flow", ["sleepy", "ticking"])
def test_cancelling_a_worker_run_stops_it_within_5_seconds(setup: Setup, tmp_path: Path, flow: str) -> None:
    """``sleepy`` sits in one long call (the worker must kill it); ``ticking`` crosses a task
    boundary every 0.1 s (the engine can stop it itself)."""
    setup.deploy(flow)
    marker = tmp_path / "pid"
    run_id = setup.run(f"{flow}/dep", {"marker": str(marker)})
    with worker_process(tmp_path / "worker.log", "--pool", "local", "--poll-interval", "0.2",
                        "--heartbeat-interval", "1"):
        wait_for(lambda: marker.exists() and marker.read_text() and setup.state(run_id) == "RUNNING", 60,
                 "the flow to run")
        pid = int(marker.read_text())
        asked = time.monotonic()
        assert setup.control.request_cancel(run_id) == "CANCELLING"
        wait_for(lambda: setup.state(run_id) == "CANCELLED" and not alive(pid), 10, "the run to stop")
        took = time.monotonic() - asked
    print(f"{flow}: cancelled and stopped in {took:.2f}s")
    assert took < 5.0
    row = setup.control.get_flow_run(run_id)
    assert all(t["state_type"] in ("COMPLETED", "CANCELLED") for t in row["task_runs"]), row["task_runs"]


def test_a_killed_worker_s_run_is_crashed_and_retried(setup: Setup, tmp_path: Path) -> None:
    setup.deploy("sleepy", retries=1)
    marker = tmp_path / "pid"
    run_id = setup.run("sleepy/dep", {"marker": str(marker)})
    interval = 1.0
    options = ("--pool", "local", "--poll-interval", "0.2", "--heartbeat-interval", str(interval))
    try:
        with worker_process(tmp_path / "a.log", *options, "--name", "a") as first:
            wait_for(lambda: marker.exists() and setup.state(run_id) == "RUNNING", 60, "the first attempt to run")
            with worker_process(tmp_path / "b.log", *options, "--name", "b"):
                wait_for(lambda: len(setup.control.get_work_pool("local")["workers"]) == 2, 30, "worker b")
                first.send_signal(signal.SIGKILL)
                first.wait()
                killed = time.monotonic()
                wait_for(lambda: setup.state(run_id) == "CRASHED", 10, "the run to be Crashed")
                took = time.monotonic() - killed
                runs = wait_for(lambda: [r for r in list_runs("sleepy")
                                         if r["id"] != run_id and r["state_type"] == "COMPLETED"],
                                60, "the retry to complete")
    finally:
        kill_group(marker)  # the first attempt's flow outlived its worker
    print(f"crashed {took:.2f}s after kill -9 (heartbeat interval {interval}s)")
    assert took <= 3 * interval + 0.5  # silent for 2 intervals, then the next reaping heartbeat
    row = setup.control.get_flow_run(run_id)
    assert "worker 'a' of pool 'local' stopped heartbeating" in row["state_message"]
    assert len(runs) == 1


def test_sigterm_stops_claiming_and_lets_the_run_in_flight_finish(setup: Setup, tmp_path: Path) -> None:
    setup.deploy("sleepy")
    marker = tmp_path / "pid"
    first = setup.run("sleepy/dep", {"marker": str(marker), "seconds": 2.0})
    log = tmp_path / "worker.log"
    with worker_process(log, "--pool", "local", "--poll-interval", "0.2", "--heartbeat-interval", "0.5") as worker:
        wait_for(lambda: marker.exists() and setup.state(first) == "RUNNING", 60, "the run to start")
        worker.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        second = setup.run("sleepy/dep", {"marker": str(tmp_path / "other")})
        assert worker.wait(30) == 0
    assert setup.state(first) == "COMPLETED"
    assert setup.state(second) == "SCHEDULED"  # never claimed after the signal
    assert "stopped: 1 Completed" in log.read_text()


def test_shutdown_grace_over_ends_the_run_crashed(setup: Setup, tmp_path: Path) -> None:
    setup.deploy("sleepy")
    marker = tmp_path / "pid"
    run_id = setup.run("sleepy/dep", {"marker": str(marker)})
    log = tmp_path / "worker.log"
    with worker_process(log, "--pool", "local", "--poll-interval", "0.2", "--heartbeat-interval", "0.5",
                        "--shutdown-grace", "0.5", "--name", "w") as worker:
        wait_for(lambda: marker.exists() and setup.state(run_id) == "RUNNING", 60, "the run to start")
        pid = int(marker.read_text())
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    row = setup.control.get_flow_run(run_id)
    assert row["state_type"] == "CRASHED"
    assert "worker 'w' of pool 'local' shut down (SIGTERM)" in row["state_message"]
    assert not alive(pid)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.serial  # 200 Python processes: beside the parallel suite it starved past 900 s twice
@pytest.mark.timeout(1500)  # 200 Python processes: minutes on a busy 2-core machine
def test_four_workers_run_each_of_200_runs_exactly_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from plait.testing import throwaway_postgres_database

    with throwaway_postgres_database("plait_worker") as url:
        _reset_store()
        monkeypatch.setenv("PLAIT_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("PLAIT_DATABASE_URL", url)
        monkeypatch.setenv("PLAIT_LOG_TO_CONSOLE", "false")
        monkeypatch.delenv("PLAIT_API_URL", raising=False)
        try:
            _exactly_once(Setup(tmp_path), tmp_path, runs=200, workers=4)
        finally:
            _reset_store()


def _exactly_once(setup: Setup, tmp_path: Path, *, runs: int, workers: int) -> None:
    setup.deploy("count")
    out = tmp_path / "out"
    out.mkdir()
    ids = [setup.run("count/dep", {"i": i, "out": str(out)}) for i in range(runs)]
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        for n in range(workers):
            stack.enter_context(worker_process(tmp_path / f"w{n}.log", "--pool", "local", "--name", f"w{n}",
                                               "--limit", "3", "--poll-interval", "0.2",
                                               "--heartbeat-interval", "1"))
        wait_for(lambda: len(list(out.iterdir())) >= runs, 900, f"{runs} runs to write their file", interval=1.0)
        wait_for(lambda: {r["state_type"] for r in list_runs("count", runs + 1)} == {"COMPLETED"}, 120,
                 f"{runs} runs to complete", interval=1.0)
    took = time.monotonic() - started
    lines = {int(p.stem): p.read_text().splitlines() for p in out.iterdir()}
    assert sorted(lines) == list(range(runs))
    assert all(len(v) == 1 for v in lines.values()), {k: v for k, v in lines.items() if len(v) != 1}
    assert sorted(v[0] for v in lines.values()) == sorted(ids)
    ran_by = {setup.control.get_flow_run(i)["state_type"] for i in ids}
    assert ran_by == {"COMPLETED"}
    print(f"{runs} runs by {workers} workers in {took:.1f}s, each exactly once")


@pytest.mark.slow
def test_a_worker_runs_and_cancels_runs_through_a_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker and the flows' processes talk to a real server only (their own store is
    another, empty file): claims, heartbeats, logs and cancels all go through the API."""
    from plait.testing import running_server

    _reset_store()
    with running_server(f"sqlite:///{tmp_path}/server.db", tmp_path / "server") as server:
        monkeypatch.setenv("PLAIT_HOME", str(tmp_path / "client"))
        monkeypatch.setenv("PLAIT_DATABASE_URL", f"sqlite:///{tmp_path}/client.db")
        monkeypatch.setenv("PLAIT_API_URL", server.api_url)
        monkeypatch.setenv("PLAIT_API_KEY", server.admin_key)
        monkeypatch.setenv("PLAIT_LOG_TO_CONSOLE", "true")
        try:
            setup = Setup(tmp_path, base_job_variables={"env": {"LAYER": "pool", "POOL_ONLY": "yes"}})
            setup.deploy("hello")
            setup.deploy("ticking")
            setup.deploy("doomed")
            hello = setup.run("hello/dep", {"name": "remote"}, job_variables={"env": {"LAYER": "run"}})
            doomed = setup.run("doomed/dep")
            marker = tmp_path / "pid"
            ticking = setup.run("ticking/dep", {"marker": str(marker)})
            env = {**os.environ, "PLAIT_API_KEY": server.run_key}
            log = tmp_path / "worker.log"
            with worker_process(log, "--pool", "local", "--name", "remote", "--poll-interval", "0.2",
                                "--heartbeat-interval", "1", env=env):
                assert setup.wait_final(hello)["state_type"] == "COMPLETED"
                # its process killed: the worker delivers what the process journaled (the task
                # it completed; a task run is journaled when it ends) and ends it on the server
                killed = setup.wait_final(doomed)
                assert killed["state_type"] == "CRASHED", killed
                assert "signal 9" in killed["state_message"] or "SIGKILL" in killed["state_message"], killed
                tasks = {t["task_name"]: t["state_type"] for t in killed["task_runs"]}
                assert tasks == {"double": "COMPLETED"}, killed["task_runs"]
                wait_for(lambda: marker.exists() and setup.state(ticking) == "RUNNING", 60, "ticking to run")
                asked = time.monotonic()
                assert setup.control.request_cancel(ticking) == "CANCELLING"
                wait_for(lambda: setup.state(ticking) == "CANCELLED", 10, "the cancel")
                took = time.monotonic() - asked
            print(f"through the server: cancelled in {took:.2f}s")
            assert took < 5.0
            from plait.cli import commands

            messages = [line["message"] for line in commands.flow_run_logs(hello)]  # from the server
            assert any("hello remote: LAYER=run POOL_ONLY=yes" in m for m in messages), messages
            assert [w["name"] for w in setup.control.get_work_pool("local")["workers"]] == ["remote"]
            assert not (tmp_path / "client.db").exists(), "a worker of a server wrote a local store"
        finally:
            _reset_store()
