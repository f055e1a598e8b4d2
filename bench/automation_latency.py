"""How long an event takes to become an automation's action, at 100 events a second, and
what that load costs the API.

    python bench/automation_latency.py [--rate 100] [--seconds 5] [--postgres]

Starts a plait server (SQLite under a temporary directory, or a fresh PostgreSQL database
on 127.0.0.1 with --postgres) and a receiver on 127.0.0.1, saves an automation whose action
calls the receiver for every ``bench.ping`` event, then posts ``--rate`` events a second
for ``--seconds`` through ``POST /api/v1/events``. Each event's latency runs from the
moment its POST was answered to the moment the receiver got the call. Meanwhile another
thread times ``GET /api/v1/flow-runs``; the baseline is the same load of events that no
automation matches, posted first. Prints the median, 95th percentile and maximum against
the issue's target (<= 1 s), and what firing costs the API against that baseline.
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


def load(server: Any, kind: str, total: int, rate: float, sent: dict[int, float]) -> tuple[list[float], float]:
    """Post ``total`` events of ``kind`` at ``rate`` a second from 4 threads (each posts
    every 4th on time, so one slow answer does not hold the rest back) while another thread
    times ``GET /flow-runs``; returns those times and the rate achieved."""
    times: list[float] = []
    stop = threading.Event()
    watching = httpx.Client(base_url=server.api_url + "/v1", headers=server.headers("read"), timeout=30)
    watcher = threading.Thread(target=api_times, args=(watching, stop, times))
    watcher.start()
    began = time.perf_counter()
    senders = 4
    last = [began]

    def send(first: int) -> None:
        with httpx.Client(base_url=server.api_url + "/v1", headers=server.headers("run"), timeout=30) as own:
            for n in range(first, total, senders):
                pause = began + n / rate - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                own.post("/events", json={"event": kind, "resource": {"id": "bench/pinger"},
                                          "payload": {"n": n}}).raise_for_status()
                sent[n] = last[0] = max(last[0], time.perf_counter())

    threads = [threading.Thread(target=send, args=(i,)) for i in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    watcher.join()
    watching.close()
    return times, total / (last[0] - began)


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
        total = int(opts.rate * opts.seconds)
        # the same load twice: events no automation matches, then events it acts on
        quiet_load, achieved_quiet = load(server, "bench.noise", total, opts.rate, {})
        firing_load, achieved = load(server, "bench.ping", total, opts.rate, sent)
        deadline = time.perf_counter() + 30
        while len(arrived) < total and time.perf_counter() < deadline:
            time.sleep(0.05)
    delays = [arrived.get(n, float("inf")) - sent[n] for n in range(total)]
    got = [d for d in delays if d != float("inf")]
    median, high, worst = statistics.median(delays), p95(delays), max(delays)
    print(f"database: {'postgresql' if opts.postgres else 'sqlite'}; {total} events at {achieved:.0f}/s "
          f"(asked {opts.rate:g}/s); {len(got)} actions taken")
    print(f"event -> action: median {median * 1000:.0f} ms, p95 {high * 1000:.0f} ms, max {worst * 1000:.0f} ms "
          f"(target <= {TARGET_S * 1000:.0f} ms): {'ok' if high <= TARGET_S and len(got) == total else 'MISSED'}")
    base, firing = statistics.median(quiet_load), statistics.median(firing_load)
    print(f"GET /flow-runs under {achieved_quiet:.0f} events/s that nothing matches: median {base * 1000:.1f} ms; "
          f"under {achieved:.0f}/s that fire an action each: {firing * 1000:.1f} ms (x{firing / base:.2f})")
    if high > TARGET_S or len(got) != total:
        sys.exit(1)


if __name__ == "__main__":
    main()
