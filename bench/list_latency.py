"""Server-side latency of the API's list and get queries on a large store.

    python bench/store_gen.py --url sqlite:////tmp/big.db          # 1,000,000 flow runs
    python bench/list_latency.py --url sqlite:////tmp/big.db

Times the store functions the list routes call (``plait._store.pages``; the time a route
spends besides them is JSON encoding of the page), each --repeat times after one warm-up
call, with a different run or time each time where the query takes one: the first page of
flow runs, filtered pages, a page deep in history (by keyset cursor), one run with its
task runs, a run's task runs and log lines, and the CLI's ``flow-run ls``. Prints the
median and 95th percentile against the issue's target: <= 50 ms each.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))

from sqlalchemy import func, select  # noqa: E402

from plait._store import history, pages  # noqa: E402
from plait._store._paging import encode_cursor  # noqa: E402
from plait._store.database import Database  # noqa: E402
from plait._store.models import FLOW_RUNS, TASK_RUNS  # noqa: E402

TARGET_MS = 50.0


def _micros(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=moment.tzinfo)) // timedelta(microseconds=1)


class Sampler:
    """Random flow runs and times of the store, found through the pages themselves."""

    def __init__(self, db: Database, seed: int) -> None:
        self.db = db
        self.random = random.Random(seed)
        newest = pages.page_flow_runs(db, limit=1)["items"]
        if not newest:
            raise SystemExit(f"{db.url_masked} holds no flow runs; fill it with bench/store_gen.py first")
        with db.engine.connect() as conn:
            oldest = conn.scalar(select(func.min(FLOW_RUNS.c.created)))
        self.first: datetime = oldest
        self.last = datetime.fromisoformat(newest[0]["created"])
        self.flow_names = sorted({r["flow_name"] for r in pages.page_flow_runs(db, limit=200)["items"]})

    def moment(self, low: float = 0.0, high: float = 1.0) -> datetime:
        span = (self.last - self.first).total_seconds()
        return self.first + timedelta(seconds=span * self.random.uniform(low, high))

    def run(self) -> dict[str, Any]:
        """A flow run created at a random time (the newest one before it)."""
        for _ in range(20):
            items = pages.page_flow_runs(self.db, until=self.moment(), limit=1)["items"]
            if items:
                run: dict[str, Any] = items[0]
                return run
        raise SystemExit("could not find flow runs to sample")

    def deep_cursor(self) -> str:
        """A cursor in the oldest tenth of the history: the page after it is deep down."""
        items = pages.page_flow_runs(self.db, until=self.moment(0.0, 0.1) + timedelta(seconds=1), limit=1)["items"]
        run = items[0] if items else self.run()
        return encode_cursor("flow-runs", [_micros(datetime.fromisoformat(run["created"])), run["id"]])

    def flow(self) -> str:
        return str(self.random.choice(self.flow_names))


def cases(db: Database, sample: Sampler, limit: int) -> list[tuple[str, Callable[[], Callable[[], Any]]]]:
    """(name, make): ``make()`` picks the arguments (not timed) and returns the timed call."""
    def fixed(call: Callable[[], Any]) -> Callable[[], Callable[[], Any]]:
        return lambda: call

    def with_run(use: Callable[[str], Any]) -> Callable[[], Callable[[], Any]]:
        def make() -> Callable[[], Any]:
            run_id = sample.run()["id"]
            return lambda: use(run_id)
        return make

    def with_flow(use: Callable[[str], Any]) -> Callable[[], Callable[[], Any]]:
        def make() -> Callable[[], Any]:
            name = sample.flow()
            return lambda: use(name)
        return make

    def one_task() -> Callable[[], Any]:
        for _ in range(20):
            tasks = pages.page_task_runs(db, flow_run_id=sample.run()["id"], limit=1)["items"]
            if tasks:
                task_id = tasks[0]["id"]
                return lambda: pages.get_task_run(db, task_id)
        raise SystemExit("could not find task runs to sample")

    def deep(**filters: Any) -> Callable[[], Callable[[], Any]]:
        def make() -> Callable[[], Any]:
            cursor = sample.deep_cursor()
            return lambda: pages.page_flow_runs(db, limit=limit, cursor=cursor, **filters)
        return make

    return [
        ("page_flow_runs: first page", fixed(lambda: pages.page_flow_runs(db, limit=limit))),
        ("page_flow_runs: flow=X", with_flow(lambda name: pages.page_flow_runs(db, flow_names=[name], limit=limit))),
        ("page_flow_runs: flow=X state=FAILED", with_flow(
            lambda name: pages.page_flow_runs(db, flow_names=[name], states=["FAILED"], limit=limit))),
        ("page_flow_runs: state=CRASHED", fixed(lambda: pages.page_flow_runs(db, states=["CRASHED"], limit=limit))),
        ("page_flow_runs: tag=prod", fixed(lambda: pages.page_flow_runs(db, tags=["prod"], limit=limit))),
        ("page_flow_runs: tags=prod+nightly", fixed(
            lambda: pages.page_flow_runs(db, tags=["prod", "nightly"], limit=limit))),
        ("page_flow_runs: tag no run has", fixed(lambda: pages.page_flow_runs(db, tags=["no-such-tag"], limit=limit))),
        ("page_flow_runs: flow=X tag=prod", with_flow(
            lambda name: pages.page_flow_runs(db, flow_names=[name], tags=["prod"], limit=limit))),
        ("page_flow_runs: top-level only", fixed(lambda: pages.page_flow_runs(db, top_level=True, limit=limit))),
        ("page_flow_runs: deep keyset page", deep()),
        ("page_flow_runs: deep page, state=FAILED", deep(states=["FAILED"])),
        ("get_flow_run_full: one run", with_run(lambda run_id: pages.get_flow_run_full(db, run_id))),
        ("page_task_runs: one run's", with_run(lambda run_id: pages.page_task_runs(db, flow_run_id=run_id,
                                                                                   limit=limit))),
        ("page_task_runs: all, newest first", fixed(lambda: pages.page_task_runs(db, limit=limit))),
        ("get_task_run: one", one_task),
        ("page_logs: one run's", with_run(lambda run_id: pages.page_logs(db, flow_run_id=run_id, limit=200))),
        ("page_logs: one run's, level>=WARNING", with_run(
            lambda run_id: pages.page_logs(db, flow_run_id=run_id, min_level="WARNING", limit=200))),
        ("history.list_flow_runs (flow-run ls)", fixed(lambda: history.list_flow_runs(db, limit=20))),
    ]


def measure(make: Callable[[], Callable[[], Any]], repeat: int) -> list[float]:
    make()()  # warm-up: a server answers from a warm cache
    times = []
    for _ in range(repeat):
        call = make()
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return times


def p95(values: list[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("PLAIT_DATABASE_URL"),
                        help="the store to measure (default: PLAIT_DATABASE_URL)")
    parser.add_argument("--repeat", type=int, default=30, help="timed calls per query (default 30)")
    parser.add_argument("--limit", type=int, default=50, help="page size (default 50)")
    parser.add_argument("--seed", type=int, default=9, help="random seed for the runs and times picked")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    opts = parser.parse_args()
    if not opts.url:
        parser.error("give --url (or set PLAIT_DATABASE_URL)")
    db = Database.open(opts.url)
    with db.engine.connect() as conn:
        flow_runs = conn.scalar(select(func.count()).select_from(FLOW_RUNS))
        task_runs = conn.scalar(select(func.count()).select_from(TASK_RUNS))
    sample = Sampler(db, opts.seed)
    rows = []
    for name, make in cases(db, sample, opts.limit):
        times = measure(make, opts.repeat)
        median, high = statistics.median(times), p95(times)
        rows.append({"query": name, "median_ms": median, "p95_ms": high, "max_ms": max(times),
                     "met": median <= TARGET_MS and high <= TARGET_MS})
    if opts.json:
        print(json.dumps({"database": db.dialect, "flow_runs": flow_runs, "task_runs": task_runs, "results": rows},
                         indent=2))
        return
    print(f"{db.dialect}: {flow_runs:,} flow runs, {task_runs:,} task runs; {opts.repeat} calls each, "
          f"page size {opts.limit}")
    print(f"{'query':<44} {'median':>9} {'p95':>9} {'max':>9}  target")
    for r in rows:
        mark = "ok" if r["met"] else "MISS"
        print(f"{r['query']:<44} {r['median_ms']:>7.2f}ms {r['p95_ms']:>7.2f}ms {r['max_ms']:>7.2f}ms  "
              f"<= {TARGET_MS:g} ms {mark}")
    db.dispose()


if __name__ == "__main__":
    main()
