"""The main job against a plait server: what `make demo-server` runs.

1. `plait server api-key create demo-worker --scope run` (the key is printed once)
2. `plait server start --port 4300` in the background, serving its own SQLite store
3. the warehouse job (examples/warehouse/flow.py) from a second process whose settings
   name only the server: PLAIT_API_URL and PLAIT_API_KEY; it records there
4. a deployment on a 5-second interval schedule (examples/deployed/plait.yaml) in a work
   pool `demo`, and one with a trigger that runs it whenever a run of the first completes,
   both run by `plait worker start --pool demo` for about 12 seconds
5. `plait flow-run ls` through the API, then where to look

The server's home is $DEMO_HOME/server, the job's $DEMO_HOME/worker (default
.plait-demo-server). Set KEEP=1 to leave the server running at the end (Ctrl-C stops it).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
PLAIT = [sys.executable, "-m", "plait.cli"]


def _port(preferred: int = 4300) -> int:
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", preferred)) != 0:
            return preferred
    with socket.socket() as sock:  # 4300 is taken: any free port
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _show(command: str) -> None:
    print(f"\n$ {command}", flush=True)


def _deploy_and_work(env: dict[str, str], api_url: str, seconds: float = 12.0) -> int:
    """A work pool, a deployment on an interval schedule, and a worker that runs it for a
    while: the scheduler of the server plans the runs, the worker claims and runs them."""
    shown = f"PLAIT_API_URL={api_url} PLAIT_API_KEY=<key> "
    _show(shown + "plait work-pool create demo --type process")
    subprocess.run([*PLAIT, "work-pool", "create", "demo", "--type", "process"], env=env, check=False)
    _show(shown + "plait deploy --file examples/deployed/plait.yaml")
    deployed = subprocess.run([*PLAIT, "deploy", "--file", str(HERE / "deployed" / "plait.yaml")], env=env)
    if deployed.returncode:
        return deployed.returncode
    _show(shown + f"plait worker start --pool demo   # stopped after {seconds:g} s")
    worker = subprocess.Popen([*PLAIT, "worker", "start", "--pool", "demo", "--poll-interval", "1"], env=env)
    try:
        worker.wait(seconds)
    except subprocess.TimeoutExpired:
        worker.send_signal(signal.SIGTERM)  # stops claiming, lets the run in flight finish
        worker.wait(60)
    return 0 if worker.returncode in (0, -signal.SIGTERM) else worker.returncode


def main() -> int:
    root = Path(os.environ.get("DEMO_HOME") or Path.cwd() / ".plait-demo-server").resolve()
    server_env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    server_env.update(PLAIT_HOME=str(root / "server"), PLAIT_LOG_TO_CONSOLE="false")
    worker_env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    worker_env.update(PLAIT_HOME=str(root / "worker"))

    name = f"demo-worker-{int(time.time())}"
    _show(f"plait server api-key create {name} --scope run")
    made = subprocess.run([*PLAIT, "server", "api-key", "create", name, "--scope", "run", "--json"],
                          env=server_env, capture_output=True, text=True, check=True)
    key = json.loads(made.stdout)["key"]
    print(f"created key {name!r} (scope run); the server keeps only its hash")

    port = _port()
    api_url = f"http://127.0.0.1:{port}/api"
    _show(f"plait server start --port {port} &")
    log = (root / "server.log").open("ab")
    server = subprocess.Popen([*PLAIT, "server", "start", "--port", str(port)], env=server_env,
                              stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{api_url}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                print((root / "server.log").read_text(errors="replace")[-3000:], file=sys.stderr)
                return 1
            time.sleep(0.1)
        print(f"server up at {api_url} (its log: {root / 'server.log'})")

        worker_env.update(PLAIT_API_URL=api_url, PLAIT_API_KEY=key)
        job = [sys.executable, str(HERE / "warehouse" / "flow.py"), *sys.argv[1:]]
        _show(f"PLAIT_API_URL={api_url} PLAIT_API_KEY=<key> python examples/warehouse/flow.py")
        done = subprocess.run(job, env=worker_env)
        deployed = _deploy_and_work(worker_env, api_url)
        listing = [*PLAIT, "flow-run", "ls", "--state", "completed", "--limit", "10"]
        _show(f"PLAIT_API_URL={api_url} PLAIT_API_KEY=<key> plait flow-run ls --state completed --limit 10")
        subprocess.run(listing, env=worker_env, check=False)
        print(f"\nWhere to look: {api_url}/v1/docs (the API), {api_url}/v1/flow-runs "
              f"(with the header 'Authorization: Bearer <key>'), or any plait command with "
              f"PLAIT_API_URL={api_url} and PLAIT_API_KEY set.")
        if os.environ.get("KEEP"):
            print("KEEP is set: the server keeps running; Ctrl-C stops it.")
            try:
                server.wait()
            except KeyboardInterrupt:
                pass
        return done.returncode or deployed
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
        log.close()


if __name__ == "__main__":
    sys.exit(main())
