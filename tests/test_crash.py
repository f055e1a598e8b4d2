"""A flow run whose process is killed with SIGKILL is shown as Crashed; what it flushed stays."""

import os
import signal
import subprocess
import sys
import textwrap
import time

SCRIPT = textwrap.dedent(
    """
    import time
    from plait import flow, task, get_run_logger

    @task
    def quick(i):
        get_run_logger().info("quick %s done", i)
        return i

    @task
    def hang():
        time.sleep(600)

    @flow
    def doomed():
        for i in range(3):
            quick(i)
        hang()

    doomed()
    """
)


def test_kill_9_leaves_crashed_run_with_flushed_history(plait_harness, tmp_path):
    script = tmp_path / "doomed.py"
    script.write_text(SCRIPT)
    env = {
        **os.environ,
        "PLAIT_HOME": str(plait_harness.home),
        "PLAIT_DATABASE_URL": plait_harness.database_url,
        "PLAIT_RECORDER_FLUSH_INTERVAL": "0.1",
    }
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:  # wait until the background flush has written the hanging task's Running state
            runs = plait_harness.flow_runs()
            if runs:
                tasks = plait_harness.flow_run(runs[0]["id"])["task_runs"]
                if any(t["name"] == "hang-0" and t["state_type"] == "RUNNING" for t in tasks):
                    break
            assert time.monotonic() < deadline, "the flow never got to its hanging task"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    [run] = plait_harness.flow_runs()
    assert run["state_type"] == "CRASHED"
    assert str(proc.pid) in run["state_message"]
    detail = plait_harness.flow_run(run["id"])
    states = {t["name"]: t["state_type"] for t in detail["task_runs"]}
    assert states == {"quick-0": "COMPLETED", "quick-1": "COMPLETED", "quick-2": "COMPLETED", "hang-0": "CRASHED"}
    logs = [row["message"] for row in plait_harness.logs(run["id"])]
    assert [m for m in logs if m.startswith("quick")] == ["quick 0 done", "quick 1 done", "quick 2 done"]
