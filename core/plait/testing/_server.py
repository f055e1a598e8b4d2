"""A real plait server for tests: ``plait server start`` in a subprocess on a free port.

    with running_server(database_url, tmp_path / "server") as server:
        httpx.get(server.url + "/api/v1/flow-runs",
                  headers={"Authorization": f"Bearer {server.read_key}"})

Keys with each scope are made with the CLI before the server starts (so auth is on);
``stop()`` and ``start()`` restart it on the same port (an outage in the middle of a test).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["running_server", "ServerHandle", "free_port", "sample_batch"]

_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _plait(*args: str) -> list[str]:
    return [sys.executable, "-m", "plait.cli", *args]


@dataclass
class ServerHandle:
    """A running server: where it is, its keys, and its process.

    Attributes:
        url: ``http://127.0.0.1:PORT``.
        api_url: ``url + "/api"``, what ``PLAIT_API_URL`` takes.
        admin_key, run_key, read_key: API keys with each scope ("" when auth is off).
        process: The server's ``subprocess.Popen`` (None while stopped).
        log: The file the server's stdout and stderr go to.
    """

    url: str
    api_url: str
    admin_key: str
    run_key: str
    read_key: str
    port: int
    env: dict[str, str] = field(repr=False)
    log: Path
    args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    def headers(self, scope: str = "admin") -> dict[str, str]:
        """``Authorization`` header with the key of ``scope`` (empty when auth is off)."""
        key = {"admin": self.admin_key, "run": self.run_key, "read": self.read_key}[scope]
        return {"Authorization": f"Bearer {key}"} if key else {}

    def start(self) -> None:
        """Start the server (again, on the same port) and wait until it answers /health.

        Raises:
            RuntimeError: It exited or did not answer within a minute (its log is quoted).
        """
        if self.process is not None and self.process.poll() is None:
            return
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                _plait("server", "start", "--host", "127.0.0.1", "--port", str(self.port), *self.args),
                env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        self._wait_healthy()

    def stop(self, timeout: float = _STOP_TIMEOUT) -> int | None:
        """Stop the server gracefully (SIGTERM; SIGKILL after ``timeout`` seconds).

        Returns:
            Its exit code (None if it was not running).
        """
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def output(self) -> str:
        """What the server printed so far (its log)."""
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def _wait_healthy(self) -> None:
        import httpx

        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise RuntimeError(f"plait server exited with {code} before answering:\n{self.output()[-4000:]}")
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"plait server did not answer /api/v1/health within {_START_TIMEOUT:g}s:\n"
                           f"{self.output()[-4000:]}")


def _server_env(database_url: str, home: Path, extra: Mapping[str, str] | None) -> dict[str, str]:
    # the server serves its own store: no client settings of the test process leak in
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env.update(PLAIT_HOME=str(home), PLAIT_DATABASE_URL=database_url, PLAIT_LOG_TO_CONSOLE="false")
    env.update(extra or {})
    return env


def _create_keys(env: dict[str, str], names: dict[str, str]) -> dict[str, str]:
    """scope -> key, each made by ``plait server api-key create NAME --scope SCOPE`` (the
    commands run side by side: each is a process start)."""
    running = {
        scope: subprocess.Popen(
            _plait("server", "api-key", "create", name, "--scope", scope, "--json"),
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        )
        for scope, name in names.items()
    }
    keys = {}
    for scope, process in running.items():
        out, err = process.communicate(timeout=120)
        if process.returncode != 0:
            raise RuntimeError(f"`plait server api-key create {names[scope]}` failed ({process.returncode}):\n{err}")
        keys[scope] = str(json.loads(out)["key"])
    return keys


@contextlib.contextmanager
def running_server(
    database_url: str,
    home: Path,
    *,
    auth: bool = True,
    env: Mapping[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> Iterator[ServerHandle]:
    """A plait server on 127.0.0.1 serving ``database_url``, for the duration of the block.

    Args:
        database_url: The store the server serves (SQLite file or PostgreSQL database).
        home: The server's PLAIT_HOME (created; its log is ``home/server.log``).
        auth: Create ``test-admin``, ``test-run`` and ``test-read`` keys first (auth on).
            False: no keys, the server runs open on loopback.
        env: Extra environment variables for the server process.
        args: Extra arguments to ``plait server start``.

    Raises:
        RuntimeError: The keys could not be made, or the server did not start.
    """
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    server_env = _server_env(database_url, home, env)
    keys = {"admin": "", "run": "", "read": ""}
    if auth:
        suffix = os.urandom(3).hex()  # several servers may share one store
        keys = _create_keys(server_env, {scope: f"test-{scope}-{suffix}" for scope in keys})
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    handle = ServerHandle(
        url=url, api_url=url + "/api", admin_key=keys["admin"], run_key=keys["run"], read_key=keys["read"],
        port=port, env=server_env, log=home / "server.log", args=tuple(args),
    )
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()


def sample_batch(
    flow_run_id: str | None = None,
    *,
    tasks: int = 2,
    logs: int = 2,
    state: str = "COMPLETED",
    flow_name: str = "sample",
    hostname: str = "sample-host",
    heartbeat_age: float = 0.0,
) -> tuple[str, dict[str, object]]:
    """A recorder batch in wire form (``POST /api/v1/records``'s ``rows``) for one flow run
    with ``tasks`` task runs and ``logs`` log lines: ``(flow_run_id, rows)``.

    The flow run moves Pending -> Running -> ``state`` (Running stops there: ``state=
    "RUNNING"``); each task run Pending -> Running -> Completed. ``heartbeat_age`` dates
    the run's heartbeat that many seconds back (a silent run of another host).
    """
    import uuid
    from datetime import timedelta

    from plait._batch import micros
    from plait._runs import utcnow

    run_id = flow_run_id or str(uuid.uuid4())
    now = utcnow()
    start = now - timedelta(seconds=max(heartbeat_age, 1.0))
    final = state not in ("PENDING", "RUNNING")
    title = state.title()
    flow_states = ["PENDING", "RUNNING"] + ([state] if final else [])
    rows: dict[str, list[dict[str, object]]] = {"new_flows": [], "new_tasks": [], "states": [], "logs": []}
    rows["new_flows"].append({
        "id": run_id, "flow_name": flow_name, "name": f"{flow_name}-{run_id[:6]}", "parameters": {"n": tasks},
        "tags": ["sample"], "state_type": state, "state_name": title, "state_message": None,
        "parent_flow_run_id": None, "parent_task_run_id": None, "run_count": 1, "created": micros(start),
        "start_time": micros(start), "end_time": micros(now) if final else None, "pid": 1, "hostname": hostname,
        "heartbeat_at": micros(now - timedelta(seconds=heartbeat_age)), "heartbeat_interval": 1.0,
    })
    for i, kind in enumerate(flow_states):
        rows["states"].append({"run_id": run_id, "run_kind": "flow", "flow_run_id": run_id, "type": kind,
                               "name": kind.title(), "message": None,
                               "timestamp": micros(start + timedelta(microseconds=i))})
    for t in range(tasks):
        task_id = str(uuid.uuid4())
        rows["new_tasks"].append({
            "id": task_id, "flow_run_id": run_id, "task_name": "step", "task_key": "step", "name": f"step-{t}",
            "dynamic_key": t, "parameters": {"i": t}, "tags": [], "state_type": "COMPLETED",
            "state_name": "Completed", "state_message": None, "run_count": 1, "cache_key": None,
            "result_ref": None, "created": micros(start + timedelta(milliseconds=t + 1)),
            "start_time": micros(start), "end_time": micros(now),
        })
        for i, kind in enumerate(("PENDING", "RUNNING", "COMPLETED")):
            rows["states"].append({"run_id": task_id, "run_kind": "task", "flow_run_id": run_id, "type": kind,
                                   "name": kind.title(), "message": None,
                                   "timestamp": micros(start + timedelta(milliseconds=t + 1, microseconds=i))})
    for n in range(logs):
        rows["logs"].append({"flow_run_id": run_id, "task_run_id": None, "level": 20, "logger": "sample",
                             "message": f"line {n} of {run_id}", "timestamp": micros(now)})
    return run_id, {"now": micros(now), **rows}
