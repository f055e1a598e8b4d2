"""``serve``: a real process serving its own deployment on an interval schedule, no worker.

The script calls ``flow.serve(...)`` (or ``plait.worker.serve``) in a subprocess; the test
watches the store: runs planned by the serve process itself (local mode), claimed, run in
their own subprocesses, cancelled, and a clean stop on SIGINT (Ctrl-C).
"""

from __future__ import annotations

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

SCRIPT = textwrap.dedent('''
    import os
    import pathlib
    import sys
    import time

    from plait import flow


    @flow(log_prints=True)
    def tick(out: str = "") -> str:
        print("tick")
        if out:
            with open(out, "a") as f:
                f.write(f"{time.time()}\\n")
        return "ok"


    @flow
    def sleepy(marker: str) -> None:
        pathlib.Path(marker).write_text(str(os.getpid()))
        time.sleep(60)


    if __name__ == "__main__":
        which = sys.argv[1]
        if which == "interval":
            tick.serve("every-2s", interval=2, parameters={"out": sys.argv[2]}, limit=1, poll_interval=0.2)
        else:
            from plait.worker import serve

            serve(sleepy, name="manual", poll_interval=0.2, cancel_grace=1.0, shutdown_grace=1.0)
''')


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _reset_store() -> None:
    from plait._recorder import reset_recorder
    from plait._store.database import Database

    reset_recorder()
    Database.dispose_all()


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A SQLite store for this test (inherited by the serve process); yields the script."""
    _reset_store()
    monkeypatch.setenv("PLAIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PLAIT_DATABASE_URL", f"sqlite:///{tmp_path}/plait.db")
    monkeypatch.setenv("PLAIT_LOG_TO_CONSOLE", "true")
    monkeypatch.delenv("PLAIT_API_URL", raising=False)
    script = tmp_path / "served.py"
    script.write_text(SCRIPT)
    yield script
    _reset_store()


def _start(script: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, str(script), *args], cwd=script.parent, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _runs(flow_name: str) -> list[dict[str, Any]]:
    from plait._store.database import get_database
    from plait._store.history import list_flow_runs

    return list_flow_runs(get_database(), flow_name=flow_name, limit=100)


def test_serve_runs_an_interval_schedule_twice_in_about_4_seconds(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "ticks"
    log = tmp_path / "serve.log"
    proc = _start(store, log, "interval", str(out))
    try:
        from plait.deployments._control import control_plane

        control = control_plane()
        wait_for(lambda: control.get_deployment("tick/every-2s"), 60, "the deployment to be saved")
        began = time.monotonic()
        wait_for(lambda: out.exists() and len(out.read_text().splitlines()) >= 2, 15, "two runs")
        took = time.monotonic() - began
        # Ctrl-C: a clean stop
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        _stop(proc)
    print(f"two scheduled runs completed {took:.2f}s after the deployment was saved")
    # slots every 2 s: the first within 2 s of the save, the second 2 s later, each plus the
    # start of a Python process (slow on a busy machine)
    assert took < 9.0
    stamps = [float(line) for line in out.read_text().splitlines()]
    assert stamps[1] - stamps[0] <= 4.0
    completed = [r for r in _runs("tick") if r["state_type"] == "COMPLETED"]
    assert len(completed) == len(stamps)
    deployment = control.get_deployment("tick/every-2s")
    assert deployment["work_pool_name"] is None
    assert [s["interval_seconds"] for s in deployment["schedules"]] == [2.0]
    output = log.read_text()
    assert "tick" in output  # the runs' output is streamed by the serve process


def test_cancelling_a_served_run_stops_it_within_5_seconds(store: Path, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    proc = _start(store, log, "manual")
    marker = tmp_path / "pid"
    try:
        from plait.deployments._control import control_plane

        control = control_plane()
        wait_for(lambda: control.get_deployment("sleepy/manual"), 60, "the deployment to be saved")
        run_id = str(control.create_flow_run("sleepy/manual", {"marker": str(marker)})["id"])
        wait_for(lambda: marker.exists() and marker.read_text() and
                 control.get_flow_run(run_id)["state_type"] == "RUNNING", 60, "the run to start")
        pid = int(marker.read_text())
        asked = time.monotonic()
        assert control.request_cancel(run_id) == "CANCELLING"
        wait_for(lambda: control.get_flow_run(run_id)["state_type"] == "CANCELLED" and not _alive(pid), 10,
                 "the run to stop")
        took = time.monotonic() - asked
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        _stop(proc)
    print(f"served run cancelled and stopped in {took:.2f}s")
    assert took < 5.0


def test_ctrl_c_ends_a_run_in_flight_after_the_grace(store: Path, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    proc = _start(store, log, "manual")
    marker = tmp_path / "pid"
    try:
        from plait.deployments._control import control_plane

        control = control_plane()
        wait_for(lambda: control.get_deployment("sleepy/manual"), 60, "the deployment to be saved")
        run_id = str(control.create_flow_run("sleepy/manual", {"marker": str(marker)})["id"])
        wait_for(lambda: marker.exists() and marker.read_text(), 60, "the run to start")
        pid = int(marker.read_text())
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        _stop(proc)
    row = control.get_flow_run(run_id)
    assert row["state_type"] == "CRASHED"
    assert "serve of sleepy/manual shut down (SIGINT)" in row["state_message"]
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_serve_refuses_a_work_pool_and_options_with_a_deployment(store: Path) -> None:
    from plait import flow
    from plait.deployments import Deployment
    from plait.worker import serve

    @flow
    def local_flow() -> None:
        pass

    deployment = Deployment(name="d", flow_name="f", entrypoint="x.py:f", work_pool="p")
    with pytest.raises(ValueError, match="serve\\(\\) runs its runs itself"):
        serve(deployment)
    with pytest.raises(ValueError, match="also cron"):
        serve(Deployment(name="d", flow_name="f", entrypoint="x.py:f"), cron="* * * * *")
    with pytest.raises(TypeError, match="takes a flow or a Deployment"):
        serve("not a flow")


def test_serve_against_a_server_runs_what_the_server_schedules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With PLAIT_API_URL set the serve process plans nothing itself: the server's scheduler
    makes the interval schedule's runs, the serve process claims them through the API and its
    runs record there (the process's own store stays unwritten)."""
    from plait.testing import running_server

    _reset_store()
    with running_server(f"sqlite:///{tmp_path}/server.db", tmp_path / "server",
                        env={"PLAIT_SCHEDULER_INTERVAL": "1"}) as server:
        monkeypatch.setenv("PLAIT_HOME", str(tmp_path / "client"))
        monkeypatch.setenv("PLAIT_DATABASE_URL", f"sqlite:///{tmp_path}/client.db")
        monkeypatch.setenv("PLAIT_API_URL", server.api_url)
        monkeypatch.setenv("PLAIT_API_KEY", server.run_key)
        monkeypatch.setenv("PLAIT_LOG_TO_CONSOLE", "true")
        script = tmp_path / "served.py"
        script.write_text(SCRIPT)
        out, log = tmp_path / "ticks", tmp_path / "serve.log"
        proc = _start(script, log, "interval", str(out))
        try:
            from plait.deployments._control import control_plane

            control = control_plane()
            wait_for(lambda: control.get_deployment("tick/every-2s"), 60, "the deployment to be saved")
            began = time.monotonic()
            wait_for(lambda: out.exists() and len(out.read_text().splitlines()) >= 2, 30, "two runs")
            took = time.monotonic() - began
            proc.send_signal(signal.SIGINT)
            assert proc.wait(30) == 0, log.read_text()
        finally:
            _stop(proc)
            _reset_store()
        print(f"through the server: two scheduled runs completed {took:.2f}s after the deployment was saved")
        from plait.client import PlaitClient

        with PlaitClient(server.api_url, server.read_key) as reader:
            runs = list(reader.iter_flow_runs(flow="tick", state="COMPLETED"))
        assert len(runs) >= 2, runs
        assert all(r["task_run_count"] == 0 for r in runs)
        assert not (tmp_path / "client.db").exists(), "a serve process of a server wrote a local store"
