"""How long an event takes to become an automation's action, at 100 events a second, and
what that load costs the API.

    python bench/automation_latency.py [--rate 100] [--seconds 5] [--postgres]

Starts a plait server (SQLite under a temporary directory, or a fresh PostgreSQL database
on 127.0.0.1 with --postgres) and a receiver on 127.0.0.1, saves an automation whose action
calls the receiver for every ``bench.ping`` event, then posts ``--rate`` events a second
for ``--seconds`` through ``POST /api/v1/events``. Each event's latency runs from the
moment its POST was answered to the moment the receiver got the call. Meanwhile another
thread times ``GET /api/v1/flow-runs``; the same requests are timed before the load as
the baseline. Prints the median, 95th percentile and maximum against the issue's target
(<= 1 s), and the API's median under load against its baseline.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))

import httpx  # noqa: E402

from plait.testing import running_server, throwaway_postgres_database  # noqa: E402

TARGET_S = 1.0


def receiver(arrived: dict[int, float]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            arrived[int(body)] = time.perf_counter()
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def api_times(api: httpx.Client, stop: threading.Event, out: list[float], count: int | None = None) -> None:
    while not stop.is_set() and (count is None or len(out) < count):
        started = time.perf_counter()
        api.get("/flow-runs", params={"limit": 10}).raise_for_status()
        out.append(time.perf_counter() - started)
        time.sleep(0.02)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100.0, help="events a second")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--postgres", action="store_true", help="a fresh PostgreSQL database on 127.0.0.1")
    opts = parser.parse_args()
    arrived: dict[int, float] = {}
    sent: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="plait-bench-automations-") as home, ExitStack() as stack:
        url = (stack.enter_context(throwaway_postgres_database("plait_bench_auto")) if opts.postgres
               else f"sqlite:///{home}/plait.db")
        server = stack.enter_context(running_server(url, Path(home) / "server"))
        target = receiver(arrived)
        stack.callback(target.shutdown)
        api = stack.enter_context(httpx.Client(base_url=server.api_url + "/v1", headers=server.headers("admin"),
                                               timeout=30))
        saved = api.post("/automations", json={
            "name": "bench-echo", "trigger": {"expect": ["bench.ping"]},
            "actions": [{"type": "call-webhook", "url": f"http://127.0.0.1:{target.server_address[1]}/",
                         "body": "{{ event.payload.n }}"}]})
        saved.raise_for_status()
        time.sleep(1.0)  # the evaluator has loaded it
        baseline: list[float] = []
        api_times(api, threading.Event(), baseline, count=50)
        under_load: list[float] = []
        stop = threading.Event()
        watcher = threading.Thread(target=api_times, args=(
            stack.enter_context(httpx.Client(base_url=server.api_url + "/v1", headers=server.headers("read"),
                                             timeout=30)), stop, under_load))
        watcher.start()
        total = int(opts.rate * opts.seconds)
        began = time.perf_counter()
        senders = 4  # each posts every 4th event on time, so one slow answer does not hold the rest back

        def send(first: int) -> None:
            with httpx.Client(base_url=server.api_url + "/v1", headers=server.headers("run"), timeout=30) as own:
                for n in range(first, total, senders):
                    pause = began + n / opts.rate - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                    own.post("/events", json={"event": "bench.ping", "resource": {"id": "bench/pinger"},
                                              "payload": {"n": n}}).raise_for_status()
                    sent[n] = time.perf_counter()

        threads = [threading.Thread(target=send, args=(i,)) for i in range(senders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        achieved = total / (max(sent.values()) - began)
        deadline = time.perf_counter() + 30
        while len(arrived) < total and time.perf_counter() < deadline:
            time.sleep(0.05)
        stop.set()
        watcher.join()
    delays = [arrived.get(n, float("inf")) - sent[n] for n in range(total)]
    got = [d for d in delays if d != float("inf")]
    median, high, worst = statistics.median(delays), p95(delays), max(delays)
    print(f"database: {'postgresql' if opts.postgres else 'sqlite'}; {total} events at {achieved:.0f}/s "
          f"(asked {opts.rate:g}/s); {len(got)} actions taken")
    print(f"event -> action: median {median * 1000:.0f} ms, p95 {high * 1000:.0f} ms, max {worst * 1000:.0f} ms "
          f"(target <= {TARGET_S * 1000:.0f} ms): {'ok' if high <= TARGET_S and len(got) == total else 'MISSED'}")
    base, loaded = statistics.median(baseline), statistics.median(under_load)
    print(f"GET /flow-runs: median {base * 1000:.1f} ms idle, {loaded * 1000:.1f} ms under the load "
          f"(x{loaded / base:.2f})")
    if high > TARGET_S or len(got) != total:
        sys.exit(1)


if __name__ == "__main__":
    main()
