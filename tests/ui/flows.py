"""Small flows the dashboard's browser tests record into their server's store.

    python tests/ui/flows.py failed            # ui-failed: a task fails, the flow run ends Failed
    python tests/ui/flows.py nested            # ui-nested: a subflow (ui-nested-child) and mapped tasks
    python tests/ui/flows.py slow [SECONDS]    # ui-slow: a log line every 0.2 s, for live tails and cancel

Run with PLAIT_API_URL and PLAIT_API_KEY set (``ui_server.flow_env()``): the runs are recorded by
the server under test, as a worker's would be. The exit status is the flow run's: 0 Completed,
1 otherwise.
"""

from __future__ import annotations

import sys
import time

from plait import flow, get_run_logger, task


@task
def prepare(batch: str) -> list[int]:
    return list(range(1, 5)) if batch != "empty" else []


@task(retries=1, retry_delay_seconds=0.05)
def check_rows(rows: list[int]) -> int:
    # a multi-line message: the dashboard must show failure messages whole
    raise ValueError(f"{len(rows)} rows failed the check\nfirst bad row: {rows[0]}\nsee the upstream extract")


@flow(name="ui-failed")
def failing(batch: str = "nightly") -> int:
    get_run_logger().info("checking batch %s", batch)
    return check_rows(prepare(batch))


@task
def square(n: int) -> int:
    return n * n


@task
def total(values: list[int]) -> int:
    return sum(values)


@flow(name="ui-nested-child")
def child(values: list[int]) -> int:
    get_run_logger().info("child sums %d values", len(values))
    return total(values)


@flow(name="ui-nested")
def nested(count: int = 5) -> int:
    squares = square.map(list(range(count)))  # one task run per item
    return child([s.result() for s in squares])


@task
def tick(i: int) -> int:
    get_run_logger().info("tick %d", i)
    time.sleep(0.2)
    return i


@flow(name="ui-slow")
def slow(seconds: float = 30.0) -> int:
    done = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done = tick(done) + 1
    return done


FLOWS = {"failed": failing, "nested": nested, "slow": slow}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in FLOWS:
        print(f"usage: flows.py {{{'|'.join(FLOWS)}}} [ARG]", file=sys.stderr)
        return 2
    name, args = argv[0], argv[1:]
    chosen = FLOWS[name]
    params = [float(args[0])] if name == "slow" and args else []
    state = chosen(*params, return_state=True)
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
