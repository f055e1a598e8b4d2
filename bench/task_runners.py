"""ThreadPool, ProcessPool and Dask task runners on CPU-bound work and on per-task overhead.

    python bench/task_runners.py [--workers 2] [--cpu-tasks 8] [--cpu-n 3000000] [--noops 1000]

(a) ``--cpu-tasks`` pure-Python tasks, each summing the squares below ``--cpu-n``;
(b) ``--noops`` tasks that return at once (what each runner costs per task). Each runner
runs the same flows of ``.map`` calls with ``--workers`` workers: threads, processes, or a
Dask ``LocalCluster`` of that many single-threaded worker processes. A process pool belongs
to one flow run and spawns its workers in each, so its (a) and (b) include that start-up,
shown alone as "start" (a flow run of one no-op task); the Dask cluster is started
beforehand and reached by address, so its start-up is not timed. The baseline is the same
bodies called one after another in a plain loop, without plait, measured in the same run.
Prints wall times and their ratio to the baseline, and the load average (the CPUs may be
shared). The run history goes to a temporary SQLite store.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))


def sum_squares(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def noop(i: int) -> int:
    return i


def _timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpu-tasks", type=int, default=8)
    parser.add_argument("--cpu-n", type=int, default=3_000_000)
    parser.add_argument("--noops", type=int, default=1000)
    args = parser.parse_args()

    load = os.getloadavg()
    home = tempfile.mkdtemp(prefix="plait-bench-runners-")
    os.environ.update(PLAIT_HOME=home, PLAIT_DATABASE_URL=f"sqlite:///{home}/plait.db", PLAIT_LOG_TO_CONSOLE="false")
    from distributed import LocalCluster
    from plait_dask import DaskTaskRunner

    from plait import ThreadPoolTaskRunner, flow, task
    from plait.task_runners import ProcessPoolTaskRunner

    cpu_task, noop_task = task(sum_squares), task(noop)
    cpu_inputs = [args.cpu_n] * args.cpu_tasks
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None)
    runners = {
        "ThreadPool": ThreadPoolTaskRunner(args.workers),
        "ProcessPool": ProcessPoolTaskRunner(args.workers),
        "Dask": DaskTaskRunner(address=cluster.scheduler_address),
    }
    try:
        expected: list[int] = []
        baseline_cpu = _timed(lambda: expected.extend(sum_squares(n) for n in cpu_inputs))
        baseline_noop = _timed(lambda: [noop(i) for i in range(args.noops)])
        rows = []
        for name, runner in runners.items():
            @flow(name=f"bench-{name}", task_runner=runner)
            def cpu() -> None:
                assert [f.result() for f in cpu_task.map(cpu_inputs)] == expected

            @flow(name=f"bench-{name}-noop", task_runner=runner)
            def overhead() -> None:
                assert sum(f.result() for f in noop_task.map(range(args.noops))) == sum(range(args.noops))

            # a flow run of one no-op task: what starting the runner costs (a process pool
            # spawns its workers for each flow run; the Dask cluster is already up)
            start = _timed(flow(name=f"start-{name}", task_runner=runner)(lambda: noop_task.submit(0).result()))
            rows.append((name, start, _timed(cpu), _timed(overhead)))
    finally:
        cluster.close()

    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, {args.workers} workers")
    print(f"(a) {args.cpu_tasks} CPU-bound tasks (sum of squares below {args.cpu_n:,}); "
          f"(b) {args.noops:,} no-op tasks")
    print(f"load average before: {load[0]:.2f} (other processes share these CPUs)")
    print(f"{'runner':<14}{'start s':>9}{'(a) wall s':>12}{'vs loop':>9}{'(b) wall s':>12}{'vs loop':>10}"
          f"{'per task':>10}")
    print(f"{'plain loop':<14}{'-':>9}{baseline_cpu:>12.2f}{1:>9.2f}{baseline_noop:>12.4f}{1:>10.0f}"
          f"{baseline_noop / args.noops * 1e6:>8.1f}us")
    for name, start_s, cpu_s, noop_s in rows:
        print(f"{name:<14}{start_s:>9.2f}{cpu_s:>12.2f}{cpu_s / baseline_cpu:>9.2f}{noop_s:>12.3f}"
              f"{noop_s / baseline_noop:>10.0f}{noop_s / args.noops * 1e3:>8.2f}ms")


if __name__ == "__main__":
    main()
