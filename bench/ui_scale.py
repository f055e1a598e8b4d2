"""The dashboard at scale, in real Chromium: a plait server on a store of 1,000,000 flow runs
and one flow run of 10,000 task runs made by a real flow.

    python bench/ui_scale.py [--runs 1000000] [--tasks 10000] [--keep DIR] [--only NAME] [--json]

The store is made once by bench/store_gen.py (its history shifted to end now, so the runs
page's default "last 7d" window holds ~19,000 runs), then the flow below records its run into
it; with --keep DIR (default /tmp/plait-ui-bench) both are kept in DIR/runs-N-tasks-T and
reused while under a day old. The server is `plait server
start` (plait.testing.running_server, auth off); the browser is /usr/bin/chromium through
Playwright, headless. Every figure is the median of 5 after one warm-up. A figure more than
20% past its target makes the exit status 1. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
CHROMIUM = "/usr/bin/chromium"
SLACK = 1.2  # a figure above target * SLACK fails the run
REPEAT = 5
FRESH_FOR = timedelta(days=1)  # a kept store older than this is made again (its 7d window drifts)
BIG_FLOW = "ui-scale-wide"
LIVE_FLOW = "ui-scale-live"

# store_gen's history spans a year from its START; moved so that it ends now
GENERATE = '''
import sys
from datetime import UTC, datetime
sys.path.insert(0, {bench!r})
import store_gen
store_gen.START = datetime.fromisoformat({start!r})
sys.argv = ["store_gen.py", "--url", {url!r}, "--flow-runs", {runs!r}]
store_gen.main()
'''

# A real flow run of TASKS task runs with edges: a map, one downstream task per mapped one
# (data edges), a fan-in of them all and one task after it.
FLOWS = '''
import sys, time
from plait import flow, task, runtime

@task
def noop(i):
    return i

@task
def step(x):
    return x + 1

@task
def gather(xs):
    return sum(xs)

@task
def report(total):
    return total

@flow(name="{big}")
def wide(n):
    half = (n - 2) // 2
    first = noop.map(range(half))
    second = [step.submit(f) for f in first]
    total = gather.submit(second)
    extra = [noop.submit(-i) for i in range(n - 2 - 2 * half)]
    report.submit(total).result()
    for f in extra:
        f.result()
    return runtime.flow_run.id

@flow(name="{live}")
def live(seconds):
    time.sleep(float(seconds))
    return runtime.flow_run.id

if __name__ == "__main__":
    if sys.argv[1] == "wide":
        print(wide(int(sys.argv[2])))
    else:
        print(live(sys.argv[2]))
'''


def _say(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def flow_env(home: Path, database_url: str | None = None, api_url: str | None = None) -> dict[str, str]:
    """A flow process's environment: its own PLAIT_HOME, recording to a store or a server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env.update(PLAIT_HOME=str(home), PLAIT_LOG_TO_CONSOLE="false")
    if database_url:
        env["PLAIT_DATABASE_URL"] = database_url
    if api_url:
        env["PLAIT_API_URL"] = api_url
    return env


@dataclass
class Store:
    """A generated store: where it is and what it holds."""

    path: Path
    runs: int
    tasks: int
    big_run_id: str
    made_at: str
    generate_seconds: float
    flow_seconds: float
    reused: bool = False

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path / 'plait.db'}"


def _fresh(meta: dict[str, Any]) -> bool:
    try:
        return datetime.now(UTC) - datetime.fromisoformat(meta["made_at"]) < FRESH_FOR
    except (KeyError, ValueError):
        return False


def ensure_store(keep: Path | None, runs: int, tasks: int, flows_py: Path) -> Store:
    """The store of ``runs`` synthetic flow runs plus one real run of ``tasks`` task runs,
    made in DIR/runs-N-tasks-T (or a temporary folder) unless a fresh one is kept there."""
    base = keep if keep is not None else Path(tempfile.mkdtemp(prefix="plait-ui-bench-"))
    final = base / f"runs-{runs}-tasks-{tasks}"
    meta_file = final / "meta.json"
    if meta_file.exists():
        meta = json.loads(meta_file.read_text())
        if _fresh(meta):
            return Store(path=final, reused=True, **meta)
        _say(f"{final} is older than {FRESH_FOR}: making it again")
    partial = base / f"runs-{runs}-tasks-{tasks}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(final, ignore_errors=True)
    partial.mkdir(parents=True)
    url = f"sqlite:///{partial / 'plait.db'}"
    made_at = datetime.now(UTC)
    start = made_at - timedelta(days=365)
    _say(f"store_gen: {runs:,} flow runs into {partial} (takes minutes at 1,000,000)")
    began = time.perf_counter()
    script = GENERATE.format(bench=str(ROOT / "bench"), start=start.isoformat(), url=url, runs=str(runs))
    with open(partial / "store_gen.log", "w") as log:
        done = subprocess.run([PYTHON, "-c", script], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                              env=flow_env(partial / "gen-home"))
    if done.returncode != 0:
        raise SystemExit(f"store_gen failed ({done.returncode}); see {partial / 'store_gen.log'}")
    generate_seconds = time.perf_counter() - began
    _say(f"store_gen done in {generate_seconds:.0f} s; flow {BIG_FLOW}: {tasks:,} task runs")
    began = time.perf_counter()
    done = subprocess.run([PYTHON, str(flows_py), "wide", str(tasks)], capture_output=True, text=True,
                          cwd=partial, env=flow_env(partial / "flow-home", database_url=url))
    if done.returncode != 0:
        raise SystemExit(f"the flow {BIG_FLOW} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    flow_seconds = time.perf_counter() - began
    meta = {"runs": runs, "tasks": tasks, "big_run_id": done.stdout.strip().splitlines()[-1],
            "made_at": made_at.isoformat(), "generate_seconds": round(generate_seconds, 1),
            "flow_seconds": round(flow_seconds, 1)}
    (partial / "meta.json").write_text(json.dumps(meta, indent=2))
    partial.rename(final)
    return Store(path=final, **meta)


# -- in the browser --------------------------------------------------------------------------------
# Runs before any page script: the first moment each part of the runs page is in the DOM, every
# live row's state as it appears, htmx's swaps, the event stream's messages with their arrival,
# and long tasks. Times: performance.now() (marks, swaps, long tasks) or Date.now() (live).
INIT = """
(() => {
  const ui = window.__ui = {marks: {}, seen: {}, settled: [], inputAt: null, sse: [], longtasks: [], ready: null};
  const Original = window.EventSource;
  if (Original && !Original.__uiWrapped) {
    class Watched extends Original {
      addEventListener(type, listener, options) {
        if (!["open", "error", "message"].includes(type)) {
          Original.prototype.addEventListener.call(this, type,
            (e) => ui.sse.push({at: Date.now(), kind: type, data: String(e.data)}));
        }
        return super.addEventListener(type, listener, options);
      }
    }
    Watched.__uiWrapped = true;
    window.EventSource = Watched;
  }
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) ui.longtasks.push({start: e.startTime, duration: e.duration});
    }).observe({type: "longtask", buffered: true});
  } catch (e) { /* no long task timing */ }
  const watch = {rows: "#runs-body table.runs tbody tr", summary: "#runs-body .summary",
                 chart: "#runs-body .chart .bar", empty: "#runs-body .empty"};
  const check = () => {
    for (const name in watch) {
      if (!(name in ui.marks) && document.querySelector(watch[name])) ui.marks[name] = performance.now();
    }
    document.querySelectorAll("#runs-body tr[data-run-id]").forEach((tr) => {
      const cells = tr.querySelectorAll("td");
      if (cells.length < 3 || cells[2].textContent.trim() !== "%(live)s") return;
      const badge = tr.querySelector("[data-state]");
      const key = tr.dataset.runId + "/" + (badge ? badge.dataset.state : "?");
      if (!(key in ui.seen)) ui.seen[key] = Date.now();
    });
  };
  new MutationObserver(check).observe(document, {childList: true, subtree: true, attributes: true,
                                                 attributeFilter: ["data-state"]});
  document.addEventListener("input", (e) => { if (ui.inputAt === null) ui.inputAt = e.timeStamp; }, true);
  document.addEventListener("htmx:afterSettle", (e) => ui.settled.push({at: performance.now(),
    id: (e.detail && e.detail.target && e.detail.target.id) || (e.target && e.target.id) || ""}));
})();
"""

# The flow-run page's graph is laid out and drawn: static/flow_run.js sets window.plaitGraph.ready
# (the other markers are fallbacks should the page change its own)
GRAPH_READY = """
() => {
  const g = window.plaitGraph;
  const ready = (g && (g.ready === undefined || g.ready === true))
    || document.querySelector("[data-graph-ready], [data-graph-state=ready], canvas[data-ready]");
  if (ready && window.__ui.ready === null) window.__ui.ready = performance.now();
  return !!ready;
}
"""

NAV = """
() => {
  const n = performance.getEntriesByType("navigation")[0];
  const fcp = performance.getEntriesByName("first-contentful-paint")[0];
  return {fcp: fcp ? fcp.startTime : null, request: n.requestStart, ttfb: n.responseStart,
          html_done: n.responseEnd, dcl: n.domContentLoadedEventEnd, load: n.loadEventEnd,
          html_kb: n.encodedBodySize / 1024, marks: window.__ui.marks};
}
"""

RESOURCES = """
(since) => performance.getEntriesByType("resource").filter((r) => r.startTime >= since).map((r) => ({
  url: r.name, start: r.startTime, duration: r.duration, wait: r.responseStart - r.requestStart,
  kb: r.encodedBodySize / 1024}))
"""


@dataclass
class Figure:
    """One line of the table: the figure must be <= target (None: no target)."""

    what: str
    value: float | None  # None: not measured (see note)
    unit: str
    target: float | None = None
    note: str = ""
    samples: list[float] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.value is not None and self.target is not None and self.value > SLACK * self.target

    @property
    def status(self) -> str:
        if self.value is None:
            return "n/a"
        if self.target is None:
            return "-"
        if self.value <= self.target:
            return "ok"
        over = f" +{(self.value / self.target - 1) * 100:.0f}%" if self.target > 0 else ""
        return ("FAIL" if self.failed else "miss") + over


class Session:
    """The server and the browser one benchmark run uses, and the figures it collects."""

    def __init__(self, server: Any, browser: Any, store: Store, flows_py: Path) -> None:
        self.server, self.browser, self.store, self.flows_py = server, browser, store, flows_py
        self.figures: list[Figure] = []
        self.details: list[str] = []  # where the time went, printed under the table

    def add(self, what: str, samples: list[float], unit: str, target: float | None = None, note: str = "",
            value: float | None = None) -> None:
        if value is None and samples:
            value = statistics.median(samples)
        self.figures.append(Figure(what, value, unit, target, note, [round(s, 1) for s in samples]))

    def context(self) -> Any:
        ctx = self.browser.new_context(base_url=self.server.url, viewport={"width": 1280, "height": 900})
        ctx.set_default_timeout(30_000)
        ctx.add_init_script(INIT % {"live": LIVE_FLOW})
        return ctx

    def open(self, ctx: Any, path: str) -> Any:
        page = ctx.new_page()
        page.goto(path, wait_until="load")
        return page

    @staticmethod
    def stream_open(page: Any) -> None:
        page.wait_for_selector("[data-live][data-on='1']", state="attached")

    def slowest(self, page: Any, since: float, label: str) -> None:
        found = [r for r in page.evaluate(RESOURCES, since) if "/events/stream" not in r["url"]]
        for r in sorted(found, key=lambda r: -r["duration"])[:2]:
            path = r["url"].replace(self.server.url, "")
            self.details.append(f"{label}: {path[:90]} {r['duration']:.0f} ms (server wait {r['wait']:.0f} ms, "
                                f"{r['kb']:.0f} kB)")


# -- the measurements ------------------------------------------------------------------------------
def page_status(session: Session, path: str) -> int:
    import httpx

    return httpx.get(session.server.url + path, timeout=120).status_code


def runs_page(s: Session, path: str = "/", label: str = "runs page /") -> None:
    """First contentful paint, and when the table and the summary/chart are in the DOM."""
    status = page_status(s, path)
    if status != 200:
        s.add(f"{label}: first contentful paint", [], "ms", 500, note=f"{path} answered {status}")
        return
    ctx = s.context()
    samples: list[dict[str, Any]] = []
    try:
        for i in range(REPEAT + 1):
            page = s.open(ctx, path)
            page.wait_for_function("() => performance.getEntriesByName('first-contentful-paint').length > 0")
            page.wait_for_function("() => 'rows' in window.__ui.marks || 'empty' in window.__ui.marks")
            try:  # the summary and chart come as a second fragment
                page.wait_for_function("() => 'summary' in window.__ui.marks")
                page.wait_for_timeout(50)
            except Exception:
                pass
            nav = page.evaluate(NAV)
            if i:
                samples.append(nav)
            if i == REPEAT:
                s.slowest(page, 0, label)
            page.close()
    finally:
        ctx.close()
    marks = [n["marks"] for n in samples]
    s.add(f"{label}: first contentful paint", [n["fcp"] for n in samples], "ms", 500)
    if all("rows" in m for m in marks):
        s.add(f"{label}: runs table filled", [m["rows"] for m in marks], "ms")
    else:
        s.add(f"{label}: runs table filled", [], "ms", note="the page showed no runs")
    if all("summary" in m for m in marks):
        s.add(f"{label}: summary and chart filled", [max(m["summary"], m.get("chart", 0)) for m in marks], "ms",
              note="" if all("chart" in m for m in marks) else "no chart bars")
    else:
        s.add(f"{label}: summary and chart filled", [], "ms", note="no summary within 30 s")
    s.add(f"{label}: HTML's server time (TTFB - request)", [n["ttfb"] - n["request"] for n in samples], "ms",
          note=f"{statistics.median(n['html_kb'] for n in samples):.0f} kB")
    s.add(f"{label}: load event", [n["load"] for n in samples], "ms")


def api_timings(s: Session) -> None:
    """The API calls behind the runs page, timed from outside (median of 5 after a warm-up)."""
    import httpx

    now = datetime.now(UTC)
    week = {"since": (now - timedelta(days=7)).isoformat(), "until": now.isoformat()}
    calls = [
        ("GET /api/v1/flow-runs?limit=50 (7d)", "/flow-runs", {"limit": 50, "since": week["since"]}),
        ("GET /api/v1/flow-runs/summary (7d, 48 buckets)", "/flow-runs/summary", {**week, "buckets": 48}),
        ("GET /api/v1/flow-runs/summary (7d, state=FAILED)", "/flow-runs/summary",
         {**week, "buckets": 48, "state": "FAILED"}),
        ("GET /api/v1/flow-runs?limit=50&state=CRASHED (7d)", "/flow-runs",
         {"limit": 50, "since": week["since"], "state": "CRASHED"}),
        ("GET / (the page's HTML, 7d)", "", {}),
        ("GET /?state=CRASHED (the filter's fragment)", "", {"state": "CRASHED", "range": "7d"}),
        ("GET /runs/summary (the page's fragment, 7d)", "/runs/summary", {"range": "7d"}),
    ]
    with httpx.Client(base_url=s.server.url, timeout=120) as client:
        for label, path, params in calls:
            url = f"/api/v1{path}" if path.startswith("/flow-runs") else path or "/"
            headers = {"HX-Request": "true", "HX-Target": "runs-body"} if "state" in params and not path else {}
            times = []
            for i in range(REPEAT + 1):
                began = time.perf_counter()
                client.get(url, params=params, headers=headers).raise_for_status()
                if i:
                    times.append((time.perf_counter() - began) * 1000)
            s.details.append(f"{label}: {statistics.median(times):.0f} ms (median of {REPEAT}, from outside)")


FILTER_STATES = ["FAILED", "CRASHED", "COMPLETED", "CANCELLED", "FAILED", "CRASHED"]


def filter_change(s: Session) -> None:
    """Pick a state in the filter form: input event to htmx's settled swap, and the requests."""
    status = page_status(s, "/")
    if status != 200:
        s.add("filter change: input to swapped DOM settled", [], "ms", 300, note=f"/ answered {status}")
        return
    ctx = s.context()
    times: list[float] = []
    summary_times: list[float] = []
    counts: list[float] = []
    parts: list[tuple[float, float, float]] = []
    try:
        for i, state in enumerate(FILTER_STATES[:REPEAT + 1]):
            page = s.open(ctx, "/")
            s.stream_open(page)
            try:  # the page has settled: its own summary is in, the server is idle again
                page.wait_for_function("() => 'summary' in window.__ui.marks", timeout=60_000)
            except Exception:
                pass
            page.wait_for_timeout(200)
            made: list[str] = []
            page.on("request", lambda r, made=made: made.append(r.url))
            since = page.evaluate("() => { window.__ui.settled = []; window.__ui.inputAt = null; "
                                  "return performance.now(); }")
            page.select_option("select[name=state]", state)
            page.wait_for_function("() => window.__ui.settled.length > 0")
            try:  # the swapped body asks for its summary fragment
                page.wait_for_function("() => window.__ui.settled.some((x) => x.id === 'runs-summary')")
            except Exception:
                pass
            page.wait_for_timeout(500)  # requests that follow the swap count too
            got = page.evaluate("""() => ({settled: window.__ui.settled, input: window.__ui.inputAt,
              states: [...document.querySelectorAll('#runs-body tr[data-run-id] [data-state]')]
                .map((b) => b.dataset.state)})""")
            wrong = {x for x in got["states"] if x != state}
            if wrong:
                raise RuntimeError(f"filter {state}: the swapped table shows runs in {sorted(wrong)}")
            body = next((x["at"] for x in got["settled"] if x["id"] != "runs-summary"), got["settled"][0]["at"])
            summary = next((x["at"] for x in got["settled"] if x["id"] == "runs-summary"), None)
            if i:
                times.append(body - got["input"])
                if summary is not None:
                    summary_times.append(summary - got["input"])
                counts.append(len(made))
                fragment = [r for r in page.evaluate(RESOURCES, since) if "/events/stream" not in r["url"]]
                if fragment:
                    first = min(fragment, key=lambda r: r["start"])
                    longest = max([0, *(t["duration"] for t in page.evaluate("() => window.__ui.longtasks")
                                        if t["start"] >= since)])
                    parts.append((first["start"] - got["input"], first["duration"],
                                  body - (first["start"] + first["duration"]), longest))
            if i == REPEAT:
                s.slowest(page, since, "filter change")
            page.close()
    finally:
        ctx.close()
    s.add("filter change: input to swapped DOM settled", times, "ms", 300, note="the table")
    s.add("filter change: input to its summary and chart settled", summary_times, "ms",
          note="" if len(summary_times) == len(times) else "no summary swap seen")
    if parts:
        s.details.append("filter change, medians: input to the fragment's request "
                         f"{statistics.median(p[0] for p in parts):.0f} ms, the request "
                         f"{statistics.median(p[1] for p in parts):.0f} ms, its response to settled "
                         f"{statistics.median(p[2] for p in parts):.0f} ms; longest task "
                         f"{statistics.median(p[3] for p in parts):.0f} ms")
    s.add("filter change: requests made", counts, "requests", 5)


def idle(s: Session, seconds: float = 10.0) -> None:
    """An open runs page makes no request besides its event stream."""
    status = page_status(s, "/")
    if status != 200:
        s.add(f"idle runs page, {seconds:g} s: requests besides the stream", [], "requests", 0,
              note=f"/ answered {status}")
        return
    ctx = s.context()
    extra: list[float] = []
    events = 0
    try:
        for i in range(REPEAT + 1):
            page = s.open(ctx, "/")
            s.stream_open(page)
            page.wait_for_timeout(200)
            made: list[str] = []
            page.on("request", lambda r, made=made: made.append(r.url))
            before = page.evaluate("() => window.__ui.sse.length")
            page.wait_for_timeout(seconds * 1000)
            arrived = page.evaluate("() => window.__ui.sse.length") - before
            if i:
                extra.append(len(made))
                events += arrived
                if made:
                    s.details.append(f"idle: {len(made)} requests ({arrived} events arrived): "
                                     + ", ".join(u.replace(s.server.url, "")[:60] for u in made[:4]))
            page.close()
    finally:
        ctx.close()
    s.add(f"idle runs page, {seconds:g} s: requests besides the stream", extra, "requests", 0,
          value=max(extra), note=f"max of {REPEAT}; {events} events arrived meanwhile")


def _occurred_ms(data: str) -> float:
    moment = datetime.fromisoformat(json.loads(data)["occurred"].replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() * 1000


def live(s: Session) -> None:
    """A flow run starts (its row appears) and is cancelled through the API (its badge
    changes) while the runs page is open: event to DOM."""
    import httpx

    status = page_status(s, "/")
    if status != 200:
        s.add("live: new run's first event to its row in the DOM", [], "ms", 1000, note=f"/ answered {status}")
        return
    ctx = s.context()
    row_ms: list[float] = []
    row_sse: list[float] = []
    badge_ms: list[float] = []
    badge_sse: list[float] = []
    api = s.server.api_url + "/v1"
    try:
        page = s.open(ctx, "/")
        s.stream_open(page)
        for i in range(REPEAT + 1):
            before = sorted({k.split("/")[0] for k in page.evaluate("() => Object.keys(window.__ui.seen)")})
            flow = subprocess.Popen([PYTHON, str(s.flows_py), "live", "30"], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True,
                                    env=flow_env(s.store.path / "live-home", api_url=s.server.api_url))
            run_id = ""
            try:
                new_row = "(before) => Object.keys(window.__ui.seen).some((k) => !before.includes(k.split('/')[0]))"
                page.wait_for_function(new_row, arg=before, timeout=30_000)
                seen = page.evaluate("() => window.__ui.seen")
                run_id = next(k for k in seen if k.split("/")[0] not in before).split("/")[0]
                page.wait_for_timeout(1500)  # past the page's once-a-second refresh
                triggered = time.time() * 1000
                httpx.post(f"{api}/flow-runs/{run_id}/cancel", timeout=30).raise_for_status()
                page.wait_for_function("(id) => Object.keys(window.__ui.seen).some((k) => k === id + '/CANCELLING'"
                                       " || k === id + '/CANCELLED')", arg=run_id, timeout=30_000)
                seen = page.evaluate("() => window.__ui.seen")
                sse = [e for e in page.evaluate("() => window.__ui.sse") if run_id in e["data"]]
            finally:
                try:
                    flow.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    flow.kill()
                    flow.wait()
                    if run_id:  # its process did not end it: end it as a worker would
                        httpx.post(f"{api}/flow-runs/{run_id}/end", timeout=30, json={
                            "state_type": "CANCELLED", "message": "ended by bench/ui_scale.py"})
            first_row = min(v for k, v in seen.items() if k.startswith(run_id + "/"))
            ended = min(v for k, v in seen.items() if k in (f"{run_id}/CANCELLING", f"{run_id}/CANCELLED"))
            first_event = min(sse, key=lambda e: _occurred_ms(e["data"]))
            cancel_event = next((e for e in sse if '"CANCELL' in e["data"]), None)
            if i:
                row_ms.append(first_row - _occurred_ms(first_event["data"]))
                row_sse.append(first_row - first_event["at"])
                badge_ms.append(ended - triggered)
                if cancel_event is not None:
                    badge_sse.append(ended - cancel_event["at"])
        page.close()
    finally:
        ctx.close()
    s.add("live: new run's first event (occurred) to its row in the DOM", row_ms, "ms", 1000,
          note="includes the flow's recorder flush (1 s)")
    s.add("live:   of which: event's arrival in the browser to the row", row_sse, "ms")
    s.add("live: cancel through the API to the row's new badge", badge_ms, "ms", 1000)
    s.add("live:   of which: event's arrival in the browser to the badge", badge_sse, "ms")


def flow_run_page(s: Session) -> None:
    """The 10,000-task run's page: load plus the graph drawn; long tasks while panning and zooming."""
    path = f"/flow-runs/{s.store.big_run_id}"
    label = f"flow-run page, {s.store.tasks:,} task runs"
    status = page_status(s, path)
    if status != 200:
        note = "not available: " + ("404, the page is not built yet" if status == 404 else f"answered {status}")
        s.add(f"{label}: time to interactive (load + graph drawn)", [], "ms", 1500, note=note)
        s.add(f"{label}: long tasks > 100 ms, pan + zoom", [], "tasks", 0, note=note)
        return
    import httpx

    for what, url in (("the graph API", f"/api/v1/flow-runs/{s.store.big_run_id}/graph"), ("the page's HTML", path)):
        times, size = [], 0
        for i in range(REPEAT + 1):
            began = time.perf_counter()
            answer = httpx.get(s.server.url + url, timeout=120)
            answer.raise_for_status()
            size = len(answer.content)
            if i:
                times.append((time.perf_counter() - began) * 1000)
        s.details.append(f"GET {url.replace(s.store.big_run_id, '<id>')} ({what}): {statistics.median(times):.0f} ms, "
                         f"{size / 1e6:.1f} MB (median of {REPEAT}, from outside)")
    ctx = s.context()
    tti: list[float] = []
    longs: list[float] = []
    stats: list[dict[str, Any]] = []
    worst = 0.0
    try:
        for i in range(REPEAT + 1):
            errors: list[str] = []
            page = ctx.new_page()
            page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
            page.goto(path, wait_until="load")
            try:
                page.wait_for_function(GRAPH_READY, polling="raf", timeout=60_000)
            except Exception:
                status = page.evaluate("() => (document.querySelector('[data-graph-status]') || {}).textContent")
                raise RuntimeError(f"{path}: window.plaitGraph.ready not true within 60 s (graph status: "
                                   f"{status!r}; page errors: {errors[:2]})") from None
            got = page.evaluate("() => ({ready: window.__ui.ready, graph: JSON.parse(JSON.stringify("
                                "window.plaitGraph || {})), "
                                "load: performance.getEntriesByType('navigation')[0].loadEventEnd})")
            canvas = page.evaluate("""() => { const c = [...document.querySelectorAll('canvas')]
                .sort((a, b) => b.width * b.height - a.width * a.height)[0];
                if (!c) return null; const r = c.getBoundingClientRect();
                return {x: r.x, y: r.y, w: r.width, h: r.height}; }""")
            if canvas is None:
                raise RuntimeError(f"{path}: the page has no <canvas> to pan and zoom")
            page.wait_for_timeout(300)
            since = page.evaluate("() => performance.now()")
            cx, cy = canvas["x"] + canvas["w"] / 2, canvas["y"] + min(canvas["h"], 600) / 2
            page.mouse.move(cx, cy)
            page.mouse.down()
            for step in range(1, 31):  # a drag of 300 px right and 150 down, in 30 moves
                page.mouse.move(cx + 10 * step, cy + 5 * step)
                page.wait_for_timeout(16)
            page.mouse.up()
            for delta in (-240,) * 6 + (240,) * 6:  # zoom in, then out
                page.mouse.wheel(0, delta)
                page.wait_for_timeout(50)
            page.wait_for_timeout(500)
            every = page.evaluate("() => window.__ui.longtasks")
            tasks = [t for t in every if t["start"] >= since]
            loading = [t["duration"] for t in every if t["start"] < since]
            if i:
                tti.append(max(got["ready"], got["load"]))
                nav = page.evaluate(NAV)
                stats.append({**got["graph"], "loadEvent": got["load"], "readyAt": got["ready"],
                              "loadTasks": sum(loading), "loadLongest": max([0, *loading]),
                              "html": nav["ttfb"] - nav["request"], "htmlDone": nav["html_done"], "kb": nav["html_kb"]})
                longs.append(sum(1 for t in tasks if t["duration"] > 100))
                worst = max([worst, *(t["duration"] for t in tasks)])
            if i == REPEAT:
                s.slowest(page, 0, "flow-run page")
            page.close()
    finally:
        ctx.close()
    s.add(f"{label}: time to interactive (load + graph drawn)", tti, "ms", 1500)
    s.add(f"{label}: long tasks > 100 ms, pan + zoom", longs, "tasks", 0,
          note=f"per sample {[int(n) for n in longs]}; longest task {worst:.0f} ms")
    if stats:
        def med(key: str) -> float:
            return statistics.median(float(g.get(key) or 0) for g in stats)
        s.details.append(f"flow-run page, window.plaitGraph medians: {med('nodes'):.0f} nodes, {med('edges'):.0f} "
                         f"edges, graph fetch {med('fetchMs'):.0f} ms, layout {med('layoutMs'):.0f} ms "
                         f"(in a worker: {stats[-1].get('layoutInWorker')}); load event {med('loadEvent'):.0f} ms, "
                         f"graph ready {med('readyAt'):.0f} ms after navigation start; the HTML: server time "
                         f"{med('html'):.0f} ms, received by {med('htmlDone'):.0f} ms, {med('kb'):.0f} kB; "
                         f"long tasks while loading {med('loadTasks'):.0f} ms in all, the longest "
                         f"{med('loadLongest'):.0f} ms")


MEASUREMENTS = {"api": api_timings, "runs": runs_page, "filter": filter_change, "idle": idle, "live": live,
                "flow-run": flow_run_page}


# -- output ----------------------------------------------------------------------------------------
def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.1f}"


def print_table(figures: list[Figure]) -> None:
    width = max([len("figure"), *(len(f.what) for f in figures)])
    print(f"{'figure':<{width}} {'median':>8} {'unit':<9} {'target':>8}  {'status':<10} note")
    for f in figures:
        target = "-" if f.target is None else f"<= {fmt(f.target)}"
        print(f"{f.what:<{width}} {fmt(f.value):>8} {f.unit:<9} {target:>8}  {f.status:<10} {f.note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1_000_000, help="synthetic flow runs (default 1,000,000)")
    parser.add_argument("--tasks", type=int, default=10_000, help="task runs of the real flow run (default 10,000)")
    parser.add_argument("--keep", type=Path, default=Path("/tmp/plait-ui-bench"),
                        help="folder that keeps the store between runs (default /tmp/plait-ui-bench)")
    parser.add_argument("--only", action="append", choices=list(MEASUREMENTS),
                        help="run only these measurements (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    opts = parser.parse_args()
    if opts.runs < 1 or opts.tasks < 3:
        parser.error("--runs must be at least 1 and --tasks at least 3")
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: install Debian's Chromium (`apt-get install -y chromium`)")
    from playwright.sync_api import sync_playwright

    from plait.testing import running_server

    with tempfile.TemporaryDirectory(prefix="plait-ui-scale-") as scratch:
        flows_py = Path(scratch) / "ui_scale_flows.py"
        flows_py.write_text(FLOWS.format(big=BIG_FLOW, live=LIVE_FLOW))
        store = ensure_store(opts.keep.resolve(), opts.runs, opts.tasks, flows_py)
        how = "reused" if store.reused else "made"
        _say(f"store {how}: {store.path} (store_gen {store.generate_seconds:.0f} s, the {store.tasks:,}-task "
             f"flow {store.flow_seconds:.0f} s, made {store.made_at[:19]} UTC)")
        figures: list[Figure] = []
        details: list[str] = []
        crashed: list[str] = []
        with running_server(store.url, Path(scratch) / "server", auth=False) as server:
            playwright = sync_playwright().start()
            try:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
                session = Session(server, browser, store, flows_py)
                for name, measure in MEASUREMENTS.items():
                    if opts.only and name not in opts.only:
                        continue
                    _say(f"measuring: {name}")
                    try:
                        measure(session)
                    except Exception as exc:  # one page failing must not hide the others' figures
                        message = str(exc).splitlines()[0][:200]
                        session.figures.append(Figure(f"{name}: could not measure", None, "", note=message))
                        crashed.append(name)
                        _say(f"{name} failed: {exc}")
                figures, details = session.figures, session.details
                browser.close()
            finally:
                playwright.stop()
    load = os.getloadavg()
    if opts.json:
        print(json.dumps({"store": {**store.__dict__, "path": str(store.path)}, "load_average": load,
                          "figures": [{**f.__dict__, "status": f.status} for f in figures],
                          "details": details}, indent=2))
    else:
        print(f"store: {store.runs:,} synthetic flow runs + one real run of {store.tasks:,} task runs "
              f"({how}; store_gen took {store.generate_seconds:.0f} s, the flow {store.flow_seconds:.0f} s); "
              f"medians of {REPEAT} after 1 warm-up; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        print_table(figures)
        if details:
            print("\nwhere the time went (Chromium's resource timing: slowest requests; API calls timed from outside):")
            for line in details:
                print(f"  {line}")
    failed = [f.what for f in figures if f.failed]
    if failed or crashed:
        print(f"\n{len(failed)} figure(s) missed their target by more than {SLACK - 1:.0%}, "
              f"{len(crashed)} measurement(s) failed", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
